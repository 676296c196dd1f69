"""What a change did, in words and as diffs, from its before and after snapshots
(``DomainSnapshot.as_dict()``): the change page, the record's ``diff`` and the drift check."""

from __future__ import annotations

import difflib
from typing import Any

from changes.kinds.words import word

__all__ = ["changes_in", "describe_tuning_changes", "failure_outcome", "make_diff"]

# Tuning keys that are identity or bookkeeping, not CPU or memory tuning: left out of the words.
_TUNING_NOISE = frozenset({"name", "uuid", "domain_type", "domain_id", "guest_agent_connected"})
_TUNING_WORDS = {
    "vcpu_max": "maximum vCPUs",
    "vcpu_current": "vCPUs",
    "vcpu_placement": "vCPU placement",
    "vcpu_cpuset": "default vCPU cpuset",
    "vcpupin": "vcpupin of vCPU",
    "emulatorpin": "emulatorpin",
    "numatune_mode": "numatune mode",
    "numatune_nodeset": "numatune nodeset",
    "numatune_placement": "numatune placement",
    "numatune_memnodes": "numatune memnode of guest cell",
    "memory_kib": "memory (KiB)",
    "current_memory_kib": "current memory (KiB)",
    "vcpus_enabled": "vCPU enabled",
    "vcpus_hotpluggable": "vCPU hotpluggable",
    "guest_numa_cells": "guest NUMA cells",
    "has_acpi": "ACPI",
    "has_guest_agent_channel": "guest agent channel",
}


def changes_in(
    where: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[str]:
    """Each differing tuning key (and sub-key: vcpupin of vCPU 1, ...) as "where: what: a -> b"."""
    before, after = before or {}, after or {}
    lines = []
    for key in sorted((before.keys() | after.keys()) - _TUNING_NOISE):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        label = _TUNING_WORDS.get(key, key)
        if isinstance(old, dict | type(None)) and isinstance(new, dict | type(None)):
            old, new = old or {}, new or {}
            for sub in sorted(old.keys() | new.keys(), key=lambda k: (len(str(k)), str(k))):
                if old.get(sub) != new.get(sub):
                    lines.append(
                        f"{where}: {label} {sub}: {word(old.get(sub))} -> {word(new.get(sub))}"
                    )
        else:
            lines.append(f"{where}: {label}: {word(old)} -> {word(new)}")
    return lines


def describe_tuning_changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[str]:
    """What changed between two snapshots (``DomainSnapshot.as_dict()``), in words."""
    before, after = before or {}, after or {}
    lines = changes_in("config", before.get("config_tuning"), after.get("config_tuning"))
    lines += changes_in("live", before.get("live_tuning"), after.get("live_tuning"))
    for key, label in (("emulatorpin_live", "live"), ("emulatorpin_config", "config")):
        old, new = before.get(key), after.get(key)
        # The parsed XML lacks an emulator pin that only the cgroup holds; say it when it moved.
        if old != new and not any(line.startswith(f"{label}: emulatorpin") for line in lines):
            lines.append(f"{label}: emulator affinity: {word(old)} -> {word(new)}")
    old_count, new_count = before.get("vcpucount") or {}, after.get("vcpucount") or {}
    for key in ("current_live", "max_live"):
        if old_count.get(key) != new_count.get(key) and not any(
            line.startswith("live: vCPUs:") or line.startswith("live: maximum") for line in lines
        ):
            lines.append(
                f"vcpucount {key}: {word(old_count.get(key))} -> {word(new_count.get(key))}"
            )
    if before.get("state") != after.get("state") and before and after:
        lines.append(f"state: {before.get('state')} -> {after.get('state')}")
    return lines


def _xml_lines(xml: str | None) -> list[str]:
    return [line.rstrip() for line in (xml or "").splitlines()]


def make_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """The tuning changes in words, then unified diffs of the persistent and the live XML."""
    if not before or not after:
        return ""
    words = describe_tuning_changes(before, after)
    out = ["Tuning:"] + [f"  {line}" for line in words] if words else ["Tuning: unchanged"]
    for key, title in (("persistent_xml", "persistent XML"), ("live_xml", "live XML")):
        diff = list(
            difflib.unified_diff(
                _xml_lines(before.get(key)),
                _xml_lines(after.get(key)),
                f"{title} before",
                f"{title} after",
                n=2,
                lineterm="",
            )
        )
        if diff:
            out += ["", *diff]
    return "\n".join(out)


def failure_outcome(
    outcome: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> str:
    """For a failed change: what happened anyway, from the snapshots, when nothing said it."""
    if outcome:
        return outcome
    if not before or not after:
        return ""
    changed = describe_tuning_changes(before, after)
    if not changed:
        return "nothing was changed on the host"
    return "changed on the host nevertheless: " + "; ".join(changed)
