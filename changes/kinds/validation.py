"""Validation of a requested VM change against the host's STORED topology and the VM's row.

Pure: :func:`check_change` takes a :class:`~changes.kinds.facts.VmFacts` and a
:class:`~numaportal.virt.topology.HostTopology` and touches neither the database nor libvirt,
so it is unit-tested with hypothesis; :func:`validate_change` gathers both from a
:class:`~vms.models.VirtualMachine` (one query for the host's stored capabilities), and for a
kind that ``needs_host_pins`` (a hot-add keeps the VM's placement) the host's policy and the
stored live pins of its running VMs as a :class:`~changes.kinds.hotadd.HostPins` (two more:
:func:`host_pins`).

The rules every VM change shares are here (the kind exists and is requestable, the VM is still
there, the host was synced, the scope exists and fits the VM); the rest is the kind's own
``validate`` (:mod:`changes.kinds`). Errors are a :class:`django.core.exceptions.ValidationError`
whose dict is keyed by the form field names (``vcpu``, ``cpuset``, ``mode``, ``nodeset``,
``count``, ``maximum``, ``cpus``, ``online``, ``scope``; ``__all__`` for the VM as a whole),
each naming the reason, so a form shows it next to the field. Bad input never reaches a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS

from changes.kinds import policy_hook, registry
from changes.kinds.base import Requested
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors
from changes.kinds.hotadd import HostPins, PinnedVcpu
from hosts.selectors import safe_cpuset
from hosts.services import load_topology
from numaportal.virt.scope import Scope
from numaportal.virt.topology import HostTopology
from vms.models import VcpuPin

__all__ = ["SCOPES", "check_change", "effective_scope", "host_pins", "validate_change"]

SCOPES = tuple(scope.value for scope in Scope)


def effective_scope(kind: str, scope: str) -> str:
    """The scope stored for *kind* requested in *scope* (guest_vcpus: live only)."""
    return registry.get(kind).effective_scope(scope)


def check_change(
    facts: VmFacts,
    topology: HostTopology | None,
    kind: str,
    params: Mapping[str, Any] | None,
    scope: str,
    pins: HostPins | None = None,
) -> dict[str, Any]:
    """The normalised params of a valid change; ValidationError keyed by field otherwise.

    *pins*: the host's policy and stored pins (:func:`host_pins`); None: an empty host under
    the default policy.
    """
    errors = Errors()
    change_kind = registry.find(kind)
    if change_kind is None or not change_kind.requestable:
        known = ", ".join(k.name for k in registry.requestable())
        errors.add("kind", f"unknown kind of change {kind!r}: expected one of {known}")
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
        scope = change_kind.effective_scope(scope)
        parts = Scope(scope).parts
        if Scope.LIVE in parts and not facts.running:
            errors.add(
                "scope",
                f"{facts.name} is not running: a live change needs a running VM "
                "(choose the config scope)",
            )
        if Scope.CONFIG in parts and not facts.persistent:
            errors.add("scope", f"{facts.name} is transient: it has no config to change")
        for problem in change_kind.scope_errors(scope):
            errors.add("scope", problem)
    asked = Requested(facts, topology, params, scope, pins if pins is not None else HostPins())
    out = change_kind.validate(asked, errors)
    errors.raise_if_any()
    return out


def host_pins(vm: Any) -> HostPins:
    """The host's policy for hot-adds (:mod:`changes.kinds.policy_hook`: one query), *vm*'s own
    live pins and the pinned online vCPUs of the host's other running, present VMs (one query).
    Stored cpusets that do not parse count as no pin."""
    own: dict[int, frozenset[int]] = {}
    others: list[PinnedVcpu] = []
    rows = (
        VcpuPin.objects.filter(
            vm__host_id=vm.host_id,
            vm__gone_at__isnull=True,
            vm__vcpu_current_live__isnull=False,
            online=True,
        )
        .exclude(pin_live="")
        .order_by("vm__name", "vm_id", "vcpu")
        .values_list("vm_id", "vm__name", "vm__dedicated", "vcpu", "pin_live")
    )
    for vm_id, name, dedicated, vcpu, pin in rows:
        cpus = safe_cpuset(pin)
        if not cpus:
            continue
        if vm_id == vm.pk:
            own[vcpu] = cpus
        else:
            others.append(PinnedVcpu(vm=name, vcpu=vcpu, cpus=cpus, dedicated=dedicated))
    return HostPins(policy=policy_hook.policy_for(vm.host), own=own, others=tuple(others))


def validate_change(vm: Any, kind: str, params: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """:func:`check_change` for a stored VM, against its host's stored topology (and, for a kind
    that needs them, the host's policy and stored pins while the VM runs)."""
    change_kind = registry.find(kind)
    pins = None
    if change_kind is not None and change_kind.needs_host_pins and vm.vcpu_current_live is not None:
        pins = host_pins(vm)
    return check_change(VmFacts.from_vm(vm), load_topology(vm.host), kind, params, scope, pins)
