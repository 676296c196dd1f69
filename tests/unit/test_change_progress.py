"""``Change.progress`` as the page reads it (changes.progress.Progress): the words, the per
cent, and what a malformed record becomes. Pure: no database, no thread."""

from __future__ import annotations

import pytest

from changes.progress import Progress, progress_of

pytestmark = pytest.mark.unit


def test_the_words_the_page_shows() -> None:
    progress = Progress.measured(412.3, 1024.0, 3.14)
    assert progress.text == "412 of 1,024 MiB moved (40 %), 3.1 s"
    assert progress.percent == 40
    assert progress.as_dict() == {
        "moved_mib": 412.3,
        "total_mib": 1024.0,
        "elapsed_s": 3.1,
        "readings": True,
    }


def test_it_is_clamped_to_what_was_to_move() -> None:
    # Memory the VM allocates meanwhile outside the cells makes "moved" negative; memory it
    # frees there makes it look larger than the total. Neither is a move beyond 0..total.
    assert Progress.measured(-30.0, 100.0, 1.0).moved_mib == 0.0
    grown = Progress.measured(130.0, 100.0, 1.0)
    assert grown.moved_mib == 100.0 and grown.percent == 100
    # Never 100 % before all of it (rounded to whole MiB) is there.
    assert Progress.measured(1022.6, 1024.0, 9.0).percent == 99


def test_nothing_to_move_is_done() -> None:
    assert Progress.measured(0.0, 0.0, 0.4).text == "0 of 0 MiB moved (100 %), 0.4 s"


def test_a_record_is_read_back_and_anything_else_is_none() -> None:
    stored = Progress.measured(412.0, 1024.0, 3.1, readings=False).as_dict()
    assert progress_of(stored) == Progress(412.0, 1024.0, 3.1, readings=False)
    assert progress_of({"moved_mib": 1, "total_mib": 2, "elapsed_s": 0}).readings is True
    for bad in (
        None,
        [],
        "412 of 1024",
        {"moved_mib": "<script>", "total_mib": 1024, "elapsed_s": 1},
        {"moved_mib": True, "total_mib": 1024, "elapsed_s": 1},
        {"moved_mib": float("nan"), "total_mib": 1024, "elapsed_s": 1},
        {"total_mib": 1024, "elapsed_s": 1},
    ):
        assert progress_of(bad) is None, bad
