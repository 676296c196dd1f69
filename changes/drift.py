"""Drift: VMs whose tuning differs from what the portal last left (see :func:`check_drift`)."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery

from changes.diff import changes_in
from changes.models import Change
from vms.models import VirtualMachine

__all__ = ["check_drift"]

#: The tuning a change sets (vCPU count, pins, memory binding); the rest is not the portal's
#: business.
_DRIFT_KEYS = (
    "vcpu_current",
    "vcpu_max",
    "vcpupin",
    "emulatorpin",
    "numatune_mode",
    "numatune_nodeset",
)


def _outside_changes(
    vm: VirtualMachine, change_id: Any, left_live: Any, left_config: Any
) -> list[str]:
    lines = []
    for part, stored, left in (
        ("live", vm.tuning_live, left_live),
        ("config", vm.tuning_config, left_config),
    ):
        if not isinstance(left, dict) or stored is None:
            continue
        now = {k: stored.get(k) for k in _DRIFT_KEYS}
        then = {k: left.get(k) for k in _DRIFT_KEYS}
        if now == then:  # most VMs of a fleet: nothing to put in words
            continue
        for line in changes_in(part, then, now):
            lines.append(f"{line} since change {change_id}")
    return lines


#: What the check reads of a VM row (not its drift detail, names or counts).
_VM_FIELDS = (
    "pk",
    "last_seen_at",
    "drift",
    "changed_outside",
    "changed_outside_detail",
    "tuning_live",
    "tuning_config",
)


def check_drift() -> int:
    """Flag VMs whose tuning drifted; how many VMs are drifted now.

    Two kinds, from the stored inventory (the 300 s sync keeps it fresh; no libvirt call here):

    * live vs persistent tuning — the sync computes it (``drift``, "live-only: lost at next
      shutdown"); counted here;
    * changed outside the portal — the VM's tuning differs from the state the last finished
      change left (its ``after``; failed changes count too: they record what really happened),
      compared only once the VM was synced after that change. Stored in ``changed_outside``
      and ``changed_outside_detail``, which the sync does not overwrite.
    """
    last_change = (
        Change.objects.filter(vm=OuterRef("pk"), finished_at__isnull=False, after__isnull=False)
        .exclude(scope=Change.Scope.PORTAL)  # the portal's own settings: no tuning
        .order_by("-finished_at")
        .values("pk")[:1]
    )
    vms = list(
        VirtualMachine.objects.present()
        .filter(host__enabled=True, host__removed_at__isnull=True)
        .annotate(last_change_id=Subquery(last_change))
        .only(*_VM_FIELDS)
    )
    ids = [vm.last_change_id for vm in vms if vm.last_change_id is not None]
    # Only the two tunings of each ``after``, taken out of the JSON by the database: the whole
    # snapshot holds the domain's XML twice (kilobytes a change, 20,000 VMs on a fleet).
    changes = {
        pk: (finished_at, live, config)
        for pk, finished_at, live, config in Change.objects.filter(pk__in=ids).values_list(
            "pk", "finished_at", "after__live_tuning", "after__config_tuning"
        )
    }
    dirty = []
    drifted = 0
    for vm in vms:
        change = changes.get(vm.last_change_id)
        lines: list[str] = []
        if change is not None and vm.last_seen_at is not None and vm.last_seen_at >= change[0]:
            lines = _outside_changes(vm, vm.last_change_id, change[1], change[2])
        detail = "\n".join(lines)
        if (vm.changed_outside, vm.changed_outside_detail) != (bool(lines), detail):
            vm.changed_outside, vm.changed_outside_detail = bool(lines), detail
            dirty.append(vm)
        if vm.drift or vm.changed_outside:
            drifted += 1
    if dirty:
        VirtualMachine.objects.bulk_update(dirty, ["changed_outside", "changed_outside_detail"])
    return drifted
