"""Switching a host's numa_balancing through the change/audit path (changes.requests).

Who may (superusers only, in the view and in the service), what is refused and under which
field, the queued record and its task, the worker side on a copy of a fixture tree
(tests/fixtures/hostprobe/handmade-2cell: numa_balancing is 1 there), the change pages with a
record that has no VM, and end to end through the form and a real Celery worker.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from changes import drift, executor, reconcile
from changes.models import Change
from changes.requests import request_numa_balancing
from hosts.models import Host
from numaportal.virt import hostprobe
from tests.change_wait import wait_for_change
from tests.conftest import new_queue
from tests.onhost_worker import on_host_worker

pytestmark = [pytest.mark.web, pytest.mark.django_db]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hostprobe"
BALANCING = "proc/sys/kernel/numa_balancing"
TASK_WAIT = 60


@pytest.fixture
def probe_root(tmp_path: Path, settings) -> Path:
    """A copy of handmade-2cell (numa_balancing 1): the fixture itself is never written."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "handmade-2cell", root)
    settings.NUMAPORTAL_PROBE_ROOT = str(root)
    return root


@pytest.fixture
def host(host_factory, settings) -> Host:
    """A host with an on-host worker queue; this process plays the worker on it."""
    settings.NUMAPORTAL_ON_HOST = "hv1"
    return host_factory("hv1", worker_queue="host.hv1", numa_balancing=1)


def url(host: Host) -> str:
    return reverse("hosts:numa-balancing", args=[host.name])


def balancing_file(root: Path) -> str:
    return (root / BALANCING).read_text().strip()


# --- who may --------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, host) -> None:
    for response in (client.get(url(host)), client.post(url(host), {"value": 0, "reason": "x"})):
        assert response.status_code == 302
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert not Change.objects.exists()


@pytest.mark.parametrize("who", ["operator_user", "viewer"])
def test_operators_and_viewers_get_403_and_no_button(request, client, host, enqueued, who) -> None:
    client.force_login(request.getfixturevalue(who))
    assert client.get(url(host)).status_code == 403
    assert client.post(url(host), {"value": 0, "reason": "x"}).status_code == 403
    page = client.get(host.get_absolute_url()).content.decode()
    assert 'id="numa-balancing-switch"' not in page
    assert 'data-numa-balancing="1"' in page  # the value is shown to everyone
    assert not Change.objects.exists() and not enqueued.called


def test_the_service_refuses_non_admins_itself(host, operator_user, viewer, enqueued) -> None:
    for actor in (operator_user, viewer, None):
        with pytest.raises(PermissionDenied, match="admins only"):
            request_numa_balancing(host, 0, "because", actor)
    operator_user.is_superuser, operator_user.is_active = True, False
    with pytest.raises(PermissionDenied):
        request_numa_balancing(host, 0, "because", operator_user)
    assert not Change.objects.exists()


def test_admin_sees_the_button_and_the_confirmation_form(ops_client, host) -> None:
    page = ops_client.get(host.get_absolute_url()).content.decode()
    assert f'href="{url(host)}"' in page and "Switch on/off…" in page
    response = ops_client.get(url(host))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="current-value">1 (on)' in page
    assert "csrfmiddlewaretoken" in page
    assert "lost at reboot unless set in /etc/sysctl.d" in page
    assert response.context["form"].initial["value"] == 0  # the opposite of now
    assert not Change.objects.exists()  # GET never acts


def test_csrf_is_enforced(operator, host, enqueued) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(url(host), {"value": 0, "reason": "x"}).status_code == 403
    assert not Change.objects.exists()


# --- what is refused, by field ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason", "fields"),
    [
        (2, "tiering", {"value"}),
        (3, "both", {"value"}),
        (True, "bool", {"value"}),
        ("1", "text", {"value"}),
        (0, "   ", {"reason"}),
        (-1, "", {"value", "reason"}),
    ],
)
def test_invalid_requests_are_refused_by_field(
    host, operator, enqueued, value, reason, fields
) -> None:
    with pytest.raises(ValidationError) as info:
        request_numa_balancing(host, value, reason, operator)
    assert set(info.value.message_dict) == fields
    assert not Change.objects.exists() and not enqueued.called


def test_value_2_says_why_it_is_not_offered(host, operator, enqueued) -> None:
    with pytest.raises(ValidationError) as info:
        request_numa_balancing(host, 2, "r", operator)
    assert "memory tiering" in info.value.message_dict["value"][0]


def test_a_host_without_an_on_host_worker_is_refused_and_says_why(
    host_factory, operator, ops_client, enqueued
) -> None:
    plain = host_factory("plain")
    with pytest.raises(ValidationError) as info:
        request_numa_balancing(plain, 0, "r", operator)
    assert info.value.message_dict["worker_queue"] == [
        "numa_balancing is written by the worker on the host; host plain has no on-host "
        "worker (worker_queue)"
    ]
    # The pages say so too, and offer no form.
    detail = ops_client.get(plain.get_absolute_url()).content.decode()
    assert 'id="numa-balancing-switch"' not in detail
    assert "plain has no on-host worker (worker_queue)" in detail
    page = ops_client.get(url(plain)).content.decode()
    assert 'id="numa-balancing-unavailable"' in page and 'id="numa-balancing-form"' not in page
    response = ops_client.post(url(plain), {"value": 0, "reason": "r"})
    assert response.status_code == 200
    assert "has no on-host worker" in str(response.context["form"].non_field_errors())
    assert not Change.objects.exists()


def test_a_removed_host_is_refused(host, operator, enqueued) -> None:
    Host.objects.filter(pk=host.pk).update(removed_at=timezone.now())
    host.refresh_from_db()
    with pytest.raises(ValidationError) as info:
        request_numa_balancing(host, 0, "r", operator)
    assert "removed" in info.value.message_dict["host"][0]


def test_form_errors_name_the_field(ops_client, host, enqueued) -> None:
    response = ops_client.post(url(host), {"value": "2", "reason": ""})
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {"value", "reason"}
    page = response.content.decode()
    assert 'id="field-value"' in page and "has-error" in page
    assert not Change.objects.exists()


# --- the record -------------------------------------------------------------------------------


def test_the_record_is_written_and_enqueued_on_commit_to_the_central_queue(
    host, operator, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        change = request_numa_balancing(
            host, 0, "  ticket 42: measure without balancing  ", operator
        )
        assert not enqueued.called  # not before the commit
    change.refresh_from_db()
    assert change.kind == Change.Kind.NUMA_BALANCING
    assert (change.host, change.vm, change.target_name) == (host, None, "hv1")
    assert change.params == {"value": 0} and change.scope == Change.Scope.LIVE
    assert change.reason == "ticket 42: measure without balancing"
    assert (change.actor, change.actor_name, change.status) == (operator, "ops", "queued")
    # The record and its lock are the central worker's; it asks host.hv1's worker to write.
    enqueued.assert_called_once_with(
        args=[str(change.id)], task_id=str(change.id), queue="celery", ignore_result=True
    )


def test_post_redirects_to_the_change_page(
    ops_client, host, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(url(host), {"value": "0", "reason": "switch off"})
    change = Change.objects.get()
    assert response.status_code == 302 and response["Location"] == change.get_absolute_url()
    assert change.params == {"value": 0}
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert 'id="change-host-link"' in page and f'href="{host.get_absolute_url()}"' in page
    assert 'hx-trigger="every 2s"' in page  # queued: the status polls like a VM change


# --- the worker side (in this process) --------------------------------------------------------


def test_apply_switches_the_file_and_records_before_after(host, operator, enqueued, probe_root):
    change = request_numa_balancing(host, 0, "r", operator)
    result = executor.apply_change(str(change.id))
    assert result.status == Change.Status.SUCCEEDED, result.error
    assert balancing_file(probe_root) == "0"
    assert (result.before, result.after) == ({"numa_balancing": 1}, {"numa_balancing": 0})
    assert result.outcome == (
        "numa_balancing 1 -> 0 on host hv1 (live; not persistent across reboot: lost at reboot "
        "unless set in /etc/sysctl.d)"
    )
    assert result.diff == "numa_balancing 1 -> 0"
    assert result.error == "" and result.started_at and result.finished_at
    host.refresh_from_db()
    assert host.numa_balancing == 0
    # Applied once only.
    assert executor.apply_change(str(change.id)).finished_at == result.finished_at


def test_no_answer_from_the_on_host_worker_fails_and_writes_nothing(
    host, operator, enqueued, probe_root, settings
) -> None:
    # This process is a central worker now, and nothing consumes host.hv1.
    settings.NUMAPORTAL_ON_HOST = "portal"
    settings.NUMAPORTAL_ON_HOST_WAIT = 1.0
    change = request_numa_balancing(host, 0, "r", operator)
    try:
        result = executor.apply_change(str(change.id))
    finally:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("host.hv1")
    assert result.status == Change.Status.FAILED
    assert result.error.startswith(
        "no answer from the on-host worker of hv1 (queue 'host.hv1') within 1 s: nothing was "
        "confirmed"
    )
    assert "NUMAPORTAL_ON_HOST=hv1" in result.error
    assert balancing_file(probe_root) == "1"
    assert result.outcome == "nothing was changed: no file was written"
    assert result.before is None and result.after is None
    assert balancing_file(probe_root) == "1"


def test_a_missing_file_fails_with_the_probes_message(host, operator, enqueued, probe_root):
    (probe_root / BALANCING).unlink()
    change = request_numa_balancing(host, 0, "r", operator)
    result = executor.apply_change(str(change.id))
    assert result.status == Change.Status.FAILED
    assert result.error == f"{probe_root / BALANCING}: no such file"
    assert not (probe_root / BALANCING).exists()  # not created


def test_a_refused_write_fails_with_the_probes_message(host, operator, enqueued, probe_root):
    refusal = hostprobe.HostProbeError(
        f"{probe_root / BALANCING}: cannot open for writing: Operation not permitted"
    )
    change = request_numa_balancing(host, 0, "r", operator)
    with mock.patch.object(hostprobe, "write_numa_balancing", side_effect=refusal):
        result = executor.apply_change(str(change.id))
    assert result.status == Change.Status.FAILED
    assert result.error == str(refusal)
    assert result.outcome == "nothing was changed on host hv1: numa_balancing is still 1"
    assert (result.before, result.after) == ({"numa_balancing": 1}, {"numa_balancing": 1})


def test_a_read_back_that_differs_fails(host, operator, enqueued, probe_root) -> None:
    change = request_numa_balancing(host, 0, "r", operator)
    with mock.patch.object(hostprobe, "write_numa_balancing"):  # the kernel ignored it
        result = executor.apply_change(str(change.id))
    assert result.status == Change.Status.FAILED
    assert result.error == "read back after the change: numa_balancing is 1, not 0 as requested"


def test_reconciler_and_drift_checker_handle_changes_without_a_vm(
    host, operator, enqueued, vm_factory
) -> None:
    vm_factory(host, "web1")
    stale = request_numa_balancing(host, 0, "never delivered", operator)
    done = request_numa_balancing(host, 1, "done", operator)
    Change.objects.filter(pk=done.pk).update(
        status="succeeded", finished_at=timezone.now(), after={"numa_balancing": 1}
    )
    assert drift.check_drift() == 0
    assert reconcile.reconcile_stale_changes(queued_older_than_s=0) == 1
    stale.refresh_from_db()
    assert stale.status == Change.Status.FAILED
    assert stale.error.startswith("never started (task lost); not read back: numa_balancing")
    assert "worker on hv1" in stale.error
    assert stale.after is None


# --- the change pages with a record without a VM ---------------------------------------------


def test_change_list_and_detail_show_a_host_change(ops_client, host, operator, enqueued):
    change = request_numa_balancing(host, 0, "<script>alert(1)</script>", operator)
    Change.objects.filter(pk=change.pk).update(
        status="succeeded",
        finished_at=timezone.now(),
        before={"numa_balancing": 1},
        after={"numa_balancing": 0},
        outcome="numa_balancing 1 -> 0 on host hv1",
    )
    listing = ops_client.get(reverse("changes:list")).content.decode()
    assert f'href="{host.get_absolute_url()}">hv1</a> <span class="muted small">(host)' in listing
    assert "<script>alert(1)</script>" not in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    detail = ops_client.get(change.get_absolute_url())
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert [d["slug"] for d in detail.context["diffs"]] == ["host"]
    assert "-  &quot;numa_balancing&quot;: 1" in page
    assert "+  &quot;numa_balancing&quot;: 0" in page
    assert "persistent XML" not in page
    host_page = ops_client.get(host.get_absolute_url()).content.decode()
    assert f'href="{change.get_absolute_url()}"' in host_page
    assert "<script>alert(1)</script>" not in host_page
    csv_text = b"".join(ops_client.get(reverse("changes:export")).streaming_content).decode()
    assert "numa_balancing" in csv_text


# --- end to end: the form, a real Celery worker, the file ---------------------------------------


@pytest.fixture
def worker_host(host_factory, worker_queue, settings) -> Host:
    settings.NUMAPORTAL_ON_HOST = "lab"
    return host_factory("lab", worker_queue=worker_queue, numa_balancing=1)


def wait(change: Change) -> Change:
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    assert change.is_finished, change.status
    return change


@pytest.mark.django_db(transaction=True)
def test_end_to_end_switch_through_the_form_and_a_worker(ops_client, worker_host, probe_root):
    response = ops_client.post(url(worker_host), {"value": "0", "reason": "e2e: switch off"})
    change = Change.objects.get()
    assert response.status_code == 302 and response["Location"] == change.get_absolute_url()
    change = wait(change)
    assert change.status == Change.Status.SUCCEEDED, change.error
    assert balancing_file(probe_root) == "0"
    assert change.before == {"numa_balancing": 1} and change.after == {"numa_balancing": 0}
    assert change.outcome.startswith("numa_balancing 1 -> 0 on host lab (live; not persistent")
    assert change.reason == "e2e: switch off" and change.actor_name == "ops"
    detail = ops_client.get(change.get_absolute_url()).content.decode()
    assert 'data-status="succeeded"' in detail and "numa_balancing 1 -&gt; 0 on host lab" in detail
    listing = ops_client.get(reverse("changes:list") + "?kind=numa_balancing").content.decode()
    assert f'data-change="{change.pk}"' in listing
    host_page = ops_client.get(worker_host.get_absolute_url()).content.decode()
    assert 'data-numa-balancing="0"' in host_page
    assert f'href="{change.get_absolute_url()}"' in host_page

    # And back on.
    ops_client.post(url(worker_host), {"value": "1", "reason": "e2e: back on"})
    back = wait(Change.objects.get(reason="e2e: back on"))
    assert back.status == Change.Status.SUCCEEDED, back.error
    assert balancing_file(probe_root) == "1"


@pytest.fixture
def remote_host(host_factory, worker_queue, settings) -> Host:
    """A host whose on-host worker is a process of its own, without a database; this process
    (and the embedded worker on *worker_queue*) is only the central side."""
    settings.NUMAPORTAL_ON_HOST = ""
    return host_factory("hv7", worker_queue=new_queue(), numa_balancing=1)


@pytest.mark.django_db(transaction=True)
def test_end_to_end_through_an_on_host_worker_without_a_database(
    ops_client, remote_host, probe_root
):
    with on_host_worker(remote_host.worker_queue, "hv7", probe_root=probe_root):
        ops_client.post(url(remote_host), {"value": "0", "reason": "remote: switch off"})
        change = wait(Change.objects.get())
    assert change.status == Change.Status.SUCCEEDED, change.error
    assert balancing_file(probe_root) == "0"  # written by the other process
    assert change.before == {"numa_balancing": 1} and change.after == {"numa_balancing": 0}
    remote_host.refresh_from_db()
    assert remote_host.numa_balancing == 0  # stored by the central worker


@pytest.mark.django_db(transaction=True)
def test_end_to_end_worker_on_the_wrong_host(ops_client, remote_host, probe_root):
    with on_host_worker(remote_host.worker_queue, "elsewhere", probe_root=probe_root):
        ops_client.post(url(remote_host), {"value": "0", "reason": "wrong worker"})
        change = wait(Change.objects.get())
    assert change.status == Change.Status.FAILED
    assert "this worker runs on host 'elsewhere' (NUMAPORTAL_ON_HOST), not on 'hv7'" in change.error
    assert balancing_file(probe_root) == "1"
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert "this worker runs on host &#x27;elsewhere&#x27;" in page


@pytest.mark.django_db(transaction=True)
def test_end_to_end_missing_file(ops_client, worker_host, probe_root):
    (probe_root / BALANCING).unlink()
    ops_client.post(url(worker_host), {"value": "0", "reason": "no file"})
    change = wait(Change.objects.get())
    assert change.status == Change.Status.FAILED
    assert change.error == f"{probe_root / BALANCING}: no such file"
    worker_host.refresh_from_db()
    assert worker_host.numa_balancing == 1  # unchanged: nothing was read
