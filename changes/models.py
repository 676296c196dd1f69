"""The audit trail: one append-only record per mutation of a VM or of a host setting.

A :class:`Change` is written by :mod:`changes.requests` (or :mod:`balancing.apply`) before
anything is queued, and its primary key *is* the Celery task id (Nautobot's pattern): the record,
not Celery's expiring result backend, is where the status, the state before and after, libvirt's
message and what really happened live. Records are never edited or deleted by anything but the
worker's own status transitions (:mod:`changes.executor`, :mod:`changes.reconcile`), which may
only touch :data:`WORKER_FIELDS`.

``Change.Kind`` is the one list of kinds; :mod:`changes.kinds.registry` maps each to its module
(this module does not import the kinds: they import it).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from hosts.models import Host
from numaportal.virt.scope import Scope as VirtScope
from vms.models import VirtualMachine

#: What the worker writes as a change runs; every other field is fixed at creation.
WORKER_FIELDS = frozenset(
    {
        "status",
        "started_at",
        "finished_at",
        "before",
        "after",
        "diff",
        "error",
        "outcome",
        "progress",
    }
)


class AppendOnlyError(ValidationError):
    """Raised on any attempt to delete a change record or rewrite what was requested."""


class ChangeQuerySet(models.QuerySet["Change"]):
    def delete(self) -> Any:
        raise AppendOnlyError("change records are append-only: they cannot be deleted")

    def update(self, **kwargs: Any) -> int:
        frozen = sorted(set(kwargs) - WORKER_FIELDS)
        if frozen:
            raise AppendOnlyError(
                f"change records are append-only: {', '.join(frozen)} cannot be changed"
            )
        return super().update(**kwargs)

    def active(self) -> ChangeQuerySet:
        """Queued or running."""
        return self.filter(status__in=Change.ACTIVE_STATUSES)

    def for_vm(self, vm: VirtualMachine) -> ChangeQuerySet:
        return self.filter(vm=vm)

    def history(self) -> ChangeQuerySet:
        """The change history's rows (the list page and its CSV export), newest first: host
        and VM joined, without the before / after snapshots and progress (the domain's XML
        twice each, which only a change's own page shows) nor the VM's tuning snapshots."""
        return (
            self.select_related("host", "vm__host")
            .defer("before", "after", "progress", "vm__tuning_live", "vm__tuning_config")
            .order_by("-created_at", "-pk")
        )

    def recent_for_vm(self, vm: VirtualMachine, limit: int = 10) -> ChangeQuerySet:
        """The VM page's "recent changes" (newest first; uses the (vm, created_at) index)."""
        return self.filter(vm=vm).select_related("host").order_by("-created_at")[:limit]


class Change(models.Model):
    class Kind(models.TextChoices):
        VCPUPIN = "vcpupin", "vCPU pinning (vcpupin)"
        EMULATORPIN = "emulatorpin", "emulator pinning (emulatorpin)"
        NUMATUNE = "numatune", "memory placement (numatune)"
        SETVCPUS = "setvcpus", "vCPU count (setvcpus)"
        GUEST_VCPUS = "guest_vcpus", "vCPUs online in the guest (guestvcpus)"
        #: Host-level: /proc/sys/kernel/numa_balancing, written by the host's own worker.
        NUMA_BALANCING = "numa_balancing", "kernel NUMA balancing (numa_balancing)"
        #: One VM's move from a balancing plan: vcpupin of every vCPU, emulatorpin,
        #: numatune config (params from the planner's Assignment; group_id = plan id).
        PLAN_MOVE = "plan_move", "move from a balancing plan (plan_move)"
        #: A running VM's memory moved to given cells, live (numatune restrictive or
        #: migratepages), verified against its numa_maps.
        MEMORY_MOVE = "memory_move", "memory moved live (memory_move)"
        #: Portal-only (scope "portal", recorded finished when saved): a VM's balancing flags.
        VM_FLAGS = "vm_flags", "balancing flags of a VM (vm_flags)"
        #: Portal-only: a host's balancing policy, saved by balancing.policies.update_policy.
        BALANCING_POLICY = "balancing_policy", "balancing policy of a host (balancing_policy)"

    class Scope(models.TextChoices):
        """libvirt's scopes (:class:`numaportal.virt.scope.Scope`), in the history's words."""

        LIVE = VirtScope.LIVE.value, "live (lost at next shutdown)"
        CONFIG = VirtScope.CONFIG.value, "config (from next boot)"
        BOTH = VirtScope.BOTH.value, "live and config"
        #: Not libvirt's: a setting of the portal itself, nothing on the host (PortalKind).
        PORTAL = "portal", "the portal only (nothing on the host)"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    #: Also the Celery task id of the worker that applies it.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: Ties together the changes of one request or one balancing plan.
    group_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # A user who made changes cannot be deleted (deactivate the account instead): deleting
        # would rewrite every record of theirs, and usernames are unique, so a deactivated
        # account's name is never taken by someone else (changes.admin says so in the admin).
        on_delete=models.PROTECT,
        related_name="changes",
        editable=False,
    )
    #: Copied at creation (the name as it was then); "scheduler" for automatic changes.
    actor_name = models.CharField(max_length=150, editable=False)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="changes", editable=False)
    vm = models.ForeignKey(
        VirtualMachine,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="changes",
        editable=False,
    )
    #: The VM's (or host's) name when the change was requested.
    target_name = models.CharField(max_length=255, editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices, editable=False)
    params = models.JSONField(default=dict, editable=False)
    scope = models.CharField(
        max_length=16, choices=Scope.choices, default=Scope.BOTH, editable=False
    )
    reason = models.TextField(editable=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: DomainSnapshot.as_dict(): persistent + live XML, parsed tuning, vcpucount, vcpuinfo.
    before = models.JSONField(null=True, blank=True, editable=False)
    after = models.JSONField(null=True, blank=True, editable=False)
    #: Unified diff of the persistent and live XML plus the tuning changes in words.
    diff = models.TextField(blank=True, editable=False)
    #: libvirt's message, unchanged.
    error = models.TextField(blank=True, editable=False)
    #: What really happened (hot-add and onlining in the guest, a refused unplug, ...).
    outcome = models.TextField(blank=True, editable=False)
    #: How far a long change has got while it runs (memory_move: MiB moved of the MiB to move,
    #: seconds), :mod:`changes.progress`; written alone, by its own UPDATE, every few seconds.
    progress = models.JSONField(null=True, blank=True, editable=False)

    objects = ChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["vm", "created_at"], name="change_vm_created"),
            models.Index(fields=["host", "created_at"], name="change_host_created"),
            models.Index(fields=["status", "created_at"], name="change_status_created"),
            # The history's order (newest first, the id for equal times): its pages' keys are
            # read from this index alone (web.paging.paginate(keys=True)).
            models.Index(fields=["-created_at", "-id"], name="change_history_order"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.target_name} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A new record is written once; afterwards only the worker's fields may be saved,
        # and only by naming them (save(update_fields=[...])).
        if not self._state.adding:
            update_fields = kwargs.get("update_fields")
            if update_fields is None:
                raise AppendOnlyError(
                    "change records are append-only: save(update_fields=[...]) with worker "
                    f"fields ({', '.join(sorted(WORKER_FIELDS))}) only"
                )
            frozen = sorted(set(update_fields) - WORKER_FIELDS)
            if frozen:
                raise AppendOnlyError(
                    f"change records are append-only: {', '.join(frozen)} cannot be changed"
                )
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("changes:detail", args=[self.id])

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("change records are append-only: they cannot be deleted")

    @property
    def task_id(self) -> str:
        """The Celery task id (the primary key, as text)."""
        return str(self.id)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
