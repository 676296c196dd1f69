"""A VM's QEMU pid for every name libvirt accepts: libvirt's pid file name, checked by UUID.

libvirt 9.0 names the pid file ``virPidFileBuildPath(stateDir, name)``, which escapes the name
as XML text (``virBufferEscapeString``). The escaped names below are what the lab daemon wrote
into /run/libvirt/qemu/ for these domains (tests/integration/test_hostile_names_lab.py starts
them again).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from numaportal.virt.hostprobe import (
    HostProbeError,
    InvalidProbeArgument,
    pid_file_name,
    probe_host,
    qemu_pid,
)

pytestmark = pytest.mark.unit

UUID_A = "129eccc4-684e-495a-a8ad-609a463ea1af"
UUID_B = "22d99198-d535-4a4f-ae03-137e3ba4c5cc"
NUMA_MAPS = "7f0000000000 default anon=3 dirty=3 N0=2 N1=1 kernelpagesize_kB=4\n"
NUMASTAT = "numa_hit 1\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 0\nlocal_node 1\nother_node 0\n"


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        # Seen on the lab daemon (libvirt 9.0.0), domain by domain:
        ("numatest-a&b<c>\"d'e", "numatest-a&amp;b&lt;c&gt;&quot;d&apos;e.pid"),
        (
            "numatest-é日本語-name-longer-than-twenty-chars",
            "numatest-é日本語-name-longer-than-twenty-chars.pid",
        ),
        ("numatest-a,b c", "numatest-a,b c.pid"),
        ("numatest-..z", "numatest-..z.pid"),
        ("numatest-a\\b", "numatest-a\\b.pid"),
        ("numatest-tab\tx", "numatest-tab\tx.pid"),
        # From virBufferEscapeString's code: an entity is escaped again, control characters
        # below 0x1A other than tab, LF and CR are dropped.
        ("a&amp;b", "a&amp;amp;b.pid"),
        ("a\x01b\x19c\x1ad", "abc\x1ad.pid"),
        ("..", "...pid"),
    ],
)
def test_pid_file_name_is_libvirts(name, file_name):
    assert pid_file_name(name) == file_name


def _root(tmp_path: Path, pid_files: dict[str, str], procs: dict[int, list[str]]) -> Path:
    run = tmp_path / "run/libvirt/qemu"
    run.mkdir(parents=True)
    for file_name, text in pid_files.items():
        (run / file_name).write_text(text)
    for pid, argv in procs.items():
        proc = tmp_path / "proc" / str(pid)
        proc.mkdir(parents=True)
        (proc / "cmdline").write_bytes(b"".join(a.encode() + b"\x00" for a in argv))
        (proc / "numa_maps").write_text(NUMA_MAPS)
    return tmp_path


def _qemu(name: str, uuid: str) -> list[str]:
    return ["/usr/bin/qemu-system-x86_64", "-name", f"guest={name},debug-threads=on", "-uuid", uuid]


HOSTILE = "numatest-a&b<c>\"d'e"


def test_the_pid_of_a_hostile_name_is_read_from_libvirts_escaped_file(tmp_path):
    root = _root(tmp_path, {pid_file_name(HOSTILE): "4242"}, {4242: _qemu(HOSTILE, UUID_A)})
    assert (root / "run/libvirt/qemu/numatest-a&amp;b&lt;c&gt;&quot;d&apos;e.pid").exists()
    assert qemu_pid(HOSTILE, root) == 4242
    assert qemu_pid(HOSTILE, root, UUID_A) == 4242
    assert qemu_pid(HOSTILE, root, UUID_A.upper()) == 4242


def test_without_a_pid_file_the_process_is_found_by_its_uuid(tmp_path):
    root = _root(tmp_path, {}, {4242: _qemu("vm", UUID_A), 4343: _qemu("other", UUID_B)})
    assert qemu_pid("vm", root, UUID_A) == 4242
    with pytest.raises(HostProbeError, match=r"vm\.pid: no such file"):
        qemu_pid("vm", root)  # no UUID: no fallback


def test_a_stale_pid_file_naming_another_process_is_not_believed(tmp_path):
    root = _root(
        tmp_path,
        {"vm.pid": "4343"},  # a recycled pid: now another VM's QEMU
        {4242: _qemu("vm", UUID_A), 4343: _qemu("other", UUID_B), 1: ["/sbin/init"]},
    )
    assert qemu_pid("vm", root, UUID_A) == 4242


def test_no_process_with_the_uuid_says_both_what_failed(tmp_path):
    root = _root(tmp_path, {"vm.pid": "1"}, {1: ["/sbin/init"]})
    with pytest.raises(HostProbeError) as err:
        qemu_pid("vm", root, UUID_A)
    assert "vm.pid: pid 1 is not VM " + UUID_A in str(err.value)
    assert f"nor does one process under {root / 'proc'} have -uuid {UUID_A}" in str(err.value)


def test_two_processes_with_the_uuid_are_not_guessed_between(tmp_path):
    root = _root(tmp_path, {}, {10: _qemu("vm", UUID_A), 11: _qemu("vm", UUID_A)})
    with pytest.raises(HostProbeError, match="no such file; nor does one process"):
        qemu_pid("vm", root, UUID_A)


def test_a_pid_whose_process_cannot_be_read_is_left_to_numa_maps(tmp_path):
    # Fixture trees (and a process that just exited) have no cmdline: the pid file stands.
    root = _root(tmp_path, {"vm.pid": "99"}, {})
    assert qemu_pid("vm", root, UUID_A) == 99


@pytest.mark.parametrize("uuid", ["", "nope", "../../etc", UUID_A + "0", UUID_A[:-1] + "g"])
def test_a_malformed_uuid_is_refused(tmp_path, uuid):
    with pytest.raises(InvalidProbeArgument, match="refused VM uuid"):
        qemu_pid("vm", _root(tmp_path, {"vm.pid": "1"}, {}), uuid)


@pytest.mark.parametrize("name", ["..", "x..y", "numatest-..z", "."])
def test_dots_in_a_name_stay_inside_the_pid_directory(tmp_path, name):
    root = _root(tmp_path, {pid_file_name(name): "7"}, {})
    assert qemu_pid(name, root) == 7


def test_probe_host_finds_hostile_names_and_uses_the_uuids(tmp_path):
    long_name = "numatest-é日本語-name-longer-than-twenty-chars"
    root = _root(
        tmp_path,
        {pid_file_name(HOSTILE): "4242"},
        {4242: _qemu(HOSTILE, UUID_A), 4343: _qemu(long_name, UUID_B)},
    )
    node = root / "sys/devices/system/node/node0"
    node.mkdir(parents=True)
    (node / "numastat").write_text(NUMASTAT)
    probe = probe_host([HOSTILE, long_name], root, {HOSTILE: UUID_A, long_name: UUID_B})
    assert set(probe.vm_memory) == {HOSTILE, long_name}
    assert probe.vm_memory[long_name].pid == 4343  # no pid file: found by its -uuid
    assert sorted(probe.vm_memory[HOSTILE].cells) == [0, 1]
