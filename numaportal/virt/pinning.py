"""Pinning vCPUs and the emulator threads to host CPUs: ``virsh vcpupin`` and ``emulatorpin``.

Each call validates, applies in its scope and reads back (see :mod:`numaportal.virt._calls`).
"""

from __future__ import annotations

from collections.abc import Iterable

from numaportal.virt._calls import apply, call, cpuset_argument, max_vcpus, mismatch
from numaportal.virt.cpuset import CpusetError, cpumap_to_cpuset, cpuset_to_cpumap, format_cpuset
from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest
from numaportal.virt.scope import Scope

__all__ = ["pin_emulator", "pin_vcpu"]


def _cpumap(dom: Domain, cpus: frozenset[int], what: str) -> tuple[bool, ...]:
    """The host-wide cpumap for *cpus*, refusing CPUs the host does not have."""
    width = call(dom, lambda: dom.virdomain.connect().getCPUMap()[0])
    try:
        return cpuset_to_cpumap(cpus, width)
    except CpusetError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


def _describe(cpus: frozenset[int] | None) -> str:
    if cpus is None:
        return "nothing"
    return format_cpuset(cpus) if cpus else "no CPUs"


def _check_vcpu_index(dom: Domain, vcpu: int, scope: Scope) -> None:
    if not isinstance(vcpu, int) or isinstance(vcpu, bool) or vcpu < 0:
        raise InvalidRequest(f"vCPU index must be a non-negative integer, not {vcpu!r}")
    for part in scope.parts:
        maximum = max_vcpus(dom, part)
        if vcpu >= maximum:
            raise InvalidRequest(
                f"vCPU {vcpu} does not exist: the {part.value} maximum is {maximum} vCPUs "
                f"(0-{maximum - 1})"
            )


def pin_vcpu(
    dom: Domain,
    vcpu: int,
    cpus: Iterable[int] | str,
    scope: Scope | str = Scope.BOTH,
) -> None:
    """``virsh vcpupin DOM VCPU CPUS --live/--config``, verified with ``vcpuPinInfo``."""
    scope = Scope.parse(scope)
    wanted = cpuset_argument(cpus, f"vcpupin of vCPU {vcpu}")
    _check_vcpu_index(dom, vcpu, scope)
    cpumap = _cpumap(dom, wanted, f"vcpupin of vCPU {vcpu}")
    virdomain = dom.virdomain
    apply(dom, scope, lambda flags: virdomain.pinVcpuFlags(vcpu, cpumap, flags))
    for part in scope.parts:
        pins = call(dom, lambda part=part: virdomain.vcpuPinInfo(part.flags))
        actual = cpumap_to_cpuset(pins[vcpu]) if vcpu < len(pins) else None
        if actual != wanted:
            raise mismatch(
                f"vcpupin of vCPU {vcpu}", part, format_cpuset(wanted), _describe(actual)
            )


def pin_emulator(dom: Domain, cpus: Iterable[int] | str, scope: Scope | str = Scope.BOTH) -> None:
    """``virsh emulatorpin DOM CPUS --live/--config``, verified with ``emulatorPinInfo``."""
    scope = Scope.parse(scope)
    wanted = cpuset_argument(cpus, "emulatorpin")
    cpumap = _cpumap(dom, wanted, "emulatorpin")
    virdomain = dom.virdomain
    apply(dom, scope, lambda flags: virdomain.pinEmulator(cpumap, flags))
    for part in scope.parts:
        pins = call(dom, lambda part=part: virdomain.emulatorPinInfo(part.flags))
        actual = cpumap_to_cpuset(pins)
        if actual != wanted:
            raise mismatch("emulatorpin", part, format_cpuset(wanted), _describe(actual))
