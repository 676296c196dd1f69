"""Host probe: fixture trees (real and hand-made), the real local /sys, malformed input."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numaportal.virt.errors import VirtError
from numaportal.virt.hostprobe import (
    NUMASTAT_COUNTERS,
    CellMemory,
    HostProbeError,
    InvalidProbeArgument,
    ProcessMemory,
    qemu_pid,
    read_numa_balancing,
    read_numa_maps,
    read_numastat,
    write_numa_balancing,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hostprobe"
REAL = FIXTURES / "real-1cell"
TWO = FIXTURES / "handmade-2cell"
FOUR = FIXTURES / "handmade-4cell"

NUMASTAT_OK = (
    "numa_hit 1\nnuma_miss 2\nnuma_foreign 3\ninterleave_hit 4\nlocal_node 5\nother_node 6\n"
)


def _tree(tmp_path: Path, numastat: str | bytes | None = None, numa_maps=None, balancing=None):
    """A minimal fake root under tmp_path with the given file contents."""
    if numastat is not None:
        node = tmp_path / "sys/devices/system/node/node0"
        node.mkdir(parents=True, exist_ok=True)
        data = numastat.encode() if isinstance(numastat, str) else numastat
        (node / "numastat").write_bytes(data)
    if numa_maps is not None:
        proc = tmp_path / "proc/42"
        proc.mkdir(parents=True, exist_ok=True)
        data = numa_maps.encode() if isinstance(numa_maps, str) else numa_maps
        (proc / "numa_maps").write_bytes(data)
    if balancing is not None:
        kernel = tmp_path / "proc/sys/kernel"
        kernel.mkdir(parents=True, exist_ok=True)
        (kernel / "numa_balancing").write_text(balancing)
    return tmp_path


# --- numastat ------------------------------------------------------------------------------


def test_numastat_real_fixture():
    stats = read_numastat(REAL)
    assert list(stats) == [0]  # possible / online / has_cpu are not cells
    assert stats[0] == {
        "numa_hit": 52535996,
        "numa_miss": 0,
        "numa_foreign": 0,
        "interleave_hit": 121693,
        "local_node": 52535996,
        "other_node": 0,
    }


def test_numastat_two_cells():
    stats = read_numastat(TWO)
    assert sorted(stats) == [0, 1]
    assert stats[1]["numa_foreign"] == 10
    assert stats[0]["other_node"] == 30


def test_numastat_four_cells():
    stats = read_numastat(FOUR)
    assert sorted(stats) == [0, 1, 2, 3]
    assert stats[3]["numa_hit"] == 400000
    assert all(set(NUMASTAT_COUNTERS) <= set(c) for c in stats.values())


def test_numastat_real_local_sys():
    stats = read_numastat("/")
    assert 0 in stats
    for counters in stats.values():
        assert set(NUMASTAT_COUNTERS) <= set(counters)
        assert all(isinstance(v, int) and v >= 0 for v in counters.values())


def test_numastat_node_ids_from_directory_names(tmp_path):
    base = tmp_path / "sys/devices/system/node"
    for name in ("node0", "node12"):
        (base / name).mkdir(parents=True)
        (base / name / "numastat").write_text(NUMASTAT_OK)
    (base / "node_not").mkdir()  # not node<N>: ignored
    (base / "possible").write_text("0,12\n")
    assert sorted(read_numastat(tmp_path)) == [0, 12]


def test_numastat_keeps_unknown_counters(tmp_path):
    _tree(tmp_path, numastat=NUMASTAT_OK + "future_counter 7\n")
    assert read_numastat(tmp_path)[0]["future_counter"] == 7


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("numa_hit 1\n", "missing counters"),
        (NUMASTAT_OK.replace("numa_miss 2", "numa_miss -2"), "not a non-negative integer"),
        (NUMASTAT_OK.replace("numa_miss 2", "numa_miss two"), "not a non-negative integer"),
        (NUMASTAT_OK.replace("numa_miss 2", "numa_miss 2 3"), "expected '<counter> <value>'"),
        (NUMASTAT_OK + "numa_hit 9\n", "appears twice"),
        ("", "missing counters"),
    ],
)
def test_numastat_malformed(tmp_path, content, problem):
    _tree(tmp_path, numastat=content)
    with pytest.raises(HostProbeError, match=problem) as exc:
        read_numastat(tmp_path)
    assert "node0/numastat" in str(exc.value)
    assert exc.value.path.endswith("node0/numastat")


def test_numastat_missing_tree(tmp_path):
    with pytest.raises(HostProbeError, match="no such directory"):
        read_numastat(tmp_path)


def test_numastat_node_without_file(tmp_path):
    (tmp_path / "sys/devices/system/node/node0").mkdir(parents=True)
    with pytest.raises(HostProbeError, match="numastat: no such file"):
        read_numastat(tmp_path)


def test_numastat_no_nodes(tmp_path):
    (tmp_path / "sys/devices/system/node").mkdir(parents=True)
    with pytest.raises(HostProbeError, match="no node<N> directories"):
        read_numastat(tmp_path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_numastat_arbitrary_bytes(tmp_path, data):
    _tree(tmp_path, numastat=data)
    try:
        stats = read_numastat(tmp_path)
    except HostProbeError:
        return
    assert set(NUMASTAT_COUNTERS) <= set(stats[0])
    assert all(isinstance(v, int) and v >= 0 for v in stats[0].values())


# --- numa_maps -----------------------------------------------------------------------------


def test_numa_maps_real_fixture():
    mem = read_numa_maps(7548, REAL)
    assert list(mem.cells) == [0]
    cell = mem.cells[0]
    # Worked out by hand (awk) from the fixture: heap 1013 pages, stack 4 pages of 4 KiB.
    assert cell.heap == pytest.approx(1013 * 4 / 1024)
    assert cell.stack == pytest.approx(4 * 4 / 1024)
    assert cell.huge == 0
    assert cell.private == pytest.approx(25.168, abs=1e-3)
    assert mem.total == pytest.approx(cell.total)


def test_numa_maps_two_cells():
    mem = read_numa_maps(1234, TWO)
    assert mem.cells == {
        # 1 MiB of cell 0's private is the QEMU binary's mapped file (page cache).
        0: CellMemory(huge=0, heap=1.0, stack=0, private=3.0, files=1.0),
        1: CellMemory(huge=6.0, heap=1.0, stack=0.03125, private=2.0),
    }
    assert mem.cells[0].own == pytest.approx(3.0)  # 4 MiB as numastat says, less the file
    assert mem.total == pytest.approx(13.03125)
    assert mem.as_dict()[1]["total"] == pytest.approx(9.03125)


def test_numa_maps_four_cells():
    mem = read_numa_maps(777, FOUR)
    assert sorted(mem.cells) == [0, 1, 2, 3]
    # The file line without kernelpagesize_kB counts as 4 KiB pages: 100 -> 0.390625 MiB.
    assert mem.cells[0].private == pytest.approx(0.390625 + 4.0)
    assert mem.cells[1].huge == 0
    assert mem.cells[2].huge == 1024.0  # one 1 GiB page
    assert mem.cells[3].huge == 1024.0
    assert mem.cells[3].stack == pytest.approx(0.125)
    assert all(c.heap == pytest.approx(0.390625) for c in mem.cells.values())


def test_numa_maps_real_local_process():
    # Our own process: it has pages, all on cells that exist.
    import os

    mem = read_numa_maps(os.getpid())
    assert mem.total > 0
    assert set(mem.cells) <= set(read_numastat("/"))


def test_numa_maps_classification_by_token_not_substring(tmp_path):
    # numastat.c would file this under "heap" (strstr); it is a private file mapping.
    _tree(tmp_path, numa_maps="7f00 default file=/opt/heapdump/huge.bin mapped=256 N0=256\n")
    assert read_numa_maps(42, tmp_path).cells[0] == CellMemory(private=1.0, files=1.0)


def test_numa_maps_guest_ram_in_memfd_or_shm_is_memory_not_page_cache(tmp_path):
    _tree(
        tmp_path,
        numa_maps="7f00 bind:1 file=/memfd:pc.ram\\040(deleted) dirty=256 N1=256\n"
        "7f10 bind:1 file=/dev/shm/vm-ram dirty=256 N1=256\n"
        "7f20 default file=/usr/lib/x86_64-linux-gnu/libc.so.6 mapped=256 mapmax=9 N0=256\n",
    )
    cells = read_numa_maps(42, tmp_path).cells
    assert cells[1] == CellMemory(private=2.0)  # guest RAM: the VM's own
    assert cells[0] == CellMemory(private=1.0, files=1.0) and cells[0].own == 0


def test_numa_maps_old_kernel_thread_stack(tmp_path):
    _tree(tmp_path, numa_maps="7f00 default stack:1234 anon=256 N0=256\n")
    assert read_numa_maps(42, tmp_path).cells[0] == CellMemory(stack=1.0)


def test_numa_maps_empty_file_is_no_memory(tmp_path):
    # A zombie or kernel thread has an empty numa_maps: a valid, empty answer.
    _tree(tmp_path, numa_maps="")
    mem = read_numa_maps(42, tmp_path)
    assert mem == ProcessMemory(pid=42, cells={})
    assert mem.total == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("zzzz default N0=1\n", "does not start with an address"),
        ("7f00\n", "no memory policy"),
        ("7f00 default N0=x\n", "malformed node count"),
        ("7f00 default N-1=3\n", "malformed node count"),
        ("7f00 default N0=1 kernelpagesize_kB=abc\n", "kernelpagesize_kB is not"),
        ("7f00 default N0=1 kernelpagesize_kB=0\n", "kernelpagesize_kB=0"),
    ],
)
def test_numa_maps_malformed(tmp_path, content, problem):
    _tree(tmp_path, numa_maps=content)
    with pytest.raises(HostProbeError, match=problem) as exc:
        read_numa_maps(42, tmp_path)
    assert "proc/42/numa_maps" in str(exc.value)


def test_numa_maps_missing_process(tmp_path):
    with pytest.raises(HostProbeError, match="numa_maps: no such file"):
        read_numa_maps(42, tmp_path)


@pytest.mark.parametrize("pid", [0, -1, True, "42", 4.2])
def test_numa_maps_refuses_bad_pid(pid):
    with pytest.raises(InvalidProbeArgument):
        read_numa_maps(pid, FOUR)


_NUMA_MAPS_TOKENS = st.sampled_from(
    ["default", "heap", "stack", "huge", "anon=3", "N0=5", "N1=2", "N=", "N0=", "Nx=1",
     "kernelpagesize_kB=4", "kernelpagesize_kB=2048", "kernelpagesize_kB=", "file=/a b",
     "7f00", "bind:0", "\x00", "é", "N٣=1"]
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.lists(st.lists(_NUMA_MAPS_TOKENS, max_size=8).map(" ".join), max_size=6).map(
            lambda lines: "\n".join(lines).encode()
        ),
    )
)
def test_numa_maps_arbitrary_bytes(tmp_path, data):
    _tree(tmp_path, numa_maps=data)
    try:
        mem = read_numa_maps(42, tmp_path)
    except HostProbeError:
        return
    for node, cell in mem.cells.items():
        assert isinstance(node, int) and node >= 0
        assert min(cell.huge, cell.heap, cell.stack, cell.private) >= 0


# --- qemu_pid ------------------------------------------------------------------------------


def test_qemu_pid_fixtures():
    assert qemu_pid("numalab-small1", REAL) == 7548  # real pid file, no trailing newline
    assert qemu_pid("vm-a", TWO) == 1234
    assert qemu_pid("vm-b", FOUR) == 777


@pytest.mark.parametrize("name", ["", "../../etc/passwd", "a/b", "/etc/shadow", "a\x00b", "/"])
def test_qemu_pid_refuses_hostile_names(name):
    with pytest.raises(InvalidProbeArgument, match="refused VM name"):
        qemu_pid(name, REAL)


def test_qemu_pid_missing_and_malformed(tmp_path):
    with pytest.raises(HostProbeError, match=r"nope\.pid: no such file"):
        qemu_pid("nope", tmp_path)
    run = tmp_path / "run/libvirt/qemu"
    run.mkdir(parents=True)
    for content in ("", "abc\n", "0\n", "-5\n"):
        (run / "bad.pid").write_text(content)
        with pytest.raises(HostProbeError, match=r"bad\.pid"):
            qemu_pid("bad", tmp_path)


# --- numa_balancing ------------------------------------------------------------------------


def test_numa_balancing_fixtures():
    assert read_numa_balancing(REAL) in (0, 1, 2, 3)
    assert read_numa_balancing(TWO) == 1
    assert read_numa_balancing(FOUR) == 2


def test_numa_balancing_real_local_proc():
    assert read_numa_balancing("/") in (0, 1, 2, 3)


@pytest.mark.parametrize("value", [0, 1, 2])
def test_write_numa_balancing_into_tmp_tree(tmp_path, value):
    # Never the real /proc file: a copy of a fixture tree under tmp_path.
    root = tmp_path / "root"
    shutil.copytree(TWO, root)
    write_numa_balancing(value, root)
    assert (root / "proc/sys/kernel/numa_balancing").read_text() == f"{value}\n"
    assert read_numa_balancing(root) == value


@pytest.mark.parametrize("value", [-1, 3, 4, 10, True, False, "1", 1.0, None])
def test_write_numa_balancing_refuses_other_values(tmp_path, value):
    _tree(tmp_path, balancing="1\n")
    with pytest.raises(ValueError, match="must be 0, 1 or 2"):
        write_numa_balancing(value, tmp_path)
    assert (tmp_path / "proc/sys/kernel/numa_balancing").read_text() == "1\n"  # untouched


def test_write_numa_balancing_does_not_create_the_file(tmp_path):
    with pytest.raises(HostProbeError, match="no such file"):
        write_numa_balancing(1, tmp_path)
    assert not (tmp_path / "proc/sys/kernel/numa_balancing").exists()


@pytest.mark.parametrize(("content", "problem"), [("", "not a non-negative"), ("7\n", "unknown")])
def test_read_numa_balancing_malformed(tmp_path, content, problem):
    _tree(tmp_path, balancing=content)
    with pytest.raises(HostProbeError, match=problem):
        read_numa_balancing(tmp_path)


# --- errors --------------------------------------------------------------------------------


def test_errors_are_virt_errors_and_pickle():
    err = HostProbeError("/x/numastat: missing counters: numa_hit", "/x/numastat")
    assert isinstance(err, VirtError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is HostProbeError
    assert str(back) == str(err) and back.path == "/x/numastat"
    assert issubclass(InvalidProbeArgument, ValueError)
    assert issubclass(InvalidProbeArgument, HostProbeError)
