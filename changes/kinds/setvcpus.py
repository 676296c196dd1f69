"""``setvcpus``: the VM's vCPU count (hot-add, hot-remove) or, in the config only, its maximum.

Params are ``{"count": n}`` (``online_in_guest``: the worker onlines hot-added vCPUs through the
guest agent) or ``{"maximum": n}``. A live hot-remove first offlines the vCPUs in the guest, then
unplugs them; what QEMU and the guest really did is the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from changes.kinds.base import Requested, VmKind
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors, bool_field, int_field
from changes.kinds.words import cpus_text, online_commands, scope_words
from changes.models import Change
from numaportal.virt import pinning, vcpus
from numaportal.virt.cpuset import format_cpuset, parse_cpuset
from numaportal.virt.errors import VirtError
from numaportal.virt.scope import Scope

#: No sane VM has more; libvirt/QEMU would refuse long before (and it bounds the form input).
MAX_VCPUS = 4096
#: After a live hot-add the guest kernel needs a moment before the agent can online the CPU.
GUEST_ONLINE_TRIES = 10

MAXIMUM_CONFIG_ONLY = (
    "the maximum can only be raised in the config and takes effect at next boot: "
    "choose the config scope"
)


def set_guest_vcpus_with_retry(dom: Any, cpus: frozenset[int], online: bool) -> None:
    """set_guest_vcpus, retried briefly: a just-hot-added CPU takes a moment to reach the guest.

    "not configured" (no agent channel) is final at once; other errors are retried.
    """
    for attempt in range(GUEST_ONLINE_TRIES):
        try:
            vcpus.set_guest_vcpus(dom, cpus, online)
            return
        except VirtError as exc:
            if "not configured" in str(exc) or attempt == GUEST_ONLINE_TRIES - 1:
                raise
            time.sleep(1)


class SetVcpus(VmKind):
    name = Change.Kind.SETVCPUS

    # --- validation ---------------------------------------------------------------------------

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        params = asked.params
        has_count, has_max = params.get("count") is not None, params.get("maximum") is not None
        if has_count == has_max:
            errors.add("count", "give either a vCPU count or a new maximum (one change each)")
            return {}
        if has_max:
            return self._validate_maximum(asked, errors)
        return self._validate_count(asked, errors)

    def _validate_maximum(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        facts: VmFacts = asked.facts
        maximum = int_field(asked.params.get("maximum"), "maximum", errors, minimum=1)
        if asked.scope != Scope.CONFIG:
            errors.add("maximum", MAXIMUM_CONFIG_ONLY)
        elif maximum is not None and maximum > MAX_VCPUS:
            errors.add("maximum", f"at most {MAX_VCPUS} vCPUs")
        elif maximum is not None and maximum < facts.vcpu_current_config:
            errors.add(
                "maximum",
                f"the config has {facts.vcpu_current_config} vCPUs: lower the count first",
            )
        elif maximum is not None:
            return {"maximum": maximum}
        return {}

    def _validate_count(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        count = int_field(asked.params.get("count"), "count", errors, minimum=1)
        if count is not None and "scope" not in errors:
            for part, maximum in asked.facts.maxima(asked.scope):
                if count > maximum:
                    errors.add(
                        "count",
                        f"{count} vCPUs exceeds the {part} maximum of {maximum}: "
                        "raise the maximum in the config first (it takes effect at next boot)",
                    )
                    break
        online = bool_field(asked.params.get("online_in_guest", False), "online", errors)
        if count is None or online is None:
            return {}
        return {"count": count, "online_in_guest": True} if online else {"count": count}

    # --- the worker ---------------------------------------------------------------------------

    def apply(self, handle: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params = change.params
        if "maximum" in params:
            vcpus.set_vcpus(handle, params["maximum"], Scope.CONFIG, maximum=True)
            return "", (
                f"maximum raised to {params['maximum']} vCPUs in the config (from next boot)"
            )
        return self._set_count(handle, change, before)

    def _set_count(self, dom: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        params, scope = change.params, change.scope
        count = params["count"]
        old_live = (before.get("vcpucount") or {}).get("current_live")
        live = Scope.LIVE in Scope(scope).parts and old_live is not None
        steps: list[str] = []
        removing = frozenset(range(count, old_live)) if live and count < old_live else frozenset()
        if removing:
            try:
                set_guest_vcpus_with_retry(dom, removing, False)
                steps.append(f"{cpus_text(removing)} offlined in the guest by the agent")
            except VirtError as exc:
                steps.append(
                    f"{cpus_text(removing)} not offlined in the guest: {exc} "
                    f"(in the guest: `{online_commands(removing, False)}`)"
                )
        try:
            vcpus.set_vcpus(dom, count, scope)
        except VirtError as exc:
            steps.append(self._refusal(dom, exc, count, scope, removing))
            return str(exc), "; ".join(steps)
        if live and count > old_live:
            added = frozenset(range(old_live, count))
            pinned = self._pin_like_the_others(dom, added, before, scope)
            if pinned:
                steps.append(pinned)
            steps.append(self._hot_added(dom, added, params))
        elif removing:
            steps.append(f"{cpus_text(removing)} unplugged live")
        elif live:
            steps.append(f"{count} vCPUs live (unchanged)")
        if Scope.CONFIG in Scope(scope).parts:
            steps.append(f"{count} vCPUs in the config (from next boot)")
        return "", "; ".join(steps)

    @staticmethod
    def _refusal(dom: Any, exc: VirtError, count: int, scope: str, removing: frozenset) -> str:
        """What libvirt's refusal means, with the count the host holds now."""
        try:
            now_live = vcpus.vcpucount(dom).current_live
        except VirtError:
            now_live = None
        counted = f"; the host still counts {now_live} vCPUs" if now_live is not None else ""
        if removing and "timed out" in str(exc):
            # With ACPI QEMU asks the guest; libvirt gives up waiting for the eject.
            return f"live unplug not confirmed: {exc}{counted}"
        if removing:
            return f"live unplug refused by QEMU: {exc}{counted}"
        return f"libvirt refused {count} vCPUs {scope_words(scope)}: {exc}{counted}"

    @staticmethod
    def _pin_like_the_others(
        dom: Any, added: frozenset[int], before: dict[str, Any], scope: str
    ) -> str:
        """A hot-added vCPU of a pinned VM may run where its other vCPUs may (the union of their
        pins: within the VM's cells), live and in the config; without this it would float over
        every CPU of the host. "" for a VM whose vCPUs are not all pinned."""
        pins = (before.get("live_tuning") or {}).get("vcpupin") or {}
        old = (before.get("vcpucount") or {}).get("current_live") or 0
        cpusets = [pins.get(str(v)) for v in range(old)]
        if not cpusets or not all(cpusets):
            return ""
        pool = frozenset().union(*(parse_cpuset(c) for c in cpusets))
        for vcpu in sorted(added):
            pinning.pin_vcpu(dom, vcpu, pool, scope)
        return (
            f"{cpus_text(added)} pinned to {format_cpuset(pool)} like the VM's other vCPUs "
            f"{scope_words(scope)}"
        )

    @staticmethod
    def _hot_added(dom: Any, added: frozenset[int], params: Mapping[str, Any]) -> str:
        """The hot-add step in words, after onlining the vCPUs in the guest when asked."""
        text = f"{cpus_text(added)} hot-added live"
        if not params.get("online_in_guest"):
            return text + (
                f"; the guest still has to online {'them' if len(added) > 1 else 'it'} "
                f"(`{online_commands(added, True)}`, or a guest_vcpus change)"
            )
        try:
            set_guest_vcpus_with_retry(dom, added, True)
        except VirtError as exc:
            return text + (
                f"; guest agent not answering ({exc}): run "
                f"`{online_commands(added, True)}` in the guest"
            )
        return text + "; onlined in the guest by the agent"

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        params, counts = change.params, after.get("vcpucount") or {}
        if "maximum" in params:
            got = counts.get("max_config")
            if got != params["maximum"]:
                return [f"maximum is {got} in the config, not {params['maximum']}"]
            return []
        problems = []
        for part in Scope(change.scope).parts:
            got = counts.get(f"current_{part}")
            if got != params["count"]:
                problems.append(f"{got} vCPUs {part}, not {params['count']}")
        return problems


KIND = SetVcpus()
