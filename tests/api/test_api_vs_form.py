"""A change made through the API and one made through the change form, with the same values by
the same user, produce the same record: every field but the ids and the times (and the group,
a new one per request on both faces), before / after / outcome / diff included, both run on a
real worker to ``succeeded``. A live emulatorpin: libvirt's test driver pins vCPUs only with
flags no scope sends, but takes a live emulator pin (tests/web/test_drills.py)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from changes.models import Change
from changes.requests import request_change
from tests.api.fixtures_changes import api_as, test_driver_vm, token_client
from tests.change_wait import wait_for_change

pytestmark = [pytest.mark.api, pytest.mark.django_db(transaction=True)]
#: The fixtures this module uses, imported by name (tests/api/conftest.py is not ours).
FIXTURES = (api_as, test_driver_vm)

#: Differ by nature: the record's own id, its group (one per request) and its times.
NOT_COMPARED = {"id", "group_id", "created_at", "started_at", "finished_at"}
REASON = "keep the emulator off CPU 0"


def without_clock(snapshot: dict | None) -> dict | None:
    """A state before / after without the vCPUs' cpu_time_ns: a clock reading (the vCPUs ran
    meanwhile), the one part of a snapshot that is a time."""
    if snapshot is None:
        return None
    vcpus = [{k: v for k, v in row.items() if k != "cpu_time_ns"} for row in snapshot["vcpu_info"]]
    return {**snapshot, "vcpu_info": vcpus}


def record_fields(change: Change) -> dict:
    fields = {
        field.attname: getattr(change, field.attname)
        for field in Change._meta.concrete_fields
        if field.name not in NOT_COMPARED
    }
    return {**fields, "before": without_clock(change.before), "after": without_clock(change.after)}


def pin_elsewhere(vm, operator) -> None:
    change = request_change(
        actor=operator,
        target=vm,
        kind="emulatorpin",
        params={"cpuset": "0"},
        scope="live",
        reason="the state both start from",
    )
    assert wait_for_change(change).status == Change.Status.SUCCEEDED, change.error


def test_api_and_form_make_identical_records(api_as, worker_queue, test_driver_vm) -> None:
    vm = test_driver_vm
    operator = api_as.user("operator")
    cpuset = "1"

    # Both faces start from the same state: the emulator pinned to CPU 0 before each of them
    # (a state cannot be restored to "not pinned": that has no <emulatorpin> at all).
    pin_elsewhere(vm, operator)

    page = Client()
    page.force_login(operator)
    url = reverse("vms:change", args=[vm.host.name, vm.uuid, "emulatorpin"])
    response = page.post(url, {"cpuset": cpuset, "scope": "live", "reason": REASON, "confirm": "1"})
    assert response.status_code == 302, response.content.decode()[:2000]
    by_form = wait_for_change(Change.objects.get(reason=REASON))
    assert by_form.status == Change.Status.SUCCEEDED, by_form.error

    pin_elsewhere(vm, operator)

    body = {
        "host": vm.host.name,
        "vm": str(vm.uuid),
        "kind": "emulatorpin",
        "params": {"cpuset": cpuset},
        "scope": "live",
        "reason": REASON,
    }
    answer = token_client(operator).post("/api/v1/changes/", body, format="json")
    assert answer.status_code == 201, answer.content
    by_api = wait_for_change(Change.objects.get(pk=answer.json()["id"]))
    assert by_api.status == Change.Status.SUCCEEDED, by_api.error

    form_fields, api_fields = record_fields(by_form), record_fields(by_api)
    assert set(form_fields) >= {"before", "after", "outcome", "diff", "params", "actor_id"}
    differing = {k for k in form_fields if form_fields[k] != api_fields[k]}
    assert not differing, {k: (form_fields[k], api_fields[k]) for k in differing}
    assert by_api.after["emulatorpin_live"] == cpuset
    assert by_api.before["emulatorpin_live"] == by_form.before["emulatorpin_live"]
