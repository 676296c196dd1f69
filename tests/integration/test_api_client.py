"""One scripted API client, as an ops team's playbook would be: plain ``requests`` against a
live server with a token from /api/v1/auth/login/, a real worker, the lab daemon
(qemu:///system) and a throwaway running VM: list the VMs of the host, pin vCPU 0 live to CPU
0 with POST /api/v1/changes/, poll the change until it succeeded, and read the pin back from
libvirt."""

from __future__ import annotations

import time

import libvirt
import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT_S = 120
PASSWORD = "api-client-password-1"


def test_a_script_pins_a_vcpu_through_the_api(
    live_server, django_user_model, running_domain: libvirt.virDomain, lab_host
):
    django_user_model.objects.create_superuser("script", "", PASSWORD)
    base = live_server.url
    login = requests.post(f"{base}/api/v1/auth/login/", auth=("script", PASSWORD), timeout=30)
    assert login.status_code == 200, login.text
    api = requests.Session()
    api.headers["Authorization"] = f"Token {login.json()['token']}"

    listing = api.get(f"{base}/api/v1/vms/", params={"host": lab_host.name}, timeout=30)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    vms = body["results"] if isinstance(body, dict) else body
    (vm,) = [vm for vm in vms if vm["name"] == running_domain.name()]
    assert vm["uuid"] == running_domain.UUIDString()

    created = api.post(
        f"{base}/api/v1/changes/",
        json={
            "host": lab_host.name,
            "vm": vm["uuid"],
            "kind": "vcpupin",
            "params": {"vcpu": 0, "cpuset": "0"},
            "scope": "live",
            "reason": "pinned by a script through the API",
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    change = created.json()
    assert change["status"] in {"queued", "running", "succeeded"}, change

    deadline = time.monotonic() + TIMEOUT_S
    while change["status"] in {"queued", "running"} and time.monotonic() < deadline:
        time.sleep(1)
        polled = api.get(f"{base}/api/v1/changes/{change['id']}/", timeout=30)
        assert polled.status_code == 200, polled.text
        change = polled.json()
    assert change["status"] == "succeeded", change

    # The pin, as libvirt has it: vCPU 0 may run on CPU 0 only.
    pins = running_domain.vcpuPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert [cpu for cpu, allowed in enumerate(pins[0]) if allowed] == [0]
