"""``setvcpus``: the VM's vCPU count (hot-add, hot-remove) or, in the config only, its maximum.

Params are ``{"count": n}`` (``online_in_guest``: the worker onlines hot-added vCPUs through the
guest agent) or ``{"maximum": n}``. A live hot-remove first offlines the vCPUs in the guest, then
unplugs them; what QEMU and the guest really did is the outcome.

A live hot-add keeps the VM's placement, decided at validation by the host's balancing policy
(:mod:`changes.kinds.hotadd`): the params gain ``placement`` (new vCPU -> where it goes, in
words) and, for a pinned or cell-bound VM, ``vcpupin`` (new vCPU -> cpuset), e.g.
``{"count": 3, "vcpupin": {"2": "3"}, "placement": {"2": "dedicated, whole core 2-3 of cell
1"}}``. The worker pins them in the change's scope right after the hot-add, in the same change,
and the read-back checks them; a hot-add the cells have no room for is refused under ``count``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from changes.kinds import hotadd
from changes.kinds.base import Requested, VmKind
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors, bool_field, int_field
from changes.kinds.vcpupin import pin_problems
from changes.kinds.words import cpus_text, online_commands, scope_words
from changes.models import Change
from numaportal.virt import pinning, vcpus
from numaportal.virt.cpuset import CpusetError, parse_cpuset, parse_nodeset
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


#: Params validation computes; a request that brings its own is refused.
DECIDED = ("vcpupin", "placement")


def hot_add_vm(facts: VmFacts) -> hotadd.HotAddVm:
    """The VM as :func:`changes.kinds.hotadd.place` sees it: its row's live vCPU count,
    dedicated flag and numatune."""
    try:
        nodeset = parse_nodeset(facts.numatune_nodeset) if facts.numatune_nodeset else frozenset()
    except CpusetError:
        nodeset = frozenset()
    return hotadd.HotAddVm(
        name=facts.name,
        current=facts.vcpu_current_live or 0,
        dedicated=facts.dedicated,
        numatune_mode=facts.numatune_mode,
        nodeset=nodeset,
    )


def placement_groups(
    params: Mapping[str, Any], only: frozenset[int] | None = None
) -> list[tuple[list[int], str, str]]:
    """The new vCPUs of a hot-add's params (those in *only*, when given) grouped by where they
    go: (vCPUs, cpuset or "" when they float, why), in vCPU order."""
    pins, words = params.get("vcpupin") or {}, params.get("placement") or {}
    groups: dict[tuple[str, str], list[int]] = {}
    for key in sorted(words, key=int):
        if only is not None and int(key) not in only:
            continue
        groups.setdefault((pins.get(key, ""), words[key]), []).append(int(key))
    return [(added, cpuset, why) for (cpuset, why), added in groups.items()]


def pinned_words(cpuset: str, why: str) -> str:
    """ "CPU 3 (dedicated, whole core 2-3 of cell 1)"."""
    return f"{hotadd.cpus_word(parse_cpuset(cpuset))} ({why})"


def placement_words(
    params: Mapping[str, Any], scope: str, only: frozenset[int] | None = None
) -> list[str]:
    """Where the new vCPUs (those in *only*, when given) went, one clause per group of vCPUs placed
    alike: "vCPU 2 pinned to CPU 3 (dedicated, whole core 2-3 of cell 1) live and in the
    config"."""
    return [
        f"{cpus_text(added)} pinned to {pinned_words(cpuset, why)} {scope_words(scope)}"
        if cpuset
        else f"{cpus_text(added)} {why}"
        for added, cpuset, why in placement_groups(params, only)
    ]


class SetVcpus(VmKind):
    name = Change.Kind.SETVCPUS
    needs_host_pins = True

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
        given = [key for key in DECIDED if key in asked.params]
        if given:
            errors.add(
                "count",
                f"where new vCPUs go is decided by the host's balancing policy, not asked: leave "
                f"out {', '.join(given)}",
            )
        if count is None or online is None or given:
            return {}
        out: dict[str, Any] = {"count": count}
        if online:
            out["online_in_guest"] = True
        placed = self._place(asked, count, errors)
        return {**out, **placed} if placed is not None else {}

    @staticmethod
    def _place(asked: Requested, count: int, errors: Errors) -> dict[str, Any] | None:
        """``vcpupin`` and ``placement`` of a live hot-add ({} for anything else), or None after
        adding the refusal under ``count``."""
        facts: VmFacts = asked.facts
        live = "scope" not in errors and Scope.LIVE in Scope(asked.scope).parts
        now = facts.vcpu_current_live
        if not live or now is None or count <= now or asked.topology is None or errors.errors:
            return {}
        try:
            placed = hotadd.place(asked.topology, hot_add_vm(facts), count, asked.pins)
        except hotadd.NoRoom as exc:
            errors.add("count", str(exc))
            return None
        return hotadd.as_params(placed)

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
        stale = self._stale(params, old_live) if live else ""
        if stale:
            return stale, "nothing was changed on the host"
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
            steps.append(f"{cpus_text(added)} hot-added live")
            try:
                self._pin_placed(dom, params, scope)
            except VirtError as exc:
                steps.append(
                    f"not pinned where validation placed {'them' if len(added) > 1 else 'it'}"
                )
                return str(exc), "; ".join(steps)
            steps.extend(placement_words(params, scope, added))
            steps.append(self._onlined(dom, added, params))
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
    def _stale(params: Mapping[str, Any], old_live: int | None) -> str:
        """Why the pins in *params* no longer fit the domain ("" when they do): they were
        decided for the live vCPU count of the last sync. (New vCPUs that float have nothing to
        keep: those hot-adds go ahead.)"""
        placed = params.get("vcpupin") or {}
        if not placed or old_live is None:
            return ""
        first = min(int(key) for key in placed)
        if first == old_live:
            return ""
        return (
            f"the VM has {old_live} vCPUs live, not {first} as when the change was validated: "
            f"where the new vCPUs go was decided for {first}; sync the host and ask again"
        )

    @staticmethod
    def _pin_placed(dom: Any, params: Mapping[str, Any], scope: str) -> None:
        """Pin the new vCPUs where validation placed them (``vcpupin``), in the change's scope:
        without it a hot-added vCPU floats over every CPU of the host."""
        for key, cpuset in sorted((params.get("vcpupin") or {}).items(), key=lambda kv: int(kv[0])):
            pinning.pin_vcpu(dom, int(key), cpuset, scope)

    @staticmethod
    def _onlined(dom: Any, added: frozenset[int], params: Mapping[str, Any]) -> str:
        """The guest's part in words, after onlining the vCPUs in the guest when asked."""
        if not params.get("online_in_guest"):
            return (
                f"the guest still has to online {'them' if len(added) > 1 else 'it'} "
                f"(`{online_commands(added, True)}`, or a guest_vcpus change)"
            )
        try:
            set_guest_vcpus_with_retry(dom, added, True)
        except VirtError as exc:
            return (
                f"guest agent not answering ({exc}): run "
                f"`{online_commands(added, True)}` in the guest"
            )
        return "onlined in the guest by the agent"

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
            pins = (after.get(f"{part}_tuning") or {}).get("vcpupin") or {}
            for vcpu, cpuset in sorted((params.get("vcpupin") or {}).items()):
                problems += pin_problems(pins, vcpu, cpuset, part)
        return problems


KIND = SetVcpus()
