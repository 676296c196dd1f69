"""numatune against libvirt's test driver (``test:///default``, domain ``test``)."""

from __future__ import annotations

import libvirt
import pytest

from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest, ReadbackMismatch
from numaportal.virt.numatune import NUMATUNE_MODES, set_numatune
from numaportal.virt.scope import Scope

from .conftest import Lying

pytestmark = pytest.mark.libvirt

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def test_set_numatune_both_reads_back(dom: Domain) -> None:
    set_numatune(dom, "strict", {0, 1})
    for flags in (LIVE, CONFIG):
        assert dom.virdomain.numaParameters(flags) == {
            libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
            libvirt.VIR_DOMAIN_NUMA_NODESET: "0-1",
        }


def test_set_numatune_mode_change_on_running_domain_is_refused(dom: Domain) -> None:
    # The test driver, like QEMU, lets a running domain get its first live numatune but not
    # change the mode afterwards.
    set_numatune(dom, "interleave", {1}, Scope.LIVE)
    with pytest.raises(InvalidRequest) as info:
        set_numatune(dom, "strict", {0, 1}, Scope.BOTH)
    assert str(info.value) == (
        "Requested operation is not valid: can't change numatune mode for running domain"
    )
    assert info.value.code == libvirt.VIR_ERR_OPERATION_INVALID
    # LIVE|CONFIG is "mutually exclusive" here, so live went first and its refusal left the
    # config untouched.
    assert dom.virdomain.numaParameters(CONFIG) == {
        libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
        libvirt.VIR_DOMAIN_NUMA_NODESET: "",
    }


def test_set_numatune_validates(dom: Domain) -> None:
    with pytest.raises(InvalidRequest, match="unknown numatune mode 'bind'"):
        set_numatune(dom, "bind", {0})
    with pytest.raises(InvalidRequest, match="NUMA node 2 does not exist on this host"):
        set_numatune(dom, "strict", {0, 2})
    with pytest.raises(InvalidRequest, match="numatune nodeset"):
        set_numatune(dom, "strict", "")
    assert set(NUMATUNE_MODES) == {"strict", "preferred", "interleave", "restrictive"}


def test_set_numatune_readback_mismatch(dom: Domain) -> None:
    lying = Lying.domain(
        dom,
        numaParameters=lambda _flags: {
            libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_INTERLEAVE,
            libvirt.VIR_DOMAIN_NUMA_NODESET: "0-1",
        },
    )
    with pytest.raises(ReadbackMismatch) as info:
        set_numatune(lying, "strict", {0}, Scope.CONFIG)
    assert str(info.value) == (
        "numatune (config): asked for strict 0, libvirt reports interleave 0-1"
    )
