"""``/api/v1/hosts/`` and the authentication every endpoint shares: the role matrix of the
hosts endpoints (list, detail, register, sync, remove), tokens (login, logout, an inactive
user's), session authentication with CSRF, and registration refused in the form's words.

Nothing reaches Celery: register and sync enqueue on commit, and these tests run inside a
transaction that is rolled back (the callbacks are captured, not run, where they are counted).
"""

from __future__ import annotations

import base64

import pytest
from django.test import Client
from django.urls import reverse

from hosts.forms import HostRegisterForm
from hosts.models import Host
from tests.api.conftest import PASSWORD, ROLES, TEST_URI, assert_conforms, token_client

pytestmark = [pytest.mark.api, pytest.mark.django_db]

LIST = "/api/v1/hosts/"
#: Per endpoint, the status of each role, in the order of ROLES.
READ = (401, 403, 200, 200, 200)
HOST_WRITE = (401, 403, 403, 403, None)  # None: the admin's success, per endpoint below


def detail(name: str) -> str:
    return f"/api/v1/hosts/{name}/"


def expected(matrix: tuple, role: str, success: int) -> int:
    status = matrix[ROLES.index(role)]
    return success if status is None else status


# --- the role matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_list(api, synced_host, role):
    response = api(role).get(LIST)
    assert response.status_code == expected(READ, role, 200), response.content
    if response.status_code == 200:
        assert_conforms(response, LIST)
        body = response.json()
        assert [h["name"] for h in body["results"]] == ["td"]
        assert body["results"][0]["sync_status"] == "ok"
        assert body["results"][0]["uri"] == TEST_URI
    elif response.status_code == 401:
        assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("role", ROLES)
def test_detail_with_topology(api, synced_host, role):
    response = api(role).get(detail("td"))
    assert response.status_code == expected(READ, role, 200), response.content
    if response.status_code != 200:
        return
    assert_conforms(response, "/api/v1/hosts/{name}/")
    body = response.json()
    # the test driver: 2 cells of 8 CPUs (as the sync stored them)
    assert [c["cell"] for c in body["cells"]] == [0, 1]
    assert [c["cpus"] for c in body["cells"]] == [list(range(8)), list(range(8, 16))]
    assert len(body["cpus"]) == 16
    assert body["cells"][0]["distances"] == synced_host.cells.get(cell_id=0).distances


@pytest.mark.parametrize("role", ROLES)
def test_register(api, role, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(role).post(
            LIST, {"name": "new", "uri": TEST_URI}, content_type="application/json"
        )
    assert response.status_code == expected(HOST_WRITE, role, 201), response.content
    if role != "admin":
        assert not Host.objects.filter(name="new").exists()
        assert not callbacks
        return
    assert_conforms(response, LIST, "POST")
    body = response.json()
    assert body["name"] == "new" and body["uri"] == TEST_URI
    assert body["sync_status"] == "checking"
    assert body["sync_status_words"] == "checking the connection"
    assert Host.objects.get(name="new").sync_status == Host.SyncStatus.CHECKING
    assert len(callbacks) == 1  # the connection test, queued once committed


@pytest.mark.parametrize("role", ROLES)
def test_sync(api, synced_host, role, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(role).post(detail("td") + "sync/")
    assert response.status_code == expected(HOST_WRITE, role, 202), response.content
    synced_host.refresh_from_db()
    if role != "admin":
        assert synced_host.sync_status == Host.SyncStatus.OK
        assert not callbacks
        return
    assert_conforms(response, "/api/v1/hosts/{name}/sync/", "POST")
    assert response.json()["sync_status"] == "queued"
    assert synced_host.sync_status == Host.SyncStatus.QUEUED
    assert len(callbacks) == 1


@pytest.mark.parametrize("role", ROLES)
def test_remove(api, synced_host, role):
    response = api(role).delete(detail("td"))
    assert response.status_code == expected(HOST_WRITE, role, 204), response.content
    synced_host.refresh_from_db()
    if role != "admin":
        assert synced_host.removed_at is None
        return
    assert synced_host.removed_at is not None  # removed, its history kept
    assert api("admin").get(detail("td")).status_code == 404
    assert api("admin").get(LIST).json()["results"] == []


@pytest.mark.parametrize("role", ["no_role", "viewer", "operator"])
def test_writes_are_refused_before_the_host_is_looked_up(api, role):
    # 403 for a host that does not exist either: a refusal never says what exists.
    assert api(role).post(detail("nowhere") + "sync/").status_code == 403
    assert api(role).delete(detail("nowhere")).status_code == 403


def test_unknown_host_is_404_for_a_viewer(viewer_api):
    response = viewer_api.get(detail("nowhere"))
    assert response.status_code == 404
    assert "detail" in response.json()


# --- tokens -----------------------------------------------------------------------------------


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_login_gives_a_token_that_works_and_logout_revokes_it(users, synced_host):
    response = Client(headers=basic("api-viewer", PASSWORD)).post("/api/v1/auth/login/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "expiry"} and body["expiry"]
    client = token_client(body["token"])
    assert client.get(LIST).status_code == 200
    assert client.post("/api/v1/auth/logout/").status_code == 204
    assert client.get(LIST).status_code == 401


def test_login_with_a_wrong_password_is_401(users):
    response = Client(headers=basic("api-viewer", "wrong")).post("/api/v1/auth/login/")
    assert response.status_code == 401
    assert "token" not in response.json()


def test_a_token_never_grants_more_than_its_user(api, users, synced_host):
    viewer = api("viewer")
    assert viewer.get(LIST).status_code == 200
    users["viewer"].groups.clear()  # the role taken away: the same token now gets nothing
    assert viewer.get(LIST).status_code == 403


def test_an_inactive_users_token_is_401(api, users, synced_host):
    client = api("admin")
    assert client.get(LIST).status_code == 200
    users["admin"].is_active = False
    users["admin"].save()
    assert client.get(LIST).status_code == 401
    assert client.delete(detail("td")).status_code == 401
    synced_host.refresh_from_db()
    assert synced_host.removed_at is None


@pytest.mark.parametrize("header", ["Token nonsense", "Token ", "Bearer abc", "Token a b"])
def test_a_bad_token_is_401(header):
    response = Client(headers={"Authorization": header}).get(LIST)
    assert response.status_code == 401


# --- session authentication (the browser) ------------------------------------------------------


def test_session_auth_reads(users, synced_host):
    client = Client()
    client.force_login(users["viewer"])
    assert client.get(LIST).status_code == 200
    assert client.get(detail("td")).status_code == 200


def test_session_auth_writes_need_the_csrf_token(users, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    data = {"name": "new", "uri": TEST_URI}
    refused = client.post(LIST, data, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not Host.objects.filter(name="new").exists()
    client.get(reverse("login"))  # any page with a form sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            LIST, data, content_type="application/json", headers={"X-CSRFToken": csrf}
        )
    assert response.status_code == 201, response.content
    assert response.json()["sync_status"] == "checking"


def test_session_auth_viewer_is_403_on_writes_even_with_csrf(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["viewer"])
    client.get(reverse("login"))
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        LIST,
        {"name": "new", "uri": TEST_URI},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 403


def test_token_writes_need_no_csrf(tokens, django_capture_on_commit_callbacks):
    client = token_client(tokens["admin"], enforce_csrf_checks=True)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            LIST, {"name": "new", "uri": TEST_URI}, content_type="application/json"
        )
    assert response.status_code == 201, response.content


# --- registration errors, in the form's words ----------------------------------------------------


def page_errors(users, data: dict) -> dict[str, list[str]]:
    """What the registration page says for *data* (its form's errors)."""
    client = Client()
    client.force_login(users["admin"])
    response = client.post(reverse("hosts:add"), data)
    assert response.status_code == 200  # the form again, with its errors
    return {field: list(errors) for field, errors in response.context["form"].errors.items()}


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "etc", "uri": "test:///etc/passwd"}, "uri"),
        ({"name": "cmd", "uri": "qemu+ext:///system?command=/bin/sh"}, "uri"),
        ({"name": "bad name!", "uri": TEST_URI}, "name"),
        ({"name": "add", "uri": TEST_URI}, "name"),
        ({"name": "", "uri": TEST_URI}, "name"),
        ({"name": "nouri"}, "uri"),
    ],
)
def test_register_refusals_in_the_forms_words(admin_api, users, data, field):
    response = admin_api.post(LIST, data, content_type="application/json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [field]
    assert body[field] and all(isinstance(m, str) and m for m in body[field])
    assert body == page_errors(users, data)
    assert not Host.objects.exists()


def test_bad_name_says_what_the_form_says(admin_api):
    data = {"name": "bad name!", "uri": TEST_URI}
    form = HostRegisterForm(data)
    assert not form.is_valid()
    response = admin_api.post(LIST, data, content_type="application/json")
    assert response.json() == {"name": form.errors["name"]}


def test_duplicate_name(admin_api, synced_host):
    response = admin_api.post(
        LIST, {"name": "td", "uri": "test:///default"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["name"]
