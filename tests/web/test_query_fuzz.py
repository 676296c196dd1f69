"""No query string produces a 5xx: every GET page's parameters, fuzzed (issue 14).

Which URLs: every named URL of the resolver whose GET some role opens (``MATRIX`` of
``test_url_matrix.py``, which fails the suite for an unclassified URL), requested as the least
privileged role that gets a 200 (a viewer for the lists and the export, an operator for the
change forms, an admin for the policy page). A new page is fuzzed as soon as it is classified.

Which parameters: read from the code, not listed here. For each view, its module's source is
walked (and the ``web`` helpers it imports: paging, htmx): ``request.GET.get("x")``,
``request.GET["x"]``, ``paginate(..., param="x")`` (and its default, ``page``), and the fields
of every FilterSet or form bound to ``request.GET`` (a date range filter as its ``_after`` /
``_before`` pair). A new filter, form field or hand-parsed parameter is therefore fuzzed
without touching this file; ``test_the_parameters_are_derived_from_the_code`` keeps the
derivation honest (and fails for a FilterSet no fuzzed page reads).

Two tests per URL. The sweep sends every parameter alone with one value of each hostile kind
(:data:`SWEEP`: 2**63, Unicode digits, "1e309", NUL, dates of year 1 and 9999, a thousand
words...), so that every pair is tried and no other parameter's error can hide one. Hypothesis
then sends a few parameters at once, each once or repeated, mixing more hostile values with
generated integers, dates and text and with values that match real rows (the world of
``test_url_matrix.py``: a host, VMs, cell samples, a change, a plan), so the filters really
query. The time zone is UTC-12: the end of 9999-12-31 there is past ``datetime.max`` in UTC.

Fixed seed (``derandomize``), :data:`EXAMPLES` examples per URL, no example database: the
same requests on every run, in about a minute on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import django_filters
import pytest
from django import forms
from django.core.management import call_command
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from changes.models import Change
from hosts import history as numastat_history
from numaportal.bounds import MAX_ID
from tests.web.test_url_matrix import MATRIX, OK, ROLES, SKIPPED_NAMESPACES, World, build_world
from web import paging

pytestmark = [pytest.mark.web]

#: Hypothesis examples per URL (25 URLs; a request takes a few tens of milliseconds).
EXAMPLES = 15
#: West of UTC as far as it goes: a date's end of day there is the latest UTC time.
TIME_ZONE = "Etc/GMT+12"


# --- which URLs, as whom --------------------------------------------------------------------------


def views(resolver: URLResolver | None = None, namespace: str = "") -> Iterator[tuple[str, Any]]:
    """(URL name, view function) of every named pattern (as ``test_url_matrix.walk``)."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace not in SKIPPED_NAMESPACES:
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from views(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", entry.callback


def get_routes() -> list[tuple[str, str, list[str]]]:
    """(URL name, role, parameters) of every URL whose GET some role opens, as the least
    privileged role that does, with the parameters its view reads; those without any
    parameter are left out (Django's login view, the home page, /metrics)."""
    routes = []
    for name, callback in views():
        row = MATRIX[name]["GET"]
        role = next((r for r, expect in zip(ROLES, row, strict=True) if expect == OK), None)
        params = view_params(callback)
        if role is not None and params:
            routes.append((name, role, params))
    return sorted(routes)


# --- which parameters: read from the views' code --------------------------------------------------


def filterset_params(filterset: type[django_filters.FilterSet]) -> set[str]:
    """The query parameters a FilterSet reads: a filter's name, or one per sub-widget."""
    names = set()
    for name, flt in filterset.base_filters.items():
        widget = flt.field.widget
        suffixes = getattr(widget, "suffixes", None)
        if suffixes:
            names.update(f"{name}_{suffix}" if suffix else name for suffix in suffixes)
        else:
            names.add(name)
    return names


def all_filtersets() -> Iterator[type[django_filters.FilterSet]]:
    stack = list(django_filters.FilterSet.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in {"hosts", "vms", "changes", "balancing", "web"}:
            yield cls


def _is_get(node: ast.AST) -> bool:
    """``request.GET`` (or ``request.GET or None``)."""
    if isinstance(node, ast.BoolOp):
        return any(_is_get(value) for value in node.values)
    return isinstance(node, ast.Attribute) and node.attr == "GET"


def _resolve(module, node: ast.AST):
    """The object a Name or dotted Attribute of *module*'s source names, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    obj = vars(module).get(node.id)
    for part in reversed(parts):
        obj = getattr(obj, part, None)
    return obj


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def function_params(func: Callable, seen: set[Callable] | None = None) -> set[str]:
    """The query parameters *func*'s code reads, and the code it calls in ``web`` (the view's
    helpers in its module, and web.paging / web.htmx): see the module docstring."""
    seen = set() if seen is None else seen
    if func in seen:
        return set()
    seen.add(func)
    module = inspect.getmodule(func)
    names: set[str] = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        if isinstance(node, ast.Subscript) and _is_get(node.value):
            names.update(filter(None, [_constant(node.slice)]))
        if not isinstance(node, ast.Call):
            continue
        callee = _resolve(module, node.func)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get" and _is_get(func.value):
            names.update(filter(None, [_constant(node.args[0] if node.args else None)]))
        if callee is paging.paginate:
            keywords = {kw.arg: _constant(kw.value) for kw in node.keywords}
            default = inspect.signature(paging.paginate).parameters["param"].default
            names.add(keywords.get("param") or default)
        elif inspect.isfunction(callee) and callee.__module__.split(".")[0] == "web":
            names |= function_params(inspect.unwrap(callee), seen)
        if node.args and _is_get(node.args[0]):
            if isinstance(callee, type) and issubclass(callee, django_filters.FilterSet):
                names |= filterset_params(callee)
            elif isinstance(callee, type) and issubclass(callee, forms.BaseForm):
                names |= set(callee.base_fields)
    return names


def view_params(callback: Callable) -> list[str]:
    """Every parameter fuzzed on a URL: what its view function reads (and its helpers)."""
    if hasattr(callback, "view_class"):  # Django's own class-based views (login)
        return []
    return sorted(function_params(inspect.unwrap(callback)))


ROUTES = get_routes()
IDS = [name for name, _, _ in ROUTES]


# --- which values ---------------------------------------------------------------------------------

#: One value of each kind, each sent alone to every parameter of every page.
SWEEP = [
    str(2**63),  # one past a 64-bit column: SQLite's OverflowError
    str(-(2**63) - 1),
    "9" * 5000,  # past Python's int() digit limit too
    "\u0663",  # Arabic-Indic three: int() takes it
    "\u00b2",  # superscript two: isdigit(), and int() raises ValueError
    "1e309",  # float(): inf
    "nan",
    "\x00",  # PostgreSQL refuses NUL in text
    "x" * 5000,
    "a " * 1500,  # a thousand words: a thousand LIKEs
    "0001-01-01",  # the start of year 1 in UTC is before datetime.min east of Greenwich
    "9999-12-31",  # the end of 9999 in UTC is after datetime.max west of it
    "9999-99-99",
    "\u0663" * 32,  # a "UUID" of Unicode digits
]

#: More of them, mixed by hypothesis with generated and real values.
HOSTILE = [
    *SWEEP,
    str(2**63 - 1),
    "-1",
    "0",
    "-0",
    "inf",
    "-inf",
    "1.5",
    "\uff13",  # fullwidth three
    "1\x00",
    "%",
    "_",
    "'; --",
    "0000-00-00",
    "\u0662\u0660\u0662\u0664-01-01",
    "2024-02-30",
    "00000000-0000-0000-0000-000000000000",
    "true",
    "false",
    "",
]


def real_values(world: World) -> list[str]:
    """Values that match rows and choices, so that the filters really filter."""
    values = {"hv01", "db01", "alice", "1", "2"}
    values |= set(numastat_history.WINDOWS)
    change = Change.objects.first()
    if change is not None:
        values |= {str(change.vm_id), str(change.group_id), change.kind, change.status}
        values.add(change.created_at.date().isoformat())
    for filterset in all_filtersets():
        for flt in filterset.base_filters.values():
            values |= {str(value) for value, _ in flt.extra.get("choices", ()) if value != ""}
    return sorted(values)


def values_strategy(world: World) -> st.SearchStrategy[str]:
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.sampled_from(real_values(world)),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.integers(min_value=-2, max_value=MAX_ID).map(str),
        st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
        text,
    )


def query_strategy(names: list[str], world: World) -> st.SearchStrategy[dict]:
    """A query string: a few of *names*, each once or repeated (``?vm=1&vm=2``)."""
    value = values_strategy(world)
    return st.dictionaries(
        st.sampled_from(names),
        st.one_of(value, st.lists(value, min_size=2, max_size=3)),
        min_size=1,
        max_size=4,
    )


# --- the world: built once, committed; flushed at the end (as test_url_matrix) --------------------


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    with django_db_blocker.unblock():
        try:
            yield build_world()
        finally:
            call_command("flush", interactive=False, verbosity=0)


# --- the tests ------------------------------------------------------------------------------------


def test_the_parameters_are_derived_from_the_code(world, db):
    """The derivation finds what the views read today (a page that reads more is fuzzed with it
    automatically), and every FilterSet of the project is read by some fuzzed page."""
    params = {name: set(names) for name, _, names in ROUTES}
    assert {"vm", "created_after", "created_before", "q", "group", "page"} <= params["changes:list"]
    assert params["changes:export"] >= params["changes:list"] - {"page"}
    assert {"host", "state", "name", "include_gone", "page"} <= params["vms:list"]
    assert {"window"} <= params["vms:detail"] and {"window"} <= params["hosts:numastat"]
    assert {"fill", "cell"} <= params["vms:change"]
    assert {"page", "memory_page", "cell"} <= params["hosts:detail"]
    assert {"polling"} <= params["changes:status"]
    assert {"host", "status", "trigger"} <= params["balancing:list"]
    fuzzed = set().union(*params.values())
    for filterset in all_filtersets():
        assert filterset_params(filterset) <= fuzzed, f"{filterset.__name__} is never fuzzed"


def client_for(role: str, world: World) -> Client:
    client = Client()  # a view's exception is raised in the test, with its traceback
    if world.users[role] is not None:  # the login page: anonymous
        client.force_login(world.users[role])
    return client


def server_error(client: Client, url: str, query: dict) -> str | None:
    """What went wrong answering ``GET url?query`` (an exception or a 5xx), or None."""
    try:
        response = client.get(url, query)
        if isinstance(response, StreamingHttpResponse):
            b"".join(response.streaming_content)  # an error mid-stream is an error too
    except Exception as exc:  # the report names it
        return f"{shortened(query)}: {type(exc).__name__}: {exc}"
    if response.status_code >= 500:
        return f"{shortened(query)}: {response.status_code}"
    return None


def shortened(query: dict) -> str:
    """*query* for a message: long values cut (a 5000-character value says nothing more)."""

    def cut(value: str) -> str:
        return value if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"

    return ", ".join(
        f"{name}={[cut(v) for v in value] if isinstance(value, list) else cut(value)}"
        for name, value in query.items()
    )


@pytest.mark.parametrize(("name", "role", "params"), ROUTES, ids=IDS)
def test_every_parameter_takes_every_kind_of_hostile_value(
    name, role, params, world, db, quick_status, settings
):
    """Each parameter alone, with one value of each kind that broke or could break something:
    every pair is tried (no other parameter's error can hide it)."""
    settings.TIME_ZONE = TIME_ZONE
    url = reverse(name, kwargs=world.kwargs.get(name))
    client = client_for(role, world)
    errors = [
        error
        for param in params
        for value in SWEEP
        if (error := server_error(client, url, {param: value}))
    ]
    assert errors == [], f"GET {url}: " + "; ".join(errors)


@pytest.mark.parametrize(("name", "role", "params"), ROUTES, ids=IDS)
def test_no_query_string_is_a_server_error(name, role, params, world, db, quick_status, settings):
    """Hypothesis: a few parameters at once, hostile, generated or real, once or repeated."""
    settings.TIME_ZONE = TIME_ZONE
    url = reverse(name, kwargs=world.kwargs.get(name))
    client = client_for(role, world)

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(query=query_strategy(params, world))
    def no_server_error(query):
        assert server_error(client, url, query) is None

    no_server_error()
