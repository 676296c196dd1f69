"""What is running: the services behind the portal, checked the way an operator would.

Every check returns a `ComponentStatus` instead of raising, so that the home page can show
a broken broker or an unreachable libvirt daemon as a red line with the real message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from hosts.services import describe_host
from numaportal.celery import app as celery_app
from numaportal.virt.errors import VirtError

HEARTBEAT_KEY = "heartbeat"
# Beat schedules the heartbeat every 30 s; three missed beats mean something is down.
HEARTBEAT_STALE_AFTER = 95.0


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


def check_workers(timeout: float = 1.0) -> ComponentStatus:
    try:
        replies = celery_app.control.ping(timeout=timeout)
    except Exception as exc:
        return ComponentStatus("Celery workers", False, str(exc))
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return ComponentStatus("Celery workers", False, "no worker answered a ping")
    return ComponentStatus("Celery workers", True, ", ".join(names))


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
    """The lab daemon, or libvirt's test driver when the daemon cannot be reached."""
    uri = uri or settings.NUMAPORTAL_LAB_URI
    try:
        info = describe_host(uri)
    except VirtError as exc:
        fallback = settings.NUMAPORTAL_FALLBACK_URI
        try:
            info = describe_host(fallback)
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
