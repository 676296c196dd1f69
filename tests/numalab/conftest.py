"""The NUMA lab tier: a real 2-node (+ memory-only node) kernel in a TCG guest, its libvirtd
at qemu+tcp://127.0.0.1:16510/system and its on-host worker on queue host.numalab.

`make test` boots the lab in the background (scripts/test) and these tests run last; the
session fixture waits for libvirtd and the worker and FAILS, never skips, with what
scripts/numa-lab said when they do not come up.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from numaportal.celery import app
from numaportal.virt import connection as virt_connection
from numaportal.virt.errors import VirtError
from numaportal.virt.hostfacts import host_info

ROOT = Path(__file__).resolve().parent.parent.parent
NUMA_LAB = ROOT / "scripts" / "numa-lab"
#: The guest needs 20-60 s for libvirtd, and its worker (Django + Celery imported over 9p
#: under TCG) one to three more minutes; on a loaded machine longer.
WAIT = float(os.environ.get("NUMAPORTAL_NUMALAB_WAIT", "600"))
QUEUE = "host.numalab"
WORKER = "numalab@numalab"  # --hostname 'numalab@%h' in the guest, whose hostname is numalab


@dataclass(frozen=True)
class NumaLab:
    uri: str
    queue: str
    worker: str


def _status() -> str:
    result = subprocess.run(
        [str(NUMA_LAB), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    start_log = os.environ.get("NUMAPORTAL_NUMALAB_START_LOG", "")
    tail = ""
    if start_log and Path(start_log).exists():
        tail = "\n".join(Path(start_log).read_text(errors="replace").splitlines()[-15:])
    return f"{result.stdout}{result.stderr}" + (f"\nstart log {start_log}:\n{tail}" if tail else "")


def _answers(uri: str) -> str | None:
    try:
        with virt_connection.connect(uri, timeout=10, readonly=True) as conn:
            host_info(conn)
    except VirtError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def numalab_ready() -> NumaLab:
    """libvirtd in the guest answers and its on-host worker is up; else the test fails."""
    uri = settings.NUMAPORTAL_NUMALAB_URI
    deadline = time.monotonic() + WAIT
    reason = _answers(uri)
    while reason is not None and time.monotonic() < deadline:
        time.sleep(3)
        reason = _answers(uri)
    if reason is not None:
        pytest.fail(
            f"the NUMA lab does not answer on {uri} after {WAIT:g} s ({reason}); "
            f"scripts/numa-lab status says:\n{_status()}"
        )
    while time.monotonic() < deadline:
        if app.control.ping(destination=[WORKER], timeout=2):
            return NumaLab(uri=uri, queue=QUEUE, worker=WORKER)
    pytest.fail(
        f"the NUMA lab's on-host worker {WORKER} (queue {QUEUE}) did not answer within "
        f"{WAIT:g} s; scripts/numa-lab status says:\n{_status()}"
    )
