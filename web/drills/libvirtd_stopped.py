"""The libvirtd-stopped drill: a host's libvirtd stops while a sync of it is in flight."""

from __future__ import annotations

import time

from django.utils.html import escape

from hosts.models import Host
from vms.requests import request_sync
from web.drills.base import (
    DaemonControl,
    DrillResult,
    PageFetcher,
    pages_render,
    sync_and_wait,
    sync_words,
    wait_sync,
)


def libvirtd_stopped(
    host: Host,
    others: list[Host],
    daemon: DaemonControl,
    fetch: PageFetcher,
    *,
    timeout: float = 60.0,
) -> DrillResult:
    """The libvirtd of *host* stops while a sync of it is in flight: the sync ends with
    libvirt's words on the host, the pages render, *others* sync as before; once the daemon is
    started again the next sync of *host* succeeds. The daemon is paused first so that the sync
    is really in flight (connected, waiting for an answer) when it stops; it is started again
    whatever happens."""
    result = DrillResult("libvirtd-stopped")
    daemon.pause()
    result.did(f"paused the libvirtd of {host.name} (SIGSTOP: connections hang)")
    stopped_it = False
    try:
        request_sync(host)
        host = wait_sync(host, timeout, pending=(Host.SyncStatus.QUEUED,))
        result.did(f"asked for a sync of {host.name}: {host.get_sync_status_display()}")
        if not result.check(
            host.sync_status == Host.SyncStatus.RUNNING, "the sync is in flight, waiting"
        ):
            return result  # (resumed below)
        stopped = time.monotonic()
        daemon.stop()
        stopped_it = True
        result.did(f"stopped the libvirtd of {host.name} with the sync in flight")
        host = wait_sync(host, timeout)
        took = time.monotonic() - stopped
        result.saw(f"{host.name}: {sync_words(host)} ({took:.1f} s after the stop)")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR and bool(host.last_error),
            f"{host.name} shows the sync failed, in libvirt's words",
        )
        result.figures["stop to error shown"] = f"{took:.1f} s"

        started = time.monotonic()
        host = sync_and_wait(host, timeout)
        took = time.monotonic() - started
        result.did(f"asked for another sync of {host.name} with its libvirtd down")
        result.saw(f"{host.name}: {sync_words(host)} ({took:.1f} s)")
        result.check(
            host.sync_status == Host.SyncStatus.ERROR and bool(host.last_error),
            "it fails with libvirt's words, not a hang",
        )
        result.figures["sync with libvirtd down failed in"] = f"{took:.1f} s"

        for other in others:
            other = sync_and_wait(other, timeout)
            result.saw(f"{other.name}: {sync_words(other)}")
            result.check(other.sync_status == Host.SyncStatus.OK, f"{other.name} syncs as before")
        if not others:
            result.saw("no other host in the portal to compare with")
        pages = pages_render(result, fetch, f"with {host.name} down")
        host_page = next((p for p in pages if p.path == f"/hosts/{host.name}/"), None)
        result.check(
            host_page is not None and escape(host.last_error) in host_page.text,
            f"the page of {host.name} shows libvirt's words",
        )
    finally:
        restarted = time.monotonic()
        if stopped_it:
            daemon.start()
            result.did(f"started the libvirtd of {host.name} again")
        else:  # the sync never got going: the daemon is only paused
            daemon.resume()
            result.did(f"resumed the libvirtd of {host.name}")
    deadline = restarted + timeout
    while True:
        host = sync_and_wait(host, max(deadline - time.monotonic(), 5))
        if host.sync_status == Host.SyncStatus.OK or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    took = time.monotonic() - restarted
    result.saw(f"{host.name}: {sync_words(host)}")
    result.check(host.sync_status == Host.SyncStatus.OK, f"{host.name} recovered on the next sync")
    result.figures["recovered in"] = f"{took:.1f} s after the start"
    return result
