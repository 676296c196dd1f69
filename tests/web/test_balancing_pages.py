"""The balancing pages: who may see, plan, approve and edit policies; the plan page (status
polling, both diagrams, the score table, the changes, the approve form), the plans list and
the policy form's validation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock
from xml.etree import ElementTree

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from balancing import compute as plan_compute
from balancing import policies as plan_policies
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from tests.web.test_balancing_plans import computed_plan, seed_inventory
from vms.models import VcpuPin

pytestmark = [pytest.mark.web, pytest.mark.django_db]

Status = BalancingPlan.Status
EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture
def seed(host_factory, vm_factory):
    host, vms = seed_inventory(host_factory, vm_factory)
    # a hostile VM name from the hypervisor, unpinned so that the plan moves it
    vms["evil"] = vm_factory(host, EVIL, vcpus=1, memory_kib=1024 * 1024)
    return host, vms


@pytest.fixture
def op_client(operator_user) -> Client:
    client = Client()
    client.force_login(operator_user)
    return client


@pytest.fixture
def queued():
    with (
        mock.patch("balancing.tasks.compute_plan.apply_async") as compute,
        mock.patch("balancing.tasks.apply_plan.apply_async") as apply,
    ):
        yield compute, apply


def plan_url(plan) -> str:
    return reverse("balancing:plan", args=[plan.pk])


# --- access -----------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, seed):
    host, _ = seed
    plan = computed_plan(host)
    login = reverse("login")
    for method, url in [
        ("get", reverse("balancing:list")),
        ("get", plan_url(plan)),
        ("get", reverse("balancing:plan-status", args=[plan.pk])),
        ("post", reverse("balancing:request", args=[host.name])),
        ("post", reverse("balancing:approve", args=[plan.pk])),
        ("get", reverse("balancing:policy", args=[host.name])),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{login}?next="), url


def test_viewer_sees_plans_but_may_not_plan_approve_or_edit_policies(viewer_client, seed, queued):
    host, _ = seed
    plan = computed_plan(host)
    assert viewer_client.get(reverse("balancing:list")).status_code == 200
    page = viewer_client.get(plan_url(plan))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="approve-form"' not in text
    assert 'id="diagram-after"' in text
    host_page = viewer_client.get(host.get_absolute_url()).content.decode()
    assert 'id="plan-balancing"' not in host_page
    assert 'id="balancing-plans"' in host_page
    assert viewer_client.post(reverse("balancing:request", args=[host.name])).status_code == 403
    response = viewer_client.post(
        reverse("balancing:approve", args=[plan.pk]), {"reason": "sneaky"}
    )
    assert response.status_code == 403
    assert viewer_client.get(reverse("balancing:policy", args=[host.name])).status_code == 403
    assert viewer_client.post(reverse("balancing:policy", args=[host.name])).status_code == 403
    assert BalancingPlan.objects.count() == 1
    assert Change.objects.count() == 0


def test_logged_in_without_permissions_is_forbidden(client, django_user_model, seed):
    host, _ = seed
    plan = computed_plan(host)
    client.force_login(django_user_model.objects.create_user("nobody", password="pw-123-x"))
    assert client.get(reverse("balancing:list")).status_code == 403
    assert client.get(plan_url(plan)).status_code == 403


def test_operator_plans_from_the_host_page(op_client, seed, queued):
    host, _ = seed
    host_page = op_client.get(host.get_absolute_url()).content.decode()
    assert 'id="plan-balancing"' in host_page
    assert reverse("balancing:request", args=[host.name]) in host_page
    response = op_client.post(reverse("balancing:request", args=[host.name]))
    plan = BalancingPlan.objects.get()
    assert response.status_code == 302
    assert response["Location"] == plan_url(plan)
    assert plan.requested_by_name == "op"
    # the page polls while the worker computes
    page = op_client.get(plan_url(plan)).content.decode()
    assert 'data-status="computing"' in page
    assert f'hx-get="{reverse("balancing:plan-status", args=[plan.pk])}?polling=1"' in page
    assert 'hx-trigger="every 2s"' in page
    status_url = reverse("balancing:plan-status", args=[plan.pk]) + "?polling=1"
    assert "HX-Refresh" not in op_client.get(status_url)
    plan_compute.compute_plan(plan.pk)
    # the poll that sees it computed reloads the page
    assert op_client.get(status_url)["HX-Refresh"] == "true"


def test_operator_may_not_edit_policies(op_client, operator_user, seed):
    host, _ = seed
    assert op_client.get(reverse("balancing:policy", args=[host.name])).status_code == 403
    with pytest.raises(PermissionDenied):
        plan_policies.update_policy(host=host, actor=operator_user, values=policy_data())
    assert not BalancingPolicy.objects.exists()


# --- the plan page ----------------------------------------------------------------------------


def test_ready_plan_page_shows_both_diagrams_the_scores_and_the_changes(op_client, seed):
    host, _ = seed
    plan = computed_plan(host)
    assert plan.status == Status.READY, plan.error
    response = op_client.get(plan_url(plan))
    page = response.content.decode()
    assert 'data-status="ready"' in page
    assert "hx-trigger" not in page.split('id="plan-status"')[1].split(">")[0]
    # before and after, side by side, each a full topology diagram
    assert page.count('class="numa-diagram"') == 2
    assert 'id="diagram-before"' in page and 'id="diagram-after"' in page
    assert 'data-cell="0"' in page and 'data-cell="1"' in page
    # the score table: every term, before / after / change
    for term in (
        "vms_on_one_cell",
        "remote",
        "remote_vcpus",
        "split",
        "cpu_imbalance",
        "memory_imbalance",
        "moves",
        "total",
        "improvement",
    ):
        assert f'data-term="{term}"' in page, term
    rows = {row.key: row for row in response.context["score_rows"]}
    assert rows["total"].verdict == "better"
    assert rows["vms_on_one_cell"].after.endswith(f"of {len(plan.demands)}")
    # the changes: one row per moved VM, with cells, pins, emulator and numatune
    change_rows = response.context["change_rows"]
    assert len(change_rows) == plan.moves
    db01 = next(row for row in change_rows if row.name == "db01")
    assert db01.cells_before == "0-1"
    assert db01.cells_after in ("0", "1")
    assert any(pin.before == "0" for pin in db01.pins)
    assert 'data-vm="db01"' in page
    assert 'id="apply-order"' in page
    # the policy used, the approve form with its confirmation wording and CSRF
    assert 'id="plan-policy"' in page
    assert 'id="approve-form"' in page
    assert "csrfmiddlewaretoken" in page
    changes = "change" if plan.moves == 1 else "changes"
    assert f"Apply {plan.moves} {changes} to host hv" in page


def test_hostile_vm_names_are_escaped_everywhere(op_client, seed):
    host, _ = seed
    plan = computed_plan(host)
    page = op_client.get(plan_url(plan)).content.decode()
    assert EVIL not in page
    assert "&lt;img src=x" in page
    # each diagram is well-formed XML (hosts.diagram's own guarantee, kept on this page)
    for side in ("before", "after"):
        fragment = op_client.get(plan_url(plan)).context["diagrams"]
        ElementTree.fromstring(str(getattr(fragment, side)))


def test_planning_errors_are_shown(op_client, host_factory, vm_factory):
    host = host_factory("hv", "x86_64-2node-24cpu-ht.xml")
    vm_factory(host, "huge", vcpus=30, dedicated=True)
    infeasible = computed_plan(host)
    page = op_client.get(plan_url(infeasible)).content.decode()
    assert infeasible.status == Status.ERROR
    assert 'id="plan-error"' in page
    assert infeasible.error.split("\n")[0][:40] in page.replace("&#x27;", "'")
    assert 'id="approve-form"' not in page
    assert 'id="plan-again"' in page

    host.capabilities_xml = ""
    host.save(update_fields=["capabilities_xml"])
    no_topology = computed_plan(host)
    page = op_client.get(plan_url(no_topology)).content.decode()
    assert "no topology: sync the host first" in page
    assert 'class="numa-diagram"' not in page


def test_approving_from_the_page_queues_the_changes(op_client, seed, queued):
    host, _ = seed
    plan = computed_plan(host)
    url = reverse("balancing:approve", args=[plan.pk])
    # a blank reason is refused under its field
    response = op_client.post(url, {"reason": " "})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert Change.objects.count() == 0
    response = op_client.post(url, {"reason": "move db01 onto one cell"})
    assert response.status_code == 302 and response["Location"] == plan_url(plan)
    plan.refresh_from_db()
    assert plan.status == Status.APPLYING
    page = op_client.get(plan_url(plan)).content.decode()
    # the linked change records, polled while applying
    assert 'id="plan-changes"' in page
    assert page.count('data-change="') == plan.moves
    assert 'hx-trigger="every 2s"' in page
    assert "move db01 onto one cell" in page
    assert 'id="approve-form"' not in page
    # the status box polls while applying, and reloads the page once the plan has ended
    status_url = reverse("balancing:plan-status", args=[plan.pk]) + "?polling=1"
    polled = op_client.get(status_url)
    assert "HX-Refresh" not in polled
    assert polled.content.decode().count('data-change="') == plan.moves
    BalancingPlan.objects.filter(pk=plan.pk).update(status=Status.APPLIED)
    assert op_client.get(status_url)["HX-Refresh"] == "true"


def test_a_stale_plan_is_refused_on_the_page(op_client, seed, queued):
    host, vms = seed
    plan = computed_plan(host)
    VcpuPin.objects.filter(vm=vms["db01"], vcpu=0).update(pin_live="2")
    host.last_sync_ok_at = timezone.now() + timedelta(seconds=5)
    host.save(update_fields=["last_sync_ok_at"])
    response = op_client.post(reverse("balancing:approve", args=[plan.pk]), {"reason": "go"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="approve-refusal"' in page
    assert "stale: the inventory changed since this plan was computed" in page
    assert 'data-status="stale"' in page
    assert 'id="plan-again"' in page
    assert Change.objects.count() == 0


def test_unknown_plan_is_404(op_client):
    assert op_client.get(reverse("balancing:plan", args=[uuid.uuid4()])).status_code == 404


# --- the list ---------------------------------------------------------------------------------


def test_plans_list_filters_by_host_and_status(op_client, seed, host_factory):
    host, _ = seed
    other = host_factory("hv2", "x86_64-2node-24cpu-ht.xml")
    ready = computed_plan(host)
    empty = computed_plan(other)
    assert (ready.status, empty.status) == (Status.READY, Status.NOT_NEEDED)
    everything = op_client.get(reverse("balancing:list"))
    assert set(everything.context["plans"]) == {ready, empty}
    by_host = op_client.get(reverse("balancing:list"), {"host": "hv"})
    assert list(by_host.context["plans"]) == [ready]
    assert 'id="plan-balancing"' in by_host.content.decode()
    by_status = op_client.get(reverse("balancing:list"), {"status": "not_needed"})
    assert list(by_status.context["plans"]) == [empty]


# --- the policy form --------------------------------------------------------------------------


def policy_data(**overrides) -> dict[str, str]:
    data = {
        "mode": "recommend",
        "min_improvement_pct": "10",
        "max_moves": "3",
        "strategy": "spread",
        "cpu_overcommit": "1.0",
        "emulator": "cell",
        "housekeeping": "",
        "reserved": "",
        "whole_cores": "on",
        "memory_reserve_mib": "0",
        "locality_threshold": "0.9",
        "reason": "seed: recommend plans for hv1",
    }
    return {**data, **overrides}


def test_superuser_sets_a_policy(ops_client, seed):
    host, _ = seed
    url = reverse("balancing:policy", args=[host.name])
    assert ops_client.get(url).status_code == 200
    response = ops_client.post(
        url,
        policy_data(
            mode="automatic",
            emulator="housekeeping",
            housekeeping="0, 12",
            reserved="1,13",
            cpu_overcommit="2",
            locality_threshold="0.75",
        ),
    )
    assert response.status_code == 302, response.context["form"].errors
    policy = BalancingPolicy.objects.get(host=host)
    assert policy.mode == "automatic"
    assert policy.locality_threshold == 0.75
    assert policy.housekeeping == "0,12"
    assert policy.reserved == "1,13"
    assert policy.cpu_overcommit == 2.0
    # and edited again (one policy per host)
    response = ops_client.post(url, policy_data(mode="off", reason="pause balancing"))
    assert response.status_code == 302
    assert BalancingPolicy.objects.get(host=host).mode == "off"
    # each save is a change record (there were none: the audit trail missed policy edits)
    first, second = Change.objects.filter(kind="balancing_policy").order_by("created_at")
    assert (first.host, first.vm, first.target_name) == (host, None, host.name)
    assert (first.status, first.scope, first.actor_name) == ("succeeded", "portal", "ops")
    assert first.reason == "seed: recommend plans for hv1"
    assert first.before["mode"] == "off" and first.after["mode"] == "automatic"  # the defaults
    assert "mode: off -> automatic" in first.diff.splitlines()
    assert "housekeeping: none -> 0,12" in first.diff.splitlines()
    assert second.params == {
        "mode": "off",
        "emulator": "cell",
        "housekeeping": "",
        "reserved": "",
        "cpu_overcommit": 1.0,
        "locality_threshold": 0.9,
    }
    assert second.reason == "pause balancing"
    assert first.finished_at is not None and second.diff.startswith("mode: automatic -> off")
    # the history shows them, before -> after in words
    listed = ops_client.get(reverse("changes:list"), {"kind": "balancing_policy"})
    assert list(listed.context["changes"]) == [second, first]
    assert "mode: automatic -&gt; off" in listed.content.decode()
    detail = ops_client.get(second.get_absolute_url()).content.decode()
    assert 'data-diff="portal"' in detail and "pause balancing" in detail
    # saving it unchanged writes no record
    ops_client.post(url, policy_data(mode="off", reason="again"))
    assert Change.objects.filter(kind="balancing_policy").count() == 2


def test_a_policy_needs_a_reason(ops_client, seed):
    host, _ = seed
    response = ops_client.post(
        reverse("balancing:policy", args=[host.name]), policy_data(reason=" ")
    )
    assert response.status_code == 200
    assert "a reason is required for the audit trail" in " ".join(
        response.context["form"].errors["reason"]
    )
    assert not BalancingPolicy.objects.exists() and not Change.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"housekeeping": "0-"}, "housekeeping", ""),
        ({"reserved": "99"}, "reserved", "do not exist on this host"),
        ({"cpu_overcommit": "0.5"}, "cpu_overcommit", "at least 1"),
        ({"emulator": "housekeeping"}, "housekeeping", "need a housekeeping cpuset"),
        ({"reserved": "0-23"}, "reserved", "no CPU would be left"),
        ({"housekeeping": "0", "reserved": "0"}, "reserved", "also housekeeping"),
        ({"min_improvement_pct": "150"}, "min_improvement_pct", "0 to 100"),
        ({"max_moves": "0"}, "max_moves", "at least 1"),
        ({"memory_reserve_mib": "40000"}, "memory_reserve_mib", "no memory"),
        ({"locality_threshold": "1.5"}, "locality_threshold", "a locality from 0"),
        ({"locality_threshold": "-0.1"}, "locality_threshold", "a locality from 0"),
        ({"locality_threshold": "nan"}, "locality_threshold", "Enter a number"),
    ],
)
def test_policy_form_errors_are_named_by_field(ops_client, seed, overrides, field, words):
    host, _ = seed
    response = ops_client.post(
        reverse("balancing:policy", args=[host.name]), policy_data(**overrides)
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert words in " ".join(errors[field])
    assert not BalancingPolicy.objects.exists()


# --- admin ------------------------------------------------------------------------------------


def test_admin_lists_plans_read_only_and_checks_policies(ops_client, seed):
    host, _ = seed
    plan = computed_plan(host)
    assert ops_client.get(reverse("admin:balancing_balancingplan_changelist")).status_code == 200
    detail = ops_client.get(reverse("admin:balancing_balancingplan_change", args=[plan.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert ops_client.get(reverse("admin:balancing_balancingplan_add")).status_code == 403
    add = reverse("admin:balancing_balancingpolicy_add")
    assert ops_client.get(add).status_code == 200
    response = ops_client.post(add, {**policy_data(reserved="99"), "host": host.pk})
    assert response.status_code == 200
    assert "do not exist on this host" in response.content.decode()
    response = ops_client.post(add, {**policy_data(reason=""), "host": host.pk})
    assert response.status_code == 200 and not BalancingPolicy.objects.exists()
    response = ops_client.post(add, {**policy_data(), "host": host.pk})
    assert response.status_code == 302
    # through the policy page's service: the same change record
    record = Change.objects.get(kind="balancing_policy")
    assert record.reason == "seed: recommend plans for hv1" and record.after["mode"] == "recommend"
    policy = BalancingPolicy.objects.get(host=host)
    change = reverse("admin:balancing_balancingpolicy_change", args=[policy.pk])
    response = ops_client.post(change, {**policy_data(mode="off", reason="admin: pause")})
    assert response.status_code == 302
    assert BalancingPolicy.objects.get(host=host).mode == "off"
    assert Change.objects.filter(kind="balancing_policy").count() == 2
    # never deleted in the admin (it would leave no record)
    delete = reverse("admin:balancing_balancingpolicy_delete", args=[policy.pk])
    assert ops_client.post(delete, {"post": "yes"}).status_code == 403
    assert BalancingPolicy.objects.get(host=host).mode == "off"
