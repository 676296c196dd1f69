"""Hot-add keeps placement, through the database: the policy hook balancing registers, the
facts validation gathers (the host's stored pins, in a fixed number of queries), the refusals
under ``count``, the params the record keeps, and the hot-add form's preview.

The on-commit enqueue is captured (``enqueued``): no worker runs. The placement itself is
tested in tests/unit/test_hotadd.py, the worker against the real lab in
tests/integration/test_changes.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from balancing.inputs import hotadd_policy_for_host
from balancing.models import BalancingPolicy
from changes.kinds import policy_hook
from changes.kinds.hotadd import FLOATS, HotAddPolicy
from changes.kinds.validation import host_pins, validate_change
from changes.models import Change
from changes.requests import request_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]

REASON = "more CPU for the batch window"


@pytest.fixture
def ibm(host_factory):
    """The seed's host: cell 0 = 0-5,12-17, cell 1 = 6-11,18-23 (siblings n and n+12)."""
    return host_factory("ibm3650")


@pytest.fixture
def op_client(client, operator_user):
    client.force_login(operator_user)
    return client


def hot_add(actor, vm, count: int = 3, scope: str = "live+config", **params) -> Change:
    return request_change(
        actor=actor,
        target=vm,
        kind="setvcpus",
        params={"count": count, **params},
        scope=scope,
        reason=REASON,
    )


def refusal(actor, vm, count: int = 3, scope: str = "live+config") -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        hot_add(actor, vm, count, scope)
    return refused.value.message_dict


# --- the hook -------------------------------------------------------------------------------


def test_balancing_registers_the_hosts_policy_with_changes(ibm) -> None:
    assert policy_hook.registered() is hotadd_policy_for_host
    assert policy_hook.policy_for(ibm) == HotAddPolicy()  # no policy row: a new one's defaults
    BalancingPolicy.objects.create(
        host=ibm,
        reserved="0,12",
        housekeeping="1",
        emulator="housekeeping",
        whole_cores=False,
        cpu_overcommit=2.5,
    )
    assert policy_hook.policy_for(ibm) == HotAddPolicy(
        reserved=frozenset({0, 12}),
        housekeeping=frozenset({1}),
        emulator="housekeeping",
        whole_cores=False,
        cpu_overcommit=2.5,
    )


def test_the_defaults_without_a_policy_are_a_new_policys() -> None:
    new = BalancingPolicy()
    assert HotAddPolicy() == HotAddPolicy(
        reserved=frozenset(),
        housekeeping=frozenset(),
        emulator=new.emulator,
        whole_cores=new.whole_cores,
        cpu_overcommit=new.cpu_overcommit,
    )
    assert (new.reserved, new.housekeeping) == ("", "")


def test_nothing_registered_means_the_defaults(ibm, monkeypatch) -> None:
    BalancingPolicy.objects.create(host=ibm, cpu_overcommit=4.0)
    monkeypatch.setattr(policy_hook, "_lookup", None)
    assert policy_hook.policy_for(ibm) == HotAddPolicy()


# --- the facts, in a fixed number of queries ----------------------------------------------------


def test_host_pins_are_two_queries_whatever_the_number_of_vms(ibm, vm_factory) -> None:
    me = vm_factory(ibm, "me", pins={0: "6", 1: "7"}, vcpu_max=4)
    for n in range(8):
        vm_factory(ibm, f"o{n}", pins={0: str(8 + n % 4), 1: "18-23"}, dedicated=n % 2 == 0)
    vm_factory(ibm, "off", pins={0: "9"}, running=False, dedicated=True)  # holds nothing
    vm_factory(ibm, "floating")  # unpinned: no rows
    with CaptureQueriesContext(connection) as queries:
        pins = host_pins(me)
    assert len(queries) == 2  # the pins, the policy
    assert pins.own == {0: frozenset({6}), 1: frozenset({7})}
    assert len(pins.others) == 16
    assert {p.vm for p in pins.others if p.dedicated} == {"o0", "o2", "o4", "o6"}


# --- validation: the params, the refusals --------------------------------------------------


def test_a_dedicated_vm_gets_whole_cores_in_the_params(ibm, vm_factory, operator, enqueued) -> None:
    vm = vm_factory(ibm, "db01", pins={0: "6", 1: "18"}, vcpu_max=4, dedicated=True)
    vm_factory(ibm, "other", pins={0: "7"}, dedicated=True)
    record = hot_add(operator, vm, 4)
    assert record.params == {
        "count": 4,
        "vcpupin": {"2": "8", "3": "20"},
        "placement": {
            "2": "dedicated, whole core 8,20 of cell 1",
            "3": "dedicated, idle sibling on core 8,20 of cell 1, which it holds",
        },
    }


def test_a_shared_pinned_vm_keeps_its_pins_within_the_pool(
    ibm, vm_factory, operator, enqueued
) -> None:
    BalancingPolicy.objects.create(host=ibm, cpu_overcommit=2.0)
    vm = vm_factory(ibm, "web01", pins={0: "6-11", 1: "6-11"}, vcpu_max=4)
    vm_factory(ibm, "dedi", pins={0: "9"}, dedicated=True)  # holds 9 and its sibling 21
    record = hot_add(operator, vm, 3, scope="live")
    assert record.params["vcpupin"] == {"2": "6-8,10-11"}
    assert record.params["placement"] == {"2": "its other vCPUs' CPUs in the shared pool of cell 1"}


def test_a_cell_bound_vm_gets_the_pool_of_its_nodeset(ibm, vm_factory, operator, enqueued) -> None:
    vm = vm_factory(ibm, "bound", vcpu_max=4, numatune_mode="strict", numatune_nodeset="0")
    record = hot_add(operator, vm, 3)
    assert record.params["vcpupin"] == {"2": "0-5,12-17"}


def test_an_unpinned_vm_floats_and_a_config_change_places_nothing(
    ibm, vm_factory, operator, enqueued
) -> None:
    vm = vm_factory(ibm, "free", vcpu_max=4)
    assert hot_add(operator, vm, 3, scope="live").params == {
        "count": 3,
        "placement": {"2": FLOATS},
    }
    pinned = vm_factory(ibm, "pinned", pins={0: "6", 1: "7"}, vcpu_max=4)
    assert hot_add(operator, pinned, 3, scope="config").params == {"count": 3}


def test_no_free_core_is_refused_under_count_with_the_reason(
    ibm, vm_factory, operator, enqueued
) -> None:
    BalancingPolicy.objects.create(host=ibm, whole_cores=False, reserved="6-9,18-23")
    vm = vm_factory(ibm, "db01", pins={0: "10", 1: "11"}, vcpu_max=4, dedicated=True)
    errors = refusal(operator, vm)
    assert list(errors) == ["count"]
    assert errors["count"] == [
        "cell 1 has no free CPU for vCPU 2 of dedicated VM db01: CPUs 10-11 are held by db01 "
        "itself; CPUs 6-9,18-23 are reserved; free a CPU, or clear 'dedicated' to use the "
        "shared pool"
    ]
    assert not Change.objects.exists() and not enqueued.called


def test_over_commit_is_refused_under_count_with_the_numbers(
    ibm, vm_factory, operator, enqueued
) -> None:
    vm = vm_factory(ibm, "web01", pins={0: "6-11,18-23", 1: "6-11,18-23"}, vcpu_max=4)
    for n in range(5):
        vm_factory(ibm, f"n{n}", pins={0: "6-11", 1: "18-23"})
    errors = refusal(operator, vm)
    assert errors["count"] == [
        "the shared pool of cell 1 (CPUs 6-11,18-23) would hold 13 shared vCPUs: 10 of other "
        "VMs, 2 of web01 and 1 new; CPU over-commit 1 x 12 CPUs allows 12: raise the over-commit "
        "in the host's balancing policy, or move VMs off cell 1"
    ]
    BalancingPolicy.objects.create(host=ibm, cpu_overcommit=1.5)
    assert hot_add(operator, vm).params["vcpupin"] == {"2": "6-11,18-23"}


def test_pins_cannot_be_asked_for(ibm, vm_factory, operator, enqueued) -> None:
    vm = vm_factory(ibm, "web01", pins={0: "6", 1: "7"}, vcpu_max=4)
    with pytest.raises(ValidationError) as refused:
        hot_add(operator, vm, 3, vcpupin={"2": "0"})
    assert "decided by the host's balancing policy" in refused.value.message_dict["count"][0]


def test_validation_of_a_hot_add_costs_a_fixed_number_of_queries(ibm, vm_factory) -> None:
    vm = vm_factory(ibm, "web01", pins={0: "6", 1: "7"}, vcpu_max=4)
    with CaptureQueriesContext(connection) as few:
        validate_change(vm, "setvcpus", {"count": 3}, "live")
    for n in range(6):
        vm_factory(ibm, f"n{n}", pins={0: str(n), 1: str(n + 12)}, dedicated=n % 2 == 1)
    with CaptureQueriesContext(connection) as many:
        validate_change(vm, "setvcpus", {"count": 3}, "live")
    assert len(few) == len(many) <= 3  # (the host row, cached) the pins, the policy


# --- the form's preview ---------------------------------------------------------------------


def form_url(vm) -> str:
    return reverse("vms:change", args=[vm.host.name, vm.uuid, "hot-add"])


def test_the_hot_add_preview_says_where_the_new_vcpus_go(
    op_client, ibm, vm_factory, django_capture_on_commit_callbacks
) -> None:
    vm = vm_factory(ibm, "db01", pins={0: "6", 1: "18"}, vcpu_max=4, dedicated=True)
    data = {"count": "3", "scope": "live+config", "reason": REASON}
    preview = op_client.post(form_url(vm), {**data, "preview": "1"})
    assert preview.context["step"] == "preview"
    rows = {row[0]: row for row in preview.context["preview"].rows}
    assert rows["vCPU 2"][1:] == ("—", "CPU 7 (dedicated, whole core 7,19 of cell 1)")
    notes = " ".join(preview.context["preview"].notes)
    assert (
        "vCPU 2 is pinned to CPU 7 (dedicated, whole core 7,19 of cell 1) live and in the config "
        "right after the hot-add, in the same change" in notes
    )
    assert "CPU 7 (dedicated, whole core 7,19 of cell 1)" in preview.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        op_client.post(form_url(vm), {**data, "confirm": "1"})
    assert Change.objects.get().params["vcpupin"] == {"2": "7"}


def test_the_preview_says_when_the_new_vcpu_floats(op_client, ibm, vm_factory) -> None:
    vm = vm_factory(ibm, "free", vcpu_max=4)
    preview = op_client.post(
        form_url(vm), {"count": "3", "scope": "live", "reason": REASON, "preview": "1"}
    )
    rows = {row[0]: row for row in preview.context["preview"].rows}
    assert rows["vCPU 2"][2] == FLOATS


def test_the_form_shows_the_refusal_next_to_the_count(op_client, ibm, vm_factory) -> None:
    BalancingPolicy.objects.create(host=ibm, reserved="0-23")
    vm = vm_factory(ibm, "db01", pins={0: "6", 1: "7"}, vcpu_max=4, dedicated=True)
    response = op_client.post(
        form_url(vm), {"count": "3", "scope": "live", "reason": REASON, "preview": "1"}
    )
    assert response.context["step"] == "form"
    errors = response.context["form"].errors["count"]
    assert errors == [
        "cell 1 has no free core for vCPU 2 of dedicated VM db01: CPUs 6-7 are held by db01 "
        "itself; CPUs 6-11,18-23 are reserved; free a core, or clear 'dedicated' to use the "
        "shared pool"
    ]
