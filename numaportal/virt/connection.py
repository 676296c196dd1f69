"""Opening libvirt connections safely: URI validation, a connect timeout, keepalive.

Three facts shape this module:

* The URI is hostile input. It comes from a browser form and is opened by a Celery worker, and
  libvirt URIs can run commands (``ext`` transport, ``?command=``, ``?netcat=``), read files on
  the worker (``test:///path.xml``) or talk to arbitrary local sockets (``?socket=``). So
  :func:`validate_uri` accepts an explicit allow-list and refuses everything else by name.
* libvirt has no connect timeout: an ssh or tcp URI to a host that drops packets hangs for
  minutes. :func:`open_connection` opens in a helper thread and gives up after ``timeout``.
* A connection whose peer dies silently hangs every later call unless keepalive is on, and
  keepalive needs a running libvirt event loop, which we start once per process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import libvirt

from numaportal.virt.cpuset import cpumap_to_cpuset
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
from numaportal.virt.topology import TopologyError, parse_capabilities

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_COUNT",
    "KEEPALIVE_INTERVAL",
    "MAX_URI_LENGTH",
    "DomainNotFound",
    "HostInfo",
    "HostUnreachable",
    "InvalidRequest",
    "InvalidURI",
    "OperationFailed",
    "OperationUnsupported",
    "ReadbackMismatch",
    "VirtError",
    "connect",
    "format_version",
    "host_info",
    "open_connection",
    "translate",
    "validate_uri",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
#: Seconds between keepalive probes, and unanswered probes before libvirt closes the
#: connection: a dead host is noticed after about 5 * (3 + 1) = 20 s instead of never.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
MAX_URI_LENGTH = 1024

# --- URI validation -------------------------------------------------------------------------

_DRIVERS = frozenset({"qemu", "test"})
_QEMU_PATHS = frozenset({"/system", "/session"})
_REMOTE_TRANSPORTS = frozenset({"ssh", "libssh", "libssh2", "tls", "tcp"})

# Transports we refuse, with the reason the user sees.
_REFUSED_TRANSPORTS = {
    "ext": "it runs an arbitrary command on the worker",
}

# Query parameters we refuse, with the reason. Anything not in _ALLOWED_PARAMS is refused too;
# these just get a precise explanation because they are the dangerous ones.
_REFUSED_PARAMS = {
    "command": "it replaces the ssh/ext command run on the worker",
    "netcat": "it names the command run on the remote host",
    "socket": "it points libvirt at an arbitrary socket path",
    "proxy": "it chooses which helper binary runs on the remote host",
    "mode": "it chooses which daemon socket the remote side connects to",
    "name": "it passes an arbitrary URI (e.g. test:///path.xml) to the remote daemon",
    "no_verify": "it disables TLS certificate / ssh host key verification",
    "tls_priority": "it can weaken the TLS cipher selection",
    "tls": "it changes the TLS settings of the remote transport",
}

# The allow-list: what a central worker legitimately needs to pick its credentials and to
# never prompt, and nothing that runs a program, opens another socket or switches off host
# verification. Paths must be absolute and plain (see _PATH); they select files on the worker
# but only ever as ssh keys / known_hosts / a TLS pki directory for a host the user names,
# which is the whole point of the parameter.
#   keyfile            ssh private key (ssh, libssh, libssh2)
#   known_hosts        known_hosts file (libssh, libssh2)
#   known_hosts_verify normal|auto — "ignore" would disable host key checks (MITM), refused
#   sshauth            order of auth methods (libssh, libssh2); no prompts happen anyway
#   no_tty             1 stops ssh from asking for a password on a terminal (ssh)
#   pkipath            directory holding the TLS client certificate (tls)
_ALLOWED_PARAMS: dict[str, frozenset[str]] = {
    "keyfile": frozenset({"ssh", "libssh", "libssh2"}),
    "known_hosts": frozenset({"libssh", "libssh2"}),
    "known_hosts_verify": frozenset({"libssh", "libssh2"}),
    "sshauth": frozenset({"libssh", "libssh2"}),
    "no_tty": frozenset({"ssh"}),
    "pkipath": frozenset({"tls"}),
}
_PATH_PARAMS = frozenset({"keyfile", "known_hosts", "pkipath"})
_SSHAUTH_METHODS = frozenset({"agent", "privkey", "password", "keyboard-interactive"})
_KNOWN_HOSTS_VERIFY = frozenset({"normal", "auto"})

# Characters allowed anywhere in a URI. No '%' (libvirt percent-decodes query values, so
# "co%6dmand" would slip past a check done on the raw text), no ';' (libvirt also splits query
# parameters on ';', Python does not: "keyfile=/k;command=x" would look like one parameter to
# us and two to libvirt), no '#', quotes, backslashes, '$' or backticks.
_URI_CHARS = re.compile(r"[A-Za-z0-9._~:/?@=&,+\-\[\]]*")
_SCHEME = re.compile(r"[a-z][a-z0-9]*(\+[a-z0-9]+)?")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


def _refuse(problem: str, uri: str | None = None) -> InvalidURI:
    return InvalidURI(f"invalid libvirt URI: {problem}", None, uri)


def _check_host(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise _refuse(f"unbalanced '[' in host {host!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _refuse(f"{host!r} is not a valid IPv6 address") from None
        return host.lower()
    host = host.lower()
    if len(host) > 253:
        raise _refuse("host name is longer than 253 characters")
    # A leading '-' would be read as an option by ssh: "-oProxyCommand=..." runs a command.
    if host.startswith("-"):
        raise _refuse(f"host {host!r} starts with '-'")
    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _refuse(f"{host!r} is not a valid host name or IPv4 address")
    return host


def _check_param(key: str, value: str, transport: str) -> None:
    if key in _REFUSED_PARAMS:
        raise _refuse(f"parameter '{key}' is not allowed: {_REFUSED_PARAMS[key]}")
    if key not in _ALLOWED_PARAMS:
        allowed = ", ".join(sorted(_ALLOWED_PARAMS))
        raise _refuse(f"parameter '{key}' is not allowed (allowed: {allowed})")
    if transport not in _ALLOWED_PARAMS[key]:
        where = "/".join(sorted(_ALLOWED_PARAMS[key]))
        raise _refuse(f"parameter '{key}' only applies to the {where} transport")
    if key in _PATH_PARAMS:
        if not _PATH.fullmatch(value) or "/../" in f"{value}/":
            raise _refuse(f"parameter '{key}' must be a plain absolute path, not {value!r}")
    elif key == "no_tty":
        if value not in ("0", "1"):
            raise _refuse(f"parameter 'no_tty' must be 0 or 1, not {value!r}")
    elif key == "known_hosts_verify":
        if value not in _KNOWN_HOSTS_VERIFY:
            raise _refuse(
                f"known_hosts_verify={value!r} is not allowed: use 'normal' or 'auto' "
                "('ignore' would disable host key verification)"
            )
    elif key == "sshauth":
        methods = value.split(",")
        unknown = [m for m in methods if m not in _SSHAUTH_METHODS]
        if unknown or not value:
            raise _refuse(
                f"parameter 'sshauth' must list methods from "
                f"{', '.join(sorted(_SSHAUTH_METHODS))}, not {value!r}"
            )


def validate_uri(uri: str) -> str:
    """Check a libvirt connection URI from an untrusted source and return it normalised.

    Accepted: drivers ``qemu`` (paths ``/system``, ``/session``) and ``test`` (only
    ``test:///default``); transports none, ``unix``, ``ssh``, ``libssh``, ``libssh2``, ``tls``,
    ``tcp``; an optional ``user@``, host and port; the query parameters listed in
    ``_ALLOWED_PARAMS``. Everything else raises :class:`InvalidURI` naming the problem.
    Normalised means: scheme and host lower-cased, empty query dropped.
    """
    if not isinstance(uri, str):
        raise _refuse(f"a URI must be a string, not {type(uri).__name__}")
    if len(uri) > MAX_URI_LENGTH:
        raise _refuse(f"it is longer than {MAX_URI_LENGTH} characters ({len(uri)})")
    if not uri:
        raise _refuse("it is empty")
    for ch in uri:
        if ch.isspace() or not ch.isprintable():
            raise _refuse(f"it contains whitespace or a control character ({ch!r})")
    if not uri.isascii():
        raise _refuse("it contains non-ASCII characters")
    bad = sorted({ch for ch in uri if not _URI_CHARS.fullmatch(ch)})
    if bad:
        raise _refuse(f"it contains characters that are not allowed: {' '.join(bad)}")

    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _refuse("expected DRIVER[+TRANSPORT]://[HOST]/PATH")
    scheme = scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        raise _refuse(f"malformed scheme {scheme!r}")
    driver, _plus, transport = scheme.partition("+")
    if transport in _REFUSED_TRANSPORTS:
        raise _refuse(f"transport '{transport}' is not allowed: {_REFUSED_TRANSPORTS[transport]}")
    if driver not in _DRIVERS:
        raise _refuse(f"driver '{driver}' is not supported (use qemu, or test for the test driver)")
    if transport and transport not in _REMOTE_TRANSPORTS | {"unix"}:
        raise _refuse(f"transport '{transport}' is not supported")

    authority, slash, path_query = rest.partition("/")
    path, _q, raw_query = ("/" + path_query).partition("?") if slash else ("", "", "")

    if driver == "test":
        # test:///path.xml would make the worker read (and echo parts of) any file it can.
        if uri.lower() != "test:///default":
            raise _refuse("the test driver is only allowed as test:///default")
        return "test:///default"

    if path not in _QEMU_PATHS:
        raise _refuse(f"path {path!r} is not allowed for qemu (use /system or /session)")

    userinfo, at, hostport = authority.rpartition("@")
    if at and not userinfo:
        raise _refuse("empty user name before '@'")
    if ":" in userinfo:
        raise _refuse("a password in the URI is not allowed (it would end up in logs)")
    if userinfo and not _USER.fullmatch(userinfo):
        raise _refuse(f"user name {userinfo!r} is not allowed")
    if hostport.startswith("["):
        host, bracket, port_text = hostport.partition("]")
        host += bracket
    else:
        host, _colon, port_text = hostport.partition(":")
        port_text = _colon + port_text
    if port_text and (
        not re.fullmatch(r":[0-9]{1,5}", port_text) or not 1 <= int(port_text[1:]) <= 65535
    ):
        raise _refuse(f"port {port_text[1:]!r} is not a number from 1 to 65535")
    if userinfo and not host:
        raise _refuse("a user name needs a host")
    if port_text and not host:
        raise _refuse("a port needs a host")
    if transport in _REMOTE_TRANSPORTS and not host:
        raise _refuse(f"transport '{transport}' needs a host (e.g. {scheme}://host/system)")
    if transport == "unix" and host:
        raise _refuse("the unix transport is local: it takes no host")
    if host:
        host = _check_host(host)

    # Without a host, "qemu:///system" is local and takes no parameters; with a host and no
    # explicit transport, libvirt uses TLS.
    effective_transport = transport or ("tls" if host else "")
    params: list[tuple[str, str]] = []
    if raw_query:
        seen: set[str] = set()
        for item in raw_query.split("&"):
            key, eq, value = item.partition("=")
            if not key or not eq:
                raise _refuse(f"malformed query parameter {item!r} (expected key=value)")
            if key in seen:
                raise _refuse(f"parameter '{key}' is given twice")
            seen.add(key)
            if key in _REFUSED_PARAMS:
                raise _refuse(f"parameter '{key}' is not allowed: {_REFUSED_PARAMS[key]}")
            if not effective_transport:
                raise _refuse("a local qemu URI takes no parameters")
            _check_param(key, value, effective_transport)
            params.append((key, value))

    netloc_out = (f"{userinfo}@" if userinfo else "") + host + port_text
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"{scheme}://{netloc_out}{path}" + (f"?{query}" if query else "")


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


# --- opening --------------------------------------------------------------------------------


class _OpenAttempt:
    """One libvirt open in a helper thread, abandoned (and cleaned up) if it takes too long."""

    def __init__(self, uri: str, readonly: bool) -> None:
        self.uri = uri
        self.readonly = readonly
        self.done = threading.Event()
        self.conn: libvirt.virConnect | None = None
        self.error: libvirt.libvirtError | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    def run(self) -> None:
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
    uri: str, *, timeout: float = DEFAULT_TIMEOUT, readonly: bool = False
) -> libvirt.virConnect:
    """Validate *uri* and open it, failing with :class:`HostUnreachable` after *timeout* s.

    The caller owns the connection and must ``close()`` it (or use :func:`connect`). Keepalive
    is switched on when the driver supports it (remote connections, including the local
    ``qemu:///system`` socket); the in-process test driver does not, which is fine.
    """
    uri = validate_uri(uri)
    if not timeout > 0:
        raise InvalidRequest(f"connect timeout must be positive, not {timeout!r}", None, uri)
    _ensure_process_setup()

    attempt = _OpenAttempt(_batch_uri(uri), readonly)
    thread = threading.Thread(target=attempt.run, name=f"libvirt-open {uri}", daemon=True)
    thread.start()
    # A hung open leaves its thread blocked inside libvirt; it is a daemon thread, it closes
    # the connection itself if it ever completes, and it cannot be killed any other way.
    if not attempt.done.wait(timeout) and attempt.abandon():
        raise HostUnreachable(f"timed out after {timeout:g}s connecting to {uri}", None, uri)
    if attempt.error is not None:
        raise translate(attempt.error, uri)
    conn = attempt.conn
    if conn is None:  # pragma: no cover - libvirt-python raises instead of returning None
        raise HostUnreachable(f"libvirt returned no connection for {uri}", None, uri)
    _set_keepalive(conn, uri)
    return conn


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


# --- host facts -----------------------------------------------------------------------------


def format_version(version: int) -> str:
    """libvirt's packed version number (major * 1e6 + minor * 1e3 + micro) as ``"9.0.0"``."""
    return f"{version // 1_000_000}.{version // 1_000 % 1_000}.{version % 1_000}"


@dataclass(frozen=True)
class HostInfo:
    """What ``virsh hostname/version/nodeinfo/freecell/capabilities`` say about a host."""

    uri: str
    hostname: str
    hypervisor_type: str
    libvirt_version: int
    hypervisor_version: int
    cpu_count: int
    cpus_online: frozenset[int]
    capabilities_xml: str
    #: Free memory per NUMA cell id, in KiB. Empty when the host reports no cells.
    cells_free_memory_kib: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "hostname": self.hostname,
            "hypervisor_type": self.hypervisor_type,
            "libvirt_version": format_version(self.libvirt_version),
            "hypervisor_version": format_version(self.hypervisor_version),
            "cpu_count": self.cpu_count,
            "cpus_online": sorted(self.cpus_online),
            "cells_free_memory_kib": {str(k): v for k, v in self.cells_free_memory_kib.items()},
        }


def cell_ids(capabilities_xml: str) -> list[int]:
    """The NUMA cell ids a host reports, sorted; empty when its capabilities have none."""
    try:
        return sorted(parse_capabilities(capabilities_xml).cell_ids)
    except TopologyError:
        # Free memory per cell is a nicety of host_info: a host whose topology we cannot read
        # still answers everything else.
        return []


def _cells_free_memory_kib(conn: libvirt.virConnect, cell_ids: list[int]) -> dict[int, int]:
    if not cell_ids:
        return {}
    # getCellsFreeMemory(start, max) indexes by cell id and returns bytes. Cell ids can be
    # sparse; ask for the whole range once and keep the ids that exist, falling back to one
    # call per cell if the range call fails on a missing id.
    try:
        values = conn.getCellsFreeMemory(0, cell_ids[-1] + 1)
        by_id = dict(enumerate(values))
        return {cid: by_id[cid] // 1024 for cid in cell_ids if cid in by_id}
    except libvirt.libvirtError:
        result: dict[int, int] = {}
        for cid in cell_ids:
            with contextlib.suppress(libvirt.libvirtError, IndexError):
                result[cid] = conn.getCellsFreeMemory(cid, 1)[0] // 1024
        return result


def cells_free_memory_kib(conn: libvirt.virConnect) -> dict[int, int]:
    """``virsh freecell --all`` per cell id, in KiB: what a host without an on-host worker
    still tells about its cells (getCellsFreeMemory). Empty when it reports no cells."""
    try:
        capabilities = conn.getCapabilities()
        return _cells_free_memory_kib(conn, cell_ids(capabilities))
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


def host_info(conn: libvirt.virConnect) -> HostInfo:
    """Collect the host facts the inventory needs (topology parsing is topology.py's job)."""
    try:
        uri = conn.getURI()
        capabilities = conn.getCapabilities()
        cpu_count, cpumap, _online = conn.getCPUMap()
        return HostInfo(
            uri=uri,
            hostname=conn.getHostname(),
            hypervisor_type=conn.getType(),
            libvirt_version=conn.getLibVersion(),
            hypervisor_version=conn.getVersion(),
            cpu_count=cpu_count,
            cpus_online=cpumap_to_cpuset(cpumap),
            capabilities_xml=capabilities,
            cells_free_memory_kib=_cells_free_memory_kib(conn, cell_ids(capabilities)),
        )
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


def uri_of(conn: libvirt.virConnect) -> str | None:
    """The connection's URI for error messages; None when even that call fails."""
    try:
        return conn.getURI()
    except libvirt.libvirtError:
        return None
