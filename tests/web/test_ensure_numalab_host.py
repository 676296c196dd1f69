"""`manage.py ensure_numalab_host`, what `make run` calls around the NUMA lab's background start:
listed as starting while it boots (not as an error), the lab's own words when it fails. The
ready path (register and sync) needs the lab: tests/numalab/test_make_run_numalab.py."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from hosts.models import Host
from hosts.services import remove_host

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ensure_numalab_host", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_starting_lists_the_lab_as_starting_not_failed(viewer_client, settings) -> None:
    settings.NUMAPORTAL_NUMALAB_URI = "qemu+tcp://127.0.0.1:16510/system"
    out, _ = run("--starting")
    assert "the NUMA lab is starting" in out
    host = Host.objects.get(name="numalab")
    assert (host.sync_status, host.last_error) == (Host.SyncStatus.STARTING, "")
    assert host.uri == "qemu+tcp://127.0.0.1:16510/system"
    assert host.worker_queue == "host.numalab"
    listing = viewer_client.get(reverse("hosts:list")).content.decode()
    assert '<span class="badge status-starting">host starting</span>' in listing
    page = viewer_client.get(host.get_absolute_url()).content.decode()
    assert 'data-sync-status="starting"' in page and 'hx-trigger="every 2s"' in page
    run("--starting")  # idempotent
    assert Host.objects.filter(name="numalab").count() == 1


def test_failed_says_why_on_the_host(viewer_client) -> None:
    run("--starting")
    _, err = run("--failed", "kernel: NUMAPORTAL_NUMALAB_KERNEL=/nope is not a file")
    assert "did not start: kernel: NUMAPORTAL_NUMALAB_KERNEL=/nope is not a file" in err
    host = Host.objects.get(name="numalab")
    assert host.sync_status == Host.SyncStatus.ERROR
    assert host.last_error == (
        "the NUMA lab (scripts/numa-lab) did not start: kernel: "
        "NUMAPORTAL_NUMALAB_KERNEL=/nope is not a file"
    )
    page = viewer_client.get(host.get_absolute_url()).content.decode()
    assert "did not start: kernel: NUMAPORTAL_NUMALAB_KERNEL=/nope is not a file" in page
    run("--starting")  # the next make run: starting again, the old error gone
    host.refresh_from_db()
    assert (host.sync_status, host.last_error) == (Host.SyncStatus.STARTING, "")


def test_a_removed_numalab_host_stays_removed() -> None:
    run("--starting")
    remove_host(Host.objects.get(name="numalab"))
    out, _ = run("--starting")
    assert "was removed by an operator" in out
    assert Host.objects.get(name="numalab").sync_status == Host.SyncStatus.STARTING
    assert Host.objects.active().filter(name="numalab").count() == 0
