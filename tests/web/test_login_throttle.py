"""Login throttling (django-axes, numaportal.settings): 5 failures in a row for one username
from one address lock that pair out for 15 minutes; admins unlock it sooner. The login logs
axes keeps are pruned after NUMAPORTAL_LOGIN_LOG_DAYS (numaportal.tasks)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.core.management import call_command
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from numaportal.tasks import prune_login_logs

pytestmark = [pytest.mark.web, pytest.mark.django_db]

WRONG = "not-the-password"


def log_in(client: Client, password: str, username: str = "ops", **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def signed_in(response) -> bool:
    return response.wsgi_request.user.is_authenticated


def test_the_defaults():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.NUMAPORTAL_LOGIN_LOG_DAYS == 30


def test_five_wrong_passwords_lock_the_login(client, operator, admin_password):
    """The finding: 15 wrong passwords in a row were answered like the first."""
    for _ in range(4):
        response = log_in(client, WRONG)
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()
    locked = log_in(client, WRONG)
    assert locked.status_code == 429
    page = locked.content.decode()
    assert 'id="locked-out"' in page and "locked for 15 minutes" in page
    assert "after 5 failures in a row" in page
    assert 'value="ops"' in page  # the username typed is kept
    # the right password does not get through while locked, nor does it count as a failure
    for _ in range(10):
        response = log_in(client, admin_password)
        assert response.status_code == 429 and not signed_in(response)
    assert AccessAttempt.objects.get(username="ops").failures_since_start == 5


def test_the_lock_is_for_that_username_from_that_address(
    client, operator, admin_password, django_user_model
):
    django_user_model.objects.create_user("alice", password="alice-password-123")
    for _ in range(5):
        log_in(client, WRONG)
    assert log_in(client, admin_password).status_code == 429
    # another user from the same address
    assert signed_in(log_in(Client(), "alice-password-123", username="alice"))
    # the same user from another address
    assert signed_in(log_in(Client(), admin_password, REMOTE_ADDR="10.0.0.7"))


def test_the_lock_ends_after_the_cool_off(client, operator, admin_password):
    for _ in range(5):
        log_in(client, WRONG)
    assert log_in(client, admin_password).status_code == 429
    earlier = AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    AccessAttempt.objects.update(attempt_time=earlier)
    response = log_in(client, admin_password)
    assert response.status_code == 302 and signed_in(response)


def test_a_successful_login_clears_the_count(client, operator, admin_password):
    for _ in range(4):
        log_in(client, WRONG)
    assert signed_in(log_in(client, admin_password))
    client.logout()
    for _ in range(4):
        assert log_in(client, WRONG).status_code == 200
    assert signed_in(log_in(client, admin_password))


def test_an_admin_unlocks_with_the_command(client, operator, admin_password):
    for _ in range(5):
        log_in(client, WRONG)
    call_command("axes_reset_username", "ops")
    assert signed_in(log_in(client, admin_password))


def test_an_admin_unlocks_in_the_admin(client, operator, admin_password, django_user_model):
    for _ in range(5):
        log_in(client, WRONG)
    attempt = AccessAttempt.objects.get(username="ops")
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "", "root-pw-123456"))
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and "ops" in listing.content.decode()
    response = admin.post(
        reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert signed_in(log_in(client, admin_password))


def test_the_admin_login_is_throttled_too(client, operator, admin_password):
    url = reverse("admin:login")
    for _ in range(5):
        response = client.post(url, {"username": "ops", "password": WRONG})
    assert response.status_code == 429
    assert client.post(url, {"username": "ops", "password": admin_password}).status_code == 429


def test_the_test_clients_logins_still_work(client, operator, admin_password):
    """force_login does not authenticate; login() must hand axes a request."""
    client.force_login(operator)
    assert client.get(reverse("hosts:list")).status_code == 200
    client.logout()
    assert client.login(request=HttpRequest(), username="ops", password=admin_password)
    assert client.get(reverse("hosts:list")).status_code == 200
    with pytest.raises(ValueError, match="requires a request"):
        Client().login(username="ops", password=admin_password)


# --- login logs -------------------------------------------------------------------------------


def logged_in_from(addresses: dict[str, float], password: str) -> None:
    """ "ops" logs in once from each address, that many days ago (axes writes the log row now:
    its time is moved back afterwards)."""
    for address, days_ago in addresses.items():
        assert signed_in(log_in(Client(), password, REMOTE_ADDR=address))
        AccessLog.objects.filter(ip_address=address).update(
            attempt_time=timezone.now() - timedelta(days=days_ago)
        )


def logged_addresses() -> set[str]:
    return set(AccessLog.objects.filter(username="ops").values_list("ip_address", flat=True))


def test_old_login_logs_are_pruned_and_recent_ones_kept(
    operator, admin_password, django_user_model
):
    logged_in_from({"10.0.0.1": 45, "10.0.0.2": 31, "10.0.0.3": 29, "10.0.0.4": 0}, admin_password)
    assert logged_addresses() == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
    assert prune_login_logs() == 2
    assert logged_addresses() == {"10.0.0.3", "10.0.0.4"}
    # what an admin sees under Admin -> Axes -> Access logs
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "", "root-pw-123456"))
    listing = admin.get(reverse("admin:axes_accesslog_changelist")).content.decode()
    assert "10.0.0.3" in listing and "10.0.0.4" in listing
    assert "10.0.0.1" not in listing and "10.0.0.2" not in listing
    # a second run has nothing left to do
    assert prune_login_logs() == 0


def test_the_days_kept_are_the_setting(operator, admin_password, settings):
    settings.NUMAPORTAL_LOGIN_LOG_DAYS = 7
    logged_in_from({"10.0.0.1": 8, "10.0.0.2": 6}, admin_password)
    assert prune_login_logs() == 1
    assert logged_addresses() == {"10.0.0.2"}


def test_pruning_the_logs_leaves_a_lockout_in_place(client, operator, admin_password):
    for _ in range(5):
        log_in(client, WRONG)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=1))
    prune_login_logs()
    assert log_in(client, admin_password).status_code == 429
