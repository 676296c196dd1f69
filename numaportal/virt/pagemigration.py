"""Page migration of one process: ``migratepages <pid> <from-nodes> <to-nodes>`` (numactl).

What numad does for a VM without a memory binding: the kernel moves the process's pages from
the nodes it is on to the target nodes (``migrate_pages(2)``). It is consistent with libvirt
only where the domain has no ``<numatune>`` that contradicts it (a strict binding keeps
allocating on its nodeset, and libvirt would still report that nodeset); the caller checks
that. numactl's own tool rather than a hand-made syscall: it is what an operator would run, and
its errors are the words they know.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable

from numaportal.virt.cpuset import CpusetError, format_cpuset
from numaportal.virt.errors import VirtError

__all__ = ["PageMigrationError", "migrate_pages"]

MIGRATEPAGES = "migratepages"


class PageMigrationError(VirtError):
    """migratepages is missing, refused, or did not finish in time."""


def _nodes(nodes: Iterable[int], what: str) -> frozenset[int]:
    try:
        result = frozenset(nodes)
        format_cpuset(result)  # non-empty, non-negative ints, not absurdly large
    except (CpusetError, TypeError) as exc:
        raise PageMigrationError(f"{what}: {exc}") from None
    return result


def migrate_pages(
    pid: int, from_nodes: Iterable[int], to_nodes: Iterable[int], *, timeout: float
) -> float:
    """Move process *pid*'s pages from *from_nodes* to *to_nodes*; the seconds it took.

    The kernel moves what it can: pages it cannot move (pinned, busy) stay, which the caller
    sees when it reads numa_maps back.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise PageMigrationError(f"not a process id: {pid!r}")
    targets = _nodes(to_nodes, "to-nodes")
    try:
        outside = frozenset(from_nodes) - targets
    except TypeError as exc:
        raise PageMigrationError(f"from-nodes: {exc}") from None
    if not outside:
        # Every node of the host is a target (a one-node host, or all of them asked): nothing
        # is outside the targets, nothing to move.
        return 0.0
    sources = _nodes(outside, "from-nodes")
    tool = shutil.which(MIGRATEPAGES)
    if tool is None:
        raise PageMigrationError(
            f"{MIGRATEPAGES} is not installed on this host (Debian package numactl)"
        )
    argv = [tool, str(pid), format_cpuset(sources), format_cpuset(targets)]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PageMigrationError(
            f"{' '.join(argv[1:])}: migratepages did not finish within {timeout:g} s"
        ) from None
    seconds = time.monotonic() - started
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise PageMigrationError(f"migratepages {' '.join(argv[1:])}: {words}")
    return seconds
