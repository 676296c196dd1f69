"""A permission denial is one line in the log, without a traceback (web.logfilters)."""

from __future__ import annotations

import logging

import pytest
from django.test import RequestFactory
from django.urls import reverse

from web.logfilters import ForbiddenInOneLine

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django.request"]


def test_a_denial_is_one_line_without_a_traceback(viewer_client, host_factory, caplog):
    host = host_factory("hv01")
    caplog.set_level(logging.INFO)
    response = viewer_client.post(reverse("hosts:remove", args=[host.name]))
    assert response.status_code == 403
    records = request_records(caplog)
    assert len(records) == 1
    (record,) = records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "forbidden: user=viewer method=POST path=/hosts/hv01/remove/ reason=needs hosts.delete_host"
    )
    assert record.exc_info is None and record.exc_text is None
    assert "Traceback" not in caplog.text
    assert len([line for line in caplog.text.splitlines() if "django.request" in line]) == 1


def test_a_user_without_a_role_is_logged_with_the_permission_missing(
    client, django_user_model, caplog
):
    client.force_login(django_user_model.objects.create_user("nobody", password="pw-123456"))
    caplog.set_level(logging.INFO)
    assert client.get(reverse("home")).status_code == 403
    (record,) = request_records(caplog)
    assert record.getMessage() == (
        "forbidden: user=nobody method=GET path=/ reason=needs hosts.view_host"
    )
    assert "Traceback" not in caplog.text


def test_a_superuser_only_page_says_why(client, operator_user, host_factory, caplog):
    host = host_factory("hv01")
    client.force_login(operator_user)
    caplog.set_level(logging.INFO)
    assert client.get(reverse("balancing:policy", args=[host.name])).status_code == 403
    (record,) = request_records(caplog)
    assert record.getMessage().endswith(
        "path=/balancing/policy/hv01/ reason=balancing policies are for admins (superuser) only"
    )


def test_a_path_cannot_break_the_line(viewer):
    """request.path is percent-decoded: a newline in it stays escaped in the one line."""
    request = RequestFactory().get("/x%0Aforbidden: user=admin/")
    request.user = viewer
    record = logging.LogRecord("django.request", logging.WARNING, "", 0, "Forbidden", (), None)
    record.status_code = 403
    record.request = request
    ForbiddenInOneLine().filter(record)
    assert record.getMessage() == (
        "forbidden: user=viewer method=GET path=/x\\nforbidden: user=admin/ "
        "reason=permission denied"
    )


def test_other_records_keep_their_shape(viewer_client, caplog):
    caplog.set_level(logging.INFO)
    assert viewer_client.get("/hosts/no-such-host/").status_code == 404
    (record,) = request_records(caplog)
    assert record.getMessage() == "Not Found: /hosts/no-such-host/"
