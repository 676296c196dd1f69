"""read_inventory on libvirt's in-process test driver: 2 cells x 8 CPUs, one domain "test"."""

from __future__ import annotations

import dataclasses

import libvirt
import pytest

from numaportal.virt import inventory as inventory_module
from numaportal.virt.domains import Domain
from numaportal.virt.hostfacts import host_info
from numaportal.virt.inventory import read_inventory
from numaportal.virt.pinning import pin_emulator

from .conftest import TEST_DOMAIN, TEST_DOMAIN_UUID

pytestmark = pytest.mark.libvirt


class CountingConnection:
    """Counts the libvirt calls made through a connection and the domains it hands out."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self._conn = conn
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls.append(name)
            result = attr(*args, **kwargs)
            if name == "getAllDomainStats":
                return [(CountingDomain(dom, self.calls), stats) for dom, stats in result]
            return result

        return counted


class CountingDomain:
    # name() and UUIDString() are cached client side: not round trips, not counted.
    FREE = frozenset({"name", "UUIDString"})

    def __init__(self, dom: libvirt.virDomain, calls: list[str]) -> None:
        self._dom, self._calls = dom, calls

    def __getattr__(self, name: str):
        attr = getattr(self._dom, name)
        if name in self.FREE:
            return attr

        def counted(*args, **kwargs):
            self._calls.append(f"dom.{name}")
            return attr(*args, **kwargs)

        return counted


def test_host_and_topology(conn):
    inv = read_inventory(conn)
    assert inv.host.uri == "test:///default"
    assert sorted(inv.topology.cell_ids) == [0, 1]
    assert len(inv.topology.cpu_ids) == 16
    assert inv.topology.cell(1).cpu_ids == frozenset(range(8, 16))
    assert inv.host.cells_free_memory_kib == {0: 2048, 1: 4096}


def test_the_test_domain(conn):
    (dom,) = read_inventory(conn).domains
    assert (dom.name, dom.uuid, dom.state) == (TEST_DOMAIN, TEST_DOMAIN_UUID, "running")
    assert dom.persistent
    assert dom.live is not None and dom.live.is_live_xml
    assert not dom.config.is_live_xml
    assert (dom.vcpucount.max_config, dom.vcpucount.current_config) == (2, 2)
    assert (dom.vcpucount.max_live, dom.vcpucount.current_live) == (2, 2)
    assert [v.vcpu for v in dom.vcpu_info] == [0, 1]
    assert all(v.state == "running" for v in dom.vcpu_info)
    assert dom.emulatorpin_live is None
    assert dom.effective is dom.live


def test_live_pins_show_in_live_tuning_only(conn):
    dom = conn.lookupByName(TEST_DOMAIN)
    # The test driver's pinVcpuFlags only takes AFFECT_CURRENT (= live for a running domain).
    dom.pinVcpuFlags(1, tuple(cpu == 3 for cpu in range(8)), 0)
    pin_emulator(Domain.of(dom), "0-1", "live")
    (inv,) = read_inventory(conn).domains
    assert inv.live.vcpupin == {1: frozenset({3})}
    assert inv.config.vcpupin == {}
    assert inv.emulatorpin_live == frozenset({0, 1})
    assert {v.vcpu: v.affinity for v in inv.vcpu_info}[1] == frozenset({3})


def test_shut_off_domain_costs_one_call_and_has_no_live_state(conn):
    conn.lookupByName(TEST_DOMAIN).destroy()
    counting = CountingConnection(conn)
    (dom,) = read_inventory(counting).domains
    assert dom.state == "shut off"
    assert dom.live is None and dom.vcpu_info == () and dom.emulatorpin_live is None
    assert (dom.vcpucount.max_live, dom.vcpucount.current_live) == (None, None)
    assert (dom.vcpucount.max_config, dom.vcpucount.current_config) == (2, 2)
    assert [c for c in counting.calls if c.startswith("dom.")] == ["dom.XMLDesc"]


def test_call_count_per_host_and_per_running_domain(conn):
    counting = CountingConnection(conn)
    read_inventory(counting)
    host_calls = [c for c in counting.calls if not c.startswith("dom.")]
    domain_calls = [c for c in counting.calls if c.startswith("dom.")]
    assert host_calls.count("getAllDomainStats") == 1
    assert len(host_calls) == inventory_module.CALLS_PER_HOST
    assert sorted(domain_calls) == ["dom.XMLDesc", "dom.XMLDesc", "dom.vcpus"]
    assert len(domain_calls) == inventory_module.CALLS_PER_RUNNING_DOMAIN


def test_more_domains_cost_only_their_own_calls(conn):
    base = CountingConnection(conn)
    read_inventory(base)
    xml = conn.lookupByName(TEST_DOMAIN).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    for i in range(3):
        new = xml.replace(f"<name>{TEST_DOMAIN}</name>", f"<name>extra{i}</name>")
        new = new.replace(TEST_DOMAIN_UUID, f"6695eb01-f6a4-8304-79aa-97f2502e19{i:02d}")
        conn.defineXML(new).create()
    more = CountingConnection(conn)
    inv = read_inventory(more)
    assert len(inv.domains) == 4
    assert len(more.calls) - len(base.calls) == 3 * inventory_module.CALLS_PER_RUNNING_DOMAIN


def test_a_domain_that_vanishes_midway_is_skipped(conn, monkeypatch):
    xml = conn.lookupByName(TEST_DOMAIN).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    doomed = xml.replace(f"<name>{TEST_DOMAIN}</name>", "<name>doomed</name>").replace(
        TEST_DOMAIN_UUID, "6695eb01-f6a4-8304-79aa-97f2502e1999"
    )
    conn.defineXML(doomed)
    real_stats = conn.getAllDomainStats

    def stats_then_undefine(*args):
        result = real_stats(*args)
        conn.lookupByName("doomed").undefine()  # gone before its XMLDesc
        return result

    counting = CountingConnection(conn)
    monkeypatch.setattr(counting, "getAllDomainStats", stats_then_undefine, raising=False)
    inv = read_inventory(counting)
    assert [d.name for d in inv.domains] == [TEST_DOMAIN]


def test_a_domain_that_stops_midway_is_recorded_shut_off(conn, monkeypatch):
    real_stats = conn.getAllDomainStats

    def stats_then_destroy(*args):
        result = real_stats(*args)
        conn.lookupByName(TEST_DOMAIN).destroy()  # stats said running; now it is not
        return result

    counting = CountingConnection(conn)
    monkeypatch.setattr(counting, "getAllDomainStats", stats_then_destroy, raising=False)
    (dom,) = read_inventory(counting).domains
    assert dom.state == "shut off"
    assert dom.live is None and dom.vcpu_info == ()


def test_transient_domain_has_no_config_counts(conn):
    xml = conn.lookupByName(TEST_DOMAIN).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    transient = xml.replace(f"<name>{TEST_DOMAIN}</name>", "<name>transient</name>").replace(
        TEST_DOMAIN_UUID, "6695eb01-f6a4-8304-79aa-97f2502e1888"
    )
    conn.createXML(transient)
    by_name = {d.name: d for d in read_inventory(conn).domains}
    assert not by_name["transient"].persistent
    assert by_name["transient"].vcpucount.max_config is None
    assert by_name["transient"].vcpucount.current_live == 2
    assert by_name[TEST_DOMAIN].persistent


def test_inventory_is_frozen(conn):
    inv = read_inventory(conn)
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.domains = ()  # type: ignore[misc]
    assert inv.host == host_info(conn)  # same facts host_info reads
