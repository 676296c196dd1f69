"""The API tokens page (/account/tokens/) and the tokens' admin: a user lists, creates (shown
once) and revokes their own knox tokens only; superusers revoke anyone's in the admin, which
is read-only otherwise; staff without superuser get nothing there."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from numaportal.roles import OPERATOR_GROUP, VIEWER_GROUP

pytestmark = [pytest.mark.api, pytest.mark.django_db]

HOSTS_API = "/api/v1/hosts/"


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user("alice", password="alice-password-1")
    user.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return user


@pytest.fixture
def bob(django_user_model):
    user = django_user_model.objects.create_user("bob", password="bob-password-1")
    user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    return user


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def api_status(token: str) -> int:
    return Client().get(HOSTS_API, HTTP_AUTHORIZATION=f"Token {token}").status_code


def created_token(response) -> str:
    match = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def test_anonymous_goes_to_login_and_no_role_is_refused(django_user_model):
    url = reverse("tokens:list")
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    nobody = django_user_model.objects.create_user("nobody", password="nobody-password-1")
    assert signed_in(nobody).get(url).status_code == 403
    assert signed_in(nobody).post(reverse("tokens:create")).status_code == 403
    assert not AuthToken.objects.exists()


def test_create_shows_the_token_once_and_it_works(alice):
    client = signed_in(alice)
    response = client.post(reverse("tokens:create"), {"days": "7"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    token = created_token(response)
    assert "shown only this once" in response.content.decode()
    (instance,) = AuthToken.objects.filter(user=alice)
    assert token.startswith(instance.token_key)
    assert 6.9 < (instance.expiry - instance.created).total_seconds() / 86400 <= 7.0
    # Never again: the list shows the key prefix, not the token.
    listing = client.get(reverse("tokens:list")).content.decode()
    assert instance.token_key in listing
    assert token not in listing
    # The token authenticates its user, with the user's role (a viewer reads hosts).
    assert api_status(token) == 200
    assert api_status(token[:-1] + ("0" if token[-1] != "0" else "1")) == 401


def test_blank_days_is_the_limit_and_more_is_refused(alice, settings):
    settings.NUMAPORTAL_API_TOKEN_DAYS = 30
    client = signed_in(alice)
    refused = client.post(reverse("tokens:create"), {"days": "31"})
    assert refused.status_code == 200
    assert "at most 30 days" in refused.content.decode()
    assert not AuthToken.objects.exists()
    client.post(reverse("tokens:create"), {"days": ""})
    (instance,) = AuthToken.objects.all()
    assert round((instance.expiry - instance.created).total_seconds() / 86400) == 30


def test_a_user_sees_and_revokes_only_their_own(alice, bob):
    mine, my_token = AuthToken.objects.create(user=alice)
    theirs, their_token = AuthToken.objects.create(user=bob)
    client = signed_in(alice)
    listing = client.get(reverse("tokens:list")).content.decode()
    assert mine.token_key in listing and theirs.token_key not in listing
    # Another user's token is 404 to see and to revoke, and stays.
    other = reverse("tokens:revoke", args=[theirs.token_key])
    assert client.get(other).status_code == 404
    assert client.post(other).status_code == 404
    assert api_status(their_token) == 200
    # One's own: a confirmation page, then POST revokes it.
    own = reverse("tokens:revoke", args=[mine.token_key])
    confirm = client.get(own)
    assert confirm.status_code == 200 and 'method="post"' in confirm.content.decode()
    assert AuthToken.objects.filter(pk=mine.pk).exists()
    response = client.post(own)
    assert response.status_code == 302 and response["Location"] == reverse("tokens:list")
    assert not AuthToken.objects.filter(pk=mine.pk).exists()
    assert api_status(my_token) == 401
    assert api_status(their_token) == 200


def test_posts_need_the_csrf_token(alice):
    mine, _ = AuthToken.objects.create(user=alice)
    client = signed_in(alice, enforce_csrf_checks=True)
    assert client.post(reverse("tokens:create")).status_code == 403
    assert client.post(reverse("tokens:revoke", args=[mine.token_key])).status_code == 403
    assert AuthToken.objects.filter(user=alice).count() == 1
    # With it (from the page's form) it works.
    page = client.get(reverse("tokens:list")).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(reverse("tokens:create"), {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 200
    assert AuthToken.objects.filter(user=alice).count() == 2


def test_the_page_escapes_and_the_navigation_links_it(django_user_model):
    user = django_user_model.objects.create_user("<b>x</b>", password="hostile-name-pw-1")
    user.groups.add(Group.objects.get(name=VIEWER_GROUP))
    client = signed_in(user)
    html = client.get(reverse("tokens:list")).content.decode()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert f'href="{reverse("tokens:list")}"' in client.get(reverse("hosts:list")).content.decode()


def test_get_on_create_is_not_allowed(alice):
    assert signed_in(alice).get(reverse("tokens:create")).status_code == 405


# --- the admin -------------------------------------------------------------------------------


def test_superusers_revoke_anyones_token_in_the_admin_and_change_nothing_else(alice, operator):
    token, raw = AuthToken.objects.create(user=alice)
    client = signed_in(operator)
    changelist = client.get(reverse("admin:knox_authtoken_changelist"))
    assert changelist.status_code == 200
    assert token.token_key in changelist.content.decode()
    # No add form (knox's would make a token for any user), nothing to edit.
    assert client.get(reverse("admin:knox_authtoken_add")).status_code == 403
    change_url = reverse("admin:knox_authtoken_change", args=[token.pk])
    detail = client.get(change_url)
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    before = AuthToken.objects.get(pk=token.pk).expiry
    assert client.post(change_url, {"expiry_0": "2099-01-01", "expiry_1": "00:00"}).status_code in {
        403,
        302,
    }
    assert AuthToken.objects.get(pk=token.pk).expiry == before
    # Delete (revoke) works.
    delete_url = reverse("admin:knox_authtoken_delete", args=[token.pk])
    response = client.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not AuthToken.objects.filter(pk=token.pk).exists()
    assert api_status(raw) == 401


def test_staff_without_superuser_get_nothing_even_with_knox_permissions(django_user_model, alice):
    token, raw = AuthToken.objects.create(user=alice)
    staff = django_user_model.objects.create_user("staff", password="staff-password-1")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="knox"))
    client = signed_in(staff)
    assert client.get(reverse("admin:knox_authtoken_changelist")).status_code == 403
    assert client.get(reverse("admin:knox_authtoken_add")).status_code == 403
    assert client.post(reverse("admin:knox_authtoken_add"), {"user": alice.pk}).status_code == 403
    delete_url = reverse("admin:knox_authtoken_delete", args=[token.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert AuthToken.objects.filter(user=alice).count() == 1
    assert api_status(raw) == 200
    assert "knox" not in client.get(reverse("admin:index")).content.decode().lower()
