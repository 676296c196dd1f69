"""Change records written directly for the change-history tests (``Change.objects.create``: a
new record may carry any state; nothing queues a worker). Their two hosts with VMs are the
``inventory`` fixture of ``tests/web/conftest.py``."""

from __future__ import annotations

from django.db.models import QuerySet

from changes.models import Change


def make_change(vm, **fields) -> Change:
    defaults = {
        "actor_name": "alice",
        "host": vm.host,
        "vm": vm,
        "target_name": vm.name,
        "kind": "vcpupin",
        "params": {"vcpu": 0, "cpuset": "22"},
        "scope": "live+config",
        "reason": "seed step",
    }
    created_at = fields.pop("created_at", None)
    change = Change.objects.create(**{**defaults, **fields})
    if created_at is not None:
        # created_at is auto_now_add and the append-only queryset refuses to rewrite it; a
        # test needs old records, so it goes around the guard with the plain QuerySet.update.
        QuerySet.update(Change.objects.filter(pk=change.pk), created_at=created_at)
        change.refresh_from_db()
    return change
