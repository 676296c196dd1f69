"""Opening libvirt connections safely: a validated URI, a connect timeout, keepalive.

Three facts shape this module:

* The URI is hostile input: :func:`open_connection` opens nothing that
  :func:`numaportal.virt.uri.validate_uri` refuses.
* libvirt has no connect timeout: an ssh or tcp URI to a host that drops packets hangs for
  minutes, and one that accepts TCP and never answers hangs until it does (libvirt's client
  waits in poll() with no timeout; keepalive can only be switched on once the connection is
  open). :func:`open_connection` opens in a helper thread and gives up after ``timeout``; the
  helper stays blocked inside libvirt, with its socket, until the peer answers or goes away —
  nothing in libvirt's API can abort it. So the helpers are bounded: at most
  :func:`connect_slots` attempts per process are in flight, and when hung attempts hold every
  slot a new one fails at once (:class:`ConnectSlotsBusy`) instead of starting another thread.
  A test that must leave nothing behind runs in a child process instead
  (:mod:`numaportal.virt.connection_check`), which is killed on timeout.
* A connection whose peer dies silently hangs every later call unless keepalive is on, and
  keepalive needs a running libvirt event loop, which we start once per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import libvirt

# The error classes are re-exported for callers that catch around connect().
from numaportal.virt.errors import (
    DomainNotFound,
    HostUnreachable,
    InvalidRequest,
    InvalidURI,
    OperationFailed,
    OperationUnsupported,
    ReadbackMismatch,
    VirtError,
    translate,
)
from numaportal.virt.uri import validate_uri

__all__ = [
    "DEFAULT_CONNECT_SLOTS",
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_COUNT",
    "KEEPALIVE_INTERVAL",
    "ConnectSlotsBusy",
    "DomainNotFound",
    "HostUnreachable",
    "InvalidRequest",
    "InvalidURI",
    "OperationFailed",
    "OperationUnsupported",
    "ReadbackMismatch",
    "Slots",
    "VirtError",
    "connect",
    "connect_slots",
    "open_connection",
    "set_connect_slots",
    "translate",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
#: Seconds between keepalive probes, and unanswered probes before libvirt closes the
#: connection: a dead host is noticed after about 5 * (3 + 1) = 20 s instead of never.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: Connection attempts in flight per process, of each kind (in-process opens; connection tests
#: in a child process): NUMAPORTAL_LIBVIRT_CONNECT_SLOTS, applied by :func:`set_connect_slots`.
DEFAULT_CONNECT_SLOTS = 4


def _transport(uri: str) -> str:
    return uri.partition("://")[0].partition("+")[2]


def _batch_uri(uri: str) -> str:
    """The URI actually opened: for ssh, force ``no_tty=1`` so ssh never prompts.

    A worker started from a terminal has a controlling tty; without no_tty ssh would ask for a
    password there and the task would hang until our timeout instead of failing at once.
    """
    if _transport(uri) != "ssh" or "no_tty=" in uri:
        return uri
    return uri + ("&" if "?" in uri else "?") + "no_tty=1"


# --- process-wide libvirt setup -------------------------------------------------------------

_setup_lock = threading.Lock()
_event_impl_registered = False
_event_loop_pid: int | None = None


def _log_libvirt_error(_ctx: object, err: Any) -> None:
    # Without a handler libvirt prints every error to stderr, including ones we translate and
    # handle; in a Celery worker that is noise next to the real log line. Keep it at debug.
    log.debug("libvirt error: %s", err)


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            log.exception("libvirt event loop iteration failed")
            time.sleep(0.5)  # do not spin if it keeps failing


def _ensure_process_setup() -> None:
    """Register libvirt's default event loop (once) and run it in a daemon thread (per pid).

    The per-pid check matters for Celery's prefork pool: a child forked after the parent
    started the thread inherits the registration but not the thread, so it starts its own.
    """
    global _event_impl_registered, _event_loop_pid
    with _setup_lock:
        if _event_loop_pid == os.getpid():
            return
        if not _event_impl_registered:
            libvirt.registerErrorHandler(_log_libvirt_error, None)
            libvirt.virEventRegisterDefaultImpl()
            _event_impl_registered = True
        thread = threading.Thread(target=_run_event_loop, name="libvirt-event-loop", daemon=True)
        thread.start()
        _event_loop_pid = os.getpid()


# --- the bound on attempts in flight ---------------------------------------------------------


class ConnectSlotsBusy(HostUnreachable):
    """Every connection slot of this process is held by an attempt that has not finished."""


class Slots:
    """A per-process count of attempts in flight that never waits: :meth:`take` fails at once.

    A counter rather than a semaphore so that the limit can change between calls (settings,
    tests). After a fork the child starts from zero: its parent's attempts are not its own.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = threading.Lock()
        self._held = 0
        self._pid = os.getpid()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held if self._pid == os.getpid() else 0

    def take(self, limit: int, uri: str) -> None:
        """Hold a slot, or raise :class:`ConnectSlotsBusy` if *limit* are held already."""
        with self._lock:
            if self._pid != os.getpid():
                self._held, self._pid = 0, os.getpid()
            if self._held >= limit:
                raise ConnectSlotsBusy(
                    f"not connecting to {uri}: all {limit} {self.what} slots of this process "
                    "are held by attempts that have not finished (a host that accepts the "
                    "connection and never answers holds one); try again later",
                    None,
                    uri,
                )
            self._held += 1

    def give_back(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._held > 0:
                self._held -= 1


_connect_slots = DEFAULT_CONNECT_SLOTS
#: In-process opens: a slot is held by the helper thread until libvirt returns, timeout or not.
OPEN_SLOTS = Slots("libvirt connection")


def set_connect_slots(limit: int) -> None:
    """How many attempts of each kind one process runs at once (Django applies the setting)."""
    global _connect_slots
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"connection slots must be a positive integer, not {limit!r}")
    _connect_slots = limit


def connect_slots() -> int:
    return _connect_slots


# --- opening --------------------------------------------------------------------------------


class _OpenAttempt:
    """One libvirt open in a helper thread, abandoned (and cleaned up) if it takes too long."""

    def __init__(self, uri: str, readonly: bool, slots: Slots) -> None:
        self.uri = uri
        self.slots = slots
        self.readonly = readonly
        self.done = threading.Event()
        self.conn: libvirt.virConnect | None = None
        self.error: libvirt.libvirtError | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    def run(self) -> None:
        try:
            self._open()
        finally:
            # Only now: until libvirt returned, this thread and its socket were alive.
            self.slots.give_back()

    def _open(self) -> None:
        conn = None
        try:
            flags = libvirt.VIR_CONNECT_RO if self.readonly else 0
            # openAuth with no credential types and no callback: libvirt never prompts; an
            # auth method that needs a password simply fails (AUTH_FAILED).
            conn = libvirt.openAuth(self.uri, [[], None, None], flags)
        except libvirt.libvirtError as exc:
            # Constructed in this thread, so it captured this thread's last libvirt error.
            self.error = exc
        except Exception as exc:  # a helper thread must never die silently
            self.error = libvirt.libvirtError(f"unexpected error opening {self.uri}: {exc!r}")
        with self._lock:
            if self._abandoned:
                if conn is not None:
                    # The caller gave up on us; nobody else will ever close this.
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
            else:
                self.conn = conn
            self.done.set()

    def abandon(self) -> bool:
        """Give up unless the open finished meanwhile; True if it was abandoned."""
        with self._lock:
            if self.done.is_set():
                return False
            self._abandoned = True
            return True


def open_connection(
    uri: str, *, timeout: float = DEFAULT_TIMEOUT, readonly: bool = False, slots: int | None = None
) -> libvirt.virConnect:
    """Validate *uri* and open it, failing with :class:`HostUnreachable` after *timeout* s.

    The caller owns the connection and must ``close()`` it (or use :func:`connect`). Keepalive
    is switched on when the driver supports it (remote connections, including the local
    ``qemu:///system`` socket); the in-process test driver does not, which is fine.

    *slots* (default :func:`connect_slots`): when that many earlier opens of this process are
    still inside libvirt (hung on hosts that never answered), fail at once with
    :class:`ConnectSlotsBusy` rather than start another helper thread.
    """
    uri = validate_uri(uri)
    if not timeout > 0:
        raise InvalidRequest(f"connect timeout must be positive, not {timeout!r}", None, uri)
    _ensure_process_setup()

    OPEN_SLOTS.take(_connect_slots if slots is None else slots, uri)
    attempt = _OpenAttempt(_batch_uri(uri), readonly, OPEN_SLOTS)
    thread = threading.Thread(target=attempt.run, name=f"libvirt-open {uri}", daemon=True)
    try:
        thread.start()
    except BaseException:
        OPEN_SLOTS.give_back()
        raise
    # A hung open leaves its thread blocked inside libvirt, holding its slot; it is a daemon
    # thread, it closes the connection itself if it ever completes, and nothing can kill it.
    try:
        finished = _wait(attempt.done, timeout)
    except BaseException:
        # Interrupted while waiting (a worker's soft time limit raises in this thread): the
        # helper must close the connection itself if it ever opens, as on a timeout.
        if not attempt.abandon() and attempt.conn is not None:
            # It opened just as we were interrupted: nobody else will close it.
            with contextlib.suppress(libvirt.libvirtError):
                attempt.conn.close()
        raise
    if not finished and attempt.abandon():
        raise HostUnreachable(f"timed out after {timeout:g}s connecting to {uri}", None, uri)
    if attempt.error is not None:
        raise translate(attempt.error, uri)
    conn = attempt.conn
    if conn is None:  # pragma: no cover - libvirt-python raises instead of returning None
        raise HostUnreachable(f"libvirt returned no connection for {uri}", None, uri)
    _set_keepalive(conn, uri)
    return conn


#: The longest single wait of :func:`_wait`.
_WAIT_SLICE_S = 0.25


def _wait(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)`` in short slices. Python runs a signal's handler (a Celery
    worker's soft time limit: SIGUSR1, raising in the task) in the main thread only, and the
    kernel may deliver a process-wide signal to any thread, here the helper blocked in libvirt:
    one long wait would then let the handler run only when it ends, after the full timeout."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return event.is_set()
        if event.wait(min(remaining, _WAIT_SLICE_S)):
            return True


def _set_keepalive(conn: libvirt.virConnect, uri: str) -> None:
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    except libvirt.libvirtError as exc:
        err = translate(exc, uri)
        # The test driver and other in-process drivers have nothing to keep alive.
        if not isinstance(err, OperationUnsupported):
            log.warning("could not enable keepalive on %s: %s", uri, err)


@contextlib.contextmanager
def connect(
    uri: str, *, timeout: float = DEFAULT_TIMEOUT, readonly: bool = False
) -> Iterator[libvirt.virConnect]:
    """``with connect(uri) as conn:`` — :func:`open_connection`, closed on exit."""
    conn = open_connection(uri, timeout=timeout, readonly=readonly)
    try:
        yield conn
    finally:
        # Closing a connection whose peer is gone can itself fail; the caller's own exception
        # (if any) is the one worth seeing.
        try:
            conn.close()
        except libvirt.libvirtError as exc:
            log.debug("closing %s failed: %s", uri, exc)
