"""The home page: login required, and it says what is running."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from numaportal import liveness
from web import status

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def test_anonymous_user_is_sent_to_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    fragment = client.get(reverse("status-fragment"))
    assert fragment.status_code == 302


def test_login_then_home_shows_the_real_services(client, operator, admin_password):
    response = client.post(
        reverse("login"), {"username": "ops", "password": admin_password}, follow=True
    )
    assert response.status_code == 200
    # Logging in lands on the ops dashboard; the services have their own page.
    assert "<h1>Dashboard</h1>" in response.content.decode()
    response = client.get(reverse("status"))
    page = response.content.decode()
    assert "What is running" in page
    rows = {c.name: c for c in response.context["components"]}
    assert rows["Database"].ok
    assert rows["Broker (Redis)"].ok, rows["Broker (Redis)"].detail
    # The lab daemon runs on this machine and in CI (make test starts it).
    assert rows["libvirt"].ok, rows["libvirt"].detail
    assert rows["libvirt"].facts["URI"] == "qemu:///system"
    # make test starts three lab VMs; the page counts what the daemon really reports.
    assert int(rows["libvirt"].facts["Domains"].split()[0]) >= 3
    assert "Host CPUs" in page


def test_wrong_password_is_refused(client, operator):
    response = client.post(reverse("login"), {"username": "ops", "password": "nope"})
    assert response.status_code == 200
    assert not response.wsgi_request.user.is_authenticated


def test_unreachable_lab_falls_back_to_the_test_driver(settings):
    settings.NUMAPORTAL_LAB_URI = "qemu+tcp://127.0.0.1:1/system"
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 5
    row = status.check_libvirt()
    assert not row.ok
    assert "unreachable" in row.detail and "test:///default" in row.detail
    # libvirt's own words about the failed connection are kept.
    assert "127.0.0.1" in row.detail
    assert row.facts["URI"] == "test:///default"
    assert row.facts["NUMA cells"] == "2"


def test_hostile_lab_uri_is_refused_without_running_anything(settings, tmp_path):
    marker = tmp_path / "pwned"
    settings.NUMAPORTAL_LAB_URI = f"qemu+ext:///system?command=/usr/bin/touch%20{marker}"
    row = status.check_libvirt()
    assert not row.ok
    assert not marker.exists()
    assert "ext" in row.detail


def test_beat_heartbeat_drives_the_beat_row():
    status.record_heartbeat(now=1000.0)
    assert status.check_beat(now=1010.0).ok
    stale = status.check_beat(now=1000.0 + status.HEARTBEAT_STALE_AFTER + 1)
    assert not stale.ok and "ago" in stale.detail


def test_worker_reports_drive_the_workers_row():
    # reports far in the future, so that a real worker's report (now) is not among them
    at = 4e9
    liveness.report("a@hv1", ["celery"], now=at)
    liveness.report("b@hv2", ["host.hv2", "celery"], now=at + 2)
    try:
        row = status.check_workers(now=at + 5)
        assert row.ok and row.detail == "a@hv1, b@hv2"
        assert row.facts == {
            "a@hv1": "queues celery; reported 5 s ago",
            "b@hv2": "queues celery, host.hv2; reported 3 s ago",
        }
        stale = status.check_workers(now=at + 2 + liveness.REPORT_TTL + 1)
        assert not stale.ok and "no worker reported" in stale.detail
        liveness.forget("a@hv1")
        assert status.check_workers(now=at + 5).detail == "b@hv2"
    finally:
        liveness.forget("a@hv1")
        liveness.forget("b@hv2")


def test_status_escapes_what_it_shows(client, operator, admin_password, settings):
    settings.NUMAPORTAL_LAB_URI = "qemu+tcp://<script>alert(1)</script>/system"
    client.force_login(operator)
    page = client.get(reverse("status-fragment")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_ensure_admin_prints_a_password_once(django_user_model, capsys, monkeypatch):
    monkeypatch.delenv("NUMAPORTAL_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    first = capsys.readouterr().out
    assert "password:" in first
    password = first.split("password:")[1].split()[0]
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    call_command("ensure_admin")
    second = capsys.readouterr().out
    assert "password:" not in second
    assert django_user_model.objects.filter(is_superuser=True).count() == 1


def test_ensure_admin_takes_the_password_from_the_environment(django_user_model, monkeypatch):
    monkeypatch.setenv("NUMAPORTAL_ADMIN_PASSWORD", "from-the-env-123")
    call_command("ensure_admin")
    assert django_user_model.objects.get(username="admin").check_password("from-the-env-123")


def test_broker_password_is_never_shown():
    assert status._redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert status._redact("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert status._redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
