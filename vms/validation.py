"""Validation of a requested change against the host's STORED topology and the VM's row.

Pure: :func:`check_change` takes a :class:`VmFacts` and a
:class:`~numaportal.virt.topology.HostTopology` and touches neither the database nor libvirt,
so it is unit-tested with hypothesis; :func:`validate_change` gathers both from a
:class:`~vms.models.VirtualMachine` (one query for the host's stored capabilities).

Errors are a :class:`django.core.exceptions.ValidationError` whose dict is keyed by the form
field names (``vcpu``, ``cpuset``, ``mode``, ``nodeset``, ``count``, ``maximum``, ``cpus``,
``online``, ``scope``; ``__all__`` for the VM as a whole), each naming the reason, so a form
shows it next to the field. Bad input never reaches a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from numaportal.virt.cpuset import CpusetError, format_cpuset, format_nodeset, parse_cpuset
from numaportal.virt.cpuset import parse_nodeset as _parse_nodeset
from numaportal.virt.topology import HostTopology

__all__ = [
    "KINDS",
    "NUMATUNE_MODES",
    "SCOPES",
    "VmFacts",
    "check_change",
    "effective_scope",
    "validate_change",
]

KINDS = ("vcpupin", "emulatorpin", "numatune", "setvcpus", "guest_vcpus")
SCOPES = ("live", "config", "live+config")
NUMATUNE_MODES = ("strict", "interleave", "preferred", "restrictive")
#: No sane VM has more; libvirt/QEMU would refuse long before (and it bounds the form input).
MAX_VCPUS = 4096

MAXIMUM_CONFIG_ONLY = (
    "the maximum can only be raised in the config and takes effect at next boot: "
    "choose the config scope"
)


@dataclass(frozen=True)
class VmFacts:
    """What validation needs to know about the VM, as last synced."""

    name: str
    running: bool
    vcpu_max_config: int
    vcpu_current_config: int
    vcpu_max_live: int | None = None
    vcpu_current_live: int | None = None
    gone: bool = False
    persistent: bool = True

    @classmethod
    def from_vm(cls, vm: Any) -> VmFacts:
        return cls(
            name=vm.name,
            running=vm.vcpu_current_live is not None,
            vcpu_max_config=vm.vcpu_max_config,
            vcpu_current_config=vm.vcpu_current_config,
            vcpu_max_live=vm.vcpu_max_live,
            vcpu_current_live=vm.vcpu_current_live,
            gone=vm.gone_at is not None,
            persistent=vm.persistent,
        )


def effective_scope(kind: str, scope: str) -> str:
    """The scope stored for *kind*: onlining CPUs in the guest only ever happens live."""
    if kind == "guest_vcpus" and scope == "live+config":
        return "live"
    return scope


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def __contains__(self, field: str) -> bool:
        return field in self.errors

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


def _int(value: Any, field: str, errors: _Errors, *, minimum: int = 0) -> int | None:
    if isinstance(value, bool):
        errors.add(field, f"expected a whole number, not {value!r}")
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit() or len(text) > 6:
            errors.add(field, f"expected a whole number, not {value!r}")
            return None
        value = int(text)
    if not isinstance(value, int):
        errors.add(field, f"expected a whole number, not {value!r}")
        return None
    if value < minimum:
        errors.add(field, f"must be at least {minimum}, not {value}")
        return None
    return value


def _bool(value: Any, field: str, errors: _Errors) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "on", "yes"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "off", "no"}:
        return False
    errors.add(field, f"expected true or false, not {value!r}")
    return None


def _cpuset(
    value: Any, field: str, errors: _Errors, topology: HostTopology | None
) -> frozenset[int] | None:
    if not isinstance(value, str) or not value.strip():
        errors.add(field, "a cpuset is required, e.g. 0-3,8")
        return None
    try:
        cpus = parse_cpuset(value.strip())
    except CpusetError as exc:
        errors.add(field, str(exc))
        return None
    if topology is not None and topology.cpu_ids:
        missing = cpus - topology.cpu_ids
        if missing:
            errors.add(
                field,
                f"CPU{'s' if len(missing) > 1 else ''} {format_cpuset(missing)} "
                f"do{'' if len(missing) > 1 else 'es'} not exist on this host "
                f"(it has {format_cpuset(topology.cpu_ids)})",
            )
            return None
    return cpus


def _maxima(facts: VmFacts, scope: str) -> list[tuple[str, int]]:
    """(scope part, maximum vCPUs) for each part of *scope* the VM has."""
    parts = ("live", "config") if scope == "live+config" else (scope,)
    out = []
    for part in parts:
        if part == "live" and facts.vcpu_max_live is not None:
            out.append(("live", facts.vcpu_max_live))
        elif part == "config":
            out.append(("config", facts.vcpu_max_config))
    return out


def check_change(
    facts: VmFacts,
    topology: HostTopology | None,
    kind: str,
    params: Mapping[str, Any] | None,
    scope: str,
) -> dict[str, Any]:
    """The normalised params of a valid change; ValidationError keyed by field otherwise."""
    errors = _Errors()
    if kind not in KINDS:
        errors.add("kind", f"unknown kind of change {kind!r}: expected one of {', '.join(KINDS)}")
        errors.raise_if_any()
    if not isinstance(params, Mapping):
        errors.add(NON_FIELD_ERRORS, f"parameters must be a mapping, not {params!r}")
        errors.raise_if_any()
    if facts.gone:
        errors.add(NON_FIELD_ERRORS, f"{facts.name} is no longer on its host")
    if topology is None:
        errors.add(
            NON_FIELD_ERRORS,
            "the host has no stored topology yet (never synced): sync it first",
        )
    if scope not in SCOPES:
        errors.add("scope", f"unknown scope {scope!r}: expected one of {', '.join(SCOPES)}")
    else:
        scope = effective_scope(kind, scope)
        if "live" in scope and not facts.running:
            errors.add(
                "scope",
                f"{facts.name} is not running: a live change needs a running VM "
                "(choose the config scope)",
            )
        if "config" in scope and not facts.persistent:
            errors.add("scope", f"{facts.name} is transient: it has no config to change")
        if kind == "guest_vcpus" and scope != "live":
            errors.add("scope", "vCPUs are onlined or offlined in the running guest: choose live")
    scope_ok = "scope" not in errors
    out: dict[str, Any] = {}

    if kind in ("vcpupin",):
        vcpu = _int(params.get("vcpu"), "vcpu", errors)
        if vcpu is not None and scope_ok:
            for part, maximum in _maxima(facts, scope):
                if vcpu >= maximum:
                    errors.add(
                        "vcpu",
                        f"vCPU {vcpu} does not exist: the {part} maximum is {maximum} vCPUs "
                        f"(0-{maximum - 1})",
                    )
                    break
        cpus = _cpuset(params.get("cpuset"), "cpuset", errors, topology)
        if vcpu is not None and cpus is not None:
            out = {"vcpu": vcpu, "cpuset": format_cpuset(cpus)}
    elif kind == "emulatorpin":
        cpus = _cpuset(params.get("cpuset"), "cpuset", errors, topology)
        if cpus is not None:
            out = {"cpuset": format_cpuset(cpus)}
    elif kind == "numatune":
        mode = params.get("mode")
        if mode not in NUMATUNE_MODES:
            errors.add(
                "mode", f"unknown mode {mode!r}: expected one of {', '.join(NUMATUNE_MODES)}"
            )
        nodes = None
        text = params.get("nodeset")
        if not isinstance(text, str) or not text.strip():
            errors.add("nodeset", "a nodeset is required, e.g. 0 or 0-1")
        else:
            try:
                nodes = _parse_nodeset(text.strip())
            except CpusetError as exc:
                errors.add("nodeset", str(exc))
        if nodes is not None and topology is not None and topology.cell_ids:
            missing = nodes - topology.cell_ids
            if missing:
                errors.add(
                    "nodeset",
                    f"NUMA node{'s' if len(missing) > 1 else ''} {format_nodeset(missing)} "
                    f"do{'' if len(missing) > 1 else 'es'} not exist on this host "
                    f"(it has {format_nodeset(topology.cell_ids)})",
                )
                nodes = None
        if mode in NUMATUNE_MODES and nodes is not None:
            out = {"mode": mode, "nodeset": format_nodeset(nodes)}
    elif kind == "setvcpus":
        has_count, has_max = params.get("count") is not None, params.get("maximum") is not None
        if has_count == has_max:
            errors.add("count", "give either a vCPU count or a new maximum (one change each)")
        elif has_max:
            maximum = _int(params.get("maximum"), "maximum", errors, minimum=1)
            if scope != "config":
                errors.add("maximum", MAXIMUM_CONFIG_ONLY)
            elif maximum is not None and maximum > MAX_VCPUS:
                errors.add("maximum", f"at most {MAX_VCPUS} vCPUs")
            elif maximum is not None and maximum < facts.vcpu_current_config:
                errors.add(
                    "maximum",
                    f"the config has {facts.vcpu_current_config} vCPUs: lower the count first",
                )
            elif maximum is not None:
                out = {"maximum": maximum}
        else:
            count = _int(params.get("count"), "count", errors, minimum=1)
            if count is not None and scope_ok:
                for part, maximum in _maxima(facts, scope):
                    if count > maximum:
                        errors.add(
                            "count",
                            f"{count} vCPUs exceeds the {part} maximum of {maximum}: "
                            "raise the maximum in the config first (it takes effect at next boot)",
                        )
                        break
            online = params.get("online_in_guest", False)
            online_flag = _bool(online, "online", errors)
            if count is not None and online_flag is not None:
                out = {"count": count}
                if online_flag:
                    out["online_in_guest"] = True
    elif kind == "guest_vcpus":
        online = _bool(params.get("online"), "online", errors)
        cpus = None
        text = params.get("cpus")
        if not isinstance(text, str) or not text.strip():
            errors.add("cpus", "the guest CPUs are required, e.g. 2 or 2-3")
        else:
            try:
                cpus = parse_cpuset(text.strip())
            except CpusetError as exc:
                errors.add("cpus", str(exc))
        if cpus is not None and facts.vcpu_current_live is not None:
            beyond = sorted(c for c in cpus if c >= facts.vcpu_current_live)
            if beyond:
                errors.add(
                    "cpus",
                    f"the guest has {facts.vcpu_current_live} vCPUs "
                    f"(0-{facts.vcpu_current_live - 1}): {format_cpuset(beyond)} "
                    "not plugged in; hot-add them first",
                )
                cpus = None
        if cpus is not None and online is False and 0 in cpus:
            errors.add("cpus", "CPU 0 cannot be taken offline in the guest")
            cpus = None
        if cpus is not None and online is not None:
            out = {"cpus": format_cpuset(cpus), "online": online}

    errors.raise_if_any()
    return out


def validate_change(vm: Any, kind: str, params: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """:func:`check_change` for a stored VM, against its host's stored topology."""
    from hosts.services import load_topology  # hosts.services imports vms: import here

    return check_change(VmFacts.from_vm(vm), load_topology(vm.host), kind, params, scope)
