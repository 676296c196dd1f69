"""The tuning operations a worker performs on a domain, each verified by reading back.

One function per seed command (``virsh vcpupin``, ``emulatorpin``, ``numatune``, ``setvcpus``,
``guestvcpus``, ``vcpucount``, ``vcpuinfo``), plus :func:`snapshot` for the before/after state
of an audit record. Every mutation:

1. validates what can be checked without changing anything (CPUs exist on the host, the vCPU
   index is below the maximum), raising :class:`InvalidRequest` that names the problem, so a
   typo never reaches libvirt;
2. makes one libvirt call with the scope's flags (LIVE|CONFIG together where the driver
   allows; QEMU's ``setNumaParameters`` and the test driver's ``pinEmulator`` call the two
   "mutually exclusive", and then we apply live first, then config);
3. reads the result back for each affected scope and raises :class:`ReadbackMismatch` if it is
   not what was asked: libvirt returning 0 is not proof (the test driver truncates cpumaps,
   QEMU may round, a guest may refuse).

libvirt errors come out as :mod:`numaportal.virt.errors` classes with libvirt's text intact.
"""

from __future__ import annotations

import enum
import uuid as uuid_module
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import libvirt

from numaportal.virt.cpuset import (
    CpusetError,
    cpumap_to_cpuset,
    cpuset_to_cpumap,
    format_cpuset,
    parse_cpuset,
    parse_nodeset,
)
from numaportal.virt.domain import DomainTuning, DomainXMLError, parse_domain, tuning_dict
from numaportal.virt.errors import (
    DomainNotFound,
    InvalidRequest,
    OperationFailed,
    ReadbackMismatch,
    VirtError,
    translate,
)
from numaportal.virt.hostfacts import cell_ids, uri_of

# The error classes are re-exported for callers that catch around these functions.
__all__ = [
    "NUMATUNE_MODES",
    "DomainNotFound",
    "DomainSnapshot",
    "InvalidRequest",
    "OperationFailed",
    "ReadbackMismatch",
    "Scope",
    "VcpuCount",
    "VcpuInfo",
    "VirtError",
    "domain_state_name",
    "lookup_domain",
    "pin_emulator",
    "pin_vcpu",
    "set_guest_vcpus",
    "set_numatune",
    "set_vcpus",
    "snapshot",
    "vcpu_info",
    "vcpu_info_from",
    "vcpucount",
]

T = TypeVar("T")


class Scope(enum.StrEnum):
    """Where a change applies: the running domain, its persistent config, or both.

    The seed's warning is why this matters: a live-only pin is lost at the next shutdown; only
    the config (``<cputune>``) survives. BOTH is therefore the default everywhere.
    """

    LIVE = "live"
    CONFIG = "config"
    BOTH = "live+config"

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        """``"live"``, ``"config"`` or ``"live+config"`` (case-insensitive) as a Scope."""
        if isinstance(value, Scope):
            return value
        if isinstance(value, str):
            normalised = value.strip().lower()
            for scope in cls:
                if scope.value == normalised:
                    return scope
        choices = ", ".join(repr(s.value) for s in cls)
        raise InvalidRequest(f"unknown scope {value!r}: expected one of {choices}")

    @property
    def flags(self) -> int:
        """The ``VIR_DOMAIN_AFFECT_*`` flags of this scope."""
        return {
            Scope.LIVE: libvirt.VIR_DOMAIN_AFFECT_LIVE,
            Scope.CONFIG: libvirt.VIR_DOMAIN_AFFECT_CONFIG,
            Scope.BOTH: libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        }[self]

    @property
    def parts(self) -> tuple[Scope, ...]:
        """The single scopes this one covers, live first (the order changes are applied in)."""
        return (Scope.LIVE, Scope.CONFIG) if self is Scope.BOTH else (self,)


#: ``<numatune><memory mode=...>`` names and their ``VIR_DOMAIN_NUMATUNE_MEM_*`` values.
NUMATUNE_MODES: dict[str, int] = {
    "strict": libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
    "preferred": libvirt.VIR_DOMAIN_NUMATUNE_MEM_PREFERRED,
    "interleave": libvirt.VIR_DOMAIN_NUMATUNE_MEM_INTERLEAVE,
    "restrictive": libvirt.VIR_DOMAIN_NUMATUNE_MEM_RESTRICTIVE,
}
_NUMATUNE_MODE_NAMES = {value: name for name, value in NUMATUNE_MODES.items()}

# virsh's words for virDomainState, so the portal says what operators already read in
# `virsh list`.
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "idle",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
_VCPU_STATE_NAMES = {
    libvirt.VIR_VCPU_OFFLINE: "offline",
    libvirt.VIR_VCPU_RUNNING: "running",
    libvirt.VIR_VCPU_BLOCKED: "blocked",
}


# --- plumbing -------------------------------------------------------------------------------


def _uri(dom: libvirt.virDomain) -> str | None:
    return uri_of(dom.connect())


def _call(dom: libvirt.virDomain, fn: Callable[[], T]) -> T:
    """Run one libvirt call, translating its error."""
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise translate(exc, _uri(dom)) from exc


def _flags_exclusive(exc: libvirt.libvirtError) -> bool:
    # VIR_EXCLUSIVE_FLAGS_RET's wording: "Flags 'VIR_DOMAIN_AFFECT_LIVE' and
    # 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive".
    message = exc.get_error_message() or ""
    return exc.get_error_code() == libvirt.VIR_ERR_INVALID_ARG and "mutually exclusive" in message


def _apply(dom: libvirt.virDomain, scope: Scope, fn: Callable[[int], object]) -> None:
    """Call ``fn(flags)`` for *scope*: once with both flags, or live then config if refused."""
    try:
        fn(scope.flags)
        return
    except libvirt.libvirtError as exc:
        if not (scope is Scope.BOTH and _flags_exclusive(exc)):
            raise translate(exc, _uri(dom)) from exc
    # Live first: the live change is the one libvirt is likelier to refuse (a running QEMU
    # cannot do everything), and refusing it before the config is touched keeps both unchanged.
    for part in scope.parts:
        _call(dom, lambda part=part: fn(part.flags))


def _cpuset(cpus: Iterable[int] | str, what: str) -> frozenset[int]:
    try:
        if isinstance(cpus, str):
            return parse_cpuset(cpus)
        result = frozenset(cpus)
        format_cpuset(result)  # validates: non-empty, non-negative ints, not absurdly large
    except CpusetError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None
    except TypeError:
        raise InvalidRequest(f"{what}: expected CPU ids, got {cpus!r}") from None
    return result


def _cpumap(dom: libvirt.virDomain, cpus: frozenset[int], what: str) -> tuple[bool, ...]:
    """The host-wide cpumap for *cpus*, refusing CPUs the host does not have."""
    width = _call(dom, lambda: dom.connect().getCPUMap()[0])
    try:
        return cpuset_to_cpumap(cpus, width)
    except CpusetError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


def _describe(cpus: frozenset[int] | None) -> str:
    if cpus is None:
        return "nothing"
    return format_cpuset(cpus) if cpus else "no CPUs"


def _mismatch(what: str, part: Scope, expected: str, actual: str) -> ReadbackMismatch:
    return ReadbackMismatch(
        f"{what} ({part.value}): asked for {expected}, libvirt reports {actual}",
        expected=expected,
        actual=actual,
    )


def _max_vcpus(dom: libvirt.virDomain, part: Scope) -> int:
    return _call(dom, lambda: dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | part.flags))


def _check_vcpu_index(dom: libvirt.virDomain, vcpu: int, scope: Scope) -> None:
    if not isinstance(vcpu, int) or isinstance(vcpu, bool) or vcpu < 0:
        raise InvalidRequest(f"vCPU index must be a non-negative integer, not {vcpu!r}")
    for part in scope.parts:
        maximum = _max_vcpus(dom, part)
        if vcpu >= maximum:
            raise InvalidRequest(
                f"vCPU {vcpu} does not exist: the {part.value} maximum is {maximum} vCPUs "
                f"(0-{maximum - 1})"
            )


# --- lookup ---------------------------------------------------------------------------------


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid_module.UUID(text)
    except ValueError:
        return False
    return True


def lookup_domain(conn: libvirt.virConnect, name_or_uuid: str) -> libvirt.virDomain:
    """The domain with this name or UUID; :class:`DomainNotFound` if there is none."""
    if not isinstance(name_or_uuid, str) or not name_or_uuid:
        raise InvalidRequest(f"a domain name or UUID is required, not {name_or_uuid!r}")
    try:
        if _looks_like_uuid(name_or_uuid):
            try:
                return conn.lookupByUUIDString(name_or_uuid)
            except libvirt.libvirtError as exc:
                # A domain may be *named* like a UUID; fall back to the name before giving up.
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        return conn.lookupByName(name_or_uuid)
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """One line of ``virsh list --all``."""

    name: str
    uuid: str
    state: str

    @property
    def active(self) -> bool:
        return self.state not in {"shut off", "crashed"}


def list_domains(conn: libvirt.virConnect) -> tuple[DomainSummary, ...]:
    """Every domain on the host, with its state, in one ``getAllDomainStats`` round trip.

    Name and UUID are cached in the client-side domain object, so no call per domain is made:
    that matters over ``qemu+ssh://`` to a host with hundreds of VMs.
    """
    try:
        stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc
    summaries = [
        DomainSummary(dom.name(), dom.UUIDString(), domain_state_name(values["state.state"]))
        for dom, values in stats
    ]
    return tuple(sorted(summaries, key=lambda d: d.name))


# --- mutations ------------------------------------------------------------------------------


def pin_vcpu(
    dom: libvirt.virDomain,
    vcpu: int,
    cpus: Iterable[int] | str,
    scope: Scope | str = Scope.BOTH,
) -> None:
    """``virsh vcpupin DOM VCPU CPUS --live/--config``, verified with ``vcpuPinInfo``."""
    scope = Scope.parse(scope)
    wanted = _cpuset(cpus, f"vcpupin of vCPU {vcpu}")
    _check_vcpu_index(dom, vcpu, scope)
    cpumap = _cpumap(dom, wanted, f"vcpupin of vCPU {vcpu}")
    _apply(dom, scope, lambda flags: dom.pinVcpuFlags(vcpu, cpumap, flags))
    for part in scope.parts:
        pins = _call(dom, lambda part=part: dom.vcpuPinInfo(part.flags))
        actual = cpumap_to_cpuset(pins[vcpu]) if vcpu < len(pins) else None
        if actual != wanted:
            raise _mismatch(
                f"vcpupin of vCPU {vcpu}", part, format_cpuset(wanted), _describe(actual)
            )


def pin_emulator(
    dom: libvirt.virDomain, cpus: Iterable[int] | str, scope: Scope | str = Scope.BOTH
) -> None:
    """``virsh emulatorpin DOM CPUS --live/--config``, verified with ``emulatorPinInfo``."""
    scope = Scope.parse(scope)
    wanted = _cpuset(cpus, "emulatorpin")
    cpumap = _cpumap(dom, wanted, "emulatorpin")
    _apply(dom, scope, lambda flags: dom.pinEmulator(cpumap, flags))
    for part in scope.parts:
        actual = cpumap_to_cpuset(_call(dom, lambda part=part: dom.emulatorPinInfo(part.flags)))
        if actual != wanted:
            raise _mismatch("emulatorpin", part, format_cpuset(wanted), _describe(actual))


def set_numatune(
    dom: libvirt.virDomain,
    mode: str,
    nodeset: Iterable[int] | str,
    scope: Scope | str = Scope.BOTH,
) -> None:
    """``virsh numatune DOM --mode MODE --nodeset NODES``, verified with ``numaParameters``.

    QEMU refuses most live changes ("can't change nodeset for strict mode for running domain",
    "can't change numatune mode for running domain"); those come back as
    :class:`InvalidRequest` with libvirt's text, and the config part is then left untouched.
    """
    scope = Scope.parse(scope)
    if mode not in NUMATUNE_MODES:
        raise InvalidRequest(
            f"unknown numatune mode {mode!r}: expected one of {', '.join(NUMATUNE_MODES)}"
        )
    try:
        nodes = parse_nodeset(nodeset) if isinstance(nodeset, str) else _cpuset(nodeset, "nodeset")
    except CpusetError as exc:
        raise InvalidRequest(f"numatune nodeset: {exc}") from None
    cells = cell_ids(_call(dom, lambda: dom.connect().getCapabilities()))
    # A host whose capabilities list no cells (the test driver with a custom host) cannot be
    # checked; libvirt will judge.
    missing = sorted(nodes - set(cells)) if cells else []
    if missing:
        raise InvalidRequest(
            f"numatune nodeset: NUMA node{'s' if len(missing) > 1 else ''} "
            f"{format_cpuset(missing)} do{'' if len(missing) > 1 else 'es'} not exist on this "
            f"host (it has {format_cpuset(cells)})"
        )
    params = {
        libvirt.VIR_DOMAIN_NUMA_MODE: NUMATUNE_MODES[mode],
        libvirt.VIR_DOMAIN_NUMA_NODESET: format_cpuset(nodes),
    }
    _apply(dom, scope, lambda flags: dom.setNumaParameters(params, flags))
    for part in scope.parts:
        got = _call(dom, lambda part=part: dom.numaParameters(part.flags))
        got_mode = _NUMATUNE_MODE_NAMES.get(got.get(libvirt.VIR_DOMAIN_NUMA_MODE), "unknown")
        got_text = got.get(libvirt.VIR_DOMAIN_NUMA_NODESET) or ""
        try:
            got_nodes: frozenset[int] | None = parse_nodeset(got_text) if got_text else None
        except CpusetError:
            got_nodes = None
        if got_mode != mode or got_nodes != nodes:
            raise _mismatch(
                "numatune",
                part,
                f"{mode} {format_cpuset(nodes)}",
                f"{got_mode} {got_text or 'no nodeset'}",
            )


def set_vcpus(
    dom: libvirt.virDomain,
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
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidRequest(f"vCPU count must be a positive integer, not {count!r}")
    if maximum:
        if scope is not Scope.CONFIG:
            raise InvalidRequest(
                "the maximum can only be changed in the config; it takes effect at next boot "
                f"(asked for scope {scope.value!r})"
            )
        max_flags = libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        _call(dom, lambda: dom.setVcpusFlags(count, max_flags))
        got = _call(dom, lambda: dom.vcpusFlags(max_flags))
        if got != count:
            raise _mismatch("maximum vCPUs", scope, str(count), str(got))
        return
    for part in scope.parts:
        ceiling = _max_vcpus(dom, part)
        if count > ceiling:
            raise InvalidRequest(
                f"{count} vCPUs exceeds the {part.value} maximum of {ceiling}; raise the maximum "
                "in the config first (it takes effect at next boot)"
            )
    _apply(dom, scope, lambda flags: dom.setVcpusFlags(count, flags))
    for part in scope.parts:
        got = _call(dom, lambda part=part: dom.vcpusFlags(part.flags))
        if got != count:
            raise _mismatch("vCPU count", part, str(count), str(got))


def _guest_vcpus(dom: libvirt.virDomain) -> dict[str, str]:
    def call() -> dict[str, str]:
        result = dom.guestVcpus()
        # libvirt-python 12.8 returns None on failure instead of raising (its wrapper checks
        # for -1); the error is still this thread's last libvirt error, which libvirtError
        # picks up when constructed here.
        if result is None:
            raise libvirt.libvirtError("virDomainGetGuestVcpus() failed")
        return result

    return _call(dom, call)


def set_guest_vcpus(dom: libvirt.virDomain, cpus: Iterable[int] | str, online: bool) -> None:
    """Online/offline vCPUs inside the guest (the seed's ``echo 1 > .../cpuN/online``).

    Needs qemu-guest-agent running in the guest and its channel in the domain; without the
    channel libvirt says "QEMU guest agent is not configured" (:class:`OperationUnsupported`).
    Verified with ``guestVcpus()``'s online list.
    """
    wanted = _cpuset(cpus, "guest vCPUs")
    ceiling = _max_vcpus(dom, Scope.LIVE)
    beyond = sorted(c for c in wanted if c >= ceiling)
    if beyond:
        raise InvalidRequest(
            f"guest vCPUs: {format_cpuset(beyond)} beyond the live maximum of {ceiling} vCPUs"
        )
    _call(dom, lambda: dom.setGuestVcpus(format_cpuset(wanted), 1 if online else 0, 0))
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


class _StoppedMeanwhile(Exception):
    """The domain stopped between our isActive() and a live query."""


def _live(dom: libvirt.virDomain, fn: Callable[[], T]) -> T:
    """A live-only query; :class:`_StoppedMeanwhile` if the domain stopped under us."""
    try:
        return fn()
    except libvirt.libvirtError as exc:
        try:
            active = dom.isActive()
        except libvirt.libvirtError:
            active = True  # cannot tell: report the original error
        if not active:
            raise _StoppedMeanwhile from exc
        raise translate(exc, _uri(dom)) from exc


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


def domain_state_name(state: int) -> str:
    """virsh's word for a ``VIR_DOMAIN_*`` state ("running", "shut off", ...)."""
    return _STATE_NAMES.get(state, f"unknown ({state})")


def _vcpucount(dom: libvirt.virDomain, active: bool, persistent: bool) -> VcpuCount:
    maxi = libvirt.VIR_DOMAIN_VCPU_MAXIMUM
    live, config = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG
    cfg: Callable[[int], int | None] = (
        (lambda flags: _call(dom, lambda: dom.vcpusFlags(flags))) if persistent else lambda _: None
    )
    lv: Callable[[int], int | None] = (
        (lambda flags: _live(dom, lambda: dom.vcpusFlags(flags))) if active else lambda _: None
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


def _vcpu_info(dom: libvirt.virDomain, active: bool) -> tuple[VcpuInfo, ...]:
    if not active:
        return ()
    infos, maps = _live(dom, dom.vcpus)
    return vcpu_info_from(infos, maps)


def _retrying(dom: libvirt.virDomain, fn: Callable[[bool, bool], T]) -> T:
    # A domain that stops between our state check and a live query is not an error of the
    # query: look again, now seeing it shut off. Three tries cover a start/stop race.
    for _attempt in range(3):
        active = bool(_call(dom, dom.isActive))
        persistent = bool(_call(dom, dom.isPersistent))
        try:
            return fn(active, persistent)
        except _StoppedMeanwhile:
            continue
    raise OperationFailed(
        "the domain kept changing state while its state was read", None, _uri(dom)
    )


def vcpucount(dom: libvirt.virDomain) -> VcpuCount:
    """``virsh vcpucount``: maximum and current vCPUs, live and config."""
    return _retrying(dom, lambda active, persistent: _vcpucount(dom, active, persistent))


def vcpu_info(dom: libvirt.virDomain) -> tuple[VcpuInfo, ...]:
    """``virsh vcpuinfo``: one entry per online vCPU; empty when the domain is not running."""
    return _retrying(dom, lambda active, _persistent: _vcpu_info(dom, active))


def _fmt_set(cpus: frozenset[int] | None) -> str | None:
    if cpus is None:
        return None
    return format_cpuset(cpus) if cpus else ""


@dataclass(frozen=True)
class DomainSnapshot:
    """Everything about a domain's CPU/NUMA placement at one moment, for an audit record."""

    name: str
    uuid: str
    state: str
    persistent: bool
    persistent_xml: str
    live_xml: str | None
    config_tuning: DomainTuning
    live_tuning: DomainTuning | None
    vcpucount: VcpuCount
    vcpu_info: tuple[VcpuInfo, ...]
    emulatorpin_config: frozenset[int] | None
    emulatorpin_live: frozenset[int] | None

    @property
    def active(self) -> bool:
        return self.live_xml is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (cpusets as cpuset strings, as virsh prints them)."""
        return {
            "name": self.name,
            "uuid": self.uuid,
            "state": self.state,
            "active": self.active,
            "persistent": self.persistent,
            "persistent_xml": self.persistent_xml,
            "live_xml": self.live_xml,
            "config_tuning": tuning_dict(self.config_tuning),
            "live_tuning": tuning_dict(self.live_tuning) if self.live_tuning else None,
            "vcpucount": asdict(self.vcpucount),
            "vcpu_info": [
                {
                    "vcpu": v.vcpu,
                    "state": v.state,
                    "cpu_time_ns": v.cpu_time_ns,
                    "cpu": v.cpu,
                    "affinity": _fmt_set(v.affinity),
                }
                for v in self.vcpu_info
            ],
            "emulatorpin_config": _fmt_set(self.emulatorpin_config),
            "emulatorpin_live": _fmt_set(self.emulatorpin_live),
        }


def _parse(dom: libvirt.virDomain, xml: str, which: str) -> DomainTuning:
    try:
        return parse_domain(xml)
    except DomainXMLError as exc:
        raise OperationFailed(f"cannot parse the {which} XML: {exc}", None, _uri(dom)) from exc


def _emulatorpin(pins: Sequence[bool] | None) -> frozenset[int] | None:
    return None if pins is None else cpumap_to_cpuset(pins)


def _snapshot(dom: libvirt.virDomain, active: bool, persistent: bool) -> DomainSnapshot:
    live_flag = libvirt.VIR_DOMAIN_AFFECT_LIVE
    config_flag = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    state, _reason = _call(dom, dom.state)
    persistent_xml = _call(dom, lambda: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    live_xml = _live(dom, lambda: dom.XMLDesc(0)) if active else None
    return DomainSnapshot(
        name=_call(dom, dom.name),
        uuid=_call(dom, dom.UUIDString),
        state=domain_state_name(state),
        persistent=persistent,
        persistent_xml=persistent_xml,
        live_xml=live_xml,
        config_tuning=_parse(dom, persistent_xml, "persistent"),
        live_tuning=_parse(dom, live_xml, "live") if live_xml is not None else None,
        vcpucount=_vcpucount(dom, active, persistent),
        vcpu_info=_vcpu_info(dom, active),
        emulatorpin_config=_emulatorpin(
            _call(dom, lambda: dom.emulatorPinInfo(config_flag)) if persistent else None
        ),
        emulatorpin_live=_emulatorpin(
            _live(dom, lambda: dom.emulatorPinInfo(live_flag)) if active else None
        ),
    )


def snapshot(dom: libvirt.virDomain) -> DomainSnapshot:
    """The domain's placement state now: XML (persistent and live), parsed tuning, vCPU counts,
    per-vCPU placement and emulator pinning. Live fields are None when it is not running."""
    return _retrying(dom, lambda active, persistent: _snapshot(dom, active, persistent))
