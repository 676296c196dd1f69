"""No form value produces a 5xx: every field of every form page, with each hostile kind of value
(issue 14; the query strings are ``test_query_fuzz.py``).

Which forms: every named URL that takes GET, HEAD and POST only (``MATRIX`` of
``test_url_matrix.py``: ``require_http_methods(["GET", "POST"])``, a form page), both opened by
the same role: the change forms (one per kind of ``changes.forms.FORMS``), the policy,
numa_balancing and host registration forms; the GET's ``form`` gives the fields. Django's own
views (login) are left out, and so are the POST-only actions, whose forms have no page of their
own (approve: a reason; the balancing flags: two checkboxes).

Which values: the form's own initial values (made valid where :data:`GOOD` knows how: every
change form and the policy and numa_balancing forms start valid; the host registration form
does not, so it is fuzzed as far as its field validation and never contacts libvirt), with one
field at a time replaced by each of :data:`VALUES` (2**63, Unicode digits, "1e309", NUL, ...).
A value the form accepts goes on to its preview and, with ``confirm``, to ``request_change``:
the record is written in the test's transaction and nothing is queued (the enqueue is on
commit).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from changes import forms as change_forms
from hosts.models import Host
from tests.web.conftest import make_vm
from tests.web.test_query_fuzz import shortened, views
from tests.web.test_url_matrix import MATRIX, NOT_ALLOWED, OK, ROLES, World, build_world

pytestmark = [pytest.mark.web]

VALUES = [
    str(2**63),
    str(-(2**63) - 1),
    "9" * 5000,
    "\u0663",  # Arabic-Indic three
    "\uff13",  # fullwidth three
    "\u00b2",  # superscript two
    "1e309",
    "nan",
    "\x00",
    "x" * 5000,
]


def form_pages() -> list[tuple[str, str, str]]:
    """(URL name, role, kind or "") of every form page (see the module docstring)."""
    pages = []
    for name, callback in views():
        if hasattr(callback, "view_class"):
            continue
        methods = MATRIX[name]
        if any(methods[m][-1] != NOT_ALLOWED for m in methods if m not in ("GET", "HEAD", "POST")):
            continue  # not a GET-and-POST-only view (the home page takes every method)
        role = next(
            (
                role
                for role, get, post in zip(ROLES, methods["GET"], methods["POST"], strict=True)
                if get == OK and post == OK
            ),
            None,
        )
        if role is None:
            continue
        kinds = list(change_forms.FORMS) if name == "vms:change" else [""]
        pages.extend((name, role, kind) for kind in kinds)
    return sorted(pages)


PAGES = form_pages()


#: Valid values for the fields a form page leaves blank or unchanged (a form that is valid
#: apart from the fuzzed field goes further: preview, confirm). Only the base: every field of
#: every form is fuzzed whether it is named here or not.
GOOD = {"cpuset": "0-3", "nodeset": "0", "cells": "0", "vcpu_0": "0-1", "reason": "fuzz"}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """The matrix's world, with room for the change forms: a VM of 2 of 4 vCPUs (hot-add,
    hot-remove), and an on-host worker queue on the host (numa_balancing, memory moves)."""
    with django_db_blocker.unblock():
        try:
            world = build_world()
            host = Host.objects.get(name="hv01")
            Host.objects.filter(pk=host.pk).update(worker_queue="host.fuzz")
            vm = make_vm(host, "fuzz01", vcpus=2, vcpu_max=4)
            world.kwargs["vms:change"] = {"host_name": host.name, "uuid": vm.uuid}
            yield world
        finally:
            call_command("flush", interactive=False, verbosity=0)


def test_the_form_pages_are_found():
    names = {name for name, _, _ in PAGES}
    assert {"vms:change", "balancing:policy", "hosts:numa-balancing"} <= names
    kinds = {kind for name, _, kind in PAGES if name == "vms:change"}
    assert kinds == set(change_forms.FORMS)


@pytest.mark.parametrize(
    ("name", "role", "kind"), PAGES, ids=[f"{n}-{k}" if k else n for n, _, k in PAGES]
)
def test_no_form_value_is_a_server_error(name, role, kind, world, db, quick_status, enqueued):
    kwargs = dict(world.kwargs.get(name) or {})
    if kind:
        kwargs["kind"] = kind
    url = reverse(name, kwargs=kwargs)
    client = Client()
    client.force_login(world.users[role])
    form = client.get(url).context["form"]
    base = {}
    for field in form:
        value = field.value()
        base[field.name] = "" if value is None else value
    base.update((name, value) for name, value in GOOD.items() if name in base)
    errors = []
    for field in form.fields:
        for value in VALUES:
            data = {**base, field: value}
            response, error = post(client, url, data)
            if error is None and response.context and response.context.get("step") == "preview":
                _, error = post(client, url, {**data, "confirm": "1"})
            if error is not None:
                errors.append(f"{field}: {error}")
    assert errors == [], f"POST {url}: " + "; ".join(errors)


def post(client: Client, url: str, data: dict) -> tuple[HttpResponse | None, str | None]:
    """The response to ``POST url`` with *data*, and what went wrong (an exception, a 5xx)."""
    try:
        response = client.post(url, data)
    except Exception as exc:  # the report names it
        return None, f"{shortened({k: v for k, v in data.items() if k != 'reason'})}: {exc!r}"
    if response.status_code >= 500:
        return response, f"{shortened(data)}: {response.status_code}"
    return response, None
