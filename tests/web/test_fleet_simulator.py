"""The fleet simulator registered with the portal: one call registers the hosts through the
portal's own validation, and a sync stores each simulated host's cells and VMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet.register import register_fleet
from hosts.models import Cell, Host
from numaportal.virt import simulated
from vms import sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db]


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    top = tmp_path / "fleet"
    monkeypatch.setenv(simulated.ENV, str(top))
    return top


def test_register_fleet_registers_each_host_once(fleet_dir):
    assert register_fleet(fleet_dir, 6, 4) == 6
    hosts = Host.objects.filter(name__startswith="sim-hv").order_by("name")
    assert [h.name for h in hosts] == [f"sim-hv{i:04d}" for i in range(1, 7)]
    assert all(h.uri == f"test://{fleet_dir}/{h.name}.xml" for h in hosts)
    assert {h.sync_status for h in hosts} == {Host.SyncStatus.NEVER}
    # Run again (one more host asked for): only the new one is registered.
    assert register_fleet(fleet_dir, 7, 4) == 1


def test_a_synced_simulated_host_has_its_fixture_cells_and_its_vms(fleet_dir):
    register_fleet(fleet_dir, 2, 10)
    for host in Host.objects.filter(name__startswith="sim-hv"):
        synced = sync.sync_host(host.pk)
        assert synced.sync_status == Host.SyncStatus.OK, synced.last_error
    first, second = Host.objects.order_by("name")
    # sim-hv0001 is the 4-cell fixture, sim-hv0002 the 2-cell AMD one (round robin).
    assert Cell.objects.filter(host=first).count() == 4
    assert Cell.objects.filter(host=second).count() == 2
    assert VirtualMachine.objects.filter(host=first, gone_at__isnull=True).count() == 10
    states = set(VirtualMachine.objects.values_list("state", flat=True))
    assert states == {"running", "paused", "shut off"}
    pinned = VirtualMachine.objects.filter(host=first).exclude(emulatorpin_config="")
    assert pinned.exists()


def test_the_register_form_refuses_host_files_when_simulation_is_off(
    ops_client, tmp_path, monkeypatch
):
    monkeypatch.delenv(simulated.ENV, raising=False)
    (tmp_path / "sim-hv0001.xml").write_text("<node/>")
    response = ops_client.post(
        "/hosts/add/",
        {"name": "sneaky", "uri": f"test://{tmp_path}/sim-hv0001.xml", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "only allowed as test:///default" in response.content.decode()
    assert not Host.objects.filter(name="sneaky").exists()
