"""`manage.py ensure_lab_host` (run by `make run`): the lab host and its on-host worker queue."""

from __future__ import annotations

import gc
from io import StringIO

import pytest
from django.core.management import call_command

from hosts.models import Host

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def run() -> str:
    out = StringIO()
    call_command("ensure_lab_host", stdout=out, stderr=out)
    return out.getvalue()


def test_the_local_lab_is_sampled_by_the_procfiles_hostworker(settings):
    settings.NUMAPORTAL_LAB_URI = "qemu:///system"
    output = run()
    host = Host.objects.get(name="lab")
    assert host.uri == "qemu:///system"
    assert host.worker_queue == "host.lab"  # the Procfile's hostworker consumes it
    assert "Synced host 'lab'" in output
    # Three 2-vCPU VMs on two CPUs: the lab's policy allows the over-commit, mode off.
    assert host.balancing_policy.cpu_overcommit == 4.0
    assert host.balancing_policy.mode == "off"


def test_the_test_driver_fallback_has_no_on_host_worker(settings):
    gc.collect()
    settings.NUMAPORTAL_LAB_URI = "qemu+tcp://127.0.0.1:1/system"  # nothing answers there
    output = run()
    host = Host.objects.get(name="lab")
    assert host.uri == "test:///default"
    # This machine's /sys is not the test driver's: no probe for it.
    assert host.worker_queue == ""
    assert "does not answer" in output
    gc.collect()


def test_an_older_lab_host_gets_the_queue_but_an_operators_choice_stays(settings):
    settings.NUMAPORTAL_LAB_URI = "qemu:///system"
    Host.objects.create(name="lab", uri="qemu:///system")
    run()
    assert Host.objects.get(name="lab").worker_queue == "host.lab"
    Host.objects.filter(name="lab").update(worker_queue="host.custom")
    run()
    assert Host.objects.get(name="lab").worker_queue == "host.custom"
