"""Who may see and do what on the inventory pages.

- anonymous: every URL sends to the login page;
- logged in without permissions: 403 (the pages need the models' view permissions);
- "viewer" group (view_* of hosts and vms only, created by a data migration): every page,
  no add/sync/remove (403, and no such buttons);
- staff with add/change/delete_host, and superusers: everything.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from hosts.models import Host

pytestmark = [pytest.mark.web, pytest.mark.django_db]

ACTION_MARKERS = ('id="sync-now"', 'id="remove-host"', ">Add host<")


@pytest.fixture
def inventory(host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(host, "vm1", pins={0: "0", 1: "1"})
    return host, vm


def read_urls(host, vm) -> list[str]:
    return [
        reverse("hosts:list"),
        reverse("hosts:detail", args=[host.name]),
        reverse("hosts:distances", args=[host.name]),
        reverse("hosts:sync-status", args=[host.name]),
        reverse("hosts:numastat", args=[host.name]),
        reverse("vms:list"),
        vm.get_absolute_url(),
        reverse("balancing:list"),
    ]


def write_urls(host) -> list[str]:
    return [
        reverse("hosts:add"),
        reverse("hosts:sync", args=[host.name]),
        reverse("hosts:remove", args=[host.name]),
    ]


def test_viewer_group_holds_only_view_permissions(viewer_group):
    group = viewer_group
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert {"view_host", "view_cell", "view_physicalcpu", "view_virtualmachine"} <= codenames
    assert "view_vcpupin" in codenames
    assert all(code.startswith("view_") for code in codenames)
    apps = set(group.permissions.values_list("content_type__app_label", flat=True))
    assert apps == {"hosts", "vms", "changes"}


def test_anonymous_is_sent_to_login_everywhere(client, inventory):
    host, vm = inventory
    login = reverse("login")
    for url in read_urls(host, vm) + write_urls(host):
        response = client.get(url)
        if response.status_code == 405:  # POST-only URL: try it as POST
            response = client.post(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{login}?next="), url
    for url in write_urls(host):
        response = client.post(url, {"name": "x", "uri": "test:///default"})
        assert response.status_code == 302 and response["Location"].startswith(login), url
    assert Host.objects.count() == 1
    assert Host.objects.get().sync_status == Host.SyncStatus.OK


def test_logged_in_without_permissions_is_forbidden(client, django_user_model, inventory):
    host, vm = inventory
    nobody = django_user_model.objects.create_user("nobody", password="pw-123-nobody")
    client.force_login(nobody)
    for url in read_urls(host, vm):
        assert client.get(url).status_code == 403, url


def test_viewer_sees_every_page_without_action_buttons(viewer_client, inventory):
    host, vm = inventory
    for url in read_urls(host, vm):
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        for marker in ACTION_MARKERS:
            assert marker not in page, (url, marker)
    # and the diagram is there for viewers too
    detail = viewer_client.get(host.get_absolute_url())
    assert detail.context["diagram"] is not None


def test_viewer_cannot_add_sync_or_remove(viewer_client, inventory):
    host, _ = inventory
    assert viewer_client.get(reverse("hosts:add")).status_code == 403
    assert viewer_client.get(reverse("hosts:remove", args=[host.name])).status_code == 403
    for url in write_urls(host):
        response = viewer_client.post(url, {"name": "sneaky", "uri": "test:///default"})
        assert response.status_code == 403, url
    host.refresh_from_db()
    assert host.removed_at is None
    assert host.sync_status == Host.SyncStatus.OK
    assert not Host.objects.filter(name="sneaky").exists()


@pytest.fixture
def staff_client(client, django_user_model, viewer_group):
    """Staff with the host permissions (not a superuser), plus the viewer group."""
    user = django_user_model.objects.create_user("staff", password="pw-123-staff", is_staff=True)
    user.groups.add(viewer_group)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="hosts",
            codename__in=["add_host", "change_host", "delete_host"],
        )
    )
    client.force_login(user)
    return client


@pytest.mark.parametrize("who", ["staff_client", "ops_client"])
def test_staff_and_admin_can_add_sync_and_remove(
    request, who, inventory, django_capture_on_commit_callbacks
):
    client = request.getfixturevalue(who)
    host, _ = inventory
    detail = client.get(host.get_absolute_url()).content.decode()
    assert 'id="sync-now"' in detail and 'id="remove-host"' in detail
    assert ">Add host<" in client.get(reverse("hosts:list")).content.decode()
    assert client.get(reverse("hosts:add")).status_code == 200

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("hosts:sync", args=[host.name]))
    assert response.status_code == 302 and len(callbacks) == 1
    assert Host.objects.get(pk=host.pk).sync_status == Host.SyncStatus.QUEUED

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("hosts:add"), {"name": "testdrv", "uri": "test:///default", "enabled": "on"}
        )
    assert response.status_code == 302
    assert Host.objects.filter(name="testdrv").exists()

    assert client.get(reverse("hosts:remove", args=[host.name])).status_code == 200
    assert client.post(reverse("hosts:remove", args=[host.name])).status_code == 302
    assert Host.objects.get(pk=host.pk).removed_at is not None


def test_csrf_stays_on_for_htmx_posts(operator, inventory):
    host, _ = inventory
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = reverse("hosts:sync", args=[host.name])
    assert client.post(url, HTTP_HX_REQUEST="true").status_code == 403
    # base.html gives htmx the token in hx-headers; the cookie holds the same secret
    page = client.get(host.get_absolute_url()).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    token = page.split('"X-CSRFToken": "', 1)[1].split('"', 1)[0]
    response = client.post(url, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert 'id="sync-status"' in response.content.decode()
