"""vCPU counts and where vCPUs run: ``virsh setvcpus``, ``guestvcpus``, ``vcpucount``, ``vcpuinfo``.

The mutations validate, apply in their scope and read back (see :mod:`numaportal.virt._calls`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import libvirt

from numaportal.virt._calls import (
    apply,
    call,
    cpuset_argument,
    live_query,
    max_vcpus,
    mismatch,
    retrying,
)
from numaportal.virt.cpuset import cpumap_to_cpuset, format_cpuset, parse_cpuset
from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest, ReadbackMismatch
from numaportal.virt.scope import Scope

__all__ = [
    "VcpuCount",
    "VcpuInfo",
    "set_guest_vcpus",
    "set_vcpus",
    "vcpu_info",
    "vcpu_info_from",
    "vcpucount",
]

_VCPU_STATE_NAMES = {
    libvirt.VIR_VCPU_OFFLINE: "offline",
    libvirt.VIR_VCPU_RUNNING: "running",
    libvirt.VIR_VCPU_BLOCKED: "blocked",
}


@dataclass(frozen=True)
class VcpuCount:
    """The ``virsh vcpucount`` matrix. Live values are None when the domain is not running;
    config values are None only for a transient domain (it has no persistent config)."""

    max_config: int | None
    max_live: int | None
    current_config: int | None
    current_live: int | None


@dataclass(frozen=True)
class VcpuInfo:
    """One row of ``virsh vcpuinfo``."""

    vcpu: int
    state: str  # offline / running / blocked
    cpu_time_ns: int
    cpu: int  # physical CPU it last ran on; -1 when unknown
    affinity: frozenset[int]


def set_vcpus(
    dom: Domain,
    count: int,
    scope: Scope | str = Scope.BOTH,
    *,
    maximum: bool = False,
) -> None:
    """``virsh setvcpus DOM COUNT [--maximum] --live/--config``, verified with ``vcpusFlags``.

    Raising the live count hot-adds vCPUs (they appear with ``hotpluggable='yes'``; the guest
    still has to online them, see :func:`set_guest_vcpus`). Lowering it needs ACPI in the
    guest, and QEMU says so ("CPU hot unplug not supported without ACPI").
    """
    scope = Scope.parse(scope)
    virdomain = dom.virdomain
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidRequest(f"vCPU count must be a positive integer, not {count!r}")
    if maximum:
        if scope is not Scope.CONFIG:
            raise InvalidRequest(
                "the maximum can only be changed in the config; it takes effect at next boot "
                f"(asked for scope {scope.value!r})"
            )
        max_flags = libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        call(dom, lambda: virdomain.setVcpusFlags(count, max_flags))
        got = call(dom, lambda: virdomain.vcpusFlags(max_flags))
        if got != count:
            raise mismatch("maximum vCPUs", scope, str(count), str(got))
        return
    for part in scope.parts:
        ceiling = max_vcpus(dom, part)
        if count > ceiling:
            raise InvalidRequest(
                f"{count} vCPUs exceeds the {part.value} maximum of {ceiling}; raise the maximum "
                "in the config first (it takes effect at next boot)"
            )
    apply(dom, scope, lambda flags: virdomain.setVcpusFlags(count, flags))
    for part in scope.parts:
        got = call(dom, lambda part=part: virdomain.vcpusFlags(part.flags))
        if got != count:
            raise mismatch("vCPU count", part, str(count), str(got))


def _guest_vcpus(dom: Domain) -> dict[str, str]:
    def guest_vcpus() -> dict[str, str]:
        result = dom.virdomain.guestVcpus()
        # libvirt-python 12.8 returns None on failure instead of raising (its wrapper checks
        # for -1); the error is still this thread's last libvirt error, which libvirtError
        # picks up when constructed here.
        if result is None:
            raise libvirt.libvirtError("virDomainGetGuestVcpus() failed")
        return result

    return call(dom, guest_vcpus)


def set_guest_vcpus(dom: Domain, cpus: Iterable[int] | str, online: bool) -> None:
    """Online/offline vCPUs inside the guest (the seed's ``echo 1 > .../cpuN/online``).

    Needs qemu-guest-agent running in the guest and its channel in the domain; without the
    channel libvirt says "QEMU guest agent is not configured" (:class:`OperationUnsupported`).
    Verified with ``guestVcpus()``'s online list.
    """
    wanted = cpuset_argument(cpus, "guest vCPUs")
    ceiling = max_vcpus(dom, Scope.LIVE)
    beyond = sorted(c for c in wanted if c >= ceiling)
    if beyond:
        raise InvalidRequest(
            f"guest vCPUs: {format_cpuset(beyond)} beyond the live maximum of {ceiling} vCPUs"
        )
    call(dom, lambda: dom.virdomain.setGuestVcpus(format_cpuset(wanted), 1 if online else 0, 0))
    info = _guest_vcpus(dom)
    online_text = info.get("online") or ""
    now_online = parse_cpuset(online_text) if online_text else frozenset()
    wrong = wanted - now_online if online else wanted & now_online
    if wrong:
        state = "online" if online else "offline"
        raise ReadbackMismatch(
            f"guest vCPUs ({Scope.LIVE.value}): asked for {format_cpuset(wanted)} {state}, "
            f"the guest reports online {online_text or 'none'}",
            expected=f"{format_cpuset(wanted)} {state}",
            actual=f"online {online_text or 'none'}",
        )


# --- reading state --------------------------------------------------------------------------


def read_vcpucount(dom: Domain, active: bool, persistent: bool) -> VcpuCount:
    """:func:`vcpucount` for a domain whose state the caller has just read (see snapshot.py);
    raises :class:`~numaportal.virt._calls.StoppedMeanwhile` if it stopped since."""
    maxi = libvirt.VIR_DOMAIN_VCPU_MAXIMUM
    live, config = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG
    virdomain = dom.virdomain
    cfg: Callable[[int], int | None] = (
        (lambda flags: call(dom, lambda: virdomain.vcpusFlags(flags)))
        if persistent
        else lambda _: None
    )
    lv: Callable[[int], int | None] = (
        (lambda flags: live_query(dom, lambda: virdomain.vcpusFlags(flags)))
        if active
        else lambda _: None
    )
    return VcpuCount(
        max_config=cfg(maxi | config),
        max_live=lv(maxi | live),
        current_config=cfg(config),
        current_live=lv(live),
    )


def vcpu_info_from(
    infos: Sequence[tuple[int, int, int, int]], maps: Sequence[Sequence[bool]]
) -> tuple[VcpuInfo, ...]:
    """``virsh vcpuinfo`` rows from what ``dom.vcpus()`` returns (its info and cpumap lists)."""
    return tuple(
        VcpuInfo(
            vcpu=number,
            state=_VCPU_STATE_NAMES.get(state, f"unknown ({state})"),
            cpu_time_ns=cpu_time,
            cpu=cpu,
            affinity=cpumap_to_cpuset(cpumap),
        )
        for (number, state, cpu_time, cpu), cpumap in zip(infos, maps, strict=False)
    )


def read_vcpu_info(dom: Domain, active: bool) -> tuple[VcpuInfo, ...]:
    """:func:`vcpu_info` for a domain whose state the caller has just read (see snapshot.py);
    raises :class:`~numaportal.virt._calls.StoppedMeanwhile` if it stopped since."""
    if not active:
        return ()
    infos, maps = live_query(dom, dom.virdomain.vcpus)
    return vcpu_info_from(infos, maps)


def vcpucount(dom: Domain) -> VcpuCount:
    """``virsh vcpucount``: maximum and current vCPUs, live and config."""
    return retrying(dom, lambda active, persistent: read_vcpucount(dom, active, persistent))


def vcpu_info(dom: Domain) -> tuple[VcpuInfo, ...]:
    """``virsh vcpuinfo``: one entry per online vCPU; empty when the domain is not running."""
    return retrying(dom, lambda active, _persistent: read_vcpu_info(dom, active))
