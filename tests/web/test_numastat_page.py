"""The numastat history page: window, charts' JSON, the numastat-like table, access, escaping.

Samples go through ``hosts.sampling.store_cell_samples`` (the sampler's own path: deltas and
resets derived at insert time), a few one-minute intervals on a 2-cell host with a reboot.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from hosts.history import DEFAULT_WINDOW
from hosts.models import CellRollup, CellSample, SampleSource
from hosts.numastat import CHARTED, COUNTERS, EXPLANATIONS
from hosts.rollups import rollup_and_prune
from hosts.sampling import store_cell_samples

pytestmark = [pytest.mark.web, pytest.mark.django_db]

HOSTILE = "<script>alert('x')</script>&\"hv\""
DATA = re.compile(r'<script id="numastat-data" type="application/json">(.*?)</script>', re.S)

#: Pages per one-minute interval, per cell: cell 0 is 90% local, cell 1 100%.
PER_MINUTE = {
    0: {
        "numa_hit": 600,
        "numa_miss": 60,
        "numa_foreign": 0,
        "interleave_hit": 6,
        "local_node": 540,
        "other_node": 60,
    },
    1: {
        "numa_hit": 1200,
        "numa_miss": 0,
        "numa_foreign": 60,
        "interleave_hit": 0,
        "local_node": 1200,
        "other_node": 0,
    },
}
BOOT_1, BOOT_2 = 1_700_000_000, 1_700_100_000


def feed(host, base: datetime, *, reboot_at: int = 3, count: int = 6) -> list[datetime]:
    """*count* samples one minute apart from *base*; the host reboots before sample *reboot_at*.

    Counters start at 1000 (cell 0) / 5000 (cell 1) and again from 50 after the reboot.
    """
    times = []
    for k in range(count):
        at = base + timedelta(minutes=k)
        booted = k >= reboot_at
        minutes = k - reboot_at if booted else k
        counters = {
            cell: {
                name: (50 if booted else 1000 * (1 + 4 * cell)) + minutes * per_min
                for name, per_min in rates.items()
            }
            for cell, rates in PER_MINUTE.items()
        }
        store_cell_samples(
            host,
            at,
            SampleSource.PROBE,
            free_kib={0: 1000 * 1024, 1: 2000 * 1024},
            counters=counters,
            boot_time=BOOT_2 if booted else BOOT_1,
        )
        times.append(at)
    return times


def minute_floor(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def chart_json(response) -> dict:
    match = DATA.search(response.content.decode())
    assert match, "no json_script with the chart data"
    return json.loads(match.group(1))


def at(data: dict, when: datetime, series: str, cell: int):
    return data["series"][series][str(cell)][data["times"].index(int(when.timestamp()))]


@pytest.fixture
def probe_host(host_factory):
    return host_factory("hv1", worker_queue="host.hv1")


@pytest.fixture
def fed(probe_host):
    base = minute_floor(timezone.now()) - timedelta(minutes=7)
    return probe_host, feed(probe_host, base)


def url(host, window: str | None = None) -> str:
    base = reverse("hosts:numastat", args=[host.name])
    return base if window is None else f"{base}?window={window}"


def test_anonymous_is_sent_to_login(client, probe_host):
    response = client.get(url(probe_host))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_user_without_view_permission_is_refused(client, django_user_model, probe_host):
    client.force_login(django_user_model.objects.create_user("nobody", password="x-123456789"))
    assert client.get(url(probe_host)).status_code == 403


def test_get_only(viewer_client, probe_host):
    assert viewer_client.post(url(probe_host)).status_code == 405


def test_host_page_links_to_the_history(viewer_client, probe_host):
    response = viewer_client.get(probe_host.get_absolute_url())
    assert f'id="numastat-history" href="{url(probe_host)}"' in response.content.decode()


def test_viewer_sees_latest_values_like_numastat(viewer_client, fed):
    host, _ = fed
    response = viewer_client.get(url(host, "1h"))
    assert response.status_code == 200
    html = response.content.decode()
    table = html[html.index('id="numastat-latest"') :]
    # columns node0, node1; rows in numastat's order, each with its explanation
    assert table.index("node0") < table.index("node1")
    positions = [table.index(f'data-counter="{name}"') for name in COUNTERS]
    assert positions == sorted(positions)
    for name in (*COUNTERS, "local_ratio"):
        assert escape(EXPLANATIONS[name]) in table
    # last sample: 2 minutes after the reboot, counters from 50
    row = table[table.index('data-counter="numa_hit"') :]
    row = row[: row.index("</tr>")]
    assert '<span class="since-boot">1250</span><span class="rate">10.0/s</span>' in row
    assert '<span class="since-boot">2450</span><span class="rate">20.0/s</span>' in row
    ratio = table[table.index('data-counter="local_ratio"') :]
    assert "90.0%" in ratio[: ratio.index("</tr>")]
    assert "1000 MiB" in table and "2000 MiB" in table


def test_chart_data_has_rates_and_a_gap_across_the_reboot(viewer_client, fed):
    host, times = fed
    response = viewer_client.get(url(host, "1h"))
    html = response.content.decode()
    for name in (*CHARTED, "local_ratio", "free_mib"):
        assert f'data-series="{name}"' in html
    for name in (*CHARTED, "local_ratio"):
        assert escape(EXPLANATIONS[name]) in html
    data = chart_json(response)
    assert data["cells"] == [0, 1]
    assert data["bucket_s"] == 60
    assert len(data["times"]) in (60, 61)  # the window's first and last minutes are partial
    # 600 pages over 60 s = 10.0 pages/s on cell 0, 1200 over 60 s = 20.0 on cell 1
    for k in (1, 2, 4, 5):
        assert at(data, times[k], "numa_hit", 0) == 10.0
        assert at(data, times[k], "numa_hit", 1) == 20.0
        assert at(data, times[k], "numa_foreign", 1) == 1.0
        assert at(data, times[k], "other_node", 0) == 1.0
        assert at(data, times[k], "local_ratio", 0) == 90.0
        assert at(data, times[k], "local_ratio", 1) == 100.0
    # the first sample has no previous one, the reboot has no delta: gaps (null), not spikes
    for k in (0, 3):
        for name in (*CHARTED, "local_ratio"):
            assert at(data, times[k], name, 0) is None
            assert at(data, times[k], name, 1) is None
    # before the first sample there is nothing at all
    assert data["series"]["numa_hit"]["0"][0] is None
    index = data["times"].index(int(times[3].timestamp()))
    assert data["free_mib"]["0"][index] == 1000.0  # free memory is there across the reboot
    assert data["free_mib"]["1"][index] == 2000.0


def test_24h_buckets_sum_intervals(viewer_client, probe_host):
    # six samples inside one five-minute bucket: 4 intervals with deltas, 1 reboot
    base = minute_floor(timezone.now() - timedelta(hours=2))
    base = base.replace(minute=base.minute - base.minute % 5)
    feed(probe_host, base, count=5)
    data = chart_json(viewer_client.get(url(probe_host, "24h")))
    assert data["bucket_s"] == 300
    assert at(data, base, "numa_hit", 0) == 10.0  # (3 x 600 pages) / (3 x 60 s)


@pytest.mark.parametrize("window, bucket_s", [("7d", 900), ("30d", 3600)])
def test_long_windows_read_rollups(viewer_client, probe_host, window, bucket_s):
    now = timezone.now()
    # three days ago, at an hour boundary: past the raw retention, inside one rollup bucket
    base = datetime.fromtimestamp((now.timestamp() // 3600) * 3600, tz=UTC) - timedelta(days=3)
    feed(probe_host, base)
    result = rollup_and_prune(now)
    assert result.rollups_made == 2  # one 15-minute bucket per cell
    assert not CellSample.objects.filter(host=probe_host).exists()  # raw rows pruned
    rollup = CellRollup.objects.get(host=probe_host, cell_id=0)
    assert rollup.covered_s == 240.0  # 4 intervals; the first sample and the reboot count none
    data = chart_json(viewer_client.get(url(probe_host, window)))
    assert data["bucket_s"] == bucket_s
    assert at(data, base, "numa_hit", 0) == 10.0
    assert at(data, base, "numa_hit", 1) == 20.0
    assert at(data, base, "local_ratio", 0) == 90.0
    index = data["times"].index(int(base.timestamp()))
    assert data["free_mib"]["1"][index] == 2000.0
    # the hour before had no samples: a gap
    assert data["series"]["numa_hit"]["0"][index - 1] is None
    # the raw rows are gone, so the 1-hour window is empty, but the host was sampled
    html = viewer_client.get(url(probe_host, "1h")).content.decode()
    assert 'id="no-samples-in-window"' in html
    assert "No samples yet" not in html


@pytest.mark.parametrize("value", ["", "2y", "<script>", "1H"])
def test_unknown_window_falls_back_to_the_default(viewer_client, fed, value):
    host, _ = fed
    response = viewer_client.get(reverse("hosts:numastat", args=[host.name]), {"window": value})
    assert response.status_code == 200
    assert response.context["window"].key == DEFAULT_WINDOW
    assert f'data-window="{DEFAULT_WINDOW}" class="current"' in response.content.decode()
    assert "&lt;script&gt;" not in response.content.decode()  # the value is not echoed


def test_libvirt_only_host_shows_free_memory_and_says_why(viewer_client, host_factory):
    host = host_factory("plain")
    base = minute_floor(timezone.now()) - timedelta(minutes=4)
    for k in range(3):
        store_cell_samples(
            host,
            base + timedelta(minutes=k),
            SampleSource.LIBVIRT,
            free_kib={0: (1000 + k) * 1024, 1: 3000 * 1024},
            counters={},
            boot_time=None,
        )
    response = viewer_client.get(url(host, "1h"))
    html = response.content.decode()
    assert "numastat counters need an on-host worker" in html
    assert "<code>host.worker_queue</code>" in html
    assert "only free memory is shown" in html
    assert 'data-series="free_mib"' in html
    for name in (*CHARTED, "local_ratio"):
        assert f'data-series="{name}"' not in html
    data = chart_json(response)
    assert data["free_mib"]["0"][data["times"].index(int(base.timestamp()) + 120)] == 1002.0
    assert 'data-counter="numa_hit"' not in html  # no counter rows, free memory only
    assert 'data-counter="free_mib"' in html


def test_probe_host_does_not_say_it_needs_a_worker(viewer_client, fed):
    host, _ = fed
    assert "need an on-host worker" not in viewer_client.get(url(host)).content.decode()


def test_no_samples_yet(viewer_client, probe_host):
    response = viewer_client.get(url(probe_host))
    html = response.content.decode()
    assert 'id="no-samples"' in html
    assert "No samples yet" in html
    assert "numastat-data" not in html
    assert 'class="plot"' not in html


def test_no_samples_in_the_window(viewer_client, probe_host):
    feed(probe_host, minute_floor(timezone.now()) - timedelta(hours=5))
    html = viewer_client.get(url(probe_host, "1h")).content.decode()
    assert 'id="no-samples-in-window"' in html
    assert 'class="plot"' not in html
    assert 'id="numastat-latest"' in html  # the latest values are still shown


def test_hostile_names_are_escaped(viewer_client, host_factory):
    host = host_factory("hv2", worker_queue="host.hv2", hostname=HOSTILE)
    host.last_sample_error = HOSTILE
    host.save(update_fields=["last_sample_error"])
    feed(host, minute_floor(timezone.now()) - timedelta(minutes=7))
    response = viewer_client.get(url(host))
    html = response.content.decode()
    assert HOSTILE not in html
    assert "<script>alert" not in html
    assert escape(HOSTILE) in html
    chart_json(response)  # the json_script still parses


def test_libvirt_only_host_with_rollups_has_no_counter_charts(viewer_client, host_factory):
    host = host_factory("plain")
    now = timezone.now()
    base = datetime.fromtimestamp((now.timestamp() // 3600) * 3600, tz=UTC) - timedelta(days=3)
    for k in range(3):
        store_cell_samples(
            host,
            base + timedelta(minutes=k),
            SampleSource.LIBVIRT,
            free_kib={0: 1000 * 1024, 1: 3000 * 1024},
            counters={},
            boot_time=None,
        )
    rollup_and_prune(now)
    assert CellRollup.objects.filter(host=host).count() == 2
    response = viewer_client.get(url(host, "7d"))
    html = response.content.decode()
    assert not response.context["history"].has_counters
    assert 'data-series="numa_hit"' not in html
    assert 'data-series="free_mib"' in html
    data = chart_json(response)
    assert data["free_mib"]["1"][data["times"].index(int(base.timestamp()))] == 3000.0
