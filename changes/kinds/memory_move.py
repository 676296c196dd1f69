"""``memory_move``: move a running VM's memory to given cells, live ("move memory to cell N").

How depends on the VM's live numatune (../shared/DESIGN.md "Moving memory live", verified on
the NUMA lab, libvirt 9.0, kernel 6.1):

- **restrictive**: through libvirt. A live ``virsh numatune DOM --nodeset N --live`` changes
  the cgroup's ``cpuset.mems``; the kernel moves the pages and libvirt's view follows.
- **no numatune** (the kernel's default local policy): page migration of its QEMU process on
  the host's own worker (``migratepages <pid> <other nodes> <cells>``), what numad does; nothing
  in libvirt contradicts it.
- **strict**: refused. libvirt refuses a live nodeset change ("can't change nodeset for strict
  mode for running domain"), and migrating the pages behind its back would leave the binding
  pointing at the old cells (new allocations go back there; libvirt keeps reporting them). The
  way: a numatune change in config scope (the memory moves at the next boot), in mode
  restrictive so that it can be moved live from then on.
- **preferred / interleave**: refused: the kernel keeps allocating by that policy, so moved
  pages would drift back or be spread again. Change the numatune first.

The scope is live only. Before and after are the domain's snapshot plus ``memory_mib``: its own
memory per cell (numa_maps less mapped files' page cache, MiB), read by the host's own worker;
that is also what verifies it: more than max(2 MiB, 5 %) of its memory outside the cells asked
is a failure. While the move runs, :mod:`changes.progress` records how much has moved so far.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from changes.kinds.base import Requested, Snap, VmKind, snapshot_dict, vm_domain
from changes.kinds.facts import VmFacts
from changes.kinds.fields import Errors, nodeset_field
from changes.kinds.numatune import numatune_problems
from changes.models import Change
from changes.progress import ProgressRecorder
from hosts.onhost import OnHostWorker
from numaportal.virt import numatune
from numaportal.virt.cpuset import format_nodeset, parse_nodeset
from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest
from numaportal.virt.scope import Scope

__all__ = ["KIND", "METHODS", "method_for", "progress_recorder", "refusal"]

#: How the memory moves, by the VM's live numatune mode ("" = none).
METHODS = {"restrictive": "numatune", "": "migratepages"}
#: Memory outside the cells asked that still counts as moved: pages the kernel could not move
#: (pinned, in flight) and rounding.
TOLERANCE_MIB = 2.0
TOLERANCE_SHARE = 0.05


def refusal(mode: str) -> str:
    """Why a VM in numatune *mode* cannot have its memory moved live, and what to do instead."""
    if mode == "strict":
        return (
            "its numatune is strict: libvirt refuses a live nodeset change (\"can't change "
            'nodeset for strict mode for running domain"), and moving the pages behind '
            "libvirt's back would leave the binding on the old cells. Change its numatune in "
            "config scope to move the memory at the next boot — in mode restrictive, so that "
            "it can be moved live from then on."
        )
    return (
        f"its numatune is {mode}: the kernel keeps allocating by that policy, so moved pages "
        "would not stay. Change its numatune first (restrictive to move it live, or none)."
    )


def method_for(mode: str) -> str | None:
    """``numatune``, ``migratepages``, or None when the VM's mode forbids a live move."""
    return METHODS.get(mode or "")


@dataclass(frozen=True)
class MoveHandle:
    dom: Domain
    worker: OnHostWorker
    vm_name: str


def _memory(handle: MoveHandle) -> dict[str, float]:
    mem = handle.worker.vm_memory(handle.vm_name)
    return {str(cell): round(m.own, 2) for cell, m in sorted(mem.cells.items())}


def _split(memory: dict[str, float], cells: frozenset[int]) -> tuple[float, float]:
    """(MiB on *cells*, MiB elsewhere)."""
    inside = sum(mib for cell, mib in memory.items() if int(cell) in cells)
    return inside, sum(memory.values()) - inside


def progress_reading_wait(interval: float) -> float:
    """How long one progress reading waits for the host's worker: longer than a round trip to
    a slow host, short enough that the end of the move never waits long for a late one."""
    return max(5.0, 2 * interval)


def progress_recorder(
    handle: MoveHandle, change: Change, cells: frozenset[int], before: dict[str, Any]
) -> ProgressRecorder:
    """The recorder of a move onto *cells*: MiB moved of the VM's own memory that was outside
    them before, read on the host every ``NUMAPORTAL_MEMORY_MOVE_PROGRESS_S`` seconds.

    Page migration runs on the host's own worker, which runs one task at a time: it would answer
    a reading only once the move has ended, so that move gets its start and its end only
    (unless this process is on the host itself and reads /proc directly).
    """
    _, total = _split(before.get("memory_mib") or {}, cells)
    interval = settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S
    wait = progress_reading_wait(interval)

    def measure() -> float:
        mem = handle.worker.vm_memory(handle.vm_name, wait=wait)
        _, outside = _split({str(c): m.own for c, m in mem.cells.items()}, cells)
        return total - outside

    return ProgressRecorder(
        change.pk,
        total,
        measure,
        interval=interval,
        readings=change.params["method"] == "numatune" or handle.worker.is_here,
    )


class MemoryMove(VmKind):
    name = Change.Kind.MEMORY_MOVE

    def effective_scope(self, scope: str) -> str:
        """Memory is moved now; the binding at the next boot is a numatune change's."""
        return Scope.LIVE

    def validate(self, asked: Requested, errors: Errors) -> dict[str, Any]:
        """Cells on the host (field ``cells``); a VM whose numatune allows a live move
        (``cells``: the refusal and the way instead); an on-host worker (``worker_queue``)."""
        facts: VmFacts = asked.facts
        cells = nodeset_field(asked.params.get("cells"), "cells", errors, asked.topology)
        if not facts.host_worker_queue:
            errors.add(
                "worker_queue",
                f"moving memory reads the VM's numa_maps on its host: host {facts.host_name} "
                "has no on-host worker (worker_queue)",
            )
        method = method_for(facts.numatune_mode)
        if method is None:
            errors.add(
                "cells",
                f"{facts.name}'s memory cannot be moved live: " + refusal(facts.numatune_mode),
            )
        if cells is None or method is None:
            return {}
        return {"cells": format_nodeset(cells), "method": method}

    def session(self, change: Change) -> AbstractContextManager[Any]:
        @contextmanager
        def session() -> Iterator[MoveHandle]:
            with vm_domain(change) as dom:
                host = change.host
                yield MoveHandle(dom, OnHostWorker(host.name, host.worker_queue), change.vm.name)

        return session()

    def snapshot(self, handle: MoveHandle) -> dict[str, Any]:
        return {**snapshot_dict(handle.dom), "memory_mib": _memory(handle)}

    def apply(self, handle: MoveHandle, change: Change, before: dict[str, Any]) -> tuple[str, str]:
        cells = parse_nodeset(change.params["cells"])
        mode = (before.get("live_tuning") or {}).get("numatune_mode") or ""
        if method_for(mode) != change.params["method"]:
            # Its numatune changed since the request was validated: judge it as it is now.
            raise InvalidRequest(
                f"{change.vm.name}'s memory cannot be moved live: "
                + (
                    refusal(mode)
                    if method_for(mode) is None
                    else f"its numatune is now {mode or 'none'}, not as when it was requested"
                )
            )
        recorder = progress_recorder(handle, change, cells, before)
        started = time.monotonic()
        with recorder:
            if change.params["method"] == "numatune":
                numatune.set_numatune(handle.dom, "restrictive", cells, Scope.LIVE)
                how = "a live numatune (restrictive) through libvirt"
            else:
                handle.worker.migrate_pages(
                    handle.vm_name, sorted(cells), settings.NUMAPORTAL_MEMORY_MOVE_TIMEOUT
                )
                how = "page migration of its QEMU on the host (migratepages)"
        seconds = time.monotonic() - started
        recorder.finish(seconds)
        return "", f"{how}, {seconds:.1f} s"

    def verify(self, change: Change, after: dict[str, Any]) -> list[str]:
        cells = parse_nodeset(change.params["cells"])
        inside, outside = _split(after.get("memory_mib") or {}, cells)
        problems = []
        if outside > max(TOLERANCE_MIB, TOLERANCE_SHARE * (inside + outside)):
            elsewhere = sorted(
                int(c)
                for c, mib in (after.get("memory_mib") or {}).items()
                if int(c) not in cells and mib > 0
            )
            problems.append(
                f"{outside:.1f} of {inside + outside:.1f} MiB still on cell(s) "
                f"{format_nodeset(elsewhere)}, not on {change.params['cells']}"
            )
        if change.params["method"] == "numatune":
            problems += numatune_problems(
                after.get("live_tuning") or {}, "restrictive", change.params["cells"], "live"
            )
        return problems

    def outcome(self, change: Change, error: str, outcome: str, before: Snap, after: Snap) -> str:
        if error or not before or not after:
            return super().outcome(change, error, outcome, before, after)
        cells = parse_nodeset(change.params["cells"])
        _, was_outside = _split(before.get("memory_mib") or {}, cells)
        inside, outside = _split(after.get("memory_mib") or {}, cells)
        return (
            f"moved {max(0.0, was_outside - outside):.1f} MiB to cell(s) {change.params['cells']} "
            f"by {outcome}: {inside:.1f} of {inside + outside:.1f} MiB there now"
        )

    def diff(self, before: Snap, after: Snap) -> str:
        text = super().diff(before, after)
        if not before or not after:
            return text
        old, new = before.get("memory_mib") or {}, after.get("memory_mib") or {}
        cells = sorted({*old, *new}, key=int)
        line = "memory per cell (MiB): " + "; ".join(
            f"{c}: {old.get(c, 0.0):.1f} -> {new.get(c, 0.0):.1f}" for c in cells
        )
        return f"{text}\n{line}" if text else line


KIND = MemoryMove()
