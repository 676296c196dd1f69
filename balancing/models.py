"""Balancing plans and per-host balancing policies.

A :class:`BalancingPlan` is computed by a worker (``balancing.planner.plan`` on the stored
inventory), reviewed by an operator (before / after on the topology diagram, the score terms,
the changes it would make), approved with a reason, and applied as one
:class:`~changes.models.Change` per moved VM whose ``group_id`` is the plan's id. A plan
remembers the inventory it was computed from; approving it after a sync that changed that
inventory is refused (stale).

A :class:`BalancingPolicy` per host says what the scheduler does: nothing, leave a plan for
approval (recommend), or apply it (automatic, actor "scheduler") when it improves the score by at
least ``min_improvement_pct`` and moves at most ``max_moves`` VMs. Its ``locality_threshold`` flags
the host's VMs whose memory locality (:mod:`vms.locality`) is below it, and such a VM makes the
scheduler plan the host even when its inventory did not change (trigger "locality").
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from hosts.models import Host

#: The locality threshold of a host without a policy (and a new policy's default): below 0.9
#: a VM has more than a tenth of its memory off its cells on the next socket or further (memory
#: on a sibling sub-NUMA cluster, distance 12, counts 0.8: half of it there is still 0.9).
DEFAULT_LOCALITY_THRESHOLD = 0.9


class BalancingPolicy(models.Model):
    class Mode(models.TextChoices):
        OFF = "off", "off"
        RECOMMEND = "recommend", "recommend (leave a plan for approval)"
        AUTOMATIC = "automatic", "automatic (apply as the scheduler)"

    class Strategy(models.TextChoices):
        SPREAD = "spread", "spread the load over cells"
        PACK = "pack", "pack cells in turn"

    class Emulator(models.TextChoices):
        CELL = "cell", "on the VM's cell"
        HOUSEKEEPING = "housekeeping", "on the housekeeping CPUs"

    host = models.OneToOneField(Host, on_delete=models.CASCADE, related_name="balancing_policy")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.OFF)
    min_improvement_pct = models.FloatField(
        default=10.0, help_text="apply or recommend only when the score improves this much (%)"
    )
    max_moves = models.PositiveIntegerField(
        default=3, help_text="apply or recommend only plans that move at most this many VMs"
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.SPREAD)
    cpu_overcommit = models.FloatField(
        default=1.0, help_text="vCPUs of shared VMs per physical CPU of a cell's shared pool"
    )
    emulator = models.CharField(max_length=16, choices=Emulator.choices, default=Emulator.CELL)
    housekeeping = models.CharField(
        max_length=255, blank=True, help_text="cpuset for emulator threads, e.g. 0,24"
    )
    reserved = models.CharField(
        max_length=255, blank=True, help_text="cpuset never given to VMs (the host's own work)"
    )
    whole_cores = models.BooleanField(
        default=True, help_text="dedicated VMs get whole cores (SMT siblings together)"
    )
    memory_reserve_mib = models.PositiveIntegerField(
        default=0, help_text="memory per cell kept for the host (MiB)"
    )
    locality_threshold = models.FloatField(
        default=DEFAULT_LOCALITY_THRESHOLD,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="VMs whose memory locality (0..1, distance-weighted share of their memory on "
        "their vCPUs' cells) is below this are flagged, and the scheduler plans the host",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "balancing policies"

    def __str__(self) -> str:
        return f"balancing of {self.host.name}: {self.mode}"


class BalancingPlan(models.Model):
    class Status(models.TextChoices):
        COMPUTING = "computing", "computing"
        READY = "ready", "waiting for approval"
        NOT_NEEDED = "not_needed", "no change needed"
        ERROR = "error", "planning failed"
        STALE = "stale", "stale (inventory changed)"
        APPLYING = "applying", "applying"
        APPLIED = "applied", "applied"
        APPLY_FAILED = "apply_failed", "apply failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "an operator"
        SCHEDULER = "scheduler", "the scheduler"
        #: The scheduler, because a VM's locality was below the policy's threshold.
        LOCALITY = "locality", "the scheduler: locality below threshold"

    #: Also the ``group_id`` of the plan's change records.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="balancing_plans")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPUTING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    #: None: the scheduler (requested_by_name "scheduler"). PROTECT, like ``Change.actor``: a
    #: plan is an audit record (who asked, who approved), so deleting its user is refused
    #: (deactivate the account instead) rather than rewriting the plan.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    requested_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    #: balancing.planner.Policy as a dict (what was asked).
    policy = models.JSONField(default=dict)
    #: host.last_sync_ok_at and a digest of the VmDemand list the plan was computed from.
    based_on_sync_at = models.DateTimeField(null=True, blank=True)
    inventory_digest = models.CharField(max_length=64, blank=True)
    #: VmDemand dicts, and Assignment dicts before (now) and after (proposed), keyed by VM name.
    demands = models.JSONField(default=list)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    score_before = models.JSONField(null=True, blank=True)
    score_after = models.JSONField(null=True, blank=True)
    improvement_pct = models.FloatField(null=True, blank=True)
    moves = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list)
    #: Why planning failed, or why the scheduler did not go ahead.
    error = models.TextField(blank=True)
    #: Trigger "locality": the VMs below the policy's threshold then, name -> locality.
    locality_below = models.JSONField(default=dict, blank=True)

    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    approved_by_name = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    #: VM names in the order their changes are applied (balancing.planner.apply_order).
    apply_order = models.JSONField(default=list)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: What applying did, in words (which change failed, which were not attempted).
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["host", "created_at"], name="plan_host_created")]

    def __str__(self) -> str:
        return f"plan {self.id} for {self.host.name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("balancing:plan", args=[self.id])
