"""The admin keeps the audit trail append-only: a user who made changes, or who requested or
approved a balancing plan, is not deleted (the delete page and the bulk action say why and what
to do), and the admin asks for the same permissions, and goes through the same services, as the
pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse

from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing.models import BalancingPlan
from changes.models import Change
from numaportal.roles import OPERATOR_GROUP
from tests.web.changes_helpers import make_change
from tests.web.test_balancing_plans import seed_inventory

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


# --- users who requested or approved a balancing plan ----------------------------------------


@pytest.fixture
def planned(django_user_model, host_factory, vm_factory):
    """alice requested a plan (and made no change), dave approved it (its plan_move changes are
    his): the real services and planner, nothing handed to a worker (on commit only)."""
    host, _ = seed_inventory(host_factory, vm_factory)
    operators = Group.objects.get(name=OPERATOR_GROUP)
    alice = django_user_model.objects.create_user("alice", password="alice-password-123")
    dave = django_user_model.objects.create_user("dave", password="dave-password-123")
    for user in (alice, dave):
        user.groups.add(operators)
    plan = plan_requests.request_plan(host=host, actor=alice)
    plan = plan_compute.compute_plan(plan.pk)
    assert plan.status == BalancingPlan.Status.READY and plan.moves >= 1
    plan_requests.approve_plan(plan=plan, actor=dave, reason="rebalance after the migration")
    plan.refresh_from_db()
    assert not Change.objects.filter(actor=alice).exists()
    return plan, alice, dave


def plan_users(plan) -> tuple:
    plan.refresh_from_db()
    return (plan.requested_by, plan.requested_by_name, plan.approved_by, plan.approved_by_name)


def test_the_admin_does_not_delete_a_user_who_requested_a_plan(root, planned, django_user_model):
    plan, alice, dave = planned
    before = plan_users(plan)
    assert before == (alice, "alice", dave, "dave")
    url = reverse("admin:auth_user_delete", args=[alice.pk])
    page = root.get(url)
    assert page.status_code == 200
    expected = "alice requested 1 balancing plan: deactivate the account instead (uncheck Active)"
    assert expected in page.content.decode()
    # SET_NULL used to delete alice and blank the plan's requester
    response = root.post(url, {"post": "yes"})
    assert response.status_code == 200  # the same page again, not a 500 and not deleted
    assert expected in response.content.decode()
    assert django_user_model.objects.filter(pk=alice.pk).exists()
    assert plan_users(plan) == before


def test_the_admin_says_everything_that_names_the_approver(root, planned, django_user_model):
    plan, alice, dave = planned
    made = Change.objects.filter(actor=dave).count()
    assert made == plan.moves
    noun = "change" if made == 1 else "changes"
    response = root.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [alice.pk, dave.pk], "post": "yes"},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "alice requested 1 balancing plan: deactivate the account instead" in text
    assert (
        f"dave made {made} {noun} and approved 1 balancing plan: deactivate the account "
        "instead (uncheck Active)"
    ) in text
    assert django_user_model.objects.filter(pk__in=[alice.pk, dave.pk]).count() == 2
    assert plan_users(plan) == (alice, "alice", dave, "dave")


def test_the_orm_refuses_too_and_the_plan_keeps_its_user(planned):
    plan, alice, _dave = planned
    with pytest.raises(ProtectedError):
        alice.delete()
    assert plan_users(plan)[:2] == (alice, "alice")


def test_a_deactivated_requester_still_names_the_plan(root, planned):
    plan, alice, _dave = planned
    response = root.post(
        reverse("admin:auth_user_change", args=[alice.pk]),
        {
            "username": "alice",
            "is_active": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert not alice.is_active
    assert plan_users(plan)[:2] == (alice, "alice")


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
