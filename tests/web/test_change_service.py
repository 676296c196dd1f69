"""request_change, the single entry point: roles, validation by field, the queued record, the
task enqueued on commit with the record's id; append-only records; drift; the readable diff.
No libvirt here: hosts and VMs come from capabilities fixtures (tests/web/conftest.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import ProtectedError
from django.utils import timezone

from changes import drift, executor, reconcile
from changes import tasks as change_tasks
from changes.diff import make_diff
from changes.models import AppendOnlyError, Change
from changes.requests import SCHEDULER_ACTOR, request_change
from vms.models import VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db]


@pytest.fixture
def host(host_factory):
    return host_factory("hv1", worker_queue="host.hv1")


@pytest.fixture
def vm(host, vm_factory):
    return vm_factory(host, "web1", vcpus=2, vcpu_max=4)


def test_operator_group_has_view_and_add_change(operator_user) -> None:
    assert operator_user.has_perm("changes.add_change")
    assert operator_user.has_perm("vms.view_virtualmachine")
    assert operator_user.has_perm("changes.view_change")
    assert not operator_user.has_perm("changes.change_change")
    assert not operator_user.has_perm("hosts.add_host")


def test_request_change_writes_a_queued_record_and_enqueues_on_commit(
    vm, operator_user, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        change = request_change(
            actor=operator_user,
            target=vm,
            kind="vcpupin",
            params={"vcpu": 1, "cpuset": "23,22"},
            reason="  seed step 3: pin vCPU 1  ",
        )
        assert not enqueued.called  # not before the commit
    assert len(callbacks) == 1
    change.refresh_from_db()
    assert change.status == Change.Status.QUEUED
    assert change.params == {"vcpu": 1, "cpuset": "22-23"}
    assert change.scope == "live+config"
    assert change.reason == "seed step 3: pin vCPU 1"
    assert (change.actor, change.actor_name) == (operator_user, "op")
    assert (change.host, change.vm, change.target_name) == (vm.host, vm, "web1")
    assert change.before is None and change.started_at is None
    # The host has its own worker (host.hv1), but that one has no database: changes run on
    # the central workers' queue, which reach the VM through libvirt.
    enqueued.assert_called_once_with(
        args=[str(change.id)], task_id=str(change.id), queue="celery", ignore_result=True
    )
    assert change.task_id == str(change.id)


def test_the_central_queue_without_a_worker_queue(
    host_factory, vm_factory, operator, enqueued, django_capture_on_commit_callbacks
) -> None:
    vm = vm_factory(host_factory("hv2"), "x")
    with django_capture_on_commit_callbacks(execute=True):
        change = request_change(
            actor=operator, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="r"
        )
    enqueued.assert_called_once_with(
        args=[str(change.id)], task_id=str(change.id), queue="celery", ignore_result=True
    )


def test_broker_down_fails_the_record(vm, operator, django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(
            change_tasks.apply_change, "apply_async", side_effect=OSError("connection refused")
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        change = request_change(
            actor=operator, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="r"
        )
    change.refresh_from_db()
    assert change.status == Change.Status.FAILED
    assert change.error == (
        "could not queue the change: the task queue (Redis) is not answering: nothing was "
        "queued (connection refused)"
    )


def test_scheduler_changes_and_group_id(vm, enqueued) -> None:
    group = uuid.uuid4()
    first = request_change(
        actor=None,
        target=vm,
        kind="numatune",
        params={"mode": "strict", "nodeset": "1"},
        scope="config",
        reason="balancing plan 7",
        group_id=group,
    )
    second = request_change(
        actor=None,
        target=vm,
        kind="emulatorpin",
        params={"cpuset": "18-23"},
        reason="balancing plan 7",
        group_id=str(group),
    )
    alone = request_change(
        actor=None, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="x"
    )
    assert first.actor is None and first.actor_name == SCHEDULER_ACTOR
    assert first.group_id == second.group_id == group
    assert alone.group_id not in (None, group)
    assert list(Change.objects.filter(group_id=group).order_by("created_at")) == [first, second]


def test_viewer_gets_permission_denied(vm, viewer, enqueued) -> None:
    with pytest.raises(PermissionDenied):
        request_change(
            actor=viewer, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="x"
        )
    assert not Change.objects.exists()


def test_inactive_user_gets_permission_denied(vm, operator_user, enqueued) -> None:
    operator_user.is_active = False
    with pytest.raises(PermissionDenied):
        request_change(
            actor=operator_user, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="x"
        )


@pytest.mark.parametrize(
    ("kind", "params", "scope", "field"),
    [
        ("vcpupin", {"vcpu": 4, "cpuset": "0"}, "live+config", "vcpu"),
        ("vcpupin", {"vcpu": 0, "cpuset": "99"}, "live+config", "cpuset"),
        ("vcpupin", {"vcpu": 0, "cpuset": "1-"}, "live+config", "cpuset"),
        ("numatune", {"mode": "nope", "nodeset": "0"}, "config", "mode"),
        ("numatune", {"mode": "strict", "nodeset": "7"}, "config", "nodeset"),
        ("setvcpus", {"count": 9}, "live", "count"),
        ("setvcpus", {"maximum": 8}, "live", "maximum"),
        ("guest_vcpus", {"cpus": "3", "online": True}, "live", "cpus"),
        ("guest_vcpus", {"cpus": "1", "online": None}, "live", "online"),
        ("emulatorpin", {"cpuset": "0"}, "sometimes", "scope"),
    ],
)
def test_invalid_requests_are_refused_by_field(
    vm, operator, enqueued, kind, params, scope, field
) -> None:
    with pytest.raises(ValidationError) as info:
        request_change(actor=operator, target=vm, kind=kind, params=params, scope=scope, reason="r")
    assert field in info.value.message_dict
    assert not Change.objects.exists()
    assert not enqueued.called


def test_blank_reason_is_refused_together_with_field_errors(vm, operator, enqueued) -> None:
    with pytest.raises(ValidationError) as info:
        request_change(
            actor=operator, target=vm, kind="vcpupin", params={"vcpu": 9, "cpuset": "0"}, reason=" "
        )
    assert set(info.value.message_dict) == {"reason", "vcpu"}


def test_live_change_of_a_stopped_vm_is_refused(host, vm_factory, operator, enqueued) -> None:
    stopped = vm_factory(host, "off", running=False)
    with pytest.raises(ValidationError) as info:
        request_change(
            actor=operator, target=stopped, kind="emulatorpin", params={"cpuset": "0"}, reason="r"
        )
    assert "not running" in info.value.message_dict["scope"][0]


# --- append-only -----------------------------------------------------------------------------


@pytest.fixture
def change(vm, operator, enqueued) -> Change:
    return request_change(
        actor=operator, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="r"
    )


def test_records_cannot_be_edited(change) -> None:
    change.params = {"cpuset": "1"}
    with pytest.raises(AppendOnlyError):
        change.save()
    with pytest.raises(AppendOnlyError):
        change.save(update_fields=["params"])
    with pytest.raises(AppendOnlyError):
        Change.objects.filter(pk=change.pk).update(reason="rewritten")
    assert Change.objects.get(pk=change.pk).params == {"cpuset": "0"}
    # The worker's own fields may move on.
    change.status = Change.Status.CANCELLED
    change.save(update_fields=["status"])
    assert Change.objects.get(pk=change.pk).status == Change.Status.CANCELLED


def test_records_cannot_be_deleted(change) -> None:
    with pytest.raises(AppendOnlyError):
        change.delete()
    with pytest.raises(AppendOnlyError):
        Change.objects.all().delete()
    assert Change.objects.filter(pk=change.pk).exists()


def test_a_user_who_made_changes_cannot_be_deleted(change, operator) -> None:
    # Deleting used to null the actor of every record (on_delete=SET_NULL): a rewrite.
    with pytest.raises(ProtectedError):
        operator.delete()
    change.refresh_from_db()
    assert change.actor == operator and change.actor_name == "ops"


def test_admin_is_read_only(client, operator, change) -> None:
    client.force_login(operator)
    assert client.get("/admin/changes/change/").status_code == 200
    assert client.get("/admin/changes/change/add/").status_code == 403
    assert client.get(f"/admin/changes/change/{change.pk}/delete/").status_code == 403
    page = client.get(f"/admin/changes/change/{change.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content


def test_recent_changes_of_a_vm(vm, operator, enqueued) -> None:
    made = [
        request_change(
            actor=operator, target=vm, kind="emulatorpin", params={"cpuset": str(i)}, reason="r"
        )
        for i in range(3)
    ]
    assert list(Change.objects.recent_for_vm(vm, limit=2)) == made[::-1][:2]
    assert vm.changes.count() == 3


# --- diff and drift --------------------------------------------------------------------------


def _snap(pin: str | None, *, live_pin: str | None = None) -> dict:
    def tuning(p):
        return {"vcpu_current": 2, "vcpu_max": 4, "vcpupin": {"0": p} if p else {}}

    return {
        "state": "running",
        "persistent_xml": f"<domain>\n  <vcpupin vcpu='0' cpuset='{pin}'/>\n</domain>",
        "live_xml": f"<domain id='1'>\n  <vcpupin vcpu='0' cpuset='{live_pin or pin}'/>\n</domain>",
        "config_tuning": tuning(pin),
        "live_tuning": tuning(live_pin or pin),
        "vcpucount": {"current_live": 2},
    }


def test_diff_says_the_tuning_change_in_words_and_shows_both_xml() -> None:
    diff = make_diff(_snap("0-1"), _snap("1"))
    assert "config: vcpupin of vCPU 0: 0-1 -> 1" in diff
    assert "live: vcpupin of vCPU 0: 0-1 -> 1" in diff
    assert "--- persistent XML before" in diff and "--- live XML before" in diff
    assert "+  <vcpupin vcpu='0' cpuset='1'/>" in diff
    assert make_diff(_snap("1"), _snap("1")).startswith("Tuning: unchanged")


def test_check_drift_flags_a_vm_changed_outside_the_portal(vm, operator, enqueued) -> None:
    change = request_change(
        actor=operator, target=vm, kind="vcpupin", params={"vcpu": 0, "cpuset": "1"}, reason="r"
    )
    done = timezone.now() - timedelta(seconds=5)
    Change.objects.filter(pk=change.pk).update(
        status=Change.Status.SUCCEEDED, finished_at=done, after=_snap("1")
    )
    # Synced since, and the host says what the change left: no drift.
    VirtualMachine.objects.filter(pk=vm.pk).update(
        last_seen_at=timezone.now(),
        tuning_live=_snap("1")["live_tuning"],
        tuning_config=_snap("1")["config_tuning"],
    )
    assert drift.check_drift() == 0
    # Someone ran `virsh vcpupin web1 0 5 --live` by hand.
    VirtualMachine.objects.filter(pk=vm.pk).update(
        tuning_live=_snap("1", live_pin="5")["live_tuning"]
    )
    assert drift.check_drift() == 1
    vm.refresh_from_db()
    assert vm.changed_outside
    assert f"live: vcpupin of vCPU 0: 1 -> 5 since change {change.pk}" in vm.changed_outside_detail
    # Put back: the flag clears.
    VirtualMachine.objects.filter(pk=vm.pk).update(tuning_live=_snap("1")["live_tuning"])
    assert drift.check_drift() == 0
    vm.refresh_from_db()
    assert not vm.changed_outside and vm.changed_outside_detail == ""


def test_check_drift_waits_for_a_sync_after_the_change(vm, operator, enqueued) -> None:
    change = request_change(
        actor=operator, target=vm, kind="vcpupin", params={"vcpu": 0, "cpuset": "1"}, reason="r"
    )
    Change.objects.filter(pk=change.pk).update(
        status=Change.Status.SUCCEEDED, finished_at=timezone.now(), after=_snap("1")
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(
        last_seen_at=timezone.now() - timedelta(minutes=1),
        tuning_live=_snap("0")["live_tuning"],
        tuning_config=_snap("0")["config_tuning"],
    )
    assert drift.check_drift() == 0


# --- the worker path without a worker: libvirt's test driver and an unreachable host ----------

TEST_URI = "test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's domain "test"


@pytest.fixture
def test_driver_vm(host_factory, vm_factory):
    import gc

    gc.collect()  # the test driver keeps state while a connection to it lives
    host = host_factory("td", uri=TEST_URI)
    yield vm_factory(host, "test", uuid=uuid.UUID(TEST_UUID), vcpus=2)
    gc.collect()


def test_unreachable_host_ends_the_change_failed(host_factory, vm_factory, operator, enqueued):
    vm = vm_factory(host_factory("gone", uri="qemu+tcp://127.0.0.1:1/system"), "x")
    change = request_change(
        actor=operator, target=vm, kind="emulatorpin", params={"cpuset": "0"}, reason="r"
    )
    result = executor.apply_change(str(change.id))
    assert result.status == Change.Status.FAILED
    assert result.error and result.started_at and result.finished_at
    assert result.before is None
    # Applied once only: a second delivery leaves the record as it is.
    assert executor.apply_change(str(change.id)).finished_at == result.finished_at


def test_a_lost_queued_change_is_reconciled(test_driver_vm, operator, enqueued) -> None:
    change = request_change(
        actor=operator,
        target=test_driver_vm,
        kind="emulatorpin",
        params={"cpuset": "0"},
        scope="live",
        reason="never delivered",
    )
    assert reconcile.reconcile_stale_changes() == 0  # not old enough
    assert reconcile.reconcile_stale_changes(queued_older_than_s=0) == 1
    change.refresh_from_db()
    assert change.status == Change.Status.FAILED
    assert change.error == reconcile.LOST
    assert change.after["name"] == "test"
    assert change.started_at is None and change.finished_at is not None
    # A late delivery of its task does nothing.
    assert executor.apply_change(str(change.id)).status == Change.Status.FAILED


def test_reconciling_only_some_changes_leaves_the_others_queued(
    test_driver_vm, operator, enqueued
) -> None:
    """A drill against a portal in use reconciles its own change with a threshold of seconds:
    other changes queued as long are not its to end."""

    def queued(reason: str) -> Change:
        return request_change(
            actor=operator,
            target=test_driver_vm,
            kind="emulatorpin",
            params={"cpuset": "0"},
            scope="live",
            reason=reason,
        )

    drill, other = queued("the drill's"), queued("someone else's")
    assert reconcile.reconcile_stale_changes(queued_older_than_s=0, only=[drill.pk]) == 1
    drill.refresh_from_db()
    other.refresh_from_db()
    assert (drill.status, drill.error) == (Change.Status.FAILED, reconcile.LOST)
    assert other.status == Change.Status.QUEUED
