"""Host probe: numastat counters, per-process memory per cell, numa_balancing.

What ``numastat``, ``numastat -p <pid>`` and ``/proc/sys/kernel/numa_balancing`` give an
operator on one host, read from a configurable ``root`` so that tests point it at a fixture
tree and an on-host worker at ``/``. Pure file reading: no libvirt call, no Django.

Every failure (missing, unreadable or malformed file, hostile name) raises
:class:`HostProbeError` naming the file and the problem, never another exception type, so a
sampler can record "this host: <message>" and go on with the next host.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from numaportal.virt.errors import VirtError

__all__ = [
    "NUMASTAT_COUNTERS",
    "CellMemory",
    "HostProbe",
    "HostProbeError",
    "InvalidProbeArgument",
    "ProcessMemory",
    "pid_file_name",
    "probe_host",
    "qemu_pid",
    "read_boot_time",
    "read_numa_balancing",
    "read_numa_maps",
    "read_numastat",
    "write_numa_balancing",
]

# The counters every kernel since 2.6 writes to node*/numastat, in the order numastat prints.
NUMASTAT_COUNTERS = (
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "interleave_hit",
    "local_node",
    "other_node",
)

# 0 off, 1 normal NUMA balancing, 2 memory tiering (kernel 5.18+).
NUMA_BALANCING_VALUES = frozenset({0, 1, 2})
# The kernel treats the value as a bit mask (1|2 = 3 is accepted by newer kernels), so a
# host may report 3 even though the portal never writes it; reading it must not fail.
_NUMA_BALANCING_READABLE = frozenset({0, 1, 2, 3})

_NODE_DIR = re.compile(r"node(\d+)")
_NODE_TOKEN = re.compile(r"N(\d+)=(\d+)")
_MIB = 1024 * 1024
# Bounds that keep a hostile file from producing absurd numbers (or huge int parsing).
_MAX_DIGITS = 20


class HostProbeError(VirtError):
    """A /sys or /proc file of a host is missing, unreadable or not what the kernel writes.

    ``path`` is the file concerned (under the probe's root), or ``None``.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


class InvalidProbeArgument(HostProbeError, ValueError):
    """An argument was refused before touching any file (bad value, hostile VM name).

    Also a ValueError, since it is the caller's value that is wrong, and a HostProbeError so
    that a sampler catching the latter never crashes on a hostile name from a host.
    """


@dataclass(frozen=True)
class CellMemory:
    """One process's memory on one cell, in MiB, split as ``numastat -p`` splits it."""

    huge: float = 0.0
    heap: float = 0.0
    stack: float = 0.0
    private: float = 0.0
    #: Of ``private``: pages of mapped files (the QEMU binary, its libraries), page cache that
    #: every process mapping them shares and that sits where the first reader put it. numastat
    #: counts them as Private; they say nothing about where the guest's memory is.
    files: float = 0.0

    @property
    def total(self) -> float:
        return self.huge + self.heap + self.stack + self.private

    @property
    def own(self) -> float:
        """The process's own memory: everything but mapped files' page cache."""
        return self.total - self.files


@dataclass(frozen=True)
class ProcessMemory:
    """Memory per cell of one process, from ``/proc/<pid>/numa_maps``.

    ``cells`` holds only the cells the process has pages on; a cell absent means 0 MiB.
    """

    pid: int
    cells: dict[int, CellMemory] = field(default_factory=dict, hash=False)

    @property
    def total(self) -> float:
        return sum(c.total for c in self.cells.values())

    def as_dict(self) -> dict[int, dict[str, float]]:
        return {
            node: {
                "huge": c.huge,
                "heap": c.heap,
                "stack": c.stack,
                "private": c.private,
                "files": c.files,
                "total": c.total,
            }
            for node, c in sorted(self.cells.items())
        }


def _read_text(path: Path) -> str:
    # One place turns every I/O or decoding failure into a HostProbeError naming the file.
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HostProbeError(f"{path}: no such file", path) from None
    except OSError as e:
        raise HostProbeError(f"{path}: cannot read: {e.strerror or e}", path) from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        # The kernel writes ASCII here, except file names in numa_maps; decode those leniently
        # below rather than refuse a process that maps a file with a non-ASCII name.
        if path.name == "numa_maps":
            return data.decode("utf-8", errors="replace")
        raise HostProbeError(f"{path}: not ASCII text", path) from None


def _parse_int(text: str, path: Path, what: str) -> int:
    # str.isdigit() accepts Unicode digits ("²") that int() then rejects; check ASCII only.
    if not text or len(text) > _MAX_DIGITS or not all("0" <= ch <= "9" for ch in text):
        raise HostProbeError(f"{path}: {what} is not a non-negative integer: {text!r}", path)
    return int(text)


def read_numastat(root: str | os.PathLike[str] = "/") -> dict[int, dict[str, int]]:
    """The counters of ``<root>/sys/devices/system/node/node*/numastat``, per cell.

    Node ids come from the directory names (``node3`` -> 3); entries that are not ``node<N>``
    directories (``possible``, ``online``, ``has_cpu``, ...) are ignored. Counters beyond the
    six documented ones, if a future kernel adds some, are kept too.
    """
    base = Path(root) / "sys/devices/system/node"
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        raise HostProbeError(f"{base}: no such directory (kernel without NUMA?)", base) from None
    except OSError as e:
        raise HostProbeError(f"{base}: cannot list: {e.strerror or e}", base) from None
    result: dict[int, dict[str, int]] = {}
    for entry in entries:
        m = _NODE_DIR.fullmatch(entry)
        if m is None or not (base / entry).is_dir():
            continue
        path = base / entry / "numastat"
        counters: dict[str, int] = {}
        for lineno, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise HostProbeError(
                    f"{path}: line {lineno}: expected '<counter> <value>', got {line!r}", path
                )
            name, value = parts
            if name in counters:
                raise HostProbeError(f"{path}: counter {name!r} appears twice", path)
            counters[name] = _parse_int(value, path, name)
        missing = [c for c in NUMASTAT_COUNTERS if c not in counters]
        if missing:
            raise HostProbeError(f"{path}: missing counters: {', '.join(missing)}", path)
        result[int(m.group(1))] = counters
    if not result:
        raise HostProbeError(f"{base}: no node<N> directories", base)
    return result


def _category(tokens: list[str]) -> str:
    # numastat.c classifies a line by substring (strstr) in this order: "huge", "heap",
    # "stack", else private. We match whole tokens instead, so a mapped file whose path
    # happens to contain "heap" or "huge" is not misfiled; older kernels write "stack:<tid>"
    # for thread stacks, hence the prefix match.
    if "huge" in tokens:
        return "huge"
    if "heap" in tokens:
        return "heap"
    if any(t == "stack" or t.startswith("stack:") for t in tokens):
        return "stack"
    return "private"


#: Mapped "files" that are memory, not page cache: guest RAM backed by memfd, shared memory or
#: libvirt's file-backed RAM (<memoryBacking><source type='file'/>).
# Path prefixes matched against what the kernel reports, nothing is opened.
_MEMORY_FILES = ("/memfd:", "/dev/shm/", "/SYSV", "/var/lib/libvirt/qemu/ram/", "/run/")  # noqa: S108


def _is_mapped_file(tokens: list[str]) -> bool:
    for token in tokens:
        if token.startswith("file="):
            return not token[5:].startswith(_MEMORY_FILES)
    return False


def read_numa_maps(pid: int, root: str | os.PathLike[str] = "/") -> ProcessMemory:
    """Memory per cell of process ``pid``, in MiB, from ``<root>/proc/<pid>/numa_maps``.

    Each line's ``N<node>=<pages>`` counts are multiplied by its ``kernelpagesize_kB``
    (4 KiB when absent, as on kernels before 3.8) and added to the line's category; a mapped
    file's pages are also counted in ``files`` (see :class:`CellMemory`).
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidProbeArgument(f"not a process id: {pid!r}")
    path = Path(root) / "proc" / str(pid) / "numa_maps"
    sums: dict[int, dict[str, int]] = {}  # node -> category -> KiB (ints: exact, then MiB)
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        # "<start address in hex> <policy> ...": anything else is not a numa_maps line.
        try:
            int(tokens[0], 16)
        except ValueError:
            raise HostProbeError(
                f"{path}: line {lineno}: does not start with an address: {line[:80]!r}", path
            ) from None
        if len(tokens) < 2:
            raise HostProbeError(f"{path}: line {lineno}: no memory policy", path)
        page_kib = 4
        pages: list[tuple[int, int]] = []
        for token in tokens[2:]:
            if token.startswith("kernelpagesize_kB="):
                page_kib = _parse_int(token.partition("=")[2], path, "kernelpagesize_kB")
                if page_kib == 0:
                    raise HostProbeError(f"{path}: line {lineno}: kernelpagesize_kB=0", path)
            elif token.startswith("N") and "=" in token:
                m = _NODE_TOKEN.fullmatch(token)
                if m is None:
                    raise HostProbeError(
                        f"{path}: line {lineno}: malformed node count {token[:40]!r}", path
                    )
                node = _parse_int(m.group(1), path, "node id")
                count = _parse_int(m.group(2), path, "page count")
                pages.append((node, count))
        category = _category(tokens[2:])
        page_cache = category == "private" and _is_mapped_file(tokens[2:])
        for node, count in pages:
            cell = sums.setdefault(node, {})
            cell[category] = cell.get(category, 0) + count * page_kib
            if page_cache:
                cell["files"] = cell.get("files", 0) + count * page_kib
    cells = {
        node: CellMemory(**{cat: kib / 1024 for cat, kib in cats.items()})
        for node, cats in sorted(sums.items())
    }
    return ProcessMemory(pid=pid, cells=cells)


def _check_vm_name(name: str) -> None:
    # Names come from hypervisors, which we do not trust. libvirt itself refuses '/' in a
    # name, and the pid file is one path component "<escaped name>.pid", so '/' and NUL are
    # the only ways out of the directory; '..' inside a name (libvirt accepts "a..b") is not.
    if not isinstance(name, str) or not name or "/" in name or "\x00" in name:
        raise InvalidProbeArgument(f"refused VM name {name!r}: empty, or contains '/' or NUL")


# virBufferEscapeString (src/util/virbuffer.c) drops these control characters and turns
# & < > " ' into XML entities; every other character, non-ASCII included, is copied.
_LIBVIRT_DROPPED = frozenset(chr(c) for c in range(0x01, 0x1A)) - {"\t", "\n", "\r"}
_LIBVIRT_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def pid_file_name(name: str) -> str:
    """The file name libvirt's QEMU driver gives VM *name*'s pid file.

    ``virPidFileBuildPath(stateDir, name)`` formats ``"/%s.pid"`` with
    ``virBufferEscapeString``, i.e. the name escaped as XML text: ``a&b`` runs with
    ``/run/libvirt/qemu/a&amp;b.pid`` (seen on libvirt 9.0; the status XML next to it keeps
    the raw name).
    """
    _check_vm_name(name)
    escaped = "".join(_LIBVIRT_ENTITIES.get(ch, ch) for ch in name if ch not in _LIBVIRT_DROPPED)
    return f"{escaped}.pid"


def _says_uuid(pid: int | str, uuid: str, root: str | os.PathLike[str]) -> bool:
    """Process *pid*'s command line has ``-uuid <uuid>`` (libvirt gives QEMU the domain's).

    Raises OSError when the process is gone or its cmdline cannot be read.
    """
    args = (Path(root) / "proc" / str(pid) / "cmdline").read_bytes().split(b"\x00")
    return any(
        flag == b"-uuid" and value.decode("ascii", "replace").lower() == uuid
        for flag, value in itertools.pairwise(args)
    )


def _pid_by_uuid(uuid: str, root: str | os.PathLike[str]) -> int | None:
    """The one process under ``<root>/proc`` whose command line has ``-uuid <uuid>``."""
    try:
        entries = [e.name for e in os.scandir(Path(root) / "proc")]
    except OSError:
        return None
    found = []
    for entry in entries:
        if entry.isascii() and entry.isdigit():
            try:
                if _says_uuid(entry, uuid, root):
                    found.append(int(entry))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found[0] if len(found) == 1 else None


def _read_pid_file(path: Path) -> int:
    pid = _parse_int(_read_text(path).strip(), path, "pid")
    if pid == 0:
        raise HostProbeError(f"{path}: pid 0", path)
    return pid


def qemu_pid(name: str, root: str | os.PathLike[str] = "/", uuid: str | None = None) -> int:
    """The pid of VM ``name``'s QEMU process.

    From libvirt's pid file ``<root>/run/libvirt/qemu/<pid_file_name(name)>``. Given the
    domain's *uuid* (the unambiguous key: a name only names one domain at one moment), the
    pid is checked against the process's ``-uuid`` argument, and when the pid file is missing
    or unreadable or names another process (a stale file, a recycled pid, a libvirt with
    another file name rule), the QEMU process is the one process under ``<root>/proc`` whose
    command line says ``-uuid <uuid>``.
    """
    path = Path(root) / "run/libvirt/qemu" / pid_file_name(name)
    if uuid is None:
        return _read_pid_file(path)
    uuid = uuid.lower()
    if not _UUID.fullmatch(uuid):
        raise InvalidProbeArgument(f"refused VM uuid {uuid[:40]!r}: not a UUID")
    try:
        pid = _read_pid_file(path)
    except HostProbeError as exc:
        problem = str(exc)
    else:
        try:
            if _says_uuid(pid, uuid, root):
                return pid
        except OSError:
            return pid  # no such process: reading its numa_maps next says so
        problem = f"{path}: pid {pid} is not VM {uuid} (no -uuid {uuid} on its command line)"
    found = _pid_by_uuid(uuid, root)
    if found is None:
        raise HostProbeError(
            f"{problem}; nor does one process under {Path(root) / 'proc'} have -uuid {uuid}",
            path,
        )
    return found


def read_boot_time(root: str | os.PathLike[str] = "/") -> int:
    """The ``btime`` line of ``<root>/proc/stat``: when the host booted (epoch seconds).

    The sampler stores it with each sample: a changed boot time is a reboot, after which the
    numastat counters start again from zero.
    """
    path = Path(root) / "proc/stat"
    for line in _read_text(path).splitlines():
        if line.startswith("btime"):
            parts = line.split()
            if len(parts) != 2:
                raise HostProbeError(f"{path}: malformed btime line {line[:60]!r}", path)
            return _parse_int(parts[1], path, "btime")
    raise HostProbeError(f"{path}: no btime line", path)


def _balancing_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "proc/sys/kernel/numa_balancing"


def read_numa_balancing(root: str | os.PathLike[str] = "/") -> int:
    """``/proc/sys/kernel/numa_balancing``: 0 off, 1 on, 2 memory tiering (3 = both)."""
    path = _balancing_path(root)
    value = _parse_int(_read_text(path).strip(), path, "numa_balancing")
    if value not in _NUMA_BALANCING_READABLE:
        raise HostProbeError(f"{path}: unknown numa_balancing mode {value}", path)
    return value


def write_numa_balancing(value: int, root: str | os.PathLike[str] = "/") -> None:
    """Set ``/proc/sys/kernel/numa_balancing`` to 0, 1 or 2; anything else is refused."""
    # bool is an int subclass: True would silently mean 1; refuse it as a caller mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value not in NUMA_BALANCING_VALUES:
        raise InvalidProbeArgument(f"numa_balancing must be 0, 1 or 2, not {value!r}")
    path = _balancing_path(root)
    # No O_CREAT: in /proc the file exists or the kernel lacks NUMA balancing; creating a
    # regular file under a fixture (or a mistyped) root would hide that.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except FileNotFoundError:
        raise HostProbeError(
            f"{path}: no such file (kernel without NUMA balancing?)", path
        ) from None
    except OSError as e:
        raise HostProbeError(f"{path}: cannot open for writing: {e.strerror or e}", path) from None
    try:
        os.write(fd, f"{value}\n".encode())
    except OSError as e:
        raise HostProbeError(f"{path}: write of {value} refused: {e.strerror or e}", path) from None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HostProbe:
    """Everything one sample reads on a host: numastat, boot time, numa_balancing, and the
    memory per cell of each named VM's QEMU process."""

    numastat: dict[int, dict[str, int]]
    boot_time: int | None
    numa_balancing: int | None
    #: VM name -> its QEMU process's memory; VMs whose files could not be read are absent.
    vm_memory: dict[str, ProcessMemory] = field(default_factory=dict)
    #: One line per file that could not be read (the rest of the sample is still good).
    problems: tuple[str, ...] = ()


def probe_host(
    vm_names: list[str] | tuple[str, ...],
    root: str | os.PathLike[str] = "/",
    uuids: Mapping[str, str] | None = None,
) -> HostProbe:
    """Read one sample. numastat is the point of a sample, so its failure raises; a missing
    boot time, numa_balancing file or VM process (one that just shut down) is only noted.

    *uuids* (VM name -> domain UUID) lets :func:`qemu_pid` check each pid and find the
    process by its ``-uuid`` when the pid file fails."""
    numastat = read_numastat(root)
    problems: list[str] = []
    boot_time = balancing = None
    try:
        boot_time = read_boot_time(root)
    except HostProbeError as exc:
        problems.append(str(exc))
    try:
        balancing = read_numa_balancing(root)
    except HostProbeError as exc:
        problems.append(str(exc))
    vm_memory: dict[str, ProcessMemory] = {}
    for name in vm_names:
        try:
            pid = qemu_pid(name, root, (uuids or {}).get(name))
            vm_memory[name] = read_numa_maps(pid, root)
        except HostProbeError as exc:
            problems.append(f"VM {name!r}: {exc}")
    return HostProbe(numastat, boot_time, balancing, vm_memory, tuple(problems))
