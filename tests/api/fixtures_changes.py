"""Fixtures of the change and balancing API tests (imported by name from those modules: the
directory's conftest is another's). Real users in the role groups, each with a knox token, and
an API client per role; hosts and VMs from capabilities fixtures (tests/web/conftest.py's
factories); libvirt's test driver VM for the tests with a real worker."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from unittest import mock

import libvirt
import pytest
from django.contrib.auth.models import Group
from knox.models import AuthToken
from rest_framework.test import APIClient

from hosts.models import Host
from numaportal.roles import OPERATOR_GROUP, VIEWER_GROUP
from tests.web.conftest import make_host, make_vm
from vms import sync
from vms.models import VirtualMachine

__all__ = [
    "ROLES",
    "api_as",
    "enqueued",
    "inventory_vm",
    "queued_plans",
    "test_driver_vm",
    "token_client",
]

TEST_URI = "test:///default"
#: The roles of the matrix: no login, a user without a role, viewer, operator, admin.
ROLES = ("anonymous", "norole", "viewer", "operator", "admin")


def token_client(user) -> APIClient:
    """An API client sending *user*'s own knox token, as a script would."""
    _, token = AuthToken.objects.create(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def make_user(django_user_model, role: str):
    if role == "admin":
        return django_user_model.objects.create_superuser("api-admin", "", "admin-pw-123456")
    user = django_user_model.objects.create_user(f"api-{role}", password=f"{role}-pw-123456")
    group = {"viewer": VIEWER_GROUP, "operator": OPERATOR_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


class Clients:
    """``api_as(role)``: an API client of one of :data:`ROLES` (anonymous: no credentials);
    ``api_as.user(role)``: that role's user, the same one within a test."""

    def __init__(self, django_user_model) -> None:
        self.model = django_user_model
        self.users: dict[str, object] = {}

    def user(self, role: str):
        if role not in self.users:
            self.users[role] = make_user(self.model, role)
        return self.users[role]

    def __call__(self, role: str) -> APIClient:
        return APIClient() if role == "anonymous" else token_client(self.user(role))


@pytest.fixture
def api_as(django_user_model) -> Clients:
    return Clients(django_user_model)


@pytest.fixture
def enqueued() -> Iterator[mock.MagicMock]:
    """apply_change's apply_async, captured: records are written, no worker runs them."""
    with mock.patch("changes.tasks.apply_change.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def queued_plans() -> Iterator[tuple[mock.MagicMock, mock.MagicMock]]:
    with (
        mock.patch("balancing.tasks.compute_plan.apply_async") as compute,
        mock.patch("balancing.tasks.apply_plan.apply_async") as apply,
    ):
        yield compute, apply


@pytest.fixture
def inventory_vm() -> VirtualMachine:
    """A synced-looking host (2 cells, CPUs 0-23) with a running VM of 2 vCPUs."""
    host = make_host("hv01", worker_queue="hv01-onhost")
    return make_vm(host, "db01", vcpus=2, vcpu_max=4)


@pytest.fixture
def test_driver_vm() -> Iterator[VirtualMachine]:
    """The test driver's domain "test" on a synced host (as tests/web/test_drills.py); one
    connection held open keeps the driver's state between the workers' connections."""
    gc.collect()
    conn = libvirt.open(TEST_URI)
    host = Host.objects.create(name="td", uri=TEST_URI)
    sync.sync_host(host.pk)
    yield VirtualMachine.objects.select_related("host").get(host=host, name="test")
    conn.close()
    gc.collect()
