"""What every drill shares: :class:`DrillResult` (what it did, what it saw, pass or fail, its
figures), the controls of what a drill stops or kills (Redis, a worker, a libvirtd), the page
fetcher, and the requests and waits the drills make through the same services as the pages.
"""

from __future__ import annotations

import time
import uuid as uuid_module  # noqa: F401  (re-exported for the drills)
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from changes.models import Change
from changes.requests import request_change
from hosts.models import Host, PhysicalCpu
from vms.models import VirtualMachine
from vms.requests import request_sync

Status = Change.Status
ENDED = (Status.SUCCEEDED, Status.FAILED)


@dataclass
class DrillResult:
    name: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def did(self, text: str) -> None:
        self.lines.append(f"did:  {text}")

    def saw(self, text: str) -> None:
        self.lines.append(f"saw:  {text}")

    def check(self, ok: bool, text: str) -> bool:
        self.lines.append(f"{'ok' if ok else 'FAIL'}:   {text}")
        self.ok = self.ok and ok
        return ok

    def report(self) -> str:
        head = f"== drill {self.name}: {'PASS' if self.ok else 'FAIL'}"
        figures = "; ".join(f"{k} {v}" for k, v in self.figures.items())
        return "\n".join([head, *self.lines, *([f"figures: {figures}"] if figures else [])])


class RedisControl(Protocol):
    """The Redis of the broker and the cache, which the drill may stop and start again."""

    def stop(self) -> None: ...

    def start(self) -> None: ...


class WorkerControl(Protocol):
    """The one worker consuming the drill's changes, which the drill kills with SIGKILL."""

    def kill(self) -> None: ...


class DaemonControl(Protocol):
    """The libvirtd of one host. ``pause()`` (SIGSTOP) makes it a daemon that accepts
    connections and answers nothing, as a hung one does; ``resume()`` (SIGCONT) undoes that;
    ``stop()`` shuts it down (paused or not); ``start()`` starts it again."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


@dataclass(frozen=True)
class Page:
    path: str
    status: int
    seconds: float
    text: str


#: ``fetch()`` -> the pages a user reads, each with its HTTP status, time and text.
PageFetcher = Callable[[], list[Page]]


def pages_of(vm: VirtualMachine) -> list[str]:
    """The pages the drills read: home, hosts, the VM's host, VMs, the VM, the change list."""
    return [
        "/",
        "/hosts/",
        f"/hosts/{vm.host.name}/",
        "/vms/",
        f"/vms/{vm.host.name}/{vm.uuid}/",
        "/changes/",
    ]


def host_pages(hosts: list[Host]) -> list[str]:
    """Home, the host list and each host's page."""
    return ["/", "/hosts/", *(f"/hosts/{host.name}/" for host in hosts)]


def client_fetcher(client: Any, paths: list[str]) -> PageFetcher:
    """*paths* fetched through *client* (a logged-in ``django.test.Client``), in this process."""

    def fetch() -> list[Page]:
        pages = []
        for path in paths:
            started = time.monotonic()
            response = client.get(path)
            pages.append(
                Page(
                    path,
                    response.status_code,
                    time.monotonic() - started,
                    response.content.decode(errors="replace"),
                )
            )
        return pages

    return fetch


def pages_render(result: DrillResult, fetch: PageFetcher, when: str) -> list[Page]:
    """Fetch the pages; check they all answer 200; the worst time as a figure."""
    pages = fetch()
    bad = [f"{p.path} {p.status}" for p in pages if p.status != 200]
    result.saw(", ".join(f"{p.path} {p.status} in {ms(p.seconds)}" for p in pages))
    result.check(not bad, f"{len(pages)} pages render {when}" + (f": {bad}" if bad else ""))
    worst = max((p.seconds for p in pages), default=0.0)
    result.figures[f"pages {when}"] = f"200 in at most {ms(worst)}"
    return pages


def wait_ended(ids: list[Any], timeout: float) -> dict[str, int]:
    """Wait until every change in *ids* ended (or *timeout*); the count per status."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = {}
        for status in Change.objects.filter(pk__in=ids).values_list("status", flat=True):
            counts[status] = counts.get(status, 0) + 1
        pending = counts.get(Status.QUEUED, 0) + counts.get(Status.RUNNING, 0)
        if not pending or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def pin_request(
    vm: VirtualMachine, actor: Any, cpuset: str, reason: str, group: Any, scope: str = "live"
) -> Change:
    """An emulatorpin, live by default (live only: the VM's config is left as it was;
    libvirt's test driver pins vCPUs only with flags no scope sends, but takes a live emulator
    pin)."""
    return request_change(
        actor=actor,
        target=vm,
        kind="emulatorpin",
        params={"cpuset": cpuset},
        scope=scope,
        reason=reason,
        group_id=group,
    )


def host_cpus(vm: VirtualMachine) -> list[int]:
    return sorted(PhysicalCpu.objects.filter(host=vm.host).values_list("cpu_id", flat=True))


_SYNC_PENDING = (Host.SyncStatus.QUEUED, Host.SyncStatus.RUNNING)


def wait_sync(host: Host, timeout: float, pending: tuple[str, ...] = _SYNC_PENDING) -> Host:
    """The host once its sync status left *pending* (or after *timeout*)."""
    deadline = time.monotonic() + timeout
    while True:
        host = Host.objects.get(pk=host.pk)
        if host.sync_status not in pending or time.monotonic() > deadline:
            return host
        time.sleep(0.1)


def sync_and_wait(host: Host, timeout: float) -> Host:
    request_sync(host)
    return wait_sync(host, timeout)


def sync_words(host: Host) -> str:
    return f"{host.get_sync_status_display()}" + (f": {host.last_error}" if host.last_error else "")
