"""numaportal.virt stands alone: importing it loads no Django, no Celery, no other project code.

That is what lets an on-host worker or a script use it, and what keeps it the bottom layer. The
check runs in a fresh interpreter: this one has Django loaded by pytest-django already.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
VIRT = ROOT / "numaportal" / "virt"

# Imports every module of the package, then reports what got loaded.
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _virt_modules() -> list[str]:
    return ["numaportal.virt"] + [
        f"numaportal.virt.{info.name}" for info in pkgutil.iter_modules([str(VIRT)])
    ]


def test_the_probe_sees_every_module() -> None:
    names = _virt_modules()
    for expected in ("uri", "connection", "hostfacts", "domains", "pinning", "snapshot"):
        assert f"numaportal.virt.{expected}" in names
    assert len(names) == len(list(VIRT.glob("*.py")))  # __init__ counts as numaportal.virt


def test_importing_every_virt_module_loads_no_django_and_no_celery() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *_virt_modules()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "libvirt" in loaded  # the probe did import the modules
    assert "django" not in loaded
    assert "celery" not in loaded
    heavy = [m for m in loaded if m.split(".")[0] in {"django", "celery", "kombu"}]
    assert heavy == []
    project = {"numaportal", "hosts", "vms", "changes", "balancing", "web"}
    outside = [
        m
        for m in loaded
        if m.split(".")[0] in project and m != "numaportal" and not m.startswith("numaportal.virt")
    ]
    assert outside == []
