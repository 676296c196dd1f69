"""What the page benchmarks share: Django set up on import, a throw-away database, timings.

    sys.path.insert(0, <repository root>)
    from bench import benchkit  # django.setup() has run

Pages are requested with Django's test client, so "server time" is the whole request through
the middleware, the view and the templates, without a network or a browser.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402


@contextmanager
def throwaway_database(name: str) -> Iterator[None]:
    """A database of its own, never the one a concurrent ``make test`` or bench uses: on
    DATABASE_URL's PostgreSQL server a test database *name* (created and dropped here), else a
    temporary SQLite file (a file, not memory, so that reads cost what they cost on disk)."""
    # whitenoise looks for STATIC_ROOT, which only `collectstatic` (make run) creates
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    setup_test_environment()
    tmp = None
    if connection.vendor == "sqlite":
        tmp = tempfile.mkdtemp(prefix=f"{name}-")
        connection.settings_dict.setdefault("TEST", {})["NAME"] = str(Path(tmp) / "bench.db")
    else:
        connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if tmp:
            for f in Path(tmp).iterdir():
                f.unlink()
            Path(tmp).rmdir()


def count_queries(fn: Callable[[], object]) -> int:
    """How many SQL statements *fn* runs."""
    sql: list[str] = []

    def record(execute, query, *args):
        sql.append(query)
        return execute(query, *args)

    with connection.execute_wrapper(record):
        fn()
    return len(sql)


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def median_max_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    times = [timed_ms(fn) for _ in range(runs)]
    return statistics.median(times), max(times)
