"""Roles everywhere, from the resolver rather than from a table (``web.access`` states the rule).

``test_url_matrix.MATRIX`` says what each URL answers each role; a new page could be put
there as open to a user without a role. These tests do not read the table: they walk every
URL pattern the resolver knows (``test_url_matrix.walk``: Django admin's own URLs and static
files excepted) and hold every one of them to the rule, so a page added without a role check
fails here whatever its row says:

- a signed-in user without any role gets 403 for every method the page accepts, anonymous
  users the login page; only logging in and out are open, and /metrics answers 401 (a bearer
  token, or ``hosts.view_host``);
- an object named in the URL that does not exist: still 403 without a role (a 403 does not
  say what exists), 404 for a viewer, whether the page only shows it or acts on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import resolve, reverse

from numaportal.celery import app as celery_app
from tests.web.test_url_matrix import World, build_world, walk

pytestmark = [pytest.mark.web]

#: Every method but OPTIONS (Django's View answers it without running the view; our
#: function views refuse it with 405 like any other method they do not accept).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: Open to everyone: signing in and out.
OPEN = {"login", "logout"}
#: Answers 401 instead of a login redirect or a 403: scrapers send a token.
TOKEN = {"metrics"}

ROUTES = sorted(route.name for route in walk())
WITH_OBJECT = sorted(route.name for route in walk() if "<" in route.route)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """As test_url_matrix's: built once and committed, flushed afterwards."""
    with django_db_blocker.unblock():
        try:
            yield build_world()
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def no_celery():
    with mock.patch.object(
        celery_app, "send_task", side_effect=AssertionError("a case sent a Celery task")
    ):
        yield


def answers(client: Client, url: str) -> dict[str, int]:
    """Status per method, the methods the page does not accept (405) left out."""
    codes = {method: client.generic(method, url).status_code for method in METHODS}
    return {method: code for method, code in codes.items() if code != 405}


def test_every_page_is_walked():
    """The walk finds the pages (a resolver change that hid them would pass everything)."""
    assert {"home", "status-fragment", "hosts:list", "vms:change", "balancing:policy"} <= set(
        ROUTES
    )
    assert len(ROUTES) > 25


@pytest.mark.parametrize("name", ROUTES)
def test_a_user_without_a_role_is_refused(name, world, db, quick_status, no_celery):
    url = reverse(name, kwargs=world.kwargs.get(name))
    client = Client()
    client.force_login(world.users["no_role"])
    accepted = answers(client, url)
    assert accepted, f"{url}: no method accepted"
    if name in OPEN:
        return
    expected = 401 if name in TOKEN else 403
    assert set(accepted.values()) == {expected}, f"{url} without a role: {accepted}"


@pytest.mark.parametrize("name", sorted(set(ROUTES) - OPEN))
def test_anonymous_users_are_sent_to_log_in(name, world, db, quick_status, no_celery):
    url = reverse(name, kwargs=world.kwargs.get(name))
    client = Client()
    for method in METHODS:
        response = client.generic(method, url)
        if response.status_code == 405:
            continue
        if name in TOKEN:
            assert response.status_code == 401, (method, url)
            continue
        assert response.status_code == 302, (method, url, response.status_code)
        assert resolve(urlsplit(response["Location"]).path).view_name == "login", (method, url)


def missing(kwargs: dict) -> dict:
    """The same URL naming an object that does not exist (the host, VM, change or plan)."""
    replaced = dict(kwargs)
    for key in ("name", "host_name"):
        if key in replaced:
            replaced[key] = "no-such-host"
    for key in ("uuid", "pk"):
        if key in replaced:
            replaced[key] = uuid.uuid4()
    return replaced


@pytest.mark.parametrize("name", WITH_OBJECT)
def test_an_unknown_object_is_403_without_a_role_and_404_for_a_viewer(
    name, world, db, quick_status, no_celery
):
    """The issue's inconsistency: /hosts/<unknown>/numa-balancing/ and /balancing/policy/
    <unknown>/ answered a user without a role 404 (looked up before the role), the other
    pages 403; and a viewer got 403 for an unknown host's sync (the action's permission came
    before the lookup) where the pages that show it said 404."""
    url = reverse(name, kwargs=missing(world.kwargs[name]))
    nobody, viewer = Client(), Client()
    nobody.force_login(world.users["no_role"])
    viewer.force_login(world.users["viewer"])
    assert set(answers(nobody, url).values()) == {403}, url
    assert set(answers(viewer, url).values()) == {404}, url


def test_an_existing_object_a_viewer_may_not_act_on_is_403(world, db, quick_status, no_celery):
    """The other half of the rule (the matrix has every case; one of each kind here)."""
    viewer = Client()
    viewer.force_login(world.users["viewer"])
    kw = world.kwargs
    assert viewer.post(reverse("hosts:sync", kwargs=kw["hosts:sync"])).status_code == 403
    assert viewer.get(reverse("vms:change", kwargs=kw["vms:change"])).status_code == 403
    assert viewer.get(reverse("balancing:policy", kwargs=kw["balancing:policy"])).status_code == 403


def test_the_403_page_tells_a_user_without_a_role_what_to_ask_for(
    world, db, quick_status, no_celery
):
    client = Client()
    client.force_login(world.users["no_role"])
    response = client.get(reverse("home"))  # where logging in lands
    assert response.status_code == 403
    page = response.content.decode()
    assert "Signed in as <strong>nobody</strong>" in page
    assert "no role yet" in page and "viewer" in page
    # the status table is not there: no database path, broker URL or libvirt URI
    assert 'class="status"' not in page and "Broker" not in page


def test_the_status_page_waits_for_no_broadcast(world, db, quick_status, no_celery):
    """Workers come from their own reports in the cache (numaportal.liveness): nothing is
    broadcast to them (ping, inspect and every other remote control go through broadcast)."""
    viewer = Client()
    viewer.force_login(world.users["viewer"])
    refuse = AssertionError("the status page broadcast to the workers")
    with mock.patch.object(celery_app.control, "broadcast", side_effect=refuse) as broadcast:
        for name in ("status", "status-fragment"):
            response = viewer.get(reverse(name))
            assert response.status_code == 200
            rows = {c.name: c for c in response.context["components"]}
            assert "Celery workers" in rows
    assert not broadcast.called
