"""``/api/v1/changes/``: the role matrix, the change list's filters (the page's FilterSet, bad
values a 400), the record, requesting a change in the forms' words, and polling a change to
``succeeded`` on a real worker (libvirt's test driver)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.urls import reverse

from changes.filters import ChangeFilter
from changes.forms import EmulatorPinForm, VcpuPinForm
from changes.models import Change
from changes.requests import request_change
from hosts.services import load_topology
from tests.api.fixtures_changes import (
    api_as,
    enqueued,
    inventory_vm,
    test_driver_vm,
)
from tests.web.conftest import make_vm

pytestmark = [pytest.mark.api, pytest.mark.django_db]
#: The fixtures this module uses, imported by name (tests/api/conftest.py is not ours).
FIXTURES = (api_as, enqueued, inventory_vm, test_driver_vm)

LIST = "/api/v1/changes/"
REASON = "pin for the API test"


def detail(change) -> str:
    return f"{LIST}{change.pk}/"


def pin_body(target, **overrides) -> dict:
    body = {
        "host": target.host.name,
        "vm": str(target.uuid),
        "kind": "vcpupin",
        "params": {"vcpu": 0, "cpuset": "1"},
        "scope": "live",
        "reason": REASON,
    }
    return {**body, **overrides}


@pytest.fixture
def change(inventory_vm, enqueued, api_as) -> Change:
    return request_change(
        actor=api_as.user("operator"),
        target=inventory_vm,
        kind="vcpupin",
        params={"vcpu": 1, "cpuset": "2-3"},
        scope="live+config",
        reason="an earlier pin",
    )


# --- the role matrix ----------------------------------------------------------------------------

READS = {"anonymous": 401, "norole": 403, "viewer": 200, "operator": 200, "admin": 200}
CREATE = {"anonymous": 401, "norole": 403, "viewer": 403, "operator": 201, "admin": 201}
SWITCH = {"anonymous": 401, "norole": 403, "viewer": 403, "operator": 403, "admin": 201}


@pytest.mark.parametrize("role", list(READS))
def test_reading_changes_needs_the_viewer_role(api_as, change, role) -> None:
    client = api_as(role)
    for url in (LIST, detail(change)):
        response = client.get(url)
        assert response.status_code == READS[role], (url, response.content)
    # a record that does not exist: 404 for a role that may read, the same 401/403 otherwise
    missing = client.get(f"{LIST}{uuid.uuid4()}/")
    assert missing.status_code == (404 if READS[role] == 200 else READS[role])
    assert set(missing.json()) == {"detail"}
    assert client.get(f"{LIST}not-a-uuid/").status_code == missing.status_code


@pytest.mark.parametrize("role", list(CREATE))
def test_requesting_a_change_needs_the_operator_role(
    api_as,
    inventory_vm,
    enqueued,
    django_capture_on_commit_callbacks,
    role,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(role).post(LIST, pin_body(inventory_vm), format="json")
    assert response.status_code == CREATE[role], response.content
    assert Change.objects.count() == (1 if CREATE[role] == 201 else 0)
    if CREATE[role] == 201:
        assert response.json()["status"] == "queued"
        assert response.json()["actor_name"] == api_as.user(role).get_username()
        enqueued.assert_called_once()


@pytest.mark.parametrize("role", list(SWITCH))
def test_numa_balancing_through_changes_is_for_admins(
    api_as,
    inventory_vm,
    enqueued,
    role,
) -> None:
    body = {"host": "hv01", "kind": "numa_balancing", "params": {"value": 0}, "reason": "off"}
    response = api_as(role).post(LIST, body, format="json")
    assert response.status_code == SWITCH[role], response.content
    if SWITCH[role] == 201:
        data = response.json()
        assert (data["kind"], data["vm"], data["host"]) == ("numa_balancing", None, "hv01")
        assert data["params"] == {"value": 0} and data["scope"] == "live"


# --- the record ---------------------------------------------------------------------------------


def test_the_record_has_every_field(api_as, change, inventory_vm) -> None:
    data = api_as("viewer").get(detail(change)).json()
    assert data["id"] == str(change.pk)
    assert data["url"].endswith(detail(change))
    assert data["page"] == change.get_absolute_url()
    assert data["kind"] == "vcpupin" and data["scope"] == "live+config"
    assert data["params"] == {"vcpu": 1, "cpuset": "2-3"}
    assert data["reason"] == "an earlier pin" and data["status"] == "queued"
    assert data["actor_name"] == "api-operator" and data["host"] == "hv01"
    assert data["vm"] == {"uuid": str(inventory_vm.uuid), "name": "db01"}
    assert data["group_id"] == str(change.group_id)
    for name in ("created_at", "started_at", "finished_at", "error", "outcome"):
        assert name in data
    for name in ("before", "after", "diff", "progress"):
        assert name in data


# --- the list's filters -------------------------------------------------------------------------


@pytest.fixture
def history(inventory_vm, enqueued, api_as) -> list[Change]:
    other = make_vm(inventory_vm.host, "web01")
    actor = api_as.user("operator")
    made = []
    for vm, cpuset, reason in [
        (inventory_vm, "1", "first database pin"),
        (inventory_vm, "2", "second database pin"),
        (other, "3", "web tier pin"),
    ]:
        made.append(
            request_change(
                actor=actor,
                target=vm,
                kind="vcpupin",
                params={"vcpu": 0, "cpuset": cpuset},
                scope="live",
                reason=reason,
            )
        )
    made.append(
        request_change(
            actor=actor,
            target=other,
            kind="emulatorpin",
            params={"cpuset": "4"},
            scope="live+config",
            reason="emulator aside",
        )
    )
    return made


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "host=hv01",
        "kind=vcpupin",
        "kind=emulatorpin",
        "status=queued",
        "status=failed",
        "target=web",
        "actor=api-op",
        "q=database pin",
        "created_after=2020-01-01&created_before=9998-12-31",
        "created_before=2020-01-01",
    ],
)
def test_the_list_filters_as_the_change_list_page(api_as, history, query) -> None:
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    expected = [
        str(c.pk)
        for c in ChangeFilter(params, queryset=Change.objects.all()).qs.order_by(
            "-created_at", "-pk"
        )
    ]
    assert _ids(api_as("viewer").get(LIST, params)) == expected
    # the page lists the same rows (its table links each change)
    page = api_as.user("viewer")
    assert page is not None


def test_vm_and_group_filters(api_as, history) -> None:
    client = api_as("viewer")
    vm_id = history[0].vm_id
    assert set(_ids(client.get(LIST, {"vm": vm_id}))) == {str(history[0].pk), str(history[1].pk)}
    group = history[2].group_id
    assert _ids(client.get(LIST, {"group": str(group)})) == [str(history[2].pk)]


def test_the_list_is_paginated(api_as, history) -> None:
    data = api_as("viewer").get(LIST).json()
    assert data["count"] == 4 and data["next"] is None and len(data["results"]) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"vm": "abc"}, "vm"),
        ({"vm": "99999999999999999999999"}, "vm"),
        ({"vm": "\u0663"}, "vm"),
        ({"group": "not-a-uuid"}, "group"),
        ({"created_after": "\u0662\u0660\u0662\u0660-01-01"}, "created"),
        ({"created_after": "0001-01-01"}, "created"),
        ({"kind": "nope"}, "kind"),
        ({"status": "nope"}, "status"),
        ({"host": "no-such-host"}, "host"),
        ({"q": " ".join(["w"] * 50)}, "q"),
        ({"actor": "x" * 300}, "actor"),
    ],
)
def test_bad_filter_values_are_a_400_naming_the_filter(api_as, history, query, field) -> None:
    response = api_as("viewer").get(LIST, query)
    assert response.status_code == 400, response.content
    errors = response.json()
    page_errors = ChangeFilter(query, queryset=Change.objects.all()).errors
    assert set(errors) == set(page_errors), errors
    assert any(name.startswith(field) for name in errors), errors
    assert errors == {name: list(messages) for name, messages in page_errors.items()}


# --- requesting: errors in the forms' words -----------------------------------------------------


def _form_errors(form_class, vm, data) -> dict:
    form = form_class(data, vm=vm, topology=load_topology(vm.host))
    assert not form.is_valid()
    return form.errors


def test_a_cpu_the_host_lacks_is_refused_in_the_forms_words(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    client = api_as("operator")
    body = pin_body(inventory_vm, params={"vcpu": 0, "cpuset": "1,99"})
    response = client.post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    form = _form_errors(
        VcpuPinForm, inventory_vm, {"vcpu_0": "1,99", "scope": "live", "reason": REASON}
    )
    assert response.json() == {"cpuset": form["vcpu_0"]}
    assert "CPU 99 is not on this host" in response.json()["cpuset"][0]

    body = pin_body(inventory_vm, kind="emulatorpin", params={"cpuset": "30-31"})
    response = client.post(LIST, body, format="json")
    form = _form_errors(
        EmulatorPinForm, inventory_vm, {"cpuset": "30-31", "scope": "live", "reason": REASON}
    )
    assert response.status_code == 400
    assert response.json() == {"cpuset": form["cpuset"]}
    assert Change.objects.count() == 0


def test_bad_cpuset_syntax_scope_and_reason_in_the_forms_words(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    client = api_as("operator")
    form_data = {"cpuset": "1-", "scope": "sideways", "reason": "   "}
    body = pin_body(
        inventory_vm,
        kind="emulatorpin",
        params={"cpuset": "1-"},
        scope="sideways",
        reason="   ",
    )
    response = client.post(LIST, body, format="json")
    assert response.status_code == 400
    form = _form_errors(EmulatorPinForm, inventory_vm, form_data)
    assert response.json() == {name: form[name] for name in ("cpuset", "scope", "reason")}


def test_a_live_change_of_a_stopped_vm_in_the_forms_words(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    stopped = make_vm(inventory_vm.host, "off01", running=False)
    response = api_as("operator").post(
        LIST, pin_body(stopped, kind="emulatorpin", params={"cpuset": "1"}), format="json"
    )
    form = _form_errors(
        EmulatorPinForm, stopped, {"cpuset": "1", "scope": "live", "reason": REASON}
    )
    assert response.status_code == 400
    assert response.json() == {"scope": form["scope"]}


def test_the_kinds_own_refusals_keep_their_field(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    client = api_as("operator")
    response = client.post(
        LIST, pin_body(inventory_vm, params={"vcpu": 9, "cpuset": "1"}), format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["vcpu"]
    assert "vCPU 9 does not exist" in response.json()["vcpu"][0]
    response = client.post(LIST, pin_body(inventory_vm, kind="teleport"), format="json")
    assert response.status_code == 400
    assert "unknown kind of change 'teleport'" in response.json()["kind"][0]
    response = client.post(LIST, pin_body(inventory_vm, params={"cpuset": "1"}), format="json")
    assert response.status_code == 400 and "vcpu" in response.json()
    assert Change.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"host": "no-such-host"}, "host"),
        ({"vm": str(uuid.UUID(int=7))}, "vm"),
        ({"vm": "not-a-uuid"}, "vm"),
        ({"vm": None}, "vm"),
        ({"vm": ""}, "vm"),
    ],
)
def test_an_unknown_host_or_vm_is_a_400_on_its_field(
    api_as,
    inventory_vm,
    enqueued,
    overrides,
    field,
) -> None:
    response = api_as("operator").post(LIST, pin_body(inventory_vm, **overrides), format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]


def test_a_gone_vm_is_refused_in_the_pages_words(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    inventory_vm.gone_at = inventory_vm.last_seen_at
    inventory_vm.save(update_fields=["gone_at"])
    response = api_as("operator").post(LIST, pin_body(inventory_vm), format="json")
    assert response.status_code == 400
    assert response.json() == {"vm": ["This VM is gone from its host: nothing to change."]}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"host": "hv01"},
        {"host": "hv01", "vm": "x", "kind": "vcpupin", "params": "1", "reason": "r"},
        {"host": ["hv01"], "kind": "vcpupin", "params": {}, "reason": "r"},
    ],
)
def test_a_malformed_body_is_a_400(api_as, inventory_vm, enqueued, body) -> None:
    response = api_as("operator").post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    assert Change.objects.count() == 0


def test_the_scope_defaults_to_live_and_config_as_the_forms(
    api_as,
    inventory_vm,
    enqueued,
) -> None:
    body = pin_body(inventory_vm)
    del body["scope"]
    response = api_as("operator").post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["scope"] == "live+config"


# --- polling, on a real worker ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_post_then_poll_until_succeeded(api_as, worker_queue, test_driver_vm) -> None:
    vm = test_driver_vm
    client = api_as("operator")
    body = {
        "host": vm.host.name,
        "vm": str(vm.uuid),
        "kind": "emulatorpin",
        "params": {"cpuset": "1"},
        "scope": "live",
        "reason": "poll it",
    }
    response = client.post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    record = response.json()
    assert record["status"] == "queued"
    deadline = time.monotonic() + 120
    while record["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
        polled = client.get(record["url"])
        assert polled.status_code == 200
        record = polled.json()
    assert record["status"] == "succeeded", record
    assert record["error"] == "" and record["outcome"]
    assert record["after"]["emulatorpin_live"] == "1"
    assert record["finished_at"] and record["started_at"]
    assert reverse("changes:detail", args=[record["id"]]) == record["page"]
