"""Balancing over the API: plans (request, list with the plans page's filter, detail,
approve with a reason), a host's policy (through the policy form and its change record) and
the numa_balancing switch; the role matrix of each, as the pages."""

from __future__ import annotations

import pytest

from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from tests.api.fixtures_changes import ROLES, api_as, enqueued, queued_plans
from tests.web.conftest import make_host, make_vm
from tests.web.test_balancing_plans import computed_plan, seed_inventory

pytestmark = [pytest.mark.api, pytest.mark.django_db]
#: The fixtures this module uses, imported by name (tests/api/conftest.py is not ours).
FIXTURES = (api_as, enqueued, queued_plans)

PLANS = "/api/v1/plans/"
Status = BalancingPlan.Status


@pytest.fixture
def seed():
    host, vms = seed_inventory(make_host, make_vm)
    return host, vms


@pytest.fixture
def ready_plan(seed) -> BalancingPlan:
    plan = computed_plan(seed[0])
    assert plan.status == Status.READY, plan.error
    return plan


def deny(role: str, allowed: int) -> int:
    return {"anonymous": 401, "norole": 403}.get(role, allowed)


# --- plans --------------------------------------------------------------------------------------

READ = dict.fromkeys(ROLES, 200)
PLAN = {"viewer": 403, "operator": 201, "admin": 201}
APPROVE = {"viewer": 403, "operator": 202, "admin": 202}


@pytest.mark.parametrize("role", ROLES)
def test_plans_are_read_by_viewers(api_as, ready_plan, role) -> None:
    client = api_as(role)
    for url in (PLANS, f"{PLANS}{ready_plan.pk}/"):
        response = client.get(url)
        assert response.status_code == deny(role, 200), (url, response.content)


@pytest.mark.parametrize("role", ROLES)
def test_planning_is_for_operators(api_as, seed, queued_plans, role) -> None:
    response = api_as(role).post(PLANS, {"host": seed[0].name}, format="json")
    assert response.status_code == deny(role, PLAN.get(role, 0)), response.content
    if response.status_code == 201:
        data = response.json()
        assert data["status"] == "computing" and data["host"] == "hv"
        assert data["requested_by_name"] == api_as.user(role).get_username()
        assert data["page"] == BalancingPlan.objects.get().get_absolute_url()


@pytest.mark.parametrize("role", ROLES)
def test_approving_is_for_operators(api_as, ready_plan, queued_plans, role) -> None:
    url = f"{PLANS}{ready_plan.pk}/approve/"
    response = api_as(role).post(url, {"reason": "apply it"}, format="json")
    assert response.status_code == deny(role, APPROVE.get(role, 0)), response.content
    ready_plan.refresh_from_db()
    if response.status_code == 202:
        data = response.json()
        assert data["status"] == "applying" and data["reason"] == "apply it"
        changes = Change.objects.filter(group_id=ready_plan.pk)
        assert len(data["changes"]) == changes.count() > 0
        assert all(c.reason == "apply it" for c in changes)
    else:
        assert ready_plan.status == Status.READY
        assert not Change.objects.exists()


def test_a_plan_of_an_unknown_host_is_a_400_on_host(api_as, seed, queued_plans) -> None:
    response = api_as("operator").post(PLANS, {"host": "nope"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["host"]


def test_approving_needs_a_reason_in_the_forms_words(api_as, ready_plan, queued_plans) -> None:
    client = api_as("operator")
    for body in ({}, {"reason": ""}):
        response = client.post(f"{PLANS}{ready_plan.pk}/approve/", body, format="json")
        assert response.status_code == 400
        assert response.json() == {"reason": ["say why: a reason is required for the audit trail"]}
    response = client.post(f"{PLANS}{ready_plan.pk}/approve/", {"reason": "go"}, format="json")
    assert response.status_code == 202
    again = client.post(f"{PLANS}{ready_plan.pk}/approve/", {"reason": "go"}, format="json")
    assert again.status_code == 400
    assert "only a plan waiting for approval" in again.json()["non_field_errors"][0]


def test_approving_an_unknown_plan_is_a_404(api_as, seed) -> None:
    url = f"{PLANS}00000000-0000-0000-0000-000000000000/approve/"
    assert api_as("operator").post(url, {"reason": "x"}, format="json").status_code == 404


def test_the_plans_filter_is_the_pages(api_as, ready_plan) -> None:
    client = api_as("viewer")
    assert client.get(PLANS, {"host": "hv"}).json()["count"] == 1
    assert client.get(PLANS, {"status": "applied"}).json()["count"] == 0
    assert client.get(PLANS, {"trigger": "manual"}).json()["count"] == 1
    for bad in ({"host": "nope"}, {"status": "x"}, {"trigger": "x"}):
        response = client.get(PLANS, bad)
        assert response.status_code == 400 and list(response.json()) == list(bad)
    data = client.get(f"{PLANS}{ready_plan.pk}/").json()
    assert data["status"] == "ready" and data["after"] and data["score_before"]
    assert data["changes"] == []


# --- policies -----------------------------------------------------------------------------------

POLICY_BODY = {
    "mode": "recommend",
    "min_improvement_pct": 5,
    "max_moves": 2,
    "strategy": "spread",
    "cpu_overcommit": 1.5,
    "emulator": "cell",
    "housekeeping": "",
    "reserved": "0,12",
    "whole_cores": True,
    "memory_reserve_mib": 512,
    "locality_threshold": 0.8,
    "reason": "recommend plans",
}


@pytest.mark.parametrize("role", ROLES)
def test_policies_are_for_admins_as_the_page(api_as, seed, role) -> None:
    client = api_as(role)
    url = "/api/v1/policies/hv/"
    expected = deny(role, 200 if role == "admin" else 403)
    assert client.get(url).status_code == expected
    response = client.put(url, POLICY_BODY, format="json")
    assert response.status_code == expected, response.content
    patch = client.patch(url, {"max_moves": 4, "reason": "more"}, format="json")
    assert patch.status_code == expected
    if role == "admin":
        policy = BalancingPolicy.objects.get(host=seed[0])
        assert (policy.mode, policy.max_moves, policy.reserved) == ("recommend", 4, "0,12")
        records = Change.objects.filter(kind=Change.Kind.BALANCING_POLICY).order_by("created_at")
        assert [c.reason for c in records] == ["recommend plans", "more"]
        assert records[0].after["mode"] == "recommend" and records[0].actor_name == "api-admin"
    else:
        assert not BalancingPolicy.objects.exists()
    unknown = client.get("/api/v1/policies/nope/")
    assert unknown.status_code == deny(role, 404 if role != "norole" else 403)


def test_a_policy_is_checked_by_the_policy_form(api_as, seed) -> None:
    client = api_as("admin")
    url = "/api/v1/policies/hv/"
    response = client.get(url)
    assert response.json()["mode"] == "off"  # the defaults, none saved
    # a field the form refuses: the form's words, the host's checks not reached (as the page)
    response = client.put(
        url, {**POLICY_BODY, "cpu_overcommit": "lots", "reason": ""}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "cpu_overcommit": ["Enter a number (digits 0-9, a point: 0.5)."],
        "reason": ["say why: a reason is required for the audit trail"],
    }
    # values that do not fit the host: policy_errors' words, by field
    response = client.put(url, {**POLICY_BODY, "reserved": "0-99"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["reserved"]
    assert "do not exist on this host" in response.json()["reserved"][0]
    assert not BalancingPolicy.objects.exists()
    assert not Change.objects.exists()


# --- numa_balancing -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_numa_balancing_is_for_admins(api_as, enqueued, role) -> None:
    make_host("hv02", worker_queue="hv02-onhost", numa_balancing=1)
    url = "/api/v1/hosts/hv02/numa-balancing/"
    response = api_as(role).post(url, {"value": 0, "reason": "pin by hand"}, format="json")
    assert response.status_code == deny(role, 201 if role == "admin" else 403), response.content
    if role == "admin":
        data = response.json()
        assert (data["kind"], data["params"], data["status"]) == (
            "numa_balancing",
            {"value": 0},
            "queued",
        )
        assert data["host"] == "hv02" and data["vm"] is None
    else:
        assert not Change.objects.exists()
    assert api_as(role).get(url).status_code == deny(role, 405)


def test_numa_balancing_refusals_in_the_pages_words(api_as, enqueued) -> None:
    make_host("hv03")  # no on-host worker
    client = api_as("admin")
    url = "/api/v1/hosts/hv03/numa-balancing/"
    response = client.post(url, {"value": 2, "reason": ""}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"value", "reason"}
    response = client.post(url, {"value": 1, "reason": "on"}, format="json")
    assert response.status_code == 400
    assert "no on-host worker" in str(response.json())
    assert client.post("/api/v1/hosts/nope/numa-balancing/", {}, format="json").status_code == 404
