"""Who may do what on the change pages: every URL is read-only or mutating, viewers get 403 on
the mutating ones, operators request changes but do not manage hosts, anonymous users go to the
login page, and no page edits a record.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from balancing.models import BalancingPlan
from changes import forms
from changes.models import Change
from tests.web.changes_helpers import make_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]

LIBVIRT_REFUSAL = (
    "Unsupported configuration: can't change nodeset for strict mode for running domain"
)


# --- roles ----------------------------------------------------------------------------------------


def plan_of(host) -> BalancingPlan:
    """A plan of the host to approve: an unknown one is 404, also for a viewer (web.access)."""
    return BalancingPlan.objects.create(host=host, requested_by_name="ops")


def mutating_urls(vm) -> list[str]:
    """Every URL that changes something: the change forms (all kinds) and the host actions."""
    return [reverse("vms:change", args=[vm.host.name, vm.uuid, slug]) for slug in forms.FORMS] + [
        reverse("hosts:add"),
        reverse("hosts:sync", args=[vm.host.name]),
        reverse("hosts:remove", args=[vm.host.name]),
        reverse("hosts:numa-balancing", args=[vm.host.name]),
        reverse("balancing:request", args=[vm.host.name]),
        reverse("balancing:approve", args=[plan_of(vm.host).pk]),
        reverse("balancing:policy", args=[vm.host.name]),
    ]


def test_every_url_pattern_is_covered_as_read_or_mutating():
    """A new URL must be listed here as read-only or mutating (so the 403 test covers it)."""
    read_only = {
        "home",
        "status",
        "status-fragment",
        "metrics",  # 401 without a session or bearer token (numaportal.metrics)
        "login",
        "logout",
        "hosts:list",
        "hosts:detail",
        "hosts:cell",
        "hosts:distances",
        "hosts:numastat",
        "hosts:sync-status",
        "vms:list",
        "vms:detail",
        "changes:list",
        "changes:export",
        "changes:detail",
        "changes:status",
        "balancing:list",
        "balancing:plan",
        "balancing:plan-status",
    }
    mutating = {
        "hosts:add",
        "hosts:sync",
        "hosts:remove",
        "hosts:numa-balancing",
        "vms:change",
        "vms:balancing-flags",
        "balancing:request",
        "balancing:approve",
        "balancing:policy",
    }

    def walk(patterns, namespace=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                # The admin has its own rules; the REST API's role matrix is in tests/api.
                if p.app_name in {"admin", "api"}:
                    continue
                ns = p.namespace or ""
                yield from walk(p.url_patterns, f"{namespace}{ns}:" if ns else namespace)
            elif isinstance(p, URLPattern) and p.name:
                yield f"{namespace}{p.name}"

    # A user's own API tokens: every role creates and revokes its own (tests/api/test_tokens_ui).
    own_account = {"tokens:list", "tokens:create", "tokens:revoke"}

    seen = set(walk(get_resolver().url_patterns))
    assert seen - {n for n in seen if n.startswith("djdt")} == read_only | mutating | own_account
    # and no URL edits or deletes a change record
    assert not {n for n in seen if n.startswith("changes:")} & mutating


def test_viewer_gets_403_on_every_mutating_url(viewer_client, inventory):
    vm = inventory["db01"]
    for url in mutating_urls(vm):
        get = viewer_client.get(url)
        assert get.status_code in (403, 405), url
        post = viewer_client.post(
            url,
            {
                "vcpu_0": "1",
                "cpuset": "1",
                "count": "3",
                "maximum": "8",
                "mode": "strict",
                "nodeset": "0",
                "scope": "live+config",
                "reason": "sneaky",
                "confirm": "1",
            },
        )
        assert post.status_code == 403, url
    assert Change.objects.count() == 0


def test_viewer_sees_the_history_but_no_change_buttons(viewer_client, inventory):
    change = make_change(inventory["db01"])
    assert viewer_client.get(reverse("changes:list")).status_code == 200
    assert viewer_client.get(change.get_absolute_url()).status_code == 200
    assert viewer_client.get(reverse("changes:export")).status_code == 200
    page = viewer_client.get(inventory["db01"].get_absolute_url()).content.decode()
    assert 'id="change-actions"' not in page and "/change/" not in page


def test_operator_may_request_changes_but_not_manage_hosts(client, operator_user, inventory):
    client.force_login(operator_user)
    vm = inventory["db01"]
    for slug in forms.FORMS:
        assert (
            client.get(reverse("vms:change", args=[vm.host.name, vm.uuid, slug])).status_code == 200
        )
    assert client.get(reverse("hosts:add")).status_code == 403
    assert client.post(reverse("hosts:sync", args=["hv01"])).status_code == 403
    assert client.get(reverse("hosts:remove", args=["hv01"])).status_code == 403
    assert client.get("/admin/").status_code == 302  # not staff: the admin login


def test_anonymous_is_sent_to_login_from_the_change_pages(client, inventory):
    change = make_change(inventory["db01"])
    vm = inventory["db01"]
    urls = [
        reverse("changes:list"),
        reverse("changes:export"),
        change.get_absolute_url(),
        reverse("changes:status", args=[change.pk]),
        reverse("vms:change", args=[vm.host.name, vm.uuid, "vcpupin"]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_records_are_not_editable_through_any_page(ops_client, inventory):
    change = make_change(inventory["db01"], status="failed", error="boom")
    for url in (change.get_absolute_url(), reverse("changes:list")):
        for method in ("post", "put", "patch", "delete"):
            assert getattr(ops_client, method)(url).status_code == 405, (method, url)
    # the admin (superuser) may look, not add, change or delete
    base = "admin:changes_change"
    assert ops_client.get(reverse(f"{base}_changelist")).status_code == 200
    detail = ops_client.get(reverse(f"{base}_change", args=[change.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert (
        ops_client.post(reverse(f"{base}_change", args=[change.pk]), {"reason": "x"}).status_code
        == 403
    )
    assert ops_client.get(reverse(f"{base}_add")).status_code == 403
    assert ops_client.get(reverse(f"{base}_delete", args=[change.pk])).status_code == 403
    assert (
        ops_client.post(reverse(f"{base}_delete", args=[change.pk]), {"post": "yes"}).status_code
        == 403
    )
    change.refresh_from_db()
    assert (change.status, change.error, change.reason) == ("failed", "boom", "seed step")


def test_list_refreshes_itself_while_a_change_on_it_is_active(ops_client, inventory):
    db01 = inventory["db01"]
    done = make_change(db01, status="succeeded")
    url = reverse("changes:list")
    page = ops_client.get(url, {"vm": db01.pk}).content.decode()
    assert "hx-trigger" not in page
    assert f'of <a href="{db01.get_absolute_url()}">db01</a> on hv01' in page
    make_change(db01)  # queued
    page = ops_client.get(url, {"vm": db01.pk}).content.decode()
    assert 'hx-trigger="every 2s"' in page and 'hx-select="#change-table"' in page
    assert done.get_absolute_url() in page


def test_dashboard_lists_vms_changed_outside_the_portal(ops_client, host_factory, vm_factory):
    host = host_factory("hv02")
    vm_factory(
        host,
        "tampered",
        changed_outside=True,
        changed_outside_detail="vCPU 0 pinned to 1 live; the last change left 0",
    )
    vm_factory(host, "fine")
    page = ops_client.get(reverse("hosts:list")).content.decode()
    assert 'id="changed-outside-summary"' in page
    assert 'data-changed-outside-count="1"' in page
    listed = ops_client.get(reverse("vms:list"), {"changed_outside": "true"})
    assert [vm.name for vm in listed.context["vms"]] == ["tampered"]
