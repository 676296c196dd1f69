"""Every named URL x every HTTP method x five users: who gets what, in one table.

``MATRIX`` classifies every named URL pattern the resolver knows (Django admin's own URLs
and static-file serving excepted, see ``SKIPPED_NAMESPACES`` and ``is_static``): for each
method of ``METHODS`` the outcome for each role, in the order of ``ROLES``. Two more tests
keep the table honest: a named URL the table does not classify fails the suite, and so does
a name in the table that no longer resolves. URLs are reversed by name only: views may move
between modules, their names stay.

What a cell asserts:
- ``LOGIN``: 302 to the login page with ``?next=<the URL>`` (the view did not run);
- ``DENIED`` 403, ``UNAUTHORIZED`` 401 (/metrics: scrapers cannot follow a redirect),
  ``NOT_ALLOWED`` 405 (and the method is not in the ``Allow`` header);
- HEAD answers what GET answers wherever GET is accepted (``require_safe``, never
  ``require_GET``, which refuses HEAD);
- ``OK`` 200: the view ran. A POST here carries an EMPTY body, so a form page answers 200
  with its errors; what a valid submission does is tested elsewhere;
- ``to(name)``: 302 to a URL of that name (a POST that acted, e.g. sync -> the host page).

Nothing reaches Celery: every service enqueues on commit (``transaction.on_commit``) and
each case runs inside a transaction that is rolled back, so the callbacks never run
(``no_celery`` fails a case that sends a task anyway). The rollback also undoes what an
allowed POST did (a removed host, a queued sync) before the next case.
The status checks on the home page do not touch the shared lab daemon or wait for workers:
the lab URI is libvirt's in-process test driver and workers are read from the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing import tasks as balancing_tasks
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from hosts.models import SampleSource
from hosts.sampling import store_cell_samples
from numaportal.celery import app as celery_app
from numaportal.roles import OPERATOR_GROUP, VIEWER_GROUP
from tests.web.conftest import make_host, make_vm

pytestmark = [pytest.mark.web]

GIB = 1024 * 1024

ROLES = ("anonymous", "no_role", "viewer", "operator", "admin")
#: Every method a browser, a script or a scanner may send; a view accepts a subset.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Expect:
    status: int
    #: URL name the ``Location`` of a 302 resolves to.
    to: str | None = None
    #: a login redirect carries ``?next=`` with the requested URL.
    next: bool = False

    def __str__(self) -> str:
        if self.status != 302:
            return str(self.status)
        return f"302 -> {self.to}" + (" ?next=" if self.next else "")


OK = Expect(200)
DENIED = Expect(403)
UNAUTHORIZED = Expect(401)
NOT_ALLOWED = Expect(405)
LOGIN = Expect(302, "login", next=True)


def to(name: str) -> Expect:
    return Expect(302, name)


Row = tuple[Expect, Expect, Expect, Expect, Expect]  # in the order of ROLES


def only(**accepted: Row) -> dict[str, Row]:
    """The methods a view accepts, by role; EVERY other method of METHODS is 405 for every
    role (``require_GET``/``require_POST``/``require_http_methods`` answer before the login
    check, so even anonymous users get the 405)."""
    unknown = set(accepted) - set(METHODS)
    assert not unknown, unknown
    refused: Row = (NOT_ALLOWED,) * 5
    return {method: accepted.get(method, refused) for method in METHODS}


def page(get: Row, **others: Row) -> dict[str, Row]:
    """A page: HEAD is answered as GET is (``require_safe``, or HEAD listed next to GET), so
    a monitor or a link checker sending HEAD is not refused; *others*: the other methods."""
    return only(GET=get, HEAD=get, **others)


#: Everyone signed in may read it (view permission of the app), nobody else.
READ: Row = (LOGIN, DENIED, OK, OK, OK)
#: Operators (changes.add_change) and admins.
OPERATE: Row = (LOGIN, DENIED, DENIED, OK, OK)
#: Admins (superusers, or the hosts.*_host permissions) only.
ADMIN: Row = (LOGIN, DENIED, DENIED, DENIED, OK)
#: An object that is nobody's to see (another user's API token): 404 for every role.
NOT_ANYONES: Row = (LOGIN, DENIED, Expect(404), Expect(404), Expect(404))

# The classification: URL name -> {method -> outcome per role (ROLES order)}.
MATRIX: dict[str, dict[str, Row]] = {
    # Home and its status table: the viewer role (roles.VIEW_STATUS). It names the database,
    # the broker, the workers and the libvirt host: nothing for a user without a role.
    "home": page(READ),
    "status": page(READ),
    "status-fragment": page(READ),
    # hosts.view_host or a bearer token; 401 rather than a login redirect (scrapers).
    "metrics": page((UNAUTHORIZED, UNAUTHORIZED, OK, OK, OK)),
    # Django's LoginView (FormView: get, post, put; options from View): open to everyone,
    # also to signed-in users (redirect_authenticated_user is off). An empty POST/PUT is
    # an invalid form: 200 with its errors.
    "login": only(GET=(OK,) * 5, HEAD=(OK,) * 5, POST=(OK,) * 5, PUT=(OK,) * 5, OPTIONS=(OK,) * 5),
    # Django's LogoutView: POST (logs out, then LOGOUT_REDIRECT_URL) and OPTIONS only.
    "logout": only(POST=(to("login"),) * 5, OPTIONS=(OK,) * 5),
    # --- hosts ---------------------------------------------------------------------------
    "hosts:list": page(READ),
    # hosts.add_host: the form for admins; an empty POST is the form with errors.
    "hosts:add": page(ADMIN, POST=ADMIN),
    "hosts:detail": page(READ),
    # One cell's drawing, which the host page loads (htmx) when a collapsed cell opens.
    "hosts:cell": page(READ),
    "hosts:distances": page(READ),
    "hosts:numastat": page(READ),
    # Superusers only, checked in the view (hosts.balancing.can_switch) after the host was
    # looked up: an unknown host is 404 before the 403 (not exercised here).
    "hosts:numa-balancing": page(ADMIN, POST=ADMIN),
    # hosts.change_host; queues a sync (on commit) and goes back to the host page.
    "hosts:sync": only(POST=(LOGIN, DENIED, DENIED, DENIED, to("hosts:detail"))),
    "hosts:sync-status": page(READ),
    # hosts.delete_host: GET is the confirmation page, POST removes and goes to the list.
    "hosts:remove": page(ADMIN, POST=(LOGIN, DENIED, DENIED, DENIED, to("hosts:list"))),
    # --- vms -----------------------------------------------------------------------------
    "vms:list": page(READ),
    "vms:detail": page(READ),
    # changes.add_change also for GET (a viewer does not even see the forms); an empty POST
    # is the form with its errors.
    "vms:change": page(OPERATE, POST=OPERATE),
    # changes.add_change; an empty POST is valid (both flags off): saved, back to the VM.
    "vms:balancing-flags": only(POST=(LOGIN, DENIED, DENIED, to("vms:detail"), to("vms:detail"))),
    # --- changes (read-only by design: no edit or delete URL) -----------------------------
    "changes:list": page(READ),
    "changes:export": page(READ),
    "changes:detail": page(READ),
    "changes:status": page(READ),
    # --- balancing -----------------------------------------------------------------------
    # changes.view_change sees plans (a plan is a set of proposed changes).
    "balancing:list": page(READ),
    "balancing:plan": page(READ),
    "balancing:plan-status": page(READ),
    # changes.add_change; an empty POST (blank reason) re-renders the plan with the error.
    "balancing:approve": only(POST=OPERATE),
    # changes.add_change; a new plan is written (computed on commit) and its page follows.
    "balancing:request": only(
        POST=(LOGIN, DENIED, DENIED, to("balancing:plan"), to("balancing:plan"))
    ),
    # Superusers only, checked in the view after the (active) host was looked up; an empty
    # POST is the form with its errors.
    "balancing:policy": page(ADMIN, POST=ADMIN),
    # --- the user's own API tokens (web.tokens) ------------------------------------------
    "tokens:list": page(READ),
    # An empty POST is valid (blank days: the limit): a token is made and shown once (200).
    "tokens:create": only(POST=READ),
    # Only one's own tokens: the world's users have none, so the key is nobody's (404).
    "tokens:revoke": page(NOT_ANYONES, POST=NOT_ANYONES),
}

#: Namespaces whose URLs are not ours to classify.
SKIPPED_NAMESPACES = {
    "admin",  # Django admin: its own login and permission rules (is_staff, ModelAdmin perms)
    # The REST API: JSON, 401 without credentials instead of the login redirect, tokens; its
    # role matrix per endpoint is in tests/api, and schemathesis fuzzes its parameters.
    "api",
}


def is_static(pattern: URLPattern) -> bool:
    """Static files: django.conf.urls.static / staticfiles' serve (only with DEBUG); whitenoise
    serves them as middleware and adds no URL pattern at all."""
    return pattern.callback.__module__ in {
        "django.views.static",
        "django.contrib.staticfiles.views",
    }


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name", as reverse() takes it
    route: str  # the pattern text, for messages


def walk(resolver: URLResolver | None = None, namespace: str = "", prefix: str = "") -> Iterator:
    """Every URL pattern below *resolver* (the root by default), with its full name."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                if entry.namespace in SKIPPED_NAMESPACES:
                    continue
                inner = f"{namespace}{entry.namespace}:"
            yield from walk(entry, inner, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            if is_static(entry):
                continue
            name = f"{namespace}{entry.name}" if entry.name else ""
            yield Route(name, prefix + str(entry.pattern))


# --- the table matches the resolver -----------------------------------------------------------


def test_every_url_pattern_has_a_name():
    """An unnamed pattern cannot be reversed, so it could never be classified."""
    unnamed = [route.route for route in walk() if not route.name]
    assert unnamed == []


def test_every_named_url_is_classified():
    names = {route.name for route in walk()}
    missing = sorted(names - set(MATRIX))
    assert missing == [], f"add these URL names to MATRIX in {__name__}: {missing}"


def test_every_classified_url_still_exists():
    names = {route.name for route in walk()}
    stale = sorted(set(MATRIX) - names)
    assert stale == [], f"these URL names in MATRIX no longer resolve: {stale}"


def test_every_row_names_every_method_and_role():
    for name, methods in MATRIX.items():
        assert set(methods) == set(METHODS), name
        for method, row in methods.items():
            assert len(row) == len(ROLES), (name, method)


# --- the objects every URL needs, built once for the module ------------------------------------


@dataclass
class World:
    users: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


def build_world() -> World:
    """A synced 2-cell host with VMs, cell samples, a change record, a ready plan, a policy."""
    host = make_host("hv01")
    vm = make_vm(host, "db01", vcpus=4, pins={0: "0", 1: "1", 2: "6", 3: "7"}, memory_kib=8 * GIB)
    make_vm(host, "web01", vcpus=2, memory_kib=4 * GIB)
    make_vm(host, "web02", vcpus=2, memory_kib=4 * GIB)
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    for minute in range(3):
        store_cell_samples(
            host,
            base + timedelta(minutes=minute),
            SampleSource.PROBE,
            free_kib={0: 1000 * 1024, 1: 2000 * 1024},
            counters={
                cell: {"numa_hit": 1000 + 600 * minute, "numa_miss": 10 + minute} for cell in (0, 1)
            },
            boot_time=1_700_000_000,
        )
    change = Change.objects.create(
        actor_name="alice",
        host=host,
        vm=vm,
        target_name=vm.name,
        kind="vcpupin",
        params={"vcpu": 0, "cpuset": "22"},
        scope="live+config",
        reason="matrix",
    )
    BalancingPolicy.objects.create(host=host)
    # request_plan queues the computation on commit, and this setup commits: skip the queue
    # and compute here, as a worker would.
    with mock.patch.object(balancing_tasks.compute_plan, "apply_async"):
        plan = plan_requests.request_plan(host=host, actor=None)
    plan = plan_compute.compute_plan(plan.pk)
    assert plan.status == BalancingPlan.Status.READY, plan.status

    django_user_model = get_user_model()
    users = {"anonymous": None}
    users["no_role"] = django_user_model.objects.create_user("nobody", password="pw-nobody-1")
    users["viewer"] = django_user_model.objects.create_user("viewer", password="pw-viewer-1")
    users["viewer"].groups.add(Group.objects.get(name=VIEWER_GROUP))
    users["operator"] = django_user_model.objects.create_user("op", password="pw-op-1")
    users["operator"].groups.add(Group.objects.get(name=OPERATOR_GROUP))
    users["admin"] = django_user_model.objects.create_superuser("root", "", "pw-root-1")

    on_host = {"name": host.name}
    on_vm = {"host_name": host.name, "uuid": vm.uuid}
    kwargs = {
        "hosts:detail": on_host,
        "hosts:cell": {**on_host, "cell_id": 0},
        "hosts:distances": on_host,
        "hosts:numastat": on_host,
        "hosts:numa-balancing": on_host,
        "hosts:sync": on_host,
        "hosts:sync-status": on_host,
        "hosts:remove": on_host,
        "vms:detail": on_vm,
        # Every change form is one view behind one decorator; one kind stands for all.
        "vms:change": {**on_vm, "kind": "vcpupin"},
        "vms:balancing-flags": on_vm,
        "changes:detail": {"pk": change.pk},
        "changes:status": {"pk": change.pk},
        "balancing:plan": {"pk": plan.pk},
        "balancing:plan-status": {"pk": plan.pk},
        "balancing:approve": {"pk": plan.pk},
        "balancing:request": on_host,
        "balancing:policy": on_host,
        "tokens:revoke": {"key": "0123456789abcde"},
    }
    return World(users=users, kwargs=kwargs)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """Built once and committed; each case's own writes roll back with its transaction. The
    teardown flushes the database (post_migrate brings the role groups back) so that the
    next module starts from the state `migrate` leaves."""
    with django_db_blocker.unblock():
        try:
            yield build_world()
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def no_celery():
    """Asserts the docstring's claim: nothing is handed to the broker (every task's
    apply_async goes through app.send_task)."""
    with mock.patch.object(
        celery_app, "send_task", side_effect=AssertionError("a case sent a Celery task")
    ):
        yield


# --- the matrix ---------------------------------------------------------------------------------

CASES = [
    pytest.param(name, method, role, id=f"{name}-{method}-{role}")
    for name in sorted(MATRIX)
    for method in METHODS
    for role in ROLES
]


@pytest.mark.parametrize(("name", "method", "role"), CASES)
def test_access(name, method, role, world, db, quick_status, no_celery):
    expected = MATRIX[name][method][ROLES.index(role)]
    url = reverse(name, kwargs=world.kwargs.get(name))
    client = Client()
    if world.users[role] is not None:
        client.force_login(world.users[role])
    response = client.generic(method, url)
    where = f"{method} {url} as {role}"
    assert response.status_code == expected.status, (
        f"{where}: {response.status_code}, expected {expected}"
    )
    if expected.status == 405:
        allowed = {m.strip() for m in response["Allow"].split(",")}
        assert method not in allowed, where
    if expected.status == 302:
        location = urlsplit(response["Location"])
        assert resolve(location.path).view_name == expected.to, f"{where}: -> {location.path}"
        if expected.next:
            assert parse_qs(location.query).get("next") == [url], f"{where}: {location.query}"
