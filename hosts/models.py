"""Hypervisor hosts and their NUMA topology, as last read from libvirt.

Topology is stored as rows (cells, physical CPUs) rather than one blob so that pages and
later the balancing planner can join VM pins on CPUs and cells in SQL.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

#: What a sync reads about the host itself (shown read-only in the admin).
FACT_FIELDS = ("hostname", "hypervisor", "libvirt_version", "arch", "cpu_model", "cpu_vendor")


class HostQuerySet(models.QuerySet["Host"]):
    def active(self) -> HostQuerySet:
        """Hosts that have not been removed from the portal."""
        return self.filter(removed_at__isnull=True)


class Host(models.Model):
    class SyncStatus(models.TextChoices):
        NEVER = "never", "never synced"
        #: The hypervisor is booting (the NUMA lab's first boot takes a minute): not an error.
        STARTING = "starting", "host starting"
        #: Registered (or its URI changed): a worker is testing the connection, then syncs.
        CHECKING = "checking", "checking the connection"
        #: The connection test failed (``last_error``: libvirt's words); not synced until a
        #: retry passes.
        CHECK_FAILED = "check_failed", "connection test failed"
        QUEUED = "queued", "sync queued"
        RUNNING = "running", "syncing"
        OK = "ok", "in sync"
        ERROR = "error", "sync failed"

    #: A sync or connection test is queued or running: another one is not queued meanwhile.
    SYNC_PENDING = (SyncStatus.QUEUED, SyncStatus.RUNNING, SyncStatus.CHECKING)

    name = models.SlugField(max_length=64, unique=True, help_text="Short name, e.g. hv01.")
    uri = models.CharField(
        "libvirt URI", max_length=1024, help_text="e.g. qemu+ssh://root@hv01.example.net/system"
    )
    enabled = models.BooleanField(default=True, help_text="Synced by the periodic task.")
    worker_queue = models.CharField(
        "on-host worker queue",
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                "letters, digits, '.', '_' and '-' only, e.g. host.hv01",
            )
        ],
        help_text="Celery queue of a worker running ON this host (host.<name>), started with "
        "NUMAPORTAL_ON_HOST=<name> and no database: it reads numastat and VM memory per cell "
        "and switches numa_balancing, and hands the results back through the broker. Empty: "
        "libvirt only (free memory per cell).",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Removing a host keeps its row, its VMs and (later) its change history.
    removed_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Last sync.
    sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.NEVER, editable=False
    )
    sync_task_id = models.CharField(max_length=64, blank=True, editable=False)
    #: While a sync or connection test is queued: when it is planned to start (the periodic
    #: sweep spreads them); while it runs: when it started. A pending state older than the
    #: task's hard time limit was lost (its worker was killed) and no longer blocks a new one.
    sync_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_ok_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    #: What libvirt answered to the last connection test (when, how fast, host, versions).
    check_answer = models.TextField("connection test", blank=True, editable=False)

    # Facts from the last successful sync (`virsh version`, `virsh capabilities`).
    hostname = models.CharField(max_length=255, blank=True, editable=False)
    hypervisor = models.CharField(max_length=64, blank=True, editable=False)
    libvirt_version = models.CharField(max_length=32, blank=True, editable=False)
    arch = models.CharField(max_length=32, blank=True, editable=False)
    cpu_model = models.CharField(max_length=128, blank=True, editable=False)
    cpu_vendor = models.CharField(max_length=64, blank=True, editable=False)
    capabilities_xml = models.TextField(blank=True, editable=False)

    # Last numastat sample (hosts.sampling). "probe": read on the host by its own worker
    # (numastat, numa_maps, numa_balancing); "libvirt": free memory per cell only.
    last_sample_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sample_source = models.CharField(max_length=16, blank=True, editable=False)
    last_sample_error = models.TextField(blank=True, editable=False)
    #: /proc/sys/kernel/numa_balancing as last read on the host; None: never read.
    numa_balancing = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("hosts:detail", args=[self.name])

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None

    @property
    def registration_pending(self) -> bool:
        """Registered but never connected: its connection test runs or failed, no sync yet."""
        return self.last_sync_ok_at is None and self.sync_status in (
            self.SyncStatus.CHECKING,
            self.SyncStatus.CHECK_FAILED,
        )

    @property
    def has_probe(self) -> bool:
        """A worker runs on the host itself (its own queue): /sys and /proc can be read."""
        return bool(self.worker_queue)


class Cell(models.Model):
    """One NUMA cell (node) of a host, as `numactl -H` shows it."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cells")
    cell_id = models.PositiveIntegerField()
    memory_kib = models.BigIntegerField(default=0)
    free_kib = models.BigIntegerField(null=True, blank=True)
    # node id (as a string: JSON keys) -> distance; empty when the host reports none.
    distances = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["host", "cell_id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "cell_id"], name="unique_cell_per_host")
        ]

    def __str__(self) -> str:
        return f"{self.host.name} cell {self.cell_id}"


class PhysicalCpu(models.Model):
    """A hardware thread of a host, with where it sits: socket, die, core, siblings, cell."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cpus")
    cell = models.ForeignKey(Cell, on_delete=models.CASCADE, related_name="cpus")
    cpu_id = models.PositiveIntegerField()
    socket_id = models.IntegerField(null=True, blank=True)
    die_id = models.IntegerField(null=True, blank=True)
    core_id = models.IntegerField(null=True, blank=True)
    siblings = models.CharField(max_length=255, help_text="cpuset of SMT siblings, e.g. 0,32")

    class Meta:
        ordering = ["host", "cpu_id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "cpu_id"], name="unique_cpu_per_host")
        ]

    def __str__(self) -> str:
        return f"{self.host.name} cpu {self.cpu_id}"


class SampleSource(models.TextChoices):
    PROBE = "probe", "on-host worker"
    LIBVIRT = "libvirt", "libvirt only"


class NumastatDeltas(models.Model):
    """Increase of each numastat counter (pages) over an interval; null: no delta known."""

    numa_hit_delta = models.BigIntegerField(null=True, blank=True)
    numa_miss_delta = models.BigIntegerField(null=True, blank=True)
    numa_foreign_delta = models.BigIntegerField(null=True, blank=True)
    interleave_hit_delta = models.BigIntegerField(null=True, blank=True)
    local_node_delta = models.BigIntegerField(null=True, blank=True)
    other_node_delta = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class CellSample(NumastatDeltas):
    """One cell of a host at one sampling time.

    The numastat counters are stored as read (pages since boot); the deltas to the previous
    sample of the same cell are derived once, at insert time, so that history pages and the
    rollup only sum columns. Deltas are null for the first sample and for an interval across
    a reboot (``reset``). Hosts without an on-host worker have free memory only.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cell_samples")
    cell_id = models.PositiveIntegerField()
    taken_at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=SampleSource.choices)
    free_kib = models.BigIntegerField(null=True, blank=True)
    #: /proc/stat btime: tells a reboot from a counter that merely wrapped.
    boot_time = models.BigIntegerField(null=True, blank=True)
    numa_hit = models.BigIntegerField(null=True, blank=True)
    numa_miss = models.BigIntegerField(null=True, blank=True)
    numa_foreign = models.BigIntegerField(null=True, blank=True)
    interleave_hit = models.BigIntegerField(null=True, blank=True)
    local_node = models.BigIntegerField(null=True, blank=True)
    other_node = models.BigIntegerField(null=True, blank=True)
    #: Seconds since the previous sample of this cell (null for the first one).
    interval_s = models.FloatField(null=True, blank=True)
    reset = models.BooleanField(default=False)

    class Meta:
        ordering = ["host", "taken_at", "cell_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "taken_at", "cell_id"], name="unique_cell_sample"
            )
        ]

    def __str__(self) -> str:
        return f"{self.host.name} cell {self.cell_id} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class CellRollup(NumastatDeltas):
    """The raw samples of one cell summed over one bucket (15 minutes by default).

    Sums of deltas and the seconds they cover, not averages of rates: a rate is always
    increase / covered time, and rollups add up exactly into coarser chart buckets.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cell_rollups")
    cell_id = models.PositiveIntegerField()
    bucket_start = models.DateTimeField()
    bucket_s = models.PositiveIntegerField()
    samples = models.PositiveIntegerField()
    #: Seconds covered by intervals with deltas (resets and gaps excluded).
    covered_s = models.FloatField()
    free_kib_avg = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["host", "bucket_start", "cell_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "bucket_start", "cell_id"], name="unique_cell_rollup"
            )
        ]

    def __str__(self) -> str:
        return f"{self.host.name} cell {self.cell_id} from {self.bucket_start:%Y-%m-%d %H:%M}"
