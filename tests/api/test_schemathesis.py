"""schemathesis against the live schema: every operation /api/schema/ describes (whatever the
API has when this runs: the parametrization is read from the schema), called through the WSGI
app as a superuser with a knox token, on a database with a host synced from libvirt's test
driver. Seeded (``derandomize``) and a modest number of examples per operation, so a CI run is
repeatable and short.

Asserted for every response: no 5xx, a documented status code, the documented content type
and headers, and a body that conforms to the documented schema.

Nothing is excluded: each example runs in a savepoint that is rolled back afterwards, so an
example that removes the host, revokes the test's own token (logout) or registers a host does
not change what the next example sees. Writes enqueue Celery tasks on commit only, and the
test's transaction never commits: nothing reaches the broker (which the test runs point at
their own Redis database anyway: CELERY_BROKER_URL).
"""

from __future__ import annotations

import gc
import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hosts.models import Host
from numaportal.wsgi import application
from vms import requests as host_requests
from vms import sync

pytestmark = [pytest.mark.api]

TEST_URI = "test:///default"
MAX_EXAMPLES = 10

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class _Rollback(Exception):
    pass


def headers(token: str) -> dict[str, str]:
    # The portal gzips large responses (GZipMiddleware) when asked to; the WSGI transport
    # hands schemathesis the raw bytes, which an HTTP client would have decompressed.
    return {"Authorization": f"Token {token}", "Accept-Encoding": "identity"}


@pytest.fixture
def keep_the_test_connection():
    """The WSGI app closes an unusable or old database connection when a request starts and
    ends (close_old_connections), which would end the test's transaction; Django's test
    client disconnects it from both signals the same way."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def synced_host(db, keep_the_test_connection) -> Host:
    gc.collect()  # the test driver keeps state while a connection to it lives
    host = host_requests.register_host(name="td", uri=TEST_URI, queue_first_sync=False)
    host = sync.sync_host(host.pk)
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    return host


@pytest.fixture
def token(django_user_model, synced_host) -> str:
    admin = django_user_model.objects.create_superuser("schemathesis", "", "st-password-123")
    return AuthToken.objects.create(user=admin)[1]


def served_schema() -> dict:
    """What /api/schema/ serves, made by the same generator and renderer as its view (which
    needs a signed-in user, and there is no database at collection time to have one)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


# Read at collection (pytest-django has set Django up), so every operation is a test of its
# own. (schemathesis.pytest.from_fixture, the lazy loader, fails on pytest 9: it reads the
# removed ``Function._nodeid``.) test_the_schema_tested_is_the_one_served checks it is the
# view's.
schema = schemathesis.openapi.from_dict(served_schema())
schema.app = application
schema.location = "/api/schema/"
# Positive examples only: the negative ones start with paths the URL conf never routes (a host
# name outside its pattern), which Django answers with its HTML 404 before the API is reached.
schema.config.generation.update(modes=[GenerationMode.POSITIVE])


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_api_conforms_to_its_schema(case, token):
    try:
        with transaction.atomic():
            case.call_and_validate(headers=headers(token), checks=CHECKS)
            raise _Rollback
    except _Rollback:
        pass


@pytest.mark.django_db
def test_the_schema_tested_is_the_one_served(client, api) -> None:
    assert client.get("/api/schema/?format=json").status_code == 401  # the viewer role only
    assert api("no_role").get("/api/schema/?format=json").status_code == 403
    served = api("viewer").get("/api/schema/?format=json")
    assert served.status_code == 200
    assert json.loads(served.content) == served_schema()
