"""Shared fixtures of the API tests: users of each role, their tokens, clients that send them,
and a host synced from libvirt's in-process test driver (``test:///default``: 2 cells x 8
CPUs, one running domain "test" with 2 vCPUs).

Users are real users in the portal's groups (:mod:`numaportal.roles`, ensured after every
``migrate``); tokens are real knox tokens, created as ``POST /api/v1/auth/login/`` creates
them (that endpoint itself is tested in ``test_hosts_api``).
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Callable

import pytest
import requests
import schemathesis
from django.contrib.auth.models import Group
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from knox.models import AuthToken
from schemathesis.core.transport import Response as SchemathesisResponse

from hosts.models import Host
from numaportal.roles import OPERATOR_GROUP, VIEWER_GROUP, ensure_role_groups
from vms import sync

TEST_URI = "test:///default"
#: The test driver's domain "test".
TEST_VM_NAME = "test"
TEST_VM_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
PASSWORD = "api-password-123456"

#: Role name -> what the matrix calls it: no user, a user without a group, each role.
ROLES = ("anonymous", "no_role", "viewer", "operator", "admin")


def make_user(django_user_model, role: str):
    """A user of *role* ("no_role", "viewer", "operator", "admin"), password :data:`PASSWORD`."""
    ensure_role_groups()
    if role == "admin":
        return django_user_model.objects.create_superuser("api-admin", "", PASSWORD)
    user = django_user_model.objects.create_user(f"api-{role}", password=PASSWORD)
    group = {"viewer": VIEWER_GROUP, "operator": OPERATOR_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def token_client(key: str | None, **kwargs) -> Client:
    """A client that sends ``Authorization: Token <key>`` (none: anonymous)."""
    headers = {"Authorization": f"Token {key}"} if key else {}
    return Client(headers=headers, **kwargs)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Four users a test at PBKDF2's real cost were most of this suite's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(django_user_model) -> dict:
    """One user per role (anonymous: None)."""
    return {
        "anonymous": None,
        **{role: make_user(django_user_model, role) for role in ROLES[1:]},
    }


@pytest.fixture
def tokens(users) -> dict[str, str | None]:
    """A fresh token per role (anonymous: None)."""
    return {
        role: None if user is None else AuthToken.objects.create(user)[1]
        for role, user in users.items()
    }


@pytest.fixture
def api(tokens) -> Callable[[str], Client]:
    """``api("viewer")``: a client with that role's token."""
    return lambda role: token_client(tokens[role])


@pytest.fixture
def viewer_api(api) -> Client:
    return api("viewer")


@pytest.fixture
def admin_api(api) -> Client:
    return api("admin")


@pytest.fixture
def fresh_test_driver():
    # The test driver keeps its state while any connection to it lives (see tests/libvirt):
    # each test starts from the driver's default domain.
    gc.collect()
    yield
    gc.collect()


@pytest.fixture
def synced_host(fresh_test_driver) -> Host:
    """A host on ``test:///default``, synced in-process as a worker would."""
    host = Host.objects.create(name="td", uri=TEST_URI)
    sync.sync_host(host.pk)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    return host


# --- responses against the OpenAPI schema ------------------------------------------------------


@functools.cache
def openapi_schema():
    """The schema ``/api/schema/`` serves, loaded by schemathesis (once per process)."""
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    return schemathesis.openapi.from_dict(document)


def assert_conforms(response, path: str, method: str = "GET") -> None:
    """*response* (a Django test response) is what the schema says *path* answers."""
    operation = openapi_schema()[path][method]
    operation.validate_response(
        SchemathesisResponse(
            status_code=response.status_code,
            headers={"content-type": [response["Content-Type"]]},
            content=response.content,
            request=requests.Request(method, f"http://testserver{path}").prepare(),
            elapsed=0.0,
            message=response.reason_phrase,
            encoding="utf-8",
            http_version="1.1",
            verify=True,
        )
    )
