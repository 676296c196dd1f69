"""``guest_vcpus``: online or offline vCPUs inside the running guest, through its agent
(``virsh setvcpus --guest``). Live only: the guest's own CPU state has no config."""

from __future__ import annotations

from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors, bool_field
from changes.kinds.words import cpus_text, online_commands
from changes.models import Change
from numaportal.virt import vcpus
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.errors import VirtError
from numaportal.virt.scope import Scope

LIVE_ONLY = "vCPUs are onlined or offlined in the running guest: choose live"


def guest_cpus_field(value: Any, facts: VmFacts, errors: Errors) -> frozenset[int] | None:
    """Guest CPU numbers, every one of them plugged in (below the live vCPU count)."""
    if not isinstance(value, str) or not value.strip():
        errors.add("cpus", "the guest CPUs are required, e.g. 2 or 2-3")
        return None
    try:
        cpus = parse_cpuset(value.strip())
    except CpusetError as exc:
        errors.add("cpus", str(exc))
        return None
    plugged = facts.vcpu_current_live
    beyond = sorted(c for c in cpus if plugged is not None and c >= plugged)
    if beyond:
        errors.add(
            "cpus",
            f"the guest has {plugged} vCPUs (0-{plugged - 1}): {format_cpuset(beyond)} "
            "not plugged in; hot-add them first",
        )
        return None
    return cpus


class GuestVcpus(VmKind):
    name = Change.Kind.GUEST_VCPUS

    def effective_scope(self, scope: str) -> str:
        """Onlining CPUs in the guest only ever happens live."""
        return Scope.LIVE if scope == Scope.BOTH else scope

    def scope_errors(self, scope: str) -> list[str]:
        return [] if scope == Scope.LIVE else [LIVE_ONLY]

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        online = bool_field(asked.params.get("online"), "online", errors)
        cpus = guest_cpus_field(asked.params.get("cpus"), asked.facts, errors)
        if cpus is not None and online is False and 0 in cpus:
            errors.add("cpus", "CPU 0 cannot be taken offline in the guest")
            return {}
        if cpus is None or online is None:
            return {}
        return {"cpus": format_cpuset(cpus), "online": online}

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params = change.params
        cpus = parse_cpuset(params["cpus"])
        state = "onlined" if params["online"] else "offlined"
        try:
            vcpus.set_guest_vcpus(handle, cpus, params["online"])
        except VirtError as exc:
            return str(exc), (
                f"{cpus_text(cpus)} not {state} in the guest; by hand, in the guest: "
                f"`{online_commands(cpus, params['online'])}`"
            )
        return "", f"{cpus_text(cpus)} {state} in the guest by the agent"

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        """Nothing to read back: the domain's state does not show which guest CPUs are online
        (the agent's answer is the check)."""
        return []


KIND = GuestVcpus()
