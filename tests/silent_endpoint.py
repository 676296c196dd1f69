"""A libvirt endpoint that accepts TCP connections and never answers, and what a process holds.

:class:`SilentEndpoint` listens on 127.0.0.1 (a free port), accepts every connection in a
thread of its own and never sends a byte: the kernel completes the handshake, libvirt's client
sends its first RPC and waits for the reply forever — like a hung libvirtd, or a proxy that
accepts and forwards nowhere.

The counters read /proc: this process's threads (kernel task ids, which libvirt's own threads
have too), the ESTABLISHED TCP sockets *to* a port in this network namespace (whoever holds
them: this process or a child), the sockets to a port this process holds open, and its living
child processes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

__all__ = [
    "SilentEndpoint",
    "child_processes",
    "established_to",
    "sockets_held_to",
    "thread_ids",
]

_ESTABLISHED = "01"


class SilentEndpoint:
    """``with SilentEndpoint() as endpoint:`` ``endpoint.uri`` accepts and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.uri = f"qemu+tcp://127.0.0.1:{self.port}/system"
        self._accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="silent-endpoint", daemon=True)

    def __enter__(self) -> SilentEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def accepted(self) -> int:
        """How many connections it accepted so far (each one a client that reached it)."""
        with self._lock:
            return len(self._accepted)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._accepted.append(conn)

    def hang_up(self) -> None:
        """Close the accepted connections (their clients see EOF); keep listening."""
        with self._lock:
            accepted, self._accepted = self._accepted, []
        for conn in accepted:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone may not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        self.hang_up()


def thread_ids() -> set[int]:
    """This process's threads, as the kernel lists them (/proc/self/task)."""
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def _tcp_entries() -> list[tuple[int, str, int]]:
    """(remote port, state, inode) of every TCP socket in this network namespace."""
    entries = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                entries.append((remote_port, fields[3], int(fields[9])))
    return entries


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections to *port* (the client ends), held by any process."""
    return sum(1 for remote, state, _ in _tcp_entries() if remote == port and state == _ESTABLISHED)


def sockets_held_to(port: int) -> int:
    """TCP sockets to *port*, in any state, that this process holds a descriptor of."""
    inodes = {inode for remote, _, inode in _tcp_entries() if remote == port and inode}
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                held += 1
    return held


def child_processes() -> set[int]:
    """Living (not yet reaped, zombies included) children of this process."""
    me = os.getpid()
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                children.add(int(entry))
    return children
