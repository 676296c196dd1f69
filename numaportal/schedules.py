"""The portal's periodic tasks, as rows of django-celery-beat (editable in the admin).

They are created after every ``migrate`` (post_migrate) when missing and never overwritten,
so an operator who changes the sampling interval to 30 s in the admin keeps it across
restarts. (Celery's ``beat_schedule`` setting would be copied over the rows at each beat
start, undoing such edits.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

#: The sweeps' beat entries, whose (admin-editable) intervals their spread is fitted into.
SYNC_ENTRY = "sync-all-hosts"
SAMPLE_ENTRY = "sample-all-hosts"
#: The sync sweep's default interval.
SYNC_EVERY_S = 300


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    every_s: float
    description: str
    #: Celery options (e.g. expires) stored with the row: beat passes them to apply_async.
    expires_s: float | None = None


def default_schedules() -> tuple[DefaultSchedule, ...]:
    sample_every = settings.NUMAPORTAL_SAMPLE_INTERVAL
    return (
        DefaultSchedule(
            "numaportal-heartbeat",
            "numaportal.tasks.heartbeat",
            30,
            "Tells the status page that beat and a worker are alive.",
        ),
        DefaultSchedule(
            SYNC_ENTRY,
            "hosts.tasks.sync_all_hosts",
            SYNC_EVERY_S,
            "Inventory sync of every enabled host (topology, VMs, pins).",
        ),
        DefaultSchedule(
            SAMPLE_ENTRY,
            "hosts.tasks.sample_all_hosts",
            sample_every,
            "numastat sample of every enabled host (on-host worker, or libvirt free memory).",
            # A sample that could not start within one interval is worthless: drop it rather
            # than let a stopped worker find a pile of them.
            expires_s=sample_every,
        ),
        DefaultSchedule(
            "rollup-numastat",
            "hosts.tasks.rollup_numastat",
            settings.NUMAPORTAL_ROLLUP_BUCKET_S,
            "Rolls raw numastat samples up into 15-minute sums and applies the retention.",
        ),
        DefaultSchedule(
            "rollup-locality",
            "vms.tasks.rollup_locality",
            settings.NUMAPORTAL_ROLLUP_BUCKET_S,
            "Rolls each VM's locality samples up into 15-minute sums and applies the same "
            "retention as numastat's.",
        ),
        DefaultSchedule(
            "reconcile-stale-changes",
            "changes.tasks.reconcile_stale_changes",
            120,
            "Changes whose worker died (or whose task was lost) end failed, with the state "
            "read back.",
        ),
        DefaultSchedule(
            "reconcile-balancing-plans",
            "balancing.tasks.reconcile_plans",
            120,
            "Plans left applying or computing by a dead worker end with what their records say.",
        ),
        DefaultSchedule(
            "check-drift",
            "changes.tasks.check_drift",
            600,
            "Flags VMs whose tuning drifted (live vs config, or since the last change).",
        ),
        DefaultSchedule(
            "balance-hosts",
            "balancing.tasks.balance_hosts",
            900,
            "Balancing plan of every host whose balancing policy is not off: left for "
            "approval (recommend) or applied as the scheduler (automatic).",
            # A run that could not start within its interval is superseded by the next one.
            expires_s=900,
        ),
        DefaultSchedule(
            "prune-login-logs",
            "numaportal.tasks.prune_login_logs",
            24 * 3600,
            "Deletes the login logs (django-axes access logs) older than "
            "NUMAPORTAL_LOGIN_LOG_DAYS days.",
        ),
    )


def ensure_default_schedules(**_kwargs: Any) -> int:
    """Create the missing default periodic tasks; returns how many were created."""
    import json

    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = 0
    for entry in default_schedules():
        if PeriodicTask.objects.filter(name=entry.name).exists():
            continue
        every = max(1, round(entry.every_s))
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=every, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(
            name=entry.name,
            task=entry.task,
            interval=interval,
            description=entry.description,
            expire_seconds=None if entry.expires_s is None else max(1, round(entry.expires_s)),
            kwargs=json.dumps({}),
        )
        created += 1
    return created


def interval_s(name: str, default: float) -> float:
    """The interval in seconds of the beat entry *name* as it is now (an operator may have
    edited it in the admin); *default* when the row is missing, disabled, or not an interval
    schedule (a crontab entry has no fixed interval)."""
    from django_celery_beat.models import PeriodicTask

    row = PeriodicTask.objects.filter(name=name, enabled=True).select_related("interval").first()
    if row is None or row.interval is None:
        return float(default)
    return float(row.interval.schedule.run_every.total_seconds())
