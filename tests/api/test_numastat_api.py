"""``/api/v1/hosts/{name}/numastat/?window=``: the role matrix, the numastat history page's
numbers for every window (raw samples for 1 h and 24 h, rollups beyond the raw retention), the
latest values, and a bad window refused (400) where the page falls back to the default.

Samples go in as on the page's tests (``tests/web/test_numastat_page.py``' ``feed``: the
sampler's own path, one-minute intervals on a 2-cell host with a reboot).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hosts.history import DEFAULT_WINDOW, WINDOWS
from hosts.models import CellSample, SampleSource
from hosts.numastat import CHARTED, COUNTERS
from hosts.rollups import rollup_and_prune
from hosts.sampling import store_cell_samples
from tests.api.conftest import ROLES, assert_conforms
from tests.web.conftest import make_host
from tests.web.test_numastat_page import chart_json, feed, minute_floor

pytestmark = [pytest.mark.api, pytest.mark.django_db]

READ = (401, 403, 200, 200, 200)
WRITE = (401, 403, 403, 403, 405)


PATH = "/api/v1/hosts/{name}/numastat/"


def url(name: str, window: str | None = None) -> str:
    base = f"/api/v1/hosts/{name}/numastat/"
    return base if window is None else f"{base}?window={window}"


@pytest.fixture
def probe_host():
    return make_host("hv1", worker_queue="host.hv1")


@pytest.fixture
def fed(probe_host):
    base = minute_floor(timezone.now()) - timedelta(minutes=7)
    return probe_host, feed(probe_host, base)


def at(body: dict, when: datetime, series: str, cell: int):
    return body["series"][series][str(cell)][body["times"].index(int(when.timestamp()))]


def page_chart(users, host, window: str) -> dict:
    client = Client()
    client.force_login(users["viewer"])
    return chart_json(client.get(reverse("hosts:numastat", args=[host.name]), {"window": window}))


def assert_same_as_the_page(body: dict, chart: dict) -> None:
    """The API's series equal the page's chart data at every bucket both have (the two
    requests may straddle a bucket boundary, which shifts the window by one bucket)."""
    assert body["cells"] == chart["cells"]
    assert body["window"]["bucket_s"] == chart["bucket_s"]
    common = set(body["times"]) & set(chart["times"])
    assert len(common) >= len(body["times"]) - 1
    for name, per_cell in chart["series"].items():
        for cell, values in per_cell.items():
            page = dict(zip(chart["times"], values, strict=True))
            ours = dict(zip(body["times"], body["series"][name][cell], strict=True))
            assert {t: ours[t] for t in common} == {t: page[t] for t in common}, (name, cell)
    for cell, values in chart["free_mib"].items():
        page = dict(zip(chart["times"], values, strict=True))
        ours = dict(zip(body["times"], body["free_mib"][cell], strict=True))
        assert {t: ours[t] for t in common} == {t: page[t] for t in common}, ("free", cell)


# --- the role matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_read(api, fed, role):
    response = api(role).get(url("hv1", "1h"))
    assert response.status_code == READ[ROLES.index(role)], response.content
    if response.status_code == 200:
        assert response.json()["host"] == "hv1"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_no_writes(api, fed, role, method):
    response = getattr(api(role), method)(url("hv1"), {}, content_type="application/json")
    assert response.status_code == WRITE[ROLES.index(role)], response.content


def test_refused_before_the_host_is_looked_up(api):
    assert api("no_role").get(url("nowhere")).status_code == 403


def test_unknown_host_is_404(viewer_api):
    assert viewer_api.get(url("nowhere")).status_code == 404


def test_session_auth(users, fed):
    client = Client()
    client.force_login(users["viewer"])
    assert client.get(url("hv1")).status_code == 200


# --- windows and rollups, as the page ------------------------------------------------------------


def test_1h_rates_gaps_and_latest_values(viewer_api, users, fed):
    host, times = fed
    response = viewer_api.get(url("hv1", "1h"))
    assert_conforms(response, PATH)
    body = response.json()
    assert body["window"] == {"key": "1h", "label": "1 hour", "seconds": 3600, "bucket_s": 60}
    assert [w["key"] for w in body["windows"]] == list(WINDOWS)
    assert body["cells"] == [0, 1] and body["has_counters"] and body["ever_sampled"]
    assert set(body["series"]) == {*CHARTED, "local_ratio"}
    for k in (1, 2, 4, 5):
        assert at(body, times[k], "numa_hit", 0) == 10.0
        assert at(body, times[k], "numa_hit", 1) == 20.0
        assert at(body, times[k], "local_ratio", 0) == 90.0
    for k in (0, 3):  # the first sample and the reboot: gaps
        assert at(body, times[k], "numa_hit", 0) is None
    assert_same_as_the_page(body, page_chart(users, host, "1h"))

    latest = body["latest"]
    assert latest["cells"] == [0, 1] and latest["source"] == "probe"
    assert [row["counter"] for row in latest["counters"]] == list(COUNTERS)
    hit = latest["counters"][0]
    assert hit["values"] == [{"since_boot": 1250, "rate": 10.0}, {"since_boot": 2450, "rate": 20.0}]
    assert latest["free_mib"] == [1000.0, 2000.0]
    assert latest["local_ratio"][0] == pytest.approx(90.0)


@pytest.mark.parametrize("query", ["", "?window="])
def test_no_window_is_the_default(viewer_api, fed, query):
    body = viewer_api.get(url("hv1") + query).json()
    assert body["window"]["key"] == DEFAULT_WINDOW


def test_24h_buckets_are_the_pages(viewer_api, users, probe_host):
    base = minute_floor(timezone.now() - timedelta(hours=2))
    base = base.replace(minute=base.minute - base.minute % 5)
    feed(probe_host, base, count=5)
    body = viewer_api.get(url("hv1", "24h")).json()
    assert body["window"]["bucket_s"] == 300
    assert at(body, base, "numa_hit", 0) == 10.0
    assert_same_as_the_page(body, page_chart(users, probe_host, "24h"))


@pytest.mark.parametrize("window, bucket_s", [("7d", 900), ("30d", 3600)])
def test_long_windows_read_rollups(viewer_api, users, probe_host, window, bucket_s):
    now = timezone.now()
    base = datetime.fromtimestamp((now.timestamp() // 3600) * 3600, tz=UTC) - timedelta(days=3)
    feed(probe_host, base)
    assert rollup_and_prune(now).rollups_made == 2
    assert not CellSample.objects.filter(host=probe_host).exists()  # raw rows pruned
    response = viewer_api.get(url("hv1", window))
    assert_conforms(response, PATH)
    body = response.json()
    assert body["window"]["bucket_s"] == bucket_s
    assert at(body, base, "numa_hit", 0) == 10.0
    assert at(body, base, "local_ratio", 0) == 90.0
    assert_same_as_the_page(body, page_chart(users, probe_host, window))
    # the raw rows are gone: nothing in the last hour, no latest values, but sampled once
    short = viewer_api.get(url("hv1", "1h")).json()
    assert short["cells"] == [] and short["latest"] is None and short["ever_sampled"] is True


@pytest.mark.parametrize("value", ["2y", "1H", "<script>", "24h ", "\u0661h", "a\x00"])
def test_a_bad_window_is_400(viewer_api, fed, value):
    response = viewer_api.get(url("hv1"), {"window": value})
    assert response.status_code == 400
    assert response.json() == {
        "window": [f"Select a valid choice. {value} is not one of the available choices."]
    }


def test_libvirt_only_host_has_free_memory_only(viewer_api):
    host = make_host("plain")
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
    response = viewer_api.get(url("plain", "1h"))
    assert_conforms(response, PATH)
    body = response.json()
    assert body["has_counters"] is False
    index = body["times"].index(int(base.timestamp()) + 120)
    assert body["free_mib"]["0"][index] == 1002.0
    assert body["latest"]["counters"] == [] and body["latest"]["source"] == "libvirt"


def test_never_sampled(viewer_api, probe_host):
    response = viewer_api.get(url("hv1"))
    assert_conforms(response, PATH)
    body = response.json()
    assert body["ever_sampled"] is False and body["latest"] is None
    assert body["cells"] == [] and body["has_counters"] is False


def test_a_removed_hosts_history_is_kept(viewer_api, fed):
    host, _ = fed
    host.removed_at = timezone.now()
    host.save()
    body = viewer_api.get(url("hv1", "1h")).json()
    assert body["cells"] == [0, 1]
