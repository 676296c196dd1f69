"""A running memory move's progress on the change page and in its polled status box: the bar
and "412 of 1,024 MiB moved (40 %), 3.1 s" while it runs, what it says before the first figure,
and the finished record (its outcome and duration; no bar, no polling). Records are written
directly, as the worker leaves them (the worker side: ``test_memory_move_progress.py``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from changes.executor import finish
from changes.models import Change
from changes.progress import Progress, write_progress
from tests.web.changes_helpers import make_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]

MOVE = {"cells": "1", "method": "numatune"}


@pytest.fixture
def vm(host_factory, vm_factory):
    host = host_factory("hv1", worker_queue="host.hv1")
    return vm_factory(host, "db<01>", pins={0: "6", 1: "7"}, numatune_mode="restrictive")


def running_move(vm, progress: dict | None, params: dict = MOVE):
    return make_change(
        vm,
        kind="memory_move",
        params=params,
        scope="live",
        reason="the memory follows the vCPUs <b>now</b>",
        status="running",
        started_at=timezone.now() - timedelta(seconds=4),
        before={"memory_mib": {"0": 1024.0, "1": 40.0}},
        progress=progress,
    )


def status_url(change) -> str:
    return reverse("changes:status", args=[change.pk])


def test_a_running_move_shows_its_progress_bar_and_polls(ops_client, vm) -> None:
    change = running_move(vm, Progress.measured(412.3, 1024.0, 3.14).as_dict())
    page = ops_client.get(change.get_absolute_url()).content.decode()
    for html in (page, ops_client.get(status_url(change), {"polling": 1}).content.decode()):
        assert 'id="change-progress" data-moved-mib="412.3" data-total-mib="1024.0"' in html
        assert 'role="progressbar"' in html and 'aria-valuenow="40"' in html
        assert '<span style="width: 40%"></span>' in html
        assert '<span id="change-progress-text">412 of 1,024 MiB moved (40 %), 3.1 s</span>' in html
        assert f'hx-get="{status_url(change)}?polling=1"' in html
        assert 'hx-trigger="every 2s"' in html
        assert 'id="change-progress-note"' not in html
    # Everything else of the page is escaped as before.
    assert "db&lt;01&gt;" in page and "<b>now</b>" not in page


def test_the_fragment_follows_the_record_as_the_worker_writes_it(ops_client, vm) -> None:
    change = running_move(vm, Progress.measured(0.0, 1024.0, 0.0).as_dict())
    first = ops_client.get(status_url(change), {"polling": 1})
    assert "0 of 1,024 MiB moved (0 %), 0.0 s" in first.content.decode()
    assert "HX-Refresh" not in first
    assert write_progress(change.pk, Progress.measured(1024.0, 1024.0, 6.2))
    later = ops_client.get(status_url(change), {"polling": 1}).content.decode()
    assert "1,024 of 1,024 MiB moved (100 %), 6.2 s" in later and 'aria-valuenow="100"' in later


def test_a_polled_answer_updates_the_pages_started_and_status(ops_client, vm) -> None:
    """The page loaded while the change was queued says "queued" and "started —" in its
    timings; the polled answer swaps both (htmx out-of-band) once the worker has started it."""
    change = make_change(vm, kind="memory_move", params=MOVE, scope="live", status="queued")
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert '<span id="timing-started">—</span>' in page
    assert '<span id="timing-status"><span class="badge status-queued">queued</span></span>' in page
    assert "hx-swap-oob" not in page  # the page itself carries no out-of-band copies
    Change.objects.filter(pk=change.pk).update(status="running", started_at=timezone.now())
    change.refresh_from_db()
    polled = ops_client.get(status_url(change), {"polling": 1}).content.decode()
    started = timezone.localtime(change.started_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<span id="timing-started" hx-swap-oob="true">{started}</span>' in polled
    assert (
        '<span id="timing-status" hx-swap-oob="true"><span class="badge status-running">'
        "running</span></span>"
    ) in polled


def test_a_running_move_before_its_first_figure(ops_client, vm) -> None:
    change = running_move(vm, None)
    page = ops_client.get(change.get_absolute_url()).content.decode()
    fragment = ops_client.get(status_url(change), {"polling": 1}).content.decode()
    for html in (page, fragment):
        assert 'id="change-progress"' in html and 'role="progressbar"' not in html
        assert "reading its memory per cell before the move…" in html
        assert 'hx-trigger="every 2s"' in html


def test_page_migration_says_why_the_figure_waits_for_the_end(ops_client, vm) -> None:
    progress = Progress.measured(0.0, 960.0, 0.0, readings=False).as_dict()
    change = running_move(vm, progress, {"cells": "1", "method": "migratepages"})
    html = ops_client.get(status_url(change), {"polling": 1}).content.decode()
    assert "0 of 960 MiB moved (0 %), 0.0 s" in html
    assert "page migration occupies the host&#x27;s own worker" in html


def test_a_malformed_progress_is_not_shown_and_nothing_of_it_unescaped(ops_client, vm) -> None:
    change = running_move(vm, {"moved_mib": "<script>alert(1)</script>", "total_mib": 1})
    html = ops_client.get(change.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in html and "alert(1)" not in html
    assert "reading its memory per cell before the move…" in html


def test_a_viewer_sees_the_progress_like_the_rest_of_the_page(viewer_client, vm) -> None:
    change = running_move(vm, Progress.measured(412.0, 1024.0, 3.1).as_dict())
    for url in (change.get_absolute_url(), status_url(change)):
        response = viewer_client.get(url)
        assert response.status_code == 200
        assert "412 of 1,024 MiB moved (40 %), 3.1 s" in response.content.decode()


def test_other_running_changes_have_no_progress_box(ops_client, vm) -> None:
    change = make_change(vm, status="running", started_at=timezone.now())
    html = ops_client.get(status_url(change), {"polling": 1}).content.decode()
    assert 'hx-trigger="every 2s"' in html and 'id="change-progress"' not in html


def test_the_finished_move_shows_what_moved_and_how_long_and_stops_polling(ops_client, vm):
    started = timezone.now() - timedelta(seconds=10)
    # The recorder's last figure: the move's end, as read right after it.
    change = running_move(vm, Progress.measured(1024.0, 1024.0, 3.4).as_dict())
    ended = ops_client.get(status_url(change), {"polling": 1})
    assert "HX-Refresh" not in ended
    # As the executor ends it (changes.executor.finish: the progress is left as last written).
    change.refresh_from_db()
    assert finish(
        change,
        "succeeded",
        from_statuses=["running"],
        outcome=(
            "moved 1024.0 MiB to cell(s) 1 by a live numatune (restrictive) through libvirt, "
            "3.4 s: 1064.0 of 1064.0 MiB there now"
        ),
        after={"memory_mib": {"0": 0.0, "1": 1064.0}},
        diff="memory per cell (MiB): 0: 1024.0 -> 0.0; 1: 40.0 -> 1064.0",
    )
    Change.objects.filter(pk=change.pk).update(
        started_at=started, finished_at=started + timedelta(seconds=3.5)
    )
    change.refresh_from_db()
    assert change.progress["moved_mib"] == 1024.0  # kept; the page shows the outcome instead
    fragment = ops_client.get(status_url(change), {"polling": 1})
    assert fragment["HX-Refresh"] == "true"  # the page reloads once, with the result
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert 'data-status="succeeded"' in page and "hx-trigger" not in page
    assert 'id="change-progress"' not in page
    assert "moved 1024.0 MiB to cell(s) 1 by a live numatune (restrictive)" in page
    assert "3.4 s: 1064.0 of 1064.0 MiB there now" in page
    assert "(3.50 s)" in page  # the record's started -> finished
    assert "memory per cell (MiB): 0: 1024.0 -&gt; 0.0; 1: 40.0 -&gt; 1064.0" in page
