"""Virtual machines, their vCPU pins and memory binding, as last read from their host."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from hosts.models import Host


class VirtualMachineQuerySet(models.QuerySet["VirtualMachine"]):
    def present(self) -> VirtualMachineQuerySet:
        """VMs seen on their host at the last sync (not gone)."""
        return self.filter(gone_at__isnull=True)


class VirtualMachine(models.Model):
    class Pinning(models.TextChoices):
        PINNED = "pinned", "pinned"
        PARTLY = "partly", "partly pinned"
        UNPINNED = "unpinned", "unpinned"

    # PROTECT: a host is removed by marking it (its VMs and history stay), never deleted.
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="vms")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=32, help_text="as virsh says it: running, shut off, ...")
    persistent = models.BooleanField(default=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set when the VM was not on its host at a sync; cleared when it comes back (same uuid).
    gone_at = models.DateTimeField(null=True, blank=True)

    # `virsh vcpucount`: maximum/current x config/live (live is null when not running).
    vcpu_max_config = models.PositiveIntegerField(default=0)
    vcpu_current_config = models.PositiveIntegerField(default=0)
    vcpu_max_live = models.PositiveIntegerField(null=True, blank=True)
    vcpu_current_live = models.PositiveIntegerField(null=True, blank=True)

    memory_kib = models.BigIntegerField(default=0)
    current_memory_kib = models.BigIntegerField(default=0)

    # Effective tuning: live when running, else the persistent config.
    numatune_mode = models.CharField(max_length=16, blank=True)
    numatune_nodeset = models.CharField(max_length=255, blank=True)
    emulatorpin = models.CharField(max_length=255, blank=True, help_text="live cpuset")
    emulatorpin_config = models.CharField(max_length=255, blank=True)

    # Derived at sync time so that lists can filter on them in SQL.
    #: The pinning state (pinned / partly pinned / unpinned; vms.numa.pinning_state).
    pinning = models.CharField(max_length=16, choices=Pinning.choices, default=Pinning.UNPINNED)
    cells = models.CharField(
        max_length=255, blank=True, help_text="cells its vCPUs may run on (nodeset)"
    )
    memory_cells = models.CharField(
        max_length=255, blank=True, help_text="cells its memory is bound to (nodeset)"
    )
    cross_node = models.BooleanField(default=False)
    # Live tuning differs from the persistent config: "live-only: lost at next shutdown".
    drift = models.BooleanField(default=False)
    drift_detail = models.TextField(blank=True)
    # Tuning differs from what the last change left (changes.drift.check_drift); the sync
    # does not write these, so the verdict survives until the next check.
    changed_outside = models.BooleanField(default=False)
    changed_outside_detail = models.TextField(blank=True)

    # Balancing (balancing.planner): an operator's flags, never written by the sync.
    balancing_locked = models.BooleanField(
        "locked", default=False, help_text="never moved by a balancing plan"
    )
    dedicated = models.BooleanField(
        default=False, help_text="needs CPUs of its own (whole cores), no over-commit"
    )

    # Parsed tuning (numaportal.virt.domain.tuning_dict) of both definitions.
    tuning_live = models.JSONField(null=True, blank=True)
    tuning_config = models.JSONField(null=True, blank=True)

    objects = VirtualMachineQuerySet.as_manager()

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "uuid"], name="unique_vm_uuid_per_host")
        ]
        indexes = [models.Index(fields=["host", "gone_at"])]

    def __str__(self) -> str:
        return f"{self.name} on {self.host.name}"

    def get_absolute_url(self) -> str:
        return reverse("vms:detail", args=[self.host.name, self.uuid])

    @property
    def is_gone(self) -> bool:
        return self.gone_at is not None

    @property
    def is_running(self) -> bool:
        return self.vcpu_current_live is not None


class VcpuPin(models.Model):
    """One vCPU of a VM: where it may run (live and config) and where it last ran."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="vcpus")
    vcpu = models.PositiveIntegerField()
    online = models.BooleanField(default=True, help_text="enabled in the live definition")
    # cpusets; blank = no <vcpupin> for this vCPU (it floats over the VM's default affinity)
    pin_live = models.CharField(max_length=255, blank=True)
    pin_config = models.CharField(max_length=255, blank=True)
    # What `virsh vcpuinfo` shows: effective affinity, physical CPU it last ran on, state.
    affinity = models.CharField(max_length=255, blank=True)
    last_cpu = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["vm", "vcpu"]
        constraints = [models.UniqueConstraint(fields=["vm", "vcpu"], name="unique_vcpu_per_vm")]

    def __str__(self) -> str:
        return f"{self.vm.name} vCPU {self.vcpu}"


class VmCellMemory(models.Model):
    """A running VM's memory on one cell, read from its QEMU process's numa_maps by the
    on-host worker at the last sample, split as ``numastat -p`` splits it (MiB)."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="cell_memory")
    cell_id = models.PositiveIntegerField()
    sampled_at = models.DateTimeField()
    huge_mib = models.FloatField(default=0)
    heap_mib = models.FloatField(default=0)
    stack_mib = models.FloatField(default=0)
    private_mib = models.FloatField(default=0)
    #: Of private_mib: mapped files' page cache (QEMU's binary and libraries), not the VM's.
    files_mib = models.FloatField(default=0)

    class Meta:
        ordering = ["vm", "cell_id"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "cell_id"], name="unique_vm_cell_memory")
        ]

    def __str__(self) -> str:
        return f"{self.vm.name} on cell {self.cell_id}: {self.total_mib:.1f} MiB"

    @property
    def total_mib(self) -> float:
        """What ``numastat -p`` says for this cell."""
        return self.huge_mib + self.heap_mib + self.stack_mib + self.private_mib

    @property
    def own_mib(self) -> float:
        """The VM's own memory on this cell: all but mapped files' page cache."""
        return self.total_mib - self.files_mib


class VmLocalitySample(models.Model):
    """A running VM's locality and own memory per cell at one on-host sample (history).

    Written with the VM's :class:`VmCellMemory` rows, in the same transaction
    (:func:`vms.sampling.store_vm_memory`); ``latest`` marks the rows of the host's newest
    sample, which the pages, the scheduler and ``/metrics`` read as "now". Raw rows are rolled
    up into :class:`VmLocalityRollup` and pruned like numastat's (:mod:`vms.locality_rollups`).
    """

    vm = models.ForeignKey(
        VirtualMachine, on_delete=models.CASCADE, related_name="locality_samples"
    )
    # The VM's host, copied: rollups, pruning and "the host's newest sample" select by host
    # without a join over every VM (a VM row never changes host).
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    taken_at = models.DateTimeField()
    #: vms.locality.locality: 0..1; null when it means nothing (home cells unknown).
    locality = models.FloatField(null=True, blank=True)
    #: The VM's own memory per cell (MiB; numastat -p minus mapped files): {"<cell>": MiB}.
    own_mib = models.JSONField(default=dict)
    #: The cells its vCPUs could run on when sampled (nodeset), which the locality is about.
    home_cells = models.CharField(max_length=255, blank=True)
    #: vms.locality.remote_mib: its own memory on cells outside the home cells (MiB); null
    #: when the home cells are unknown. The dashboard's "most remote memory" sorts by it.
    remote_mib = models.FloatField(null=True, blank=True)
    latest = models.BooleanField(default=True)

    class Meta:
        ordering = ["vm", "taken_at"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "taken_at"], name="unique_vm_locality_sample")
        ]
        indexes = [
            models.Index(fields=["host", "taken_at"], name="vm_locality_host_taken"),
            # "Now" is a few hundred rows per host among ~3,000 per VM of history: partial
            # indexes over the latest rows only, for a host's (the sampler's UPDATE, the host
            # page) and for the fleet's least-local VMs (the dashboard, sorted by locality).
            models.Index(
                fields=["host", "locality"],
                name="vm_locality_latest_host",
                condition=models.Q(latest=True),
            ),
            models.Index(
                fields=["locality"],
                name="vm_locality_latest",
                condition=models.Q(latest=True),
            ),
            models.Index(
                fields=["remote_mib"],
                name="vm_locality_latest_remote",
                condition=models.Q(latest=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.vm.name} at {self.taken_at:%Y-%m-%d %H:%M:%S}: {self.locality}"


class VmLocalityRollup(models.Model):
    """One VM's locality samples summed over one bucket (NUMAPORTAL_ROLLUP_BUCKET_S).

    Sums and counts, not averages, as numastat's rollups: coarser chart buckets add them up
    exactly. ``own_mib_sum`` sums each cell's MiB over the bucket's samples (a sample without
    memory on a cell adds 0 there), so a cell's mean is its sum / ``samples``.
    """

    vm = models.ForeignKey(
        VirtualMachine, on_delete=models.CASCADE, related_name="locality_rollups"
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    bucket_start = models.DateTimeField()
    bucket_s = models.PositiveIntegerField()
    samples = models.PositiveIntegerField()
    #: Sum and count of the samples that had a locality (null ones are not averaged in).
    locality_sum = models.FloatField(default=0)
    locality_n = models.PositiveIntegerField(default=0)
    locality_min = models.FloatField(null=True, blank=True)
    own_mib_sum = models.JSONField(default=dict)

    class Meta:
        ordering = ["vm", "bucket_start"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "bucket_start"], name="unique_vm_locality_rollup")
        ]
        indexes = [models.Index(fields=["host", "bucket_start"], name="vm_locality_rollup_host")]

    def __str__(self) -> str:
        return f"{self.vm.name} from {self.bucket_start:%Y-%m-%d %H:%M}"
