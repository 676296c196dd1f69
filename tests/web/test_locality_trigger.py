"""The balancing policy's locality threshold and the scheduler's "locality below threshold"
trigger (beat entry "balance-hosts"): a host with a VM under its threshold is planned even when
its inventory did not change, when its policy's mode allows it, and once per VM that fell below.

Locality comes from on-host samples stored through the real path (vms.sampling.store_sample);
the host is the seed's (x86_64-2node-24cpu-ht: cells 0 and 1 at distance 21, two sockets:
memory on the other cell counts nothing, so a VM with all of it there is at 0 and one with half
of it there at 0.5).
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from balancing import locality
from balancing import scheduler as plan_scheduler
from balancing.models import DEFAULT_LOCALITY_THRESHOLD, BalancingPlan, BalancingPolicy
from changes.models import Change
from tests.web.test_balancing_plans import seed_inventory
from tests.web.test_locality_history import store

pytestmark = [pytest.mark.web, pytest.mark.django_db]

Status = BalancingPlan.Status
Mode = BalancingPolicy.Mode
Trigger = BalancingPlan.Trigger


@pytest.fixture(autouse=True)
def apply_queued():
    """No worker applies anything here: start_apply's records stay queued."""
    with mock.patch("balancing.tasks.apply_plan.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def seed(host_factory, vm_factory):
    """The seed host plus pin02 (vCPUs on cell 0), its memory sampled home for now."""
    host, vms = seed_inventory(host_factory, vm_factory)
    vms["pin02"] = vm_factory(host, "pin02", vcpus=2, pins={0: "2", 1: "3"}, memory_kib=1 << 20)
    return host, vms


class Samples:
    """One on-host sample a minute of the seed host: seed01 (vCPUs on cell 1) and pin02
    (cell 0), each with its memory home or, when named in ``away``, the share *share* of it on
    the other cell (all of it by default)."""

    def __init__(self, host, vms) -> None:
        self.host, self.vms = host, vms
        self.at = timezone.now() - timedelta(minutes=30)

    def take(self, *away: str, share: float = 1.0) -> None:
        self.at += timedelta(minutes=1)
        homes = {"seed01": 1, "pin02": 0}
        memory = {}
        for name, home in homes.items():
            moved = 256.0 * share if name in away else 0.0
            cells = {home: 256.0 - moved, 1 - home: moved}
            memory[self.vms[name]] = {cell: mib for cell, mib in cells.items() if mib}
        store(self.host, self.at, memory)


@pytest.fixture
def samples(seed) -> Samples:
    return Samples(*seed)


def policy(host, mode, **fields) -> BalancingPolicy:
    return BalancingPolicy.objects.create(
        host=host, mode=mode, min_improvement_pct=0, max_moves=10, **fields
    )


def test_vms_below_the_hosts_threshold_now(seed, samples) -> None:
    host, _ = seed
    samples.take("seed01", share=0.5)
    assert locality.threshold_for(host) == DEFAULT_LOCALITY_THRESHOLD == 0.9
    assert locality.below_threshold(host) == {"seed01": pytest.approx(0.5, abs=1e-4)}
    rows = locality.least_local(host)
    assert [(r.vm_name, r.below) for r in rows] == [("seed01", True), ("pin02", False)]
    # the host's own threshold decides: 0.4 leaves seed01 (0.5) unflagged
    policy(host, Mode.OFF, locality_threshold=0.4)
    assert locality.threshold_for(host) == 0.4
    assert locality.below_threshold(host) == {}
    assert locality.below_threshold_count(host) == 0
    assert [r.below for r in locality.least_local(host)] == [False, False]


def test_recommend_plans_again_when_a_vm_falls_below_the_threshold(seed, samples) -> None:
    host, _ = seed
    policy(host, Mode.RECOMMEND)
    samples.take()
    first = plan_scheduler.balance_host(host)
    assert first.trigger == Trigger.SCHEDULER and first.locality_below == {}
    assert plan_scheduler.balance_host(host) is None  # nothing changed

    # Its memory moves off its cells; the inventory the sync sees is the same.
    samples.take("seed01")
    second = plan_scheduler.balance_host(host)
    assert second is not None and second.pk != first.pk
    assert second.trigger == Trigger.LOCALITY
    assert second.status == Status.READY, second.error  # left for approval
    assert second.locality_below == {"seed01": pytest.approx(0.0, abs=1e-4)}
    assert second.notes[0] == "planned because locality is below the policy's 0.90: seed01 0.00"
    assert second.inventory_digest == first.inventory_digest
    assert Change.objects.count() == 0

    # The same VM still below: that plan knew it. Recovered: no reason either.
    samples.take("seed01")
    assert plan_scheduler.balance_host(host) is None
    samples.take()
    assert plan_scheduler.balance_host(host) is None

    # Another VM falls below: planned again, with both.
    samples.take("seed01", "pin02")
    third = plan_scheduler.balance_host(host)
    assert third.trigger == Trigger.LOCALITY
    assert set(third.locality_below) == {"seed01", "pin02"}
    assert BalancingPlan.objects.count() == 3


def test_automatic_applies_a_locality_plan_as_the_scheduler(seed, samples) -> None:
    host, _ = seed
    policy(host, Mode.AUTOMATIC)
    samples.take("pin02")
    assert plan_scheduler.balance_hosts() == 1
    plan = BalancingPlan.objects.get()
    assert plan.trigger == Trigger.LOCALITY
    assert plan.status == Status.APPLYING, plan.error
    assert plan.approved_by_name == "scheduler"
    assert Change.objects.filter(group_id=plan.id, actor_name="scheduler").count() == plan.moves


def test_off_never_plans_however_low_the_locality(seed, samples) -> None:
    host, _ = seed
    policy(host, Mode.OFF)
    samples.take("seed01", "pin02")
    assert plan_scheduler.balance_hosts() == 0
    assert not BalancingPlan.objects.exists()


def test_a_vm_above_its_hosts_threshold_triggers_nothing(seed, samples) -> None:
    host, _ = seed
    policy(host, Mode.RECOMMEND, locality_threshold=0.4)
    samples.take()
    assert plan_scheduler.balance_host(host).trigger == Trigger.SCHEDULER
    samples.take("seed01", share=0.5)  # 0.5: above 0.4
    assert plan_scheduler.balance_host(host) is None


def test_a_stopped_vm_has_no_locality_to_trigger_on(seed, samples) -> None:
    host, vms = seed
    samples.take("seed01")
    vms["seed01"].vcpu_current_live = None  # shut off since the sample (the next sync says)
    vms["seed01"].save(update_fields=["vcpu_current_live"])
    assert locality.below_threshold(host) == {}
