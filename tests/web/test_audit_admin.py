"""The admin keeps the audit trail append-only: a user who made changes is not deleted (the
delete page and the bulk action say why and what to do), and the admin asks for the same
permissions, and goes through the same services, as the pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from changes.models import Change
from tests.web.changes_helpers import make_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]


@pytest.fixture
def root(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw-root-1"))
    return client


@pytest.fixture
def bob(django_user_model, inventory):
    user = django_user_model.objects.create_user("bob", password="bob-password-123")
    for _ in range(12):
        make_change(inventory["db01"], actor=user, actor_name="bob")
    return user


def records_of(user) -> list[tuple]:
    return sorted(
        Change.objects.filter(actor_name=user.username).values_list("pk", "actor_id", "reason")
    )


# --- users who made changes ------------------------------------------------------------------


def test_the_admin_does_not_delete_a_user_who_made_changes(root, bob, django_user_model):
    before = records_of(bob)
    assert len(before) == 12 and all(actor == bob.pk for _, actor, _ in before)
    url = reverse("admin:auth_user_delete", args=[bob.pk])
    page = root.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "bob made 12 changes: deactivate the account instead (uncheck Active)" in text
    response = root.post(url, {"post": "yes"})
    assert response.status_code == 200  # the same page again, not a 500 and not deleted
    assert "bob made 12 changes: deactivate the account instead" in response.content.decode()
    assert django_user_model.objects.filter(pk=bob.pk).exists()
    assert records_of(bob) == before


def test_the_bulk_delete_refuses_too(root, bob, django_user_model):
    before = records_of(bob)
    carol = django_user_model.objects.create_user("carol")
    response = root.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [bob.pk, carol.pk], "post": "yes"},
    )
    assert response.status_code == 200
    assert "bob made 12 changes: deactivate the account instead" in response.content.decode()
    # nothing of the selection is deleted: the operator deactivates bob, then deletes carol
    assert django_user_model.objects.filter(pk__in=[bob.pk, carol.pk]).count() == 2
    assert records_of(bob) == before


def test_a_deactivated_user_keeps_the_records_and_the_name(root, bob, django_user_model):
    bob.is_active = False
    bob.save()
    assert records_of(bob)[0][1] == bob.pk
    # usernames are unique: a new "bob" cannot pass for the one in the history
    response = root.post(
        reverse("admin:auth_user_add"),
        {"username": "bob", "password1": "x-Very-long-pw-1", "password2": "x-Very-long-pw-1"},
    )
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert django_user_model.objects.filter(username="bob").count() == 1


def test_a_user_without_changes_is_deleted(root, bob, django_user_model):
    carol = django_user_model.objects.create_user("carol")
    response = root.post(reverse("admin:auth_user_delete", args=[carol.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not django_user_model.objects.filter(pk=carol.pk).exists()
    assert len(records_of(bob)) == 12


# --- the host admin asks what the host pages ask ---------------------------------------------


@pytest.fixture
def staff(django_user_model):
    """Staff with hosts.view_host and hosts.change_host: may sync, may not remove."""
    user = django_user_model.objects.create_user("staff", password="staff-pw-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="hosts", codename__in=["view_host", "change_host"]
        )
    )
    client = Client()
    client.force_login(user)
    return user, client


def remove_selected(client: Client, host) -> None:
    client.post(
        reverse("admin:hosts_host_changelist"),
        {"action": "remove_selected_hosts", "_selected_action": [host.pk]},
    )


def test_removing_hosts_in_the_admin_needs_the_pages_permission(staff, host_factory):
    _user, client = staff
    host = host_factory("hv9")
    # the page refuses this user (hosts.delete_host) ...
    assert client.post(reverse("hosts:remove", args=[host.name])).status_code == 403
    # ... and so does the admin's bulk action now (it asked for hosts.change_host)
    changelist = client.get(reverse("admin:hosts_host_changelist")).content.decode()
    assert "remove_selected_hosts" not in changelist
    remove_selected(client, host)
    host.refresh_from_db()
    assert host.removed_at is None and host.enabled


def test_with_the_permission_the_admin_removes_softly(staff, host_factory, vm_factory):
    user, client = staff
    user.user_permissions.add(Permission.objects.get(codename="delete_host"))
    host = host_factory("hv9")
    vm = vm_factory(host, "db09")
    make_change(vm)
    remove_selected(client, host)
    host.refresh_from_db()
    assert host.removed_at is not None and not host.enabled  # hosts.services.remove_host
    assert Change.objects.filter(host=host).count() == 1
    assert type(vm).objects.filter(pk=vm.pk).exists()
    # never a hard delete, not even for this user
    assert client.get(reverse("admin:hosts_host_delete", args=[host.pk])).status_code == 403
