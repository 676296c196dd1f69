"""Testing a libvirt URI in a child process that is killed when it does not answer in time.

Registering a host tests its URI once. In-process
(:func:`numaportal.virt.connection.open_connection`) a host that accepts TCP and never answers
keeps the helper thread and its socket inside libvirt until the peer goes away: libvirt's
client waits in poll() without a timeout, and its API offers no way to abort an open. A child
process can be aborted: :func:`check_connection` runs the open and ``virsh nodeinfo/version``'s
reads in a fresh interpreter (``python -I``, this module's :func:`_child`), waits for its
answer with a timeout, and on timeout kills its whole process group (libvirt's ssh transport
runs ``ssh`` as a grandchild) and reaps it. The kernel closes the child's sockets with it; the
caller's process never had one, and waits in the calling thread (``Popen.communicate``), so no
thread is left either.

At most :func:`numaportal.virt.connection.connect_slots` tests run at once per process
(:data:`CHECK_SLOTS`); one more fails at once with
:class:`~numaportal.virt.connection.ConnectSlotsBusy`. A slot is held at most *timeout*
seconds (plus the kill), so hung endpoints cannot hold them for longer.

Cost: a Python interpreter with libvirt imported, about 0.1 s of CPU and 30 MB for as long as
the test lasts (0.3-0.8 s wall on the 2-CPU lab machine under load).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from numaportal.virt import hostfacts
from numaportal.virt.connection import (
    DEFAULT_TIMEOUT,
    ConnectSlotsBusy,
    Slots,
    _batch_uri,
    connect_slots,
)
from numaportal.virt.errors import HostUnreachable, InvalidRequest, OperationFailed, classify
from numaportal.virt.uri import validate_uri

__all__ = ["CHECK_SLOTS", "ConnectSlotsBusy", "ConnectionAnswer", "check_connection"]

#: The directory that holds the ``numaportal`` package, put on the child's sys.path.
_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from numaportal.virt.connection_check import _child; _child()"
)
#: Seconds the child lives past the parent's timeout before killing itself (SIGALRM), for the
#: case where the parent died and nobody kills it.
_CHILD_GRACE = 5

CHECK_SLOTS = Slots("connection test")


@dataclass(frozen=True)
class ConnectionAnswer:
    """What the host said: ``virsh hostname``, ``version`` and ``nodeinfo``, and how fast."""

    uri: str
    hostname: str
    hypervisor: str
    libvirt_version: str
    cpu_count: int
    cell_count: int
    seconds: float

    def describe(self) -> str:
        cells = f"{self.cell_count} NUMA cell{'s' if self.cell_count != 1 else ''}"
        return (
            f"{self.hostname} answered in {self.seconds:.1f} s: {self.hypervisor}, "
            f"libvirt {self.libvirt_version}, {self.cpu_count} CPUs, {cells}"
        )


def check_connection(
    uri: str, *, timeout: float = DEFAULT_TIMEOUT, slots: int | None = None
) -> ConnectionAnswer:
    """Open *uri* read-only in a child process, read the host's facts, close; what it answered.

    Raises the :class:`~numaportal.virt.errors.VirtError` libvirt's refusal maps to, with
    libvirt's message (``InvalidURI`` before anything runs; ``HostUnreachable`` "timed out
    after …" when the child had not answered after *timeout* s and was killed), and
    :class:`~numaportal.virt.connection.ConnectSlotsBusy` at once when *slots* (default
    :func:`~numaportal.virt.connection.connect_slots`) tests of this process are running.
    """
    uri = validate_uri(uri)
    if not timeout > 0:
        raise InvalidRequest(f"connect timeout must be positive, not {timeout!r}", None, uri)
    CHECK_SLOTS.take(connect_slots() if slots is None else slots, uri)
    try:
        return _run_child(uri, timeout)
    finally:
        CHECK_SLOTS.give_back()


def _run_child(uri: str, timeout: float) -> ConnectionAnswer:
    request = json.dumps({"uri": _batch_uri(uri), "alarm": math.ceil(timeout) + _CHILD_GRACE})
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD, _ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: ssh grandchildren die with it
        )
    except OSError as exc:  # out of processes or memory: say so rather than crash the task
        raise OperationFailed(f"could not start the connection test: {exc}", None, uri) from exc
    try:
        out, err = child.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(child)
        raise HostUnreachable(
            f"timed out after {timeout:g}s connecting to {uri}", None, uri
        ) from None
    except BaseException:
        _kill(child)
        raise
    seconds = time.monotonic() - started
    return _answer(uri, child.returncode, out, err, seconds)


def _kill(child: subprocess.Popen[str]) -> None:
    """SIGKILL the child's process group, then reap it and close its pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        child.kill()  # in case it left its group
    child.communicate()  # waits (SIGKILL cannot be ignored) and closes stdin/stdout/stderr


def _answer(uri: str, returncode: int, out: str, err: str, seconds: float) -> ConnectionAnswer:
    try:
        message = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (err or out).strip()[-500:] or f"exit status {returncode}"
        raise OperationFailed(f"the connection test crashed: {tail}", None, uri) from None
    if "error" in message:
        error = message["error"]
        text = error.get("message") or "unknown libvirt error"
        cls = classify(error.get("code"), error.get("domain"), text)
        raise cls(text, error.get("code"), uri, error_domain=error.get("domain"))
    return ConnectionAnswer(uri=uri, seconds=round(seconds, 3), **message["answer"])


# --- the child ------------------------------------------------------------------------------


def _child() -> None:
    """In the child: one JSON request on stdin, one JSON line on stdout."""
    request = json.loads(sys.stdin.read())
    # If the parent vanished before killing us, do not wait for the host forever.
    signal.alarm(int(request["alarm"]))
    print(json.dumps(_child_answer(request["uri"])), flush=True)


def _child_answer(uri: str) -> dict[str, Any]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no echo on stderr
    try:
        conn = libvirt.openAuth(uri, [[], None, None], libvirt.VIR_CONNECT_RO)
        try:
            info = hostfacts.host_info(conn)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
    except libvirt.libvirtError as exc:
        return {
            "error": {
                "code": exc.get_error_code(),
                "domain": exc.get_error_domain(),
                "message": exc.get_error_message() or str(exc),
            }
        }
    except Exception as exc:  # a VirtError of host_info, or anything else: its words
        code = getattr(exc, "code", None)
        domain = getattr(exc, "error_domain", None)
        return {"error": {"code": code, "domain": domain, "message": str(exc) or repr(exc)}}
    version = hostfacts.format_version
    answer = {
        "hostname": info.hostname,
        "hypervisor": f"{info.hypervisor_type} {version(info.hypervisor_version)}",
        "libvirt_version": version(info.libvirt_version),
        "cpu_count": info.cpu_count,
        "cell_count": len(hostfacts.cell_ids(info.capabilities_xml)),
    }
    return {"answer": answer}
