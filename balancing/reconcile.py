"""Plans left behind by a dead worker (beat ``reconcile-balancing-plans``): ``applying`` plans
end with what their change records say, ``computing`` plans whose task was lost end ``error``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from balancing.models import BalancingPlan
from changes.models import Change

log = logging.getLogger(__name__)

Status = BalancingPlan.Status


__all__ = ["reconcile_plans"]


def reconcile_plans(now: Any = None) -> int:
    """Periodic: plans left behind by a dead worker end with what their records say.

    - ``applying`` with no change of the plan still queued or running (the changes' own
      reconciler ended the ones a lost task left behind): ``applied`` when every change
      succeeded, else ``apply_failed`` listing how each ended;
    - ``computing`` for longer than ``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT``: ``error``, the planning
      task was lost.
    Returns how many plans were ended.
    """
    now = now or timezone.now()
    ended = 0
    for plan in BalancingPlan.objects.filter(status=Status.APPLYING):
        changes = Change.objects.filter(group_id=plan.id)
        if changes.filter(status__in=Change.ACTIVE_STATUSES).exists():
            continue
        statuses = dict(changes.values_list("target_name", "status"))
        failed = sorted(name for name, st in statuses.items() if st != Change.Status.SUCCEEDED)
        plan.status = Status.APPLY_FAILED if failed else Status.APPLIED
        plan.finished_at = now
        plan.outcome = "ended by the reconciler (its worker was lost): " + (
            "; ".join(f"{name} {statuses[name]}" for name in failed)
            if failed
            else f"all {len(statuses)} change(s) succeeded"
        )
        plan.save(update_fields=["status", "finished_at", "outcome"])
        ended += 1
    lost = now - timedelta(seconds=settings.NUMAPORTAL_CHANGE_QUEUED_TIMEOUT)
    ended += BalancingPlan.objects.filter(status=Status.COMPUTING, created_at__lt=lost).update(
        status=Status.ERROR,
        error="never computed: the planning task was lost (no worker took it); plan again",
    )
    return ended
