"""What is running: the services behind the portal, checked the way an operator would.

Every check returns a `ComponentStatus` instead of raising, so that the home page can show
a broken broker or an unreachable libvirt daemon as a red line with the real message. None of
them waits on a worker: workers and beat are known from what they last wrote to the cache
(:mod:`numaportal.liveness`, the heartbeat task), so the page answers in milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from hosts.services import describe_host
from numaportal import liveness
from numaportal.celery import app as celery_app
from numaportal.virt.errors import VirtError

HEARTBEAT_KEY = "heartbeat"
# Beat schedules the heartbeat every 30 s; three missed beats mean something is down.
HEARTBEAT_STALE_AFTER = 95.0
#: Seconds the libvirt row waits for the lab daemon (connecting: see check_libvirt).
LIBVIRT_TIMEOUT = 3.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    ok: bool
    detail: str
    facts: dict[str, str] = field(default_factory=dict)


def record_heartbeat(now: float | None = None) -> None:
    cache.set(HEARTBEAT_KEY, time.time() if now is None else now, timeout=None)


def check_database() -> ComponentStatus:
    vendor = connection.vendor
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # the page must show any database failure, whatever its class
        return ComponentStatus("Database", False, f"{vendor}: {exc}")
    name = str(settings.DATABASES["default"].get("NAME", ""))
    return ComponentStatus("Database", True, f"{vendor} ({name})")


def check_broker() -> ComponentStatus:
    url = celery_app.conf.broker_url
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises many classes; the message is what matters
        return ComponentStatus("Broker (Redis)", False, f"{_redact(url)}: {exc}")
    return ComponentStatus("Broker (Redis)", True, _redact(url))


def check_workers(now: float | None = None) -> ComponentStatus:
    """The workers that reported themselves alive lately (:mod:`numaportal.liveness`), with
    their queues: read from the cache at once, where a broadcast ping waits its timeout."""
    now = time.time() if now is None else now
    try:
        reports = liveness.alive(now)
    except Exception as exc:  # the cache (Redis) down: say so, as for beat
        return ComponentStatus("Celery workers", False, f"cache unavailable: {exc}")
    if not reports:
        return ComponentStatus(
            "Celery workers", False, f"no worker reported in the last {liveness.REPORT_TTL:.0f} s"
        )
    facts = {
        r.hostname: f"queues {', '.join(r.queues) or '-'}; reported {now - r.at:.0f} s ago"
        for r in reports
    }
    return ComponentStatus("Celery workers", True, ", ".join(r.hostname for r in reports), facts)


def check_beat(now: float | None = None) -> ComponentStatus:
    try:
        last = cache.get(HEARTBEAT_KEY)
    except Exception as exc:
        return ComponentStatus("Celery beat", False, f"cache unavailable: {exc}")
    if last is None:
        return ComponentStatus("Celery beat", False, "no heartbeat yet (beat runs it every 30 s)")
    age = (time.time() if now is None else now) - float(last)
    if age > HEARTBEAT_STALE_AFTER:
        return ComponentStatus("Celery beat", False, f"last heartbeat {age:.0f} s ago")
    return ComponentStatus("Celery beat", True, f"last heartbeat {age:.0f} s ago")


def check_libvirt(uri: str | None = None) -> ComponentStatus:
    """The lab daemon, or libvirt's test driver when the daemon cannot be reached.

    A local daemon answers in milliseconds; one that does not within
    :data:`LIBVIRT_TIMEOUT` seconds is shown as unreachable, so the page (refreshed every
    10 s) never waits the long timeout of a sync for it.
    """
    uri = uri or settings.NUMAPORTAL_LAB_URI
    timeout = min(LIBVIRT_TIMEOUT, settings.NUMAPORTAL_LIBVIRT_TIMEOUT)
    try:
        info = describe_host(uri, timeout=timeout)
    except VirtError as exc:
        fallback = settings.NUMAPORTAL_FALLBACK_URI
        try:
            info = describe_host(fallback, timeout=timeout)
        except VirtError as fallback_exc:
            return ComponentStatus("libvirt", False, f"{uri}: {exc}; {fallback}: {fallback_exc}")
        return ComponentStatus(
            "libvirt", False, f"{uri} unreachable ({exc}); showing {fallback} instead", info
        )
    return ComponentStatus("libvirt", True, uri, info)


def _redact(url: str) -> str:
    """Never show a password that sits in a broker URL."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def collect() -> list[ComponentStatus]:
    return [
        ComponentStatus("Web", True, "this page"),
        check_database(),
        check_broker(),
        check_workers(),
        check_beat(),
        check_libvirt(),
    ]
