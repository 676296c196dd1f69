"""What `make run` does with the NUMA lab once it answers: `ensure_numalab_host` (after
`--starting`) registers host "numalab" and syncs it, and a newcomer's host page shows two CPU
cells with VMs on each, the memory-only cell and the remote-on-purpose VM."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from hosts.models import Host
from tests.numalab import lab

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]


def test_make_runs_registration_of_the_numa_lab(numalab_conn, settings, viewer_client) -> None:
    settings.NUMAPORTAL_NUMALAB_URI = lab.URI
    call_command("ensure_numalab_host", "--starting", stdout=StringIO())
    assert Host.objects.get(name="numalab").sync_status == Host.SyncStatus.STARTING
    out = StringIO()
    call_command("ensure_numalab_host", stdout=out, stderr=StringIO())
    assert "cell 0 (2 CPUs), cell 1 (2 CPUs), cell 2 (memory only)" in out.getvalue()

    host = Host.objects.get(name="numalab")
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    assert host.worker_queue == "host.numalab"
    vms = {vm.name: vm for vm in host.vms.filter(gone_at__isnull=True)}
    assert vms["numalab2-node0"].cells == "0" and vms["numalab2-node1"].cells == "1"
    assert vms["numalab2-remote"].cells == "0"
    page = viewer_client.get(host.get_absolute_url()).content.decode()
    assert "NUMA node2 CPU(s):" in page and "(memory only)" in page
    assert "numalab2-remote" in page and "cross-node" in page
