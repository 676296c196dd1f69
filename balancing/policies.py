"""Editing a host's balancing policy (superusers): every value checked against the stored
topology, with the field and the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from balancing.access import can_edit_policy
from balancing.compute import NO_TOPOLOGY
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from changes.recording import reason_errors, record_portal_change
from hosts.models import Host
from hosts.selectors import safe_cpuset
from hosts.services import load_topology
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.topology import HostTopology

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["POLICY_FIELDS", "policy_errors", "policy_values", "update_policy"]

POLICY_FIELDS = (
    "mode",
    "min_improvement_pct",
    "max_moves",
    "strategy",
    "cpu_overcommit",
    "emulator",
    "housekeeping",
    "reserved",
    "whole_cores",
    "memory_reserve_mib",
    "locality_threshold",
)


def _cpuset_field(
    text: str, field: str, topology: HostTopology | None, errors: dict[str, list[str]]
) -> frozenset[int]:
    if not text.strip():
        return frozenset()
    try:
        cpus = parse_cpuset(text)
    except CpusetError as exc:
        errors.setdefault(field, []).append(str(exc))
        return frozenset()
    if topology is None:
        errors.setdefault(field, []).append(f"{NO_TOPOLOGY} (its CPUs are not known yet)")
        return cpus
    missing = cpus - topology.cpu_ids
    if missing:
        errors.setdefault(field, []).append(
            f"CPU(s) {format_cpuset(missing)} do not exist on this host "
            f"(it has {format_cpuset(topology.cpu_ids)})"
        )
    return cpus


def policy_errors(host: Host, values: dict[str, Any]) -> dict[str, list[str]]:
    """Every way *values* (the policy form's cleaned data) do not fit *host*, by field."""
    errors: dict[str, list[str]] = {}
    topology = load_topology(host)
    housekeeping = _cpuset_field(values.get("housekeeping") or "", "housekeeping", topology, errors)
    reserved = _cpuset_field(values.get("reserved") or "", "reserved", topology, errors)
    if values.get("mode") not in BalancingPolicy.Mode.values:
        errors.setdefault("mode", []).append("choose off, recommend or automatic")
    if values.get("strategy") not in BalancingPolicy.Strategy.values:
        errors.setdefault("strategy", []).append("choose spread or pack")
    if values.get("emulator") not in BalancingPolicy.Emulator.values:
        errors.setdefault("emulator", []).append("choose cell or housekeeping")
    overcommit = values.get("cpu_overcommit")
    if overcommit is None or not 1.0 <= float(overcommit) <= 16.0:
        errors.setdefault("cpu_overcommit", []).append(
            "at least 1 (no over-commit) and at most 16 vCPUs per physical CPU"
        )
    improvement = values.get("min_improvement_pct")
    if improvement is None or not 0.0 <= float(improvement) <= 100.0:
        errors.setdefault("min_improvement_pct", []).append("a percentage from 0 to 100")
    moves = values.get("max_moves")
    if moves is None or int(moves) < 1:
        errors.setdefault("max_moves", []).append("at least 1 VM per plan")
    if values.get("emulator") == BalancingPolicy.Emulator.HOUSEKEEPING and not housekeeping:
        errors.setdefault("housekeeping", []).append(
            "emulator threads on housekeeping CPUs need a housekeeping cpuset"
        )
    both = housekeeping & reserved
    if both:
        errors.setdefault("reserved", []).append(
            f"CPU(s) {format_cpuset(both)} are also housekeeping CPUs: reserved CPUs are never "
            "given to VMs, emulator threads included"
        )
    if topology is not None and not errors.get("housekeeping") and not errors.get("reserved"):
        taken = reserved | (
            housekeeping
            if values.get("emulator") == BalancingPolicy.Emulator.HOUSEKEEPING
            else frozenset()
        )
        if topology.cpu_ids and not topology.cpu_ids - taken:
            errors.setdefault("reserved", []).append("no CPU would be left for the VMs")
    threshold = values.get("locality_threshold")
    if threshold is None or not 0.0 <= float(threshold) <= 1.0:
        errors.setdefault("locality_threshold", []).append(
            "a locality from 0 (never flag a VM) to 1 (flag every VM with memory off its cells)"
        )
    reserve = values.get("memory_reserve_mib")
    if reserve is None or int(reserve) < 0:
        errors.setdefault("memory_reserve_mib", []).append("0 or more MiB")
    elif topology is not None:
        largest = max((cell.memory_kib for cell in topology.cells if cell.cpus), default=0)
        if largest and int(reserve) * 1024 >= largest:
            errors.setdefault("memory_reserve_mib", []).append(
                f"{reserve} MiB would leave no memory for VMs on any cell (the largest cell "
                f"with CPUs has {largest // 1024} MiB)"
            )
    return errors


def policy_values(policy: BalancingPolicy) -> dict[str, Any]:
    """The policy's fields as JSON values, for its change record."""
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def update_policy(
    *, host: Host, actor: Any, values: dict[str, Any], reason: str = ""
) -> BalancingPolicy:
    """Create or change *host*'s balancing policy (superusers only) and record it (a
    ``balancing_policy`` change record, in the same transaction; none when nothing changed);
    raises :class:`ValidationError` keyed by field when *values* do not fit the host or
    *reason* is blank."""
    if not can_edit_policy(actor):
        raise PermissionDenied("balancing policies are for admins (superuser) only")
    errors = {**policy_errors(host, values), **reason_errors(reason)}
    if errors:
        raise ValidationError(errors)
    fields = {name: values[name] for name in POLICY_FIELDS if name in values}
    for name in ("housekeeping", "reserved"):
        if name in fields:
            cpus = safe_cpuset(fields[name])
            fields[name] = format_cpuset(cpus) if cpus else ""
    with transaction.atomic():
        current = BalancingPolicy.objects.select_for_update().filter(host=host).first()
        before = policy_values(current or BalancingPolicy(host=host))  # a new one: the defaults
        policy, _ = BalancingPolicy.objects.update_or_create(host=host, defaults=fields)
        policy.refresh_from_db()
        record_portal_change(
            actor=actor,
            kind=Change.Kind.BALANCING_POLICY,
            host=host,
            target_name=host.name,
            before=before,
            after=policy_values(policy),
            reason=reason,
        )
    log.info("balancing policy of %s set by %s: %s", host.name, actor.get_username(), fields)
    return policy
