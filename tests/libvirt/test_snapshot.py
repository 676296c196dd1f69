"""Snapshots of the test driver's domain ``test``: running, shut off, paused."""

from __future__ import annotations

import json

import pytest

from numaportal.virt.domains import Domain
from numaportal.virt.snapshot import DomainSnapshot, snapshot
from numaportal.virt.vcpus import vcpucount

from .conftest import TEST_DOMAIN, TEST_DOMAIN_UUID

pytestmark = pytest.mark.libvirt


def test_snapshot_running(dom: Domain) -> None:
    snap = snapshot(dom)
    assert isinstance(snap, DomainSnapshot)
    assert (snap.name, snap.uuid, snap.state) == (TEST_DOMAIN, TEST_DOMAIN_UUID, "running")
    assert snap.active and snap.persistent
    assert snap.live_xml is not None and "<domain type='test' id=" in snap.live_xml
    assert "<name>test</name>" in snap.persistent_xml
    assert snap.config_tuning.name == TEST_DOMAIN
    assert snap.config_tuning.vcpu_max == 2
    assert snap.live_tuning is not None and snap.live_tuning.vcpu_current == 2
    assert snap.vcpucount == vcpucount(dom)
    assert len(snap.vcpu_info) == 2
    assert snap.emulatorpin_live == frozenset(range(8))
    assert snap.emulatorpin_config == frozenset(range(8))
    data = snap.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == "running"
    assert data["vcpucount"] == {
        "max_config": 2,
        "max_live": 2,
        "current_config": 2,
        "current_live": 2,
    }
    assert data["vcpu_info"][0]["affinity"] == "0-7"
    assert data["emulatorpin_live"] == "0-7"
    assert data["live_tuning"]["name"] == TEST_DOMAIN


def test_snapshot_shut_off(dom: Domain) -> None:
    dom.virdomain.destroy()
    snap = snapshot(dom)
    assert snap.state == "shut off"
    assert not snap.active
    assert snap.live_xml is None and snap.live_tuning is None
    assert snap.vcpu_info == ()
    assert snap.emulatorpin_live is None
    assert snap.emulatorpin_config is not None
    assert snap.vcpucount.current_live is None
    data = snap.as_dict()
    json.dumps(data)
    assert data["live_tuning"] is None and data["active"] is False


def test_snapshot_paused(dom: Domain) -> None:
    dom.virdomain.suspend()
    snap = snapshot(dom)
    assert snap.state == "paused"
    assert snap.active
