"""Finding domains on libvirt's test driver (``test:///default``, domain ``test``)."""

from __future__ import annotations

import libvirt
import pytest

from numaportal.virt.domains import Domain, domain_state_name, lookup_domain
from numaportal.virt.errors import DomainNotFound, InvalidRequest
from numaportal.virt.pinning import pin_emulator
from numaportal.virt.scope import Scope
from numaportal.virt.snapshot import snapshot
from numaportal.virt.vcpus import vcpucount

from .conftest import TEST_DOMAIN, TEST_DOMAIN_UUID

pytestmark = pytest.mark.libvirt

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def test_lookup_by_name_and_uuid(conn: libvirt.virConnect) -> None:
    assert lookup_domain(conn, TEST_DOMAIN).uuid == TEST_DOMAIN_UUID
    assert lookup_domain(conn, TEST_DOMAIN_UUID).name == TEST_DOMAIN
    assert lookup_domain(conn, TEST_DOMAIN_UUID.upper()).name == TEST_DOMAIN


@pytest.mark.parametrize("missing", ["nope", "00000000-0000-0000-0000-000000000000"])
def test_lookup_missing_domain(conn: libvirt.virConnect, missing: str) -> None:
    with pytest.raises(DomainNotFound) as info:
        lookup_domain(conn, missing)
    assert info.value.code == libvirt.VIR_ERR_NO_DOMAIN
    assert str(info.value).startswith("Domain not found")
    assert info.value.uri == "test:///default"


def test_lookup_refuses_empty_name(conn: libvirt.virConnect) -> None:
    with pytest.raises(InvalidRequest):
        lookup_domain(conn, "")


def test_operations_on_an_undefined_domain_raise_domain_not_found(
    conn: libvirt.virConnect, dom: Domain
) -> None:
    dom.virdomain.destroy()
    dom.virdomain.undefine()
    with pytest.raises(DomainNotFound, match="Domain not found"):
        vcpucount(dom)
    with pytest.raises(DomainNotFound):
        snapshot(dom)
    with pytest.raises(DomainNotFound):
        pin_emulator(dom, {0}, Scope.LIVE)


def test_domain_state_names() -> None:
    assert domain_state_name(libvirt.VIR_DOMAIN_SHUTOFF) == "shut off"
    assert domain_state_name(libvirt.VIR_DOMAIN_RUNNING) == "running"
    assert domain_state_name(99) == "unknown (99)"
