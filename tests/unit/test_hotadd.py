"""changes.kinds.hotadd.place: where hot-added vCPUs go under the host's balancing policy.

Pure: topologies from the capabilities fixtures (and generated ones), no database. Examples for
each rule and refusal, then hypothesis over every fixture: a new vCPU is never on a reserved or
housekeeping CPU, never on a CPU held by another dedicated VM, always within its home cells; a
dedicated VM's new vCPUs get one CPU each of their own; a shared pool never goes over its
commit; and the refusals come exactly when there is no room.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from changes.kinds.hotadd import (
    FLOATS,
    FLOATS_PARTLY,
    HostPins,
    HotAddPolicy,
    HotAddVm,
    NewVcpu,
    NoRoom,
    PinnedVcpu,
    as_params,
    place,
)
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.topology import HostTopology, parse_capabilities
from tests.unit.planner_helpers import CAPS, GIB, caps_xml, load

pytestmark = pytest.mark.unit

#: The seed's IBM 3650M4: cell 0 = 0-5,12-17, cell 1 = 6-11,18-23, siblings n and n+12.
IBM = load("x86_64-2node-24cpu-ht.xml")
#: Two cells of one core with two threads: cell 0 = CPUs 0-1, cell 1 = CPUs 2-3 (one core).
SMALL = parse_capabilities(caps_xml([(GIB, 1, 2), (GIB, 1, 2)]))
FIXTURES = sorted(p.name for p in CAPS.glob("*.xml"))


def cpus(text: str) -> frozenset[int]:
    return parse_cpuset(text)


def pinned(name: str, pins: dict[int, str], *, dedicated: bool = False) -> list[PinnedVcpu]:
    return [PinnedVcpu(name, v, cpus(c), dedicated) for v, c in pins.items()]


def vm(current: int = 1, **fields) -> HotAddVm:
    return HotAddVm(name=fields.pop("name", "x"), current=current, **fields)


def host(own: dict[int, str] | None = None, others=(), **policy) -> HostPins:
    return HostPins(
        policy=HotAddPolicy(**policy),
        own={v: cpus(c) for v, c in (own or {}).items()},
        others=tuple(others),
    )


def where(placed: tuple[NewVcpu, ...]) -> dict[int, str]:
    return {n.vcpu: as_params([n]).get("vcpupin", {}).get(str(n.vcpu), "") for n in placed}


# --- dedicated ------------------------------------------------------------------------------------


def test_a_dedicated_vm_takes_the_idle_sibling_first_then_a_whole_free_core() -> None:
    placed = place(IBM, vm(1, dedicated=True), 4, host({0: "6"}))
    assert where(placed) == {1: "18", 2: "7", 3: "19"}
    assert [n.why for n in placed] == [
        "dedicated, idle sibling on core 6,18 of cell 1, which it holds",
        "dedicated, whole core 7,19 of cell 1",
        "dedicated, idle sibling on core 7,19 of cell 1, which it holds",
    ]


def test_a_core_with_a_thread_held_by_another_dedicated_vm_is_not_free() -> None:
    # a holds CPU 7, so its sibling 19 too (whole cores): the next free core is 8,20
    others = pinned("a", {0: "7"}, dedicated=True)
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}, others))
    assert where(placed) == {1: "18", 2: "8"}
    # without whole cores only CPU 7 itself is a's (and 6 the VM's own): 8, then 9
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}, others, whole_cores=False))
    assert where(placed) == {1: "8", 2: "9"}
    assert placed[0].why == "dedicated, CPU 8 of cell 1"


def test_shared_pins_and_a_dedicated_vm_pinned_to_many_cpus_hold_nothing() -> None:
    others = pinned("s", {0: "18", 1: "18"}) + pinned("d", {0: "19-20"}, dedicated=True)
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}, others))
    assert where(placed) == {1: "18", 2: "7"}


def test_reserved_and_housekeeping_cpus_are_never_given() -> None:
    policy = {"reserved": cpus("18"), "housekeeping": cpus("7"), "emulator": "housekeeping"}
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}, **policy))
    # 18 is reserved (core 6,18 has no idle sibling), core 7,19 has a housekeeping thread
    assert where(placed) == {1: "8", 2: "20"}
    # housekeeping CPUs are only kept off when the emulator threads go there
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}, **{**policy, "emulator": "cell"}))
    assert where(placed) == {1: "7", 2: "19"}


def test_a_cell_bound_dedicated_vm_gets_whole_cores_of_its_nodeset() -> None:
    bound = vm(2, dedicated=True, numatune_mode="strict", nodeset=frozenset({1}))
    placed = place(SMALL, bound, 3, host())
    assert where(placed) == {2: "2"}
    assert placed[0].why == "dedicated, whole core 2-3 of cell 1"


def test_no_free_core_is_refused_naming_the_cell_the_holders_and_the_way_out() -> None:
    others = pinned("a", {0: "2"}, dedicated=True) + pinned("b", {0: "3"}, dedicated=True)
    bound = vm(2, dedicated=True, numatune_mode="strict", nodeset=frozenset({1}))
    with pytest.raises(NoRoom) as refused:
        place(SMALL, bound, 3, host(others=others))
    assert str(refused.value) == (
        "cell 1 has no free core for vCPU 2 of dedicated VM x: CPUs 2-3 are held by dedicated "
        "VMs a, b; free a core, or clear 'dedicated' to use the shared pool"
    )


def test_the_refusal_names_the_vms_own_cpus_and_the_policys() -> None:
    with pytest.raises(NoRoom) as refused:
        place(SMALL, vm(1, dedicated=True), 3, host({0: "2"}, reserved=cpus("3")))
    assert str(refused.value) == (
        "cell 1 has no free core for vCPU 1 of dedicated VM x: CPU 2 is held by x itself; "
        "CPU 3 is reserved; free a core, or clear 'dedicated' to use the shared pool"
    )
    with pytest.raises(NoRoom, match=r"no free CPU for vCPU 2 .*free a CPU, or clear"):
        place(SMALL, vm(1, dedicated=True), 3, host({0: "2"}, whole_cores=False))


# --- shared ---------------------------------------------------------------------------------------


def test_a_pinned_shared_vm_keeps_the_union_of_its_pins_within_the_pool() -> None:
    # pinned to part of cell 1: the new vCPUs stay there (a peer of the others)
    placed = place(IBM, vm(2), 4, host({0: "6", 1: "7-8"}, cpu_overcommit=4.0))
    assert where(placed) == {2: "6-8", 3: "6-8"}
    assert placed[0].why == "its other vCPUs' CPUs in the shared pool of cell 1"
    # the whole cell: the pool, less a dedicated VM's core
    others = pinned("d", {0: "9"}, dedicated=True)
    placed = place(IBM, vm(1), 2, host({0: "6-11,18-23"}, others))
    assert where(placed) == {1: "6-8,10-11,18-20,22-23"}
    assert placed[0].why == "shared pool of cell 1"


def test_pins_no_longer_in_the_pool_give_the_whole_pool_and_say_why() -> None:
    placed = place(SMALL, vm(1), 2, host({0: "3"}, reserved=cpus("3"), cpu_overcommit=2.0))
    assert where(placed) == {1: "2"}
    assert placed[0].why == "shared pool of cell 1 (its other vCPUs' CPU 3 are not in it)"


def test_a_cell_bound_shared_vm_gets_the_pool_of_its_nodeset() -> None:
    bound = vm(2, numatune_mode="restrictive", nodeset=frozenset({1}))
    placed = place(IBM, bound, 3, host())
    assert where(placed) == {2: "6-11,18-23"}
    assert placed[0].why == "shared pool of cell 1, where its memory is bound"


def test_over_commit_is_refused_with_the_numbers() -> None:
    others = pinned("a", {0: "2", 1: "3"}) + pinned("far", {0: "0-3"})  # far spans both cells
    with pytest.raises(NoRoom) as refused:
        place(SMALL, vm(2), 3, host({0: "2", 1: "3"}, others))
    assert str(refused.value) == (
        "the shared pool of cell 1 (CPUs 2-3) would hold 5 shared vCPUs: 2 of other VMs, 2 of x "
        "and 1 new; CPU over-commit 1 x 2 CPUs allows 2: raise the over-commit in the host's "
        "balancing policy, or move VMs off cell 1"
    )
    placed = place(SMALL, vm(2), 3, host({0: "2", 1: "3"}, others, cpu_overcommit=2.5))
    assert where(placed) == {2: "2-3"}


def test_no_shared_pool_is_refused() -> None:
    others = pinned("d", {0: "2"}, dedicated=True)
    with pytest.raises(NoRoom) as refused:
        place(SMALL, vm(1), 3, host({0: "2-3"}, others))
    assert str(refused.value) == (
        "cell 1 has no shared pool for vCPUs 1-2 of x: CPUs 2-3 are held by dedicated VM d; "
        "free CPUs there, or set 'dedicated' on it"
    )


# --- floating, and what is kept ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("the_vm", "own", "words"),
    [
        (vm(2), {}, FLOATS),
        (vm(2), {0: "6"}, FLOATS_PARTLY),
        (vm(2, numatune_mode="interleave", nodeset=frozenset({0, 1})), {}, FLOATS),
        (vm(2, numatune_mode="strict", nodeset=frozenset()), {}, FLOATS),
    ],
)
def test_a_vm_neither_pinned_nor_cell_bound_floats_and_says_so(the_vm, own, words) -> None:
    placed = place(IBM, the_vm, 3, host(own))
    assert placed == (NewVcpu(2, None, words),)
    assert as_params(placed) == {"placement": {"2": words}}


def test_memory_bound_to_a_cell_without_cpus_floats() -> None:
    topology = load("x86_64-2node-memory-only-cell.xml")
    cpuless = next(c.id for c in topology.cells if not c.cpus)
    placed = place(topology, vm(1, numatune_mode="strict", nodeset=frozenset({cpuless})), 2, host())
    assert placed[0].cpus is None
    assert placed[0].why.startswith(f"not pinned: its memory is bound to cell {cpuless}, which has")


def test_pins_on_cpus_the_host_does_not_have_are_refused() -> None:
    with pytest.raises(NoRoom, match=r"pinned to CPUs this host does not have .*sync the host"):
        place(SMALL, vm(1), 2, host({0: "9"}))


def test_nothing_new_nothing_placed_and_the_params_shape() -> None:
    assert place(IBM, vm(2), 2, host({0: "6", 1: "7"})) == ()
    assert as_params(()) == {}
    placed = place(IBM, vm(1, dedicated=True), 3, host({0: "6"}))
    assert as_params(placed) == {
        "vcpupin": {"1": "18", "2": "7"},
        "placement": {
            "1": "dedicated, idle sibling on core 6,18 of cell 1, which it holds",
            "2": "dedicated, whole core 7,19 of cell 1",
        },
    }


def test_the_cell_holding_most_of_its_vcpus_comes_first() -> None:
    placed = place(
        IBM, vm(3, dedicated=True), 4, host({0: "0", 1: "7", 2: "8"}, reserved=cpus("19-20,12"))
    )
    # cell 1 holds two of its three vCPUs; its cores' idle siblings are reserved: a whole core
    assert where(placed) == {3: "6"}


# --- properties over every fixture -----------------------------------------------------------


@st.composite
def scenarios(draw):
    """A fixture host, a policy, other VMs' pins, and a pinned or cell-bound VM to hot-add to."""
    topology: HostTopology = load(draw(st.sampled_from(FIXTURES)))
    all_cpus = sorted(topology.cpu_ids)
    cpu_cells = sorted(c.id for c in topology.cells if c.cpus)
    some = st.sets(st.sampled_from(all_cpus), max_size=max(1, len(all_cpus) // 4))
    policy = HotAddPolicy(
        reserved=frozenset(draw(some)),
        housekeeping=frozenset(draw(some)),
        emulator=draw(st.sampled_from(["cell", "housekeeping"])),
        whole_cores=draw(st.booleans()),
        cpu_overcommit=draw(st.sampled_from([1.0, 1.5, 2.0, 8.0])),
    )

    def a_pin():
        cell = topology.cell(draw(st.sampled_from(cpu_cells)))
        if draw(st.booleans()):
            return frozenset({draw(st.sampled_from(sorted(cell.cpu_ids)))})
        return cell.cpu_ids

    others = []
    for i in range(draw(st.integers(0, 12))):
        dedicated = draw(st.booleans())
        for v in range(draw(st.integers(1, 3))):
            others.append(PinnedVcpu(f"o{i}", v, a_pin(), dedicated))
    current = draw(st.integers(1, 4))
    dedicated = draw(st.booleans())
    if draw(st.booleans()):
        own = {v: a_pin() for v in range(current)}
        the_vm = HotAddVm("x", current, dedicated)
    else:
        own = {}
        nodeset = frozenset(draw(st.sets(st.sampled_from(cpu_cells), min_size=1)))
        the_vm = HotAddVm(
            "x", current, dedicated, draw(st.sampled_from(["strict", "preferred"])), nodeset
        )
    count = current + draw(st.integers(1, 3))
    return topology, the_vm, count, HostPins(policy, own, tuple(others))


def home_of(topology: HostTopology, the_vm: HotAddVm, pins: HostPins) -> frozenset[int]:
    if pins.own:
        return topology.cells_of(frozenset().union(*pins.own.values()))
    return frozenset(c for c in the_vm.nodeset if topology.cell(c).cpus)


def held_by_others(topology: HostTopology, pins: HostPins) -> frozenset[int]:
    held = set()
    for pin in pins.others:
        if pin.dedicated and len(pin.cpus) == 1:
            (cpu,) = pin.cpus
            held |= topology.cpu(cpu).siblings if pins.policy.whole_cores else {cpu}
    return frozenset(held)


def never_reserved(policy: HotAddPolicy) -> frozenset[int]:
    return policy.reserved | (policy.housekeeping if policy.emulator == "housekeeping" else set())


def shared_on(topology: HostTopology, home: frozenset[int], pins: HostPins) -> int:
    """Shared vCPUs pinned within *home*: every pin but a dedicated VM's single CPUs."""
    within = 0
    for pin in [*pins.others, *(PinnedVcpu("x", v, c) for v, c in pins.own.items())]:
        if pin.dedicated and len(pin.cpus) == 1:
            continue
        if topology.cells_of(pin.cpus) <= home:
            within += 1
    return within


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_placement_keeps_the_policy_or_refuses_exactly_when_there_is_no_room(scenario) -> None:
    topology, the_vm, count, pins = scenario
    policy = pins.policy
    home = home_of(topology, the_vm, pins)
    home_cpus = frozenset().union(*(topology.cell(c).cpu_ids for c in home))
    held = held_by_others(topology, pins)
    added = count - the_vm.current
    try:
        placed = place(topology, the_vm, count, pins)
    except NoRoom as refused:
        placed, reason = None, str(refused)
    if the_vm.dedicated and not policy.whole_cores:
        free = home_cpus - never_reserved(policy) - held
        free -= {next(iter(c)) for c in pins.own.values() if len(c) == 1}
        assert (placed is None) == (len(free) < added)
    if not the_vm.dedicated:
        pool = home_cpus - never_reserved(policy) - held
        over = shared_on(topology, home, pins) + added > math.floor(
            policy.cpu_overcommit * len(pool) + 1e-9
        )
        assert (placed is None) == (not pool or over)
    if placed is None:
        assert reason  # the words are checked by the examples above
        return
    assert [n.vcpu for n in placed] == list(range(the_vm.current, count))
    given_cpus = []
    for new in placed:
        assert new.cpus, new
        assert new.cpus <= home_cpus, (new, home)
        assert not new.cpus & never_reserved(policy), new
        assert not new.cpus & held, new
        if the_vm.dedicated:
            assert len(new.cpus) == 1 and new.why.startswith("dedicated, ")
            given_cpus.extend(new.cpus)
    if the_vm.dedicated:
        own_single = {next(iter(c)) for c in pins.own.values() if len(c) == 1}
        assert len(set(given_cpus)) == len(given_cpus)
        assert not set(given_cpus) & own_single
        if policy.whole_cores:
            # every core it now uses is free of other dedicated VMs and the policy's CPUs
            for cpu in given_cpus:
                assert not topology.cpu(cpu).siblings & (held | never_reserved(policy))


@given(scenarios())
@settings(max_examples=100, deadline=None)
def test_placement_is_deterministic(scenario) -> None:
    topology, the_vm, count, pins = scenario
    try:
        first = place(topology, the_vm, count, pins)
    except NoRoom as refused:
        with pytest.raises(NoRoom) as again:
            place(topology, the_vm, count, pins)
        assert str(again.value) == str(refused)
        return
    assert place(topology, the_vm, count, pins) == first
