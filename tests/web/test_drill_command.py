"""``manage.py drill`` (``scripts/drill``): its list and its refusals. Nothing is stopped here:
the drills themselves are tests/web/test_drills.py's."""

from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hosts.models import Host
from web.management.commands import drill

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def test_list_names_the_drills_and_which_stop_a_daemon() -> None:
    out = StringIO()
    call_command("drill", "--list", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "redis-down",
        "libvirtd-stopped",
        "worker-killed",
        "worker-killed-running",
        "concurrent-changes",
    ]
    assert ["--yes" in line for line in lines] == [True, True, False, True, False]


def test_redis_down_without_yes_refuses() -> None:
    with pytest.raises(CommandError, match="redis-down stops a daemon: run again with --yes"):
        call_command("drill", "--only", "redis-down")


@pytest.mark.parametrize("pid_file", [None, "not a pid", "self"])
def test_redis_down_refuses_a_redis_not_started_by_make_run(
    pid_file, tmp_path, monkeypatch
) -> None:
    """No pid file, a broken one, or one naming another process than the Redis answering."""
    monkeypatch.setattr(drill, "RUN_DIR", tmp_path)
    if pid_file is not None:
        (tmp_path / "redis.pid").write_text(str(os.getpid()) if pid_file == "self" else pid_file)
    with pytest.raises(CommandError, match="Redis was not started by make run: not stopping it"):
        call_command("drill", "--only", "redis-down", "--yes")


@pytest.mark.parametrize("pid_file", [None, "self"])
def test_the_libvirtd_drills_refuse_a_daemon_that_is_not_the_labs(
    pid_file, tmp_path, monkeypatch
) -> None:
    """No pid file, or one naming a process that is not libvirtd: nothing is paused or
    stopped."""
    monkeypatch.setattr(drill.LabLibvirtd, "PID_FILE", tmp_path / "libvirtd.pid")
    if pid_file == "self":
        (tmp_path / "libvirtd.pid").write_text(str(os.getpid()))
    control = drill.LabLibvirtd(Host(name="lab", uri="qemu:///system"))
    for act in (control.pause, control.resume, control.stop):
        with pytest.raises(CommandError, match="is not served by the lab's libvirtd"):
            act()
