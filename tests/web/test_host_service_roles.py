"""The host services check who acts, whoever calls them (the pages, the admin's actions, the
API): registering needs ``hosts.add_host``, "Sync now" ``hosts.change_host``, removing
``hosts.delete_host`` — admins. The portal itself (the scheduler, a management command on the
portal machine: no actor) is not refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from hosts import services
from hosts.models import Host
from vms import requests

pytestmark = [pytest.mark.web, pytest.mark.django_db]

FORM = {"name": "hv09", "uri": "test:///default", "enabled": True, "worker_queue": ""}


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("root", password="root-password-123")


@pytest.fixture
def host(host_factory) -> Host:
    return host_factory("hv01")


@pytest.mark.parametrize("who", ["viewer", "operator_user"])
def test_a_viewer_or_operator_is_refused_by_every_host_service(who, request, host) -> None:
    actor = request.getfixturevalue(who)
    name = actor.get_username()
    with pytest.raises(PermissionDenied, match=f"^{name} may not register hosts$"):
        requests.register_from_form(FORM, actor=actor)
    with pytest.raises(PermissionDenied, match=f"^{name} may not sync hosts$"):
        requests.request_sync(host, actor=actor)
    with pytest.raises(PermissionDenied, match=f"^{name} may not remove hosts$"):
        services.remove_host(host, actor=actor)
    host.refresh_from_db()
    assert host.removed_at is None and host.sync_status != Host.SyncStatus.QUEUED
    assert not Host.objects.filter(name="hv09").exists()


def test_an_inactive_admin_is_refused(admin, host) -> None:
    admin.is_active = False
    admin.save()
    with pytest.raises(PermissionDenied, match=r"^log in to sync hosts$"):
        requests.request_sync(host, actor=admin)


def test_an_admin_and_the_portal_itself_may(admin, host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        registered = requests.register_from_form(FORM, actor=admin)
        requests.request_sync(host, actor=admin)
        requests.request_sync(host)  # the scheduler
    assert registered.sync_status == Host.SyncStatus.CHECKING
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.QUEUED
    assert services.remove_host(host, actor=admin) is False  # removed softly: it had synced
    host.refresh_from_db()
    assert host.removed_at is not None
