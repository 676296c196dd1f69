"""Query counts that must not grow with the rows a page shows (no N+1).

``assert_constant_queries(client, url, grow)`` renders a page, lets ``grow`` add rows, renders
again and fails when the number of SQL queries changed. The failure names both counts and the
statements whose number of runs differs (literals folded, so one query per row shows as one
line run 1 time vs 5 times), then the raw SQL diff.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Sequence

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

#: Quoted strings, numbers and the expanded ``IN (...)`` lists differ from row to row; the
#: statement does not.
_LITERALS = (
    (re.compile(r"'(?:[^']|'')*'"), "?"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "?"),
    (re.compile(r"\((?:\s*\?\s*,)+\s*\?\s*\)"), "(?, ...)"),
)


def normalize(sql: str) -> str:
    """*sql* with its literals replaced by ``?``: the same statement for every row."""
    for pattern, replacement in _LITERALS:
        sql = pattern.sub(replacement, sql)
    return sql


def capture(client: Client, url: str, *, status: int = 200) -> list[str]:
    """The SQL of one GET of *url* (a streaming body is read inside the capture too)."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
    assert response.status_code == status, f"GET {url}: {response.status_code}, not {status}"
    return [query["sql"] for query in queries.captured_queries]


def explain(url: str, label: str, small: list[str], large: list[str], sizes: Sequence) -> str:
    """Both counts, the statements run a different number of times, the raw diff."""
    lines = [
        f"GET {url} ({label}): {len(small)} queries with {sizes[0]} row(s), "
        f"{len(large)} with {sizes[1]}",
        "statements whose number of runs changed (runs at each size, normalised SQL):",
    ]
    runs_small, runs_large = Counter(map(normalize, small)), Counter(map(normalize, large))
    for sql in sorted(set(runs_small) | set(runs_large)):
        if runs_small[sql] != runs_large[sql]:
            lines.append(f"  {runs_small[sql]} -> {runs_large[sql]}: {sql}")
    lines.append("raw SQL diff:")
    lines.extend(
        difflib.unified_diff(small, large, f"{sizes[0]} row(s)", f"{sizes[1]} rows", lineterm="")
    )
    return "\n".join(lines)


def assert_constant_queries(
    client: Client,
    url: str | Callable[[], str],
    grow: Callable[[int], None],
    sizes: Sequence[int] = (1, 5),
    *,
    status: int = 200,
    label: str = "",
) -> list[int]:
    """Assert that *url* runs as many queries with ``sizes[0]`` rows as with each later size.

    ``grow(n)`` adds *n* more rows of what the page shows (VMs, changes, plans, samples...);
    it is called with ``sizes[0]`` first, then with the difference to each next size. *url*
    may be a callable when the object itself is rebuilt by ``grow`` (e.g. a new plan of the
    grown host); it is called after each growth. Before the first measured render one
    unmeasured render warms the per-process caches (content types, template loaders), which
    would otherwise count once as if the page grew. Returns the counts, one per size.
    """
    assert len(sizes) >= 2 and list(sizes) == sorted(set(sizes)), sizes
    locate = url if callable(url) else lambda: url
    grow(sizes[0])
    capture(client, locate(), status=status)  # warm-up, not measured
    counts: list[int] = []
    first: list[str] = []
    for index, size in enumerate(sizes):
        if index:
            grow(size - sizes[index - 1])
        target = locate()
        queries = capture(client, target, status=status)
        counts.append(len(queries))
        if index == 0:
            first = queries
        elif len(queries) != len(first):
            raise AssertionError(explain(target, label or target, first, queries, (sizes[0], size)))
    return counts
