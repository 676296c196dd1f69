"""parse_cpuset / parse_nodeset / format_cpuset against libvirt's own bitmap parser.

The oracle (tests/libvirt/oracle.py) is libvirt 9.0 itself: each string goes to libvirt through
every channel that can carry it (vcpupin, emulatorpin, numatune nodeset, vcpu cpuset, and
setNumaParameters) and to our parser; the two must give the same set, or both refuse. The table
is libvirt's own test strings (tests/virbitmaptest.c), the divergences the issue reported and
the edges found while building this (whitespace classes, signs, the 16384-id limit, a trailing
comma); hypothesis then generates strings over the grammar (ids, ranges, ``^``, commas, five
kinds of whitespace, signs, junk) against the setNumaParameters channel, derandomized so a run
is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from numaportal.virt import cpuset
from numaportal.virt.connection import open_connection

from .conftest import TEST_URI
from .oracle import CPUMASK_LEN, ELEMENTS, EVERY_ID, Oracle, Refused, xml_can_carry

pytestmark = pytest.mark.libvirt

ORACLE_SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    conn = open_connection(TEST_URI)
    oracle = Oracle(conn)
    yield oracle
    oracle.close()
    conn.close()


def ours(text: str, *, nodeset: bool = False) -> frozenset[int] | None:
    """Our reading of *text*, None when we refuse it."""
    try:
        return cpuset.parse_nodeset(text) if nodeset else cpuset.parse_cpuset(text)
    except cpuset.CpusetError:
        return None


def theirs(oracle: Oracle, channel: str, text: str) -> frozenset[int] | None:
    """libvirt's reading of *text* through *channel*, None when libvirt refuses it."""
    try:
        if channel == "numa_parameters":
            return oracle.numa_parameters_reading(text)
        return oracle.element_reading(next(e for e in ELEMENTS if e.name == channel), text)
    except Refused:
        return None


CURATED = [
    # libvirt's tests/virbitmaptest.c
    "1-32,50,88-99,1021-1023",
    "0, 2-4, 6-10, 12, 14-18, 20, 22, 25",
    "100000000",
    "1-1000000000",
    "1-10^10000000000",
    "0-3,5-8,11-15f16",  # virBitmapParseSeparator's 'f' is no separator in a domain
    "4,9,10,16-19",
    "0,^0",
    "0,3",
    "12345",
    # the issue: exclusions apply left to right, ^N-M is refused, ids go to 16383
    "^3,0-7",
    "0-7,^3",
    "0-3,^1,1",
    "^1-2",
    "0-7,^2-3,^6",
    "8192",
    "16383",
    "16384",
    "0-16383",
    "0-16382",
    "16000-16384",
    "^16384,1",
    "^16383,1",
    # commas and emptiness
    "1,",
    "1, ",
    "1,,2",
    ",1",
    ",",
    "",
    "  ",
    "^3",
    "1,^1",
    "^1,1",
    # whitespace: GLib's g_ascii_isspace between elements, strtol's isspace before a range end
    " 1 , 2 ",
    "0 - 3, 5",
    "\t0,\n1",
    "\r1\r",
    "^ 1,0-2",
    "0,\u00a01",
    "0-\u00a01",
    "\f0",
    "0\v",
    "0,\v1",
    "0-\v1",
    "0- \v1",
    "0-1\f",
    # signs, bases, digits
    "0-+3",
    "0--0",
    "0--1",
    "3--1",
    "0-+-1",
    "0- +1",
    "0-+ 1",
    "+1",
    "-1",
    "-",
    "^",
    "^-1",
    "^^1",
    "007",
    "0x1",
    "1e3",
    "1.5",
    "1_000",
    "\u00b2",
    "\u0661",
    "2147483648",
    "0-2147483648",
    "99999999999999999999",
    # junk after an element
    "1-",
    "1-b",
    "1-2-3",
    "1 2",
    "0;1",
    "1\\,2",
]


@pytest.mark.parametrize("text", CURATED)
def test_curated_strings_read_as_libvirt_reads_them(oracle: Oracle, text: str) -> None:
    """Every channel that can carry the string agrees with our parser (and with each other)."""
    channels = ["numa_parameters"]
    if xml_can_carry(text):
        channels += [element.name for element in ELEMENTS]
    for channel in channels:
        libvirt_reading = theirs(oracle, channel, text)
        expected = ours(text, nodeset=channel in ("numatune", "numa_parameters"))
        if channel == "vcpu" and libvirt_reading is EVERY_ID:
            assert expected == EVERY_ID, (channel, text)
            continue
        assert expected == libvirt_reading, (channel, text, expected, libvirt_reading)


def test_the_issue_cases_in_words() -> None:
    # What the curated table checks against libvirt, spelled out for a reader of this file.
    assert cpuset.parse_cpuset("^3,0-7") == frozenset(range(8))  # a later range sets 3 again
    assert cpuset.parse_cpuset("0-3,^1,1") == frozenset(range(4))  # and a later id sets 1 again
    assert cpuset.parse_cpuset("0-7,^3") == frozenset({0, 1, 2, 4, 5, 6, 7})
    with pytest.raises(cpuset.CpusetError, match=r"invalid element '\^1-2'.*cannot be excluded"):
        cpuset.parse_cpuset("^1-2")
    assert cpuset.MAX_CPU_ID == CPUMASK_LEN - 1 == 16383
    assert cpuset.parse_cpuset("16383") == frozenset({16383})
    with pytest.raises(cpuset.CpusetError, match="larger than the maximum 16383"):
        cpuset.parse_cpuset("16384")


# --- hypothesis over the grammar ----------------------------------------------------------------

_SPACE = st.sampled_from(["", "", "", "", " ", "  ", "\t", "\n", "\r", "\f", "\v", "\u00a0"])
_NUMBER = st.one_of(
    st.integers(0, 40).map(str),
    st.integers(0, 40).map(lambda n: f"0{n}"),
    st.sampled_from(
        ["16383", "16384", "8191", "8192", "99999", "2147483648", "+1", "-0", "-1", "0x1", "1.5"]
    ),
)
_PREFIX = st.sampled_from(["", "", "", "^", "^", "^ ", "^^", "-", "+"])
_SIGN = st.sampled_from(["", "", "", "", "+", "-", "+-", " +", "\v"])
_JUNK = st.sampled_from(["x", "-", "--", " 1", ";", "-1-2", "^", ".", "\u00b2", "\\"])


@st.composite
def cpuset_like(draw: st.DrawFn) -> str:
    """Strings close to the cpuset grammar: mostly valid, often at an edge, sometimes junk."""
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        space = [draw(_SPACE) for _ in range(4)]
        head = f"{space[0]}{draw(_PREFIX)}{draw(_NUMBER)}{space[1]}"
        kind = draw(st.sampled_from(["id", "id", "range", "range", "junk"]))
        if kind == "range":
            head += f"-{space[2]}{draw(_SIGN)}{draw(_NUMBER)}{space[3]}"
        elif kind == "junk":
            head += draw(_JUNK)
        parts.append(head)
    return ",".join(parts) + draw(st.sampled_from(["", "", "", "", ",", ", ", ",,", " "]))


@settings(ORACLE_SETTINGS, max_examples=600)
@given(cpuset_like())
@example("^3,0-7")
@example("0-3,^1,1")
@example("^1-2")
@example("0-16383")
def test_generated_cpusets_read_as_libvirt_reads_them(oracle: Oracle, text: str) -> None:
    expected = ours(text, nodeset=True)
    assert expected == theirs(oracle, "numa_parameters", text), text
    assert ours(text) == expected  # a cpuset and a nodeset share libvirt's one grammar


@settings(ORACLE_SETTINGS, max_examples=300)
@given(st.text(alphabet="0123456789-^, \t\v\f+x", max_size=12))
def test_arbitrary_short_text_reads_as_libvirt_reads_it(oracle: Oracle, text: str) -> None:
    assert ours(text, nodeset=True) == theirs(oracle, "numa_parameters", text), text


@settings(ORACLE_SETTINGS, max_examples=60)
@given(cpuset_like().filter(xml_can_carry))
def test_generated_cpusets_in_a_vcpupin_read_alike(oracle: Oracle, text: str) -> None:
    # The XML channel on a sample, to show setNumaParameters is no special case.
    assert ours(text) == theirs(oracle, "vcpupin", text), text


# --- format_cpuset: libvirt takes it and reads the same set, written the same way ---------------

_SETS = st.one_of(
    st.frozensets(st.integers(0, 40), min_size=1),
    st.frozensets(st.integers(0, cpuset.MAX_CPU_ID), min_size=1, max_size=30),
    st.tuples(st.integers(0, cpuset.MAX_CPU_ID), st.integers(0, cpuset.MAX_CPU_ID)).map(
        lambda p: frozenset(range(min(p), max(p) + 1))
    ),
)


@settings(ORACLE_SETTINGS, max_examples=80)
@given(_SETS)
@example(frozenset({0}))
@example(frozenset({cpuset.MAX_CPU_ID}))
@example(frozenset(range(cpuset.MAX_CPU_ID)))
@example(frozenset({0, 1}))
def test_format_round_trips_through_libvirt(oracle: Oracle, cpus: frozenset[int]) -> None:
    text = cpuset.format_cpuset(cpus)
    assert theirs(oracle, "vcpupin", text) == cpus
    assert theirs(oracle, "numa_parameters", cpuset.format_nodeset(cpus)) == cpus
    # libvirt writes it back character for character as we wrote it (virBitmapFormat's form).
    assert oracle.numa_parameters_text(text) == text


def test_format_of_every_id_is_libvirts_all_set(oracle: Oracle) -> None:
    text = cpuset.format_cpuset(EVERY_ID)
    assert text == f"0-{cpuset.MAX_CPU_ID}"
    assert theirs(oracle, "vcpupin", text) == EVERY_ID
    assert theirs(oracle, "vcpu", text) is EVERY_ID  # written back as "no cpuset": all set
