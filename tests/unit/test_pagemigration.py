"""numaportal.virt.pagemigration's arguments: what it refuses, and a move onto every node of
the host, which has nothing to move (no migratepages is run)."""

from __future__ import annotations

import os

import pytest

from numaportal.virt.pagemigration import PageMigrationError, migrate_pages

pytestmark = pytest.mark.unit


def test_nothing_outside_the_targets_is_nothing_to_move() -> None:
    # A one-node host (this machine) or all of a host's nodes asked: the nodes to move from
    # are the host's nodes less the targets, which is none.
    assert migrate_pages(os.getpid(), set(), {0}, timeout=5) == 0.0
    assert migrate_pages(os.getpid(), {0, 1}, {0, 1}, timeout=5) == 0.0


@pytest.mark.parametrize(
    ("pid", "sources", "targets", "message"),
    [
        (0, {0}, {1}, "not a process id: 0"),
        (True, {0}, {1}, "not a process id: True"),
        (os.getpid(), {0}, set(), "to-nodes: "),
        (os.getpid(), {-1}, {1}, "from-nodes: "),
        (os.getpid(), None, {1}, "from-nodes: "),
    ],
)
def test_it_refuses_what_is_not_a_process_or_nodes(pid, sources, targets, message) -> None:
    with pytest.raises(PageMigrationError, match=message):
        migrate_pages(pid, sources, targets, timeout=5)
