"""The redis-down drill: Redis (broker and cache) stops; the pages render, a change request
and a sync request fail at once and say why; once Redis is back, both go through again."""

from __future__ import annotations

import time
import uuid as uuid_module
from typing import Any

from hosts.models import Host
from numaportal.queueing import QUEUE_DOWN
from vms.models import VirtualMachine
from vms.requests import request_sync
from web.drills.base import (
    DrillResult,
    PageFetcher,
    RedisControl,
    Status,
    host_cpus,
    pages_render,
    pin_request,
    sync_and_wait,
    wait_ended,
)


def redis_down(
    vm: VirtualMachine,
    actor: Any,
    redis: RedisControl,
    fetch: PageFetcher,
    *,
    recover_timeout: float = 60.0,
) -> DrillResult:
    """Stop Redis; the pages render, a change request fails at once with a clear message and
    leaves a failed record; start Redis; a change goes through again. Redis is started again
    whatever happens."""
    result = DrillResult("redis-down")
    cpuset = str(host_cpus(vm)[0])
    group = uuid_module.uuid4()
    redis.stop()
    result.did("stopped Redis (broker and cache)")
    try:
        pages_render(result, fetch, "without Redis")

        started = time.monotonic()
        change = pin_request(vm, actor, cpuset, "drill: redis down", group)
        took = time.monotonic() - started
        change.refresh_from_db()
        result.did(f"requested emulatorpin {cpuset} (live) of {vm.name}")
        result.saw(f"record {change.pk} {change.status} after {took:.2f} s: {change.error!r}")
        result.check(
            change.status == Status.FAILED and QUEUE_DOWN in change.error and took < 10,
            "the request failed at once with a clear message and left a failed record",
        )
        result.figures["change request failed in"] = f"{took:.2f} s"

        started = time.monotonic()
        request_sync(vm.host)
        took = time.monotonic() - started
        host = Host.objects.get(pk=vm.host_id)
        result.did(f"asked for a sync of {host.name} (Sync now)")
        result.saw(f"host {host.sync_status} after {took:.2f} s: {host.last_error!r}")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR
            and f"could not queue the sync: {QUEUE_DOWN}" in host.last_error
            and took < 10,
            "the sync request failed at once and the host says why",
        )
    finally:
        restarted = time.monotonic()
        redis.start()
        result.did("started Redis again")

    # Recovery: the next change is queued and run by a worker once they have reconnected.
    deadline = restarted + recover_timeout
    while True:
        change = pin_request(vm, actor, cpuset, "drill: redis back", group)
        change.refresh_from_db()
        if change.status != Status.FAILED:
            wait_ended([change.pk], max(deadline - time.monotonic(), 1))
            change.refresh_from_db()
        if change.status == Status.SUCCEEDED or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    recovered = time.monotonic() - restarted
    result.saw(f"record {change.pk} {change.status} {change.error!r}".rstrip())
    result.check(
        change.status == Status.SUCCEEDED, f"a change succeeded {recovered:.1f} s after the restart"
    )
    result.figures["recovered in"] = f"{recovered:.1f} s after the restart"
    host = sync_and_wait(vm.host, max(deadline - time.monotonic(), 10))
    result.check(
        host.sync_status == Host.SyncStatus.OK, f"a sync of {host.name} went through: {host}"
    )
    pages = fetch()
    result.check(all(p.status == 200 for p in pages), "the pages render with Redis back")
    return result
