"""``scripts/numa-lab exec`` against the main lab (``/var/lib/numaportal-numalab``, port 16510),
which `make test` boots in the background: only commands that change nothing. It is never
started or stopped here (``numalab_conn`` waits for it and fails with its status)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.numalab

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "numa-lab"
MAIN_LAB_DIR = Path("/var/lib/numaportal-numalab")
MAIN_PORT = 16510


def _fail(msg: str) -> None:
    pytest.fail(msg, pytrace=False)


def main_lab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAPORTAL_NUMALAB_")}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def show(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"


@pytest.fixture(scope="module")
def main_lab_running(numalab_conn) -> None:
    """`make test` boots the main lab in the background; numalab_ready waits for it."""
    probe = main_lab("exec", "true")
    if probe.returncode != 0:
        status = main_lab("status")
        _fail(
            f"the main NUMA lab ({MAIN_LAB_DIR}, port {MAIN_PORT}) does not run commands "
            f"(exec true: exit {probe.returncode}: {probe.stderr.strip()}); its status:\n"
            f"{status.stdout}{status.stderr}-- it is shared: ask before `scripts/numa-lab start`"
        )


def test_exec_numactl_shows_three_nodes_node2_without_cpus(main_lab_running: None) -> None:
    res = main_lab("exec", "numactl", "-H")
    assert res.returncode == 0, show(res)
    lines = res.stdout.splitlines()
    assert "available: 3 nodes (0-2)" in lines, res.stdout
    cpus = {m[1]: m[2] for line in lines if (m := re.fullmatch(r"node (\d+) cpus:(.*)", line))}
    assert cpus.keys() == {"0", "1", "2"}, res.stdout
    assert cpus["2"].strip() == "", f"node 2 has CPUs: {cpus['2']!r}"
    assert cpus["0"].split() and cpus["1"].split(), res.stdout


def test_exec_exits_with_the_command_status(main_lab_running: None) -> None:
    res = main_lab("exec", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7, show(res)
    assert res.stdout == "out\n", show(res)
    assert res.stderr == "err\n", show(res)


def test_exec_passes_arguments_unchanged(main_lab_running: None) -> None:
    args = ["a b", "c'd", 'e"f', "$HOME", "*", "", "g\nh", "--", "-n"]
    res = main_lab("exec", "printf", "%s|", *args)
    assert res.returncode == 0, show(res)
    assert res.stdout == "".join(f"{a}|" for a in args), show(res)
    short = main_lab("exec", "printf", "%s|", "a b", "c'd")
    assert short.stdout == "a b|c'd|", show(short)
