"""Prometheus text endpoint ``/metrics``: the stored samples, read at scrape time.

Nothing is kept in process-global metric objects: gunicorn runs several processes and each
would export its own stale copy. Every scrape builds a fresh registry around
:class:`NumaPortalCollector`, which reads the newest stored sample of every active host from
the database in a fixed number of queries (not one per host or VM).

Access: a logged-in user with ``hosts.view_host``, or ``Authorization: Bearer <token>`` when
``NUMAPORTAL_METRICS_TOKEN`` is set; anything else gets 401 (scrapers cannot follow a login
redirect).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hosts import numastat
from hosts.models import Cell, CellSample, Host
from numaportal import roles
from vms.models import VmCellMemory, VmLocalitySample

PREFIX = "numaportal"
KIB = 1024
MIB = 1024 * 1024
#: VmCellMemory field -> ``kind`` label, as ``numastat -p`` splits a process's memory.
VM_MEMORY_KINDS: tuple[tuple[str, str], ...] = (
    ("huge_mib", "huge"),
    ("heap_mib", "heap"),
    ("stack_mib", "stack"),
    ("private_mib", "private"),
)


class NumaPortalCollector(Collector):
    """Per host and cell: the values of the newest stored sample (3 queries per scrape; the
    per-VM series, two more, are :func:`vm_series`)."""

    def collect(self) -> Iterator[Metric]:
        # The newest sample of a host is every cell row stored at the host's newest taken_at
        # (one sample writes all its cells at once). Host.last_sample_at is not used: it also
        # moves on a failed attempt that stored nothing.
        newest = (
            CellSample.objects.filter(host=OuterRef("pk"))
            .order_by("-taken_at")
            .values("taken_at")[:1]
        )
        hosts = list(
            Host.objects.active()
            .annotate(newest=Subquery(newest))
            .order_by("name")
            .values_list("pk", "name", "numa_balancing", "newest")
        )
        names = {pk: name for pk, name, _, _ in hosts}
        newest_at = {pk: at for pk, _, _, at in hosts if at is not None}

        cell_memory = GaugeMetricFamily(
            f"{PREFIX}_cell_memory_bytes",
            "Memory of the NUMA cell, as the host's capabilities report it.",
            labels=["host", "cell"],
        )
        for host_name, cell_id, memory_kib in (
            Cell.objects.filter(host__removed_at__isnull=True)
            .order_by("host__name", "cell_id")
            .values_list("host__name", "cell_id", "memory_kib")
        ):
            cell_memory.add_metric([host_name, str(cell_id)], memory_kib * KIB)

        counters = {
            name: CounterMetricFamily(
                f"{PREFIX}_numastat_{name}_pages",
                f"numastat {name} since boot (pages): {numastat.EXPLANATIONS[name]}",
                labels=["host", "cell"],
            )
            for name in numastat.COUNTERS
        }
        free = GaugeMetricFamily(
            f"{PREFIX}_cell_free_bytes",
            "Free memory of the NUMA cell at the host's newest sample.",
            labels=["host", "cell"],
        )
        last_sample = GaugeMetricFamily(
            f"{PREFIX}_last_sample_timestamp_seconds",
            "Unix time of the host's newest stored sample (the one these values come from).",
            labels=["host"],
        )
        # Both IN lists hit the unique (host, taken_at, cell_id) index; a row of one host at
        # another host's newest time is dropped below.
        rows = (
            CellSample.objects.filter(host_id__in=newest_at, taken_at__in=set(newest_at.values()))
            .order_by()
            .values_list("host_id", "cell_id", "taken_at", "free_kib", *numastat.COUNTERS)
        )
        for host_id, cell_id, taken_at, free_kib, *values in sorted(
            rows, key=lambda row: (names[row[0]], row[1])
        ):
            if taken_at != newest_at[host_id]:
                continue
            labels = [names[host_id], str(cell_id)]
            if free_kib is not None:
                free.add_metric(labels, free_kib * KIB)
            # Only samples read on the host itself (source "probe") carry the counters.
            for name, value in zip(numastat.COUNTERS, values, strict=True):
                if value is not None:
                    counters[name].add_metric(labels, value)

        balancing = GaugeMetricFamily(
            f"{PREFIX}_numa_balancing",
            "/proc/sys/kernel/numa_balancing as last read on the host "
            "(0 off, 1 NUMA balancing, 2 memory tiering, 3 both); absent when never read.",
            labels=["host"],
        )
        for _pk, name, mode, at in hosts:
            if mode is not None:
                balancing.add_metric([name], mode)
            if at is not None:
                last_sample.add_metric([name], at.timestamp())

        yield from counters.values()
        yield free
        yield cell_memory
        yield balancing
        yield last_sample


# --- per-VM series --------------------------------------------------------------------------------
#
# A fleet has tens of thousands of VMs: prometheus_client's writer (a Sample per series, the
# labels sorted and escaped one by one) took most of a scrape's second at 20,000 VMs. The
# per-VM families are written here in the same text format, each VM's labels escaped once.
# The label set is bounded by design: per VM, its locality (one series) and its memory on
# each cell it has memory on (VmCellMemory: one row per cell numa_maps names), split into the
# four kinds of ``numastat -p`` (``NUMAPORTAL_METRICS_VM_MEMORY=kind``, the default), summed
# (``total``: kind="total") or not exported (``off``). Nothing per vCPU: a fleet's vCPUs times
# anything would be hundreds of thousands of series for what the VM page shows anyway.

VM_MEMORY_HELP = (
    "A running VM's memory on a NUMA cell at the host's newest probe sample, "
    "split as numastat -p splits it (kind: huge, heap, stack, private)."
)
VM_LOCALITY_HELP = (
    "A running VM's memory locality at the host's newest probe sample: the share of its "
    "own memory on the cells its vCPUs may run on, memory elsewhere weighted by "
    "(2 x local - node distance) / local, 0 from twice the local distance on (0..1, "
    "1 = all local)."
)
#: What NUMAPORTAL_METRICS_VM_MEMORY may say.
VM_MEMORY_MODES = ("kind", "total", "off")


def _label(value: str) -> str:
    """A label value as the text format escapes it (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    """A sample value: Python's shortest round-trip text of the float, which the text format
    reads as Go's ParseFloat does (``3145728000.0``, ``1.5e-05``); infinities and NaN in the
    format's words. prometheus_client's floatToGoString, which also rewrites big numbers the
    way Go prints them, was a quarter of a fleet's scrape."""
    text = repr(float(value))
    return floatToGoString(value) if text[-1] in "fn" else text


def _head(name: str, documentation: str, out: list[str]) -> None:
    text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {text}\n# TYPE {name} gauge\n")


def _vm_memory(out: list[str], mode: str) -> None:
    """``numaportal_vm_memory_bytes{cell, host, kind, vm}`` (labels sorted, as
    prometheus_client writes them), one query."""
    name = f"{PREFIX}_vm_memory_bytes"
    _head(name, VM_MEMORY_HELP, out)
    if mode == "off":
        return
    kinds = VM_MEMORY_KINDS if mode == "kind" else (("", "total"),)
    seen: set[tuple[str, str, int]] = set()
    labels, vm = ("", "", ""), ""
    for host_name, vm_name, cell_id, *mib in (
        VmCellMemory.objects.filter(vm__gone_at__isnull=True, vm__host__removed_at__isnull=True)
        .order_by("vm__host__name", "vm__name", "cell_id", "-sampled_at", "vm_id")
        .values_list(
            "vm__host__name", "vm__name", "cell_id", *(field for field, _ in VM_MEMORY_KINDS)
        )
    ):
        # libvirt keeps running domain names unique per host; should the stored rows
        # disagree, exporting the same series twice would make the scrape invalid.
        key = (host_name, vm_name, cell_id)
        if key in seen:
            continue
        seen.add(key)
        if labels[:2] != (host_name, vm_name):
            labels = (host_name, vm_name, f'host="{_label(host_name)}",')
            vm = f'",vm="{_label(vm_name)}"}} '
        cell = f'{name}{{cell="{cell_id}",{labels[2]}kind="'
        values = mib if mode == "kind" else [sum(mib)]
        for value, (_, kind) in zip(values, kinds, strict=True):
            out.append(f"{cell}{kind}{vm}{_number(value * MIB)}\n")


def _vm_locality(out: list[str]) -> None:
    """``numaportal_vm_locality_ratio{host, vm}``, one query."""
    name = f"{PREFIX}_vm_locality_ratio"
    _head(name, VM_LOCALITY_HELP, out)
    seen: set[tuple[str, str]] = set()
    for host_name, vm_name, value in (
        VmLocalitySample.objects.filter(
            latest=True,
            locality__isnull=False,
            vm__gone_at__isnull=True,
            host__removed_at__isnull=True,
        )
        .order_by("host__name", "vm__name", "vm_id")
        .values_list("host__name", "vm__name", "locality")
    ):
        # the same series twice would make the scrape invalid (see _vm_memory)
        if (host_name, vm_name) in seen:
            continue
        seen.add((host_name, vm_name))
        out.append(
            f'{name}{{host="{_label(host_name)}",vm="{_label(vm_name)}"}} {_number(value)}\n'
        )


def vm_series() -> bytes:
    """The per-VM families (their HELP and TYPE even when empty), two queries."""
    out: list[str] = []
    mode = settings.NUMAPORTAL_METRICS_VM_MEMORY
    _vm_memory(out, mode if mode in VM_MEMORY_MODES else "kind")
    _vm_locality(out)
    return "".join(out).encode("utf-8")


def render() -> bytes:
    """The exposition text: a fresh registry holding only our collector (hosts and cells),
    then the per-VM series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NumaPortalCollector())
    return generate_latest(registry) + vm_series()


def _bearer_token_ok(request: HttpRequest) -> bool:
    expected = settings.NUMAPORTAL_METRICS_TOKEN
    if not expected:
        return False
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


@login_not_required  # answers 401 itself: a scraper cannot follow a login redirect
@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    allowed = (user.is_authenticated and user.has_perm(roles.VIEW_HOST)) or _bearer_token_ok(
        request
    )
    if not allowed:
        response = HttpResponse(
            "401 Unauthorized: log in, or send Authorization: Bearer <NUMAPORTAL_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="numaportal"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
