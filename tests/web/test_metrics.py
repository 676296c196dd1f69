"""/metrics: Prometheus text of the newest stored samples, for scrapers and viewers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from hosts import numastat
from hosts.models import CellSample, SampleSource
from vms.models import VmCellMemory, VmLocalitySample
from web.metrics import render

pytestmark = [pytest.mark.web, pytest.mark.django_db]

TOKEN = "s3cret-scrape-token"
URL = "/metrics"


def parse(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> sorted label items -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def sample(host, cell: int, taken_at, *, free_kib: int | None, counters: int | None = None):
    values = {
        name: None if counters is None else counters + i for i, name in enumerate(numastat.COUNTERS)
    }
    return CellSample.objects.create(
        host=host,
        cell_id=cell,
        taken_at=taken_at,
        source=SampleSource.PROBE if counters is not None else SampleSource.LIBVIRT,
        free_kib=free_kib,
        **values,
    )


def vm_memory(vm, cell: int, **mib: float) -> VmCellMemory:
    return VmCellMemory.objects.create(vm=vm, cell_id=cell, sampled_at=timezone.now(), **mib)


def vm_locality(vm, value: float | None, *, minutes_ago: int = 0, latest: bool = True):
    """A locality sample of *vm*, as the sampler stores one (latest: the host's newest)."""
    return VmLocalitySample.objects.create(
        vm=vm,
        host=vm.host,
        taken_at=timezone.now() - timedelta(minutes=minutes_ago),
        locality=value,
        own_mib={"0": 1.0},
        home_cells="0",
        latest=latest,
    )


@pytest.fixture
def token(settings):
    settings.NUMAPORTAL_METRICS_TOKEN = TOKEN
    return TOKEN


def test_route():
    assert reverse("metrics") == URL


def test_anonymous_gets_401_not_a_login_redirect(client, token):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_or_malformed_token_gets_401(client, token):
    for header in (
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        "Bearer fäöü",  # non-ASCII must not crash the compare
    ):
        response = client.get(URL, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_token_configured_refuses_an_empty_bearer(client, settings):
    settings.NUMAPORTAL_METRICS_TOKEN = ""
    assert client.get(URL, headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer"}).status_code == 401


def test_right_token_gets_200(client, token, host_factory):
    host_factory("hv01")
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    assert "numaportal_cell_memory_bytes" in parse(response.content)
    # The scheme is case-insensitive (RFC 7235).
    assert client.get(URL, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_post_is_not_allowed(client, token):
    response = client.post(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405


def test_logged_in_viewer_gets_200(viewer_client):
    response = viewer_client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST


def test_logged_in_without_view_host_gets_401(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody", password="x-12345678"))
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_values_and_labels(viewer_client, host_factory, vm_factory):
    host = host_factory("hv01", numa_balancing=1)  # two cells
    now = timezone.now().replace(microsecond=0)
    old = now - timedelta(minutes=1)
    for cell in (0, 1):
        sample(host, cell, old, free_kib=999, counters=10)
    sample(host, 0, now, free_kib=1024, counters=100)
    sample(host, 1, now, free_kib=2048, counters=200)
    vm = vm_factory(host, "vm1")
    vm_memory(vm, 0, private_mib=1.5, huge_mib=2)
    vm_memory(vm, 1, heap_mib=0.25)
    vm_locality(vm, 0.9, minutes_ago=1, latest=False)  # history: not "now"
    vm_locality(vm, 0.476)
    vm_locality(vm_factory(host, "cells-unknown"), None)

    metrics = parse(viewer_client.get(URL).content)

    free = metrics["numaportal_cell_free_bytes"]
    assert free == {
        labels(host="hv01", cell="0"): 1024 * 1024,
        labels(host="hv01", cell="1"): 2048 * 1024,
    }
    memory = metrics["numaportal_cell_memory_bytes"]
    cells = {c.cell_id: c.memory_kib for c in host.cells.all()}
    assert memory == {labels(host="hv01", cell=str(c)): kib * 1024 for c, kib in cells.items()}
    for i, name in enumerate(numastat.COUNTERS):
        series = metrics[f"numaportal_numastat_{name}_pages_total"]
        assert series == {
            labels(host="hv01", cell="0"): 100 + i,
            labels(host="hv01", cell="1"): 200 + i,
        }, name
    vm_bytes = metrics["numaportal_vm_memory_bytes"]
    assert vm_bytes[labels(host="hv01", vm="vm1", cell="0", kind="private")] == 1572864
    assert vm_bytes[labels(host="hv01", vm="vm1", cell="0", kind="huge")] == 2 * 1024 * 1024
    assert vm_bytes[labels(host="hv01", vm="vm1", cell="0", kind="heap")] == 0
    assert vm_bytes[labels(host="hv01", vm="vm1", cell="1", kind="heap")] == 262144
    assert len(vm_bytes) == 8  # 2 cells x 4 kinds
    assert metrics["numaportal_vm_locality_ratio"] == {labels(host="hv01", vm="vm1"): 0.476}
    assert metrics["numaportal_numa_balancing"] == {labels(host="hv01"): 1}
    assert metrics["numaportal_last_sample_timestamp_seconds"] == {
        labels(host="hv01"): now.timestamp()
    }


def test_types_and_help(viewer_client, host_factory):
    host = host_factory("hv01")
    sample(host, 0, timezone.now(), free_kib=1, counters=1)
    families = {
        f.name: f for f in text_string_to_metric_families(viewer_client.get(URL).content.decode())
    }
    counter = families["numaportal_numastat_numa_miss_pages"]
    assert counter.type == "counter"
    assert numastat.EXPLANATIONS["numa_miss"] in counter.documentation
    assert families["numaportal_cell_free_bytes"].type == "gauge"
    assert families["numaportal_vm_locality_ratio"].type == "gauge"
    assert "0..1, 1 = all local" in families["numaportal_vm_locality_ratio"].documentation


def test_libvirt_only_sample_has_free_memory_but_no_counters(viewer_client, host_factory):
    host = host_factory("hv02")
    now = timezone.now()
    sample(host, 0, now - timedelta(minutes=1), free_kib=5, counters=7)
    sample(host, 0, now, free_kib=10)  # newest: libvirt only
    metrics = parse(viewer_client.get(URL).content)
    assert metrics["numaportal_cell_free_bytes"] == {labels(host="hv02", cell="0"): 10240}
    assert "numaportal_numastat_numa_hit_pages_total" not in metrics
    assert "numaportal_numa_balancing" not in metrics  # never read


def test_removed_hosts_and_gone_vms_are_not_exported(viewer_client, host_factory, vm_factory):
    now = timezone.now()
    live = host_factory("hv01")
    removed = host_factory("hv09", removed_at=now, numa_balancing=0)
    for host in (live, removed):
        sample(host, 0, now, free_kib=1024, counters=1)
        vm = vm_factory(host, f"on-{host.name}")
        vm_memory(vm, 0, private_mib=1)
        vm_locality(vm, 0.5)
    gone = vm_factory(live, "gone-vm", gone_at=now)
    vm_memory(gone, 0, private_mib=1)
    vm_locality(gone, 0.5)

    body = viewer_client.get(URL).content.decode()
    assert "hv09" not in body
    assert "gone-vm" not in body
    vms = {dict(k)["vm"] for k in parse(body.encode())["numaportal_vm_memory_bytes"]}
    assert vms == {"on-hv01"}
    ratios = parse(body.encode())["numaportal_vm_locality_ratio"]
    assert ratios == {labels(host="hv01", vm="on-hv01"): 0.5}


@pytest.mark.parametrize(
    "name",
    [
        'evil"} 1\nnumaportal_fake_total 9\n# {',
        'back\\slash\\\\n and \\" quote',
        "line\nbreak\r\ttab ünïcødé 🐧",
        "}{,=",
    ],
)
def test_hostile_vm_name_round_trips(viewer_client, host_factory, vm_factory, name):
    host = host_factory("hv01")
    vm = vm_factory(host, name)
    vm_memory(vm, 0, private_mib=1)
    vm_locality(vm, 0.25)

    body = viewer_client.get(URL).content
    metrics = parse(body)
    assert "numaportal_fake_total" not in metrics
    vms = {dict(k)["vm"] for k in metrics["numaportal_vm_memory_bytes"]}
    assert vms == {name}
    assert metrics["numaportal_vm_locality_ratio"] == {labels(host="hv01", vm=name): 0.25}
    # Every line is a comment or one sample: nothing injected. (Lines end at \n only: a raw
    # \r or tab is allowed inside a label value by the text format.)
    for line in body.decode().rstrip("\n").split("\n"):
        assert line.startswith(("# HELP ", "# TYPE ", "numaportal_")), line


def test_query_count_does_not_grow_with_hosts(host_factory, vm_factory):
    def populate(first: int, count: int) -> None:
        now = timezone.now()
        for i in range(first, first + count):
            host = host_factory(f"hv{i:02d}", numa_balancing=1)
            for cell in (0, 1):
                sample(host, cell, now - timedelta(minutes=1), free_kib=1, counters=1)
                sample(host, cell, now, free_kib=2, counters=2)
            for v in range(2):
                vm = vm_factory(host, f"vm{v}")
                vm_memory(vm, 0, private_mib=1)
                vm_memory(vm, 1, heap_mib=1)
                vm_locality(vm, 0.5 + v / 4)

    populate(0, 1)
    with CaptureQueriesContext(connection) as one:
        render()
    populate(1, 4)
    with CaptureQueriesContext(connection) as five:
        body = render()
    assert len(five) == len(one) <= 5
    assert len(parse(body)["numaportal_last_sample_timestamp_seconds"]) == 5
    assert len(parse(body)["numaportal_vm_memory_bytes"]) == 5 * 2 * 2 * 4
    assert len(parse(body)["numaportal_vm_locality_ratio"]) == 5 * 2


def test_through_the_view_queries_stay_constant(
    client, token, host_factory, django_assert_max_num_queries
):
    for i in range(5):
        sample(host_factory(f"hv{i:02d}"), 0, timezone.now(), free_kib=1, counters=1)
    with django_assert_max_num_queries(5):
        response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
