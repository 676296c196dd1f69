"""cpuset syntax: the examples operators type, the errors they get, and properties over all sets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from numaportal.virt.cpuset import (
    MAX_CPU_ID,
    CpusetError,
    cpumap_to_cpuset,
    cpuset_to_cpumap,
    format_cpuset,
    format_nodeset,
    parse_cpuset,
    parse_nodeset,
)

pytestmark = pytest.mark.unit


# --- parse: accepted forms --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}),
        ("18-23", {18, 19, 20, 21, 22, 23}),
        ("0,2,4-6", {0, 2, 4, 5, 6}),
        ("0-7,^3", {0, 1, 2, 4, 5, 6, 7}),
        ("^3,0-7", set(range(8))),  # left to right, as libvirt: the later range sets 3 again
        ("0-7,^2,^3,^6", {0, 1, 4, 5, 7}),  # libvirt refuses "^2-3": one id per '^'
        ("0-3,^2", {0, 1, 3}),
        ("0 - 3, 5", {0, 1, 2, 3, 5}),
        ("  22 ", {22}),
        ("\t0,\n1", {0, 1}),
        ("0-2, ^1", {0, 2}),  # libvirt refuses "^ 1": no space after '^'
        ("3,3,1-3", {1, 2, 3}),  # duplicates and overlaps are harmless
        ("007", {7}),  # leading zeros: libvirt's strtol accepts them
        ("22,23", {22, 23}),
        (f"{MAX_CPU_ID}", {MAX_CPU_ID}),
        (f"0-{MAX_CPU_ID}", set(range(MAX_CPU_ID + 1))),
        ("0,32", {0, 32}),
    ],
)
def test_parse_cpuset_accepts(text: str, expected: set[int]) -> None:
    result = parse_cpuset(text)
    assert result == frozenset(expected)
    assert isinstance(result, frozenset)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # libvirt's virBitmapParse reads elements left to right (tests/libvirt/test_oracle_cpuset.py
        # holds these, and many more, to libvirt itself)
        ("0-3,^1,1", {0, 1, 2, 3}),  # a later id sets an excluded one again
        ("^1,1", {1}),
        ("1,", {1}),  # libvirt stops at the end of the text after a comma
        ("1, ", {1}),
        ("16383", {16383}),  # VIR_DOMAIN_CPUMASK_LEN is 16384
        ("0-+3", {0, 1, 2, 3}),  # strtol reads a range's end: a sign, and "\v" before it
        ("0--0", {0}),
        ("0-\v1", {0, 1}),
        ("\f0", {0}),  # GLib's g_ascii_isspace: space, \t, \n, \f, \r
        ("^16383,1", {1}),
    ],
)
def test_parse_cpuset_reads_as_libvirt(text: str, expected: set[int]) -> None:
    assert parse_cpuset(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("^1-2", "invalid element '^1-2' in cpuset '^1-2': a range cannot be excluded"),
        ("0-7,^2-3", "invalid element '^2-3' in cpuset '0-7,^2-3': a range cannot be excluded"),
        ("^ 1,0-2", "invalid element '^ 1' in cpuset '^ 1,0-2': '^' must be followed directly"),
        ("16384", "CPU id '16384' is larger than the maximum 16383"),
        ("^16384,1", "CPU id '16384' is larger than the maximum 16383"),
        ("0\v", "'0\\x0b' is not a decimal CPU id"),  # no "\v" for GLib; shown escaped
        ("0,\u00a01", "is not a decimal CPU id"),  # nor any non-ASCII space
        ("0--1", "negative CPU ids are not allowed"),
        ("0-+-1", "'+-1' is not a decimal CPU id"),
    ],
)
def test_parse_cpuset_refuses_as_libvirt(text: str, message: str) -> None:
    with pytest.raises(CpusetError) as excinfo:
        parse_cpuset(text)
    assert message in str(excinfo.value)


# --- parse: rejected forms and their messages ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,3-1", "invalid range '3-1' in cpuset '0,3-1': start is greater than end"),
        ("", "empty cpuset"),
        ("   ", "empty cpuset"),
        ("1,,2", "empty element at position 2 in cpuset '1,,2'"),
        ("1,,", "empty element at position 2 in cpuset '1,,'"),  # libvirt takes "1," as 1
        (",1", "empty element at position 1 in cpuset ',1'"),
        ("a", "invalid element 'a' in cpuset 'a': 'a' is not a decimal CPU id"),
        ("1-b", "invalid element '1-b' in cpuset '1-b': 'b' is not a decimal CPU id"),
        ("0x1", "invalid element '0x1' in cpuset '0x1': '0x1' is not a decimal CPU id"),
        ("-1", "invalid element '-1' in cpuset '-1': negative CPU ids are not allowed"),
        ("3--1", "invalid element '3--1' in cpuset '3--1': negative CPU ids are not allowed"),
        ("+1", "invalid element '+1' in cpuset '+1': '+1' is not a decimal CPU id"),
        ("^3", "cpuset '^3' has only exclusions"),
        ("^0,^5", "cpuset '^0,^5' has only exclusions"),
        ("^0-3,^5", "invalid element '^0-3' in cpuset '^0-3,^5': a range cannot be excluded"),
        ("1,^1", "cpuset '1,^1' excludes every CPU it includes"),
        ("0-3,^0,^1,^2,^3", "excludes every CPU it includes"),
        ("0-3,^0-7", "invalid element '^0-7' in cpuset '0-3,^0-7': a range cannot be excluded"),
        ("16384", "CPU id '16384' is larger than the maximum 16383"),
        ("0-99999", "CPU id '99999' is larger than the maximum 16383"),
        ("1-", "invalid element '1-' in cpuset '1-': missing end of range"),
        ("-", "invalid element '-' in cpuset '-': missing start of range"),
        ("^", "invalid element '^' in cpuset '^': missing CPU id"),
        ("1-2-3", "invalid element '1-2-3'"),
        ("1 2", "invalid element '1 2'"),
        ("1.5", "invalid element '1.5'"),
        ("1_000", "invalid element '1_000'"),
        ("\u00b2", "is not a decimal CPU id"),  # superscript two: isdigit() but not cpuset
        ("\u0661", "is not a decimal CPU id"),  # Arabic-Indic one: int() would accept it
        ("0;1", "invalid element '0;1'"),
    ],
)
def test_parse_cpuset_rejects_with_message(text: str, message: str) -> None:
    with pytest.raises(CpusetError) as excinfo:
        parse_cpuset(text)
    assert message in str(excinfo.value)


@pytest.mark.parametrize("value", [None, 3, 3.0, b"0-3", ["0"], {0}])
def test_parse_cpuset_rejects_non_str(value: object) -> None:
    with pytest.raises(CpusetError, match="cpuset must be a string"):
        parse_cpuset(value)  # type: ignore[arg-type]


def test_cpuset_error_is_value_error() -> None:
    # Forms and DRF serializers turn ValueError into field errors; keep that contract.
    assert issubclass(CpusetError, ValueError)


def test_huge_number_is_rejected_cheaply_without_int_overflow() -> None:
    # int() of a 100k-digit string raises a plain ValueError (int max str digits); we must not.
    with pytest.raises(CpusetError, match="larger than the maximum"):
        parse_cpuset("9" * 100_000)


def test_long_text_is_truncated_in_message() -> None:
    text = "0," * 1000 + "x"
    with pytest.raises(CpusetError) as excinfo:
        parse_cpuset(text)
    assert len(str(excinfo.value)) < 300
    assert "'x'" in str(excinfo.value)


def test_parse_nodeset_uses_nodeset_words() -> None:
    assert parse_nodeset("0-1") == frozenset({0, 1})
    with pytest.raises(CpusetError, match="nodeset '1,\\^1' excludes every node"):
        parse_nodeset("1,^1")
    with pytest.raises(CpusetError, match="empty nodeset"):
        parse_nodeset("")
    with pytest.raises(CpusetError, match="in nodeset 'x': 'x' is not a decimal node id"):
        parse_nodeset("x")


# --- format -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ({0, 1, 2, 3, 8}, "0-3,8"),
        ({0, 1}, "0-1"),  # libvirt's virBitmapFormat writes pairs as ranges too
        ({5}, "5"),
        ({0, 2, 4}, "0,2,4"),
        ({22, 23}, "22-23"),
        ({18, 19, 20, 21, 22, 23}, "18-23"),
        ({6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23}, "6-11,18-23"),
        ({0, 32}, "0,32"),
        ([3, 1, 2, 2], "1-3"),  # any iterable, any order, duplicates
        (range(MAX_CPU_ID + 1), f"0-{MAX_CPU_ID}"),
    ],
)
def test_format_cpuset(cpus: set[int], expected: str) -> None:
    assert format_cpuset(cpus) == expected


@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        (set(), "empty cpuset"),
        ([], "empty cpuset"),
        ({-1, 2}, "negative CPU id -1"),
        ({MAX_CPU_ID + 1}, "CPU id 16384 is larger than the maximum 16383"),
        (["3"], "CPU id '3' in cpuset is not an integer"),
        ([True], "is not an integer"),
        ([1.0], "is not an integer"),
    ],
)
def test_format_cpuset_rejects(cpus: list[object], message: str) -> None:
    with pytest.raises(CpusetError) as excinfo:
        format_cpuset(cpus)  # type: ignore[arg-type]
    assert message in str(excinfo.value)


def test_format_nodeset() -> None:
    assert format_nodeset({0, 1, 3}) == "0-1,3"
    with pytest.raises(CpusetError, match="empty nodeset"):
        format_nodeset([])


# --- cpumap -----------------------------------------------------------------------------------


def test_cpuset_to_cpumap_seed_pin() -> None:
    cpumap = cpuset_to_cpumap(parse_cpuset("18-23"), 24)
    assert cpumap == (False,) * 18 + (True,) * 6
    assert cpumap_to_cpuset(cpumap) == frozenset(range(18, 24))


@pytest.mark.parametrize(
    ("cpus", "width", "message"),
    [
        ({40}, 24, "CPU 40 does not exist on this host (it has 24 CPUs: 0-23)"),
        ({1, 40, 41, 50}, 24, "CPUs 40-41,50 do not exist on this host (it has 24 CPUs: 0-23)"),
        ({2}, 2, "CPU 2 does not exist on this host (it has 2 CPUs: 0-1)"),
        ({1}, 1, "CPU 1 does not exist on this host (it has 1 CPU: 0)"),
        (set(), 4, "empty cpuset"),
        ({-1}, 4, "negative CPU id -1 in cpuset"),
        ({0}, 0, "cpumap width must be a positive number of host CPUs, not 0"),
    ],
)
def test_cpuset_to_cpumap_rejects(cpus: set[int], width: int, message: str) -> None:
    with pytest.raises(CpusetError) as excinfo:
        cpuset_to_cpumap(cpus, width)
    assert str(excinfo.value) == message


def test_cpumap_to_cpuset_accepts_all_false_and_lists() -> None:
    assert cpumap_to_cpuset((False, False)) == frozenset()
    assert cpumap_to_cpuset([True, False, True]) == frozenset({0, 2})


# --- properties -------------------------------------------------------------------------------

cpu_sets = st.frozensets(st.integers(0, MAX_CPU_ID), min_size=1, max_size=200) | st.frozensets(
    st.integers(0, 80), min_size=1
)


def reference_format(cpus: frozenset[int]) -> str:
    """Obvious implementation: group consecutive ids; a run of one is "a", longer is "a-b"."""
    parts = []
    ordered = sorted(cpus)
    for _, run in itertools.groupby(enumerate(ordered), key=lambda pair: pair[1] - pair[0]):
        ids = [cpu for _, cpu in run]
        parts.append(str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}")
    return ",".join(parts)


@given(cpu_sets)
@example(frozenset({0}))
@example(frozenset({MAX_CPU_ID}))
@example(frozenset({0, 1}))
def test_format_parse_round_trip(cpus: frozenset[int]) -> None:
    text = format_cpuset(cpus)
    assert parse_cpuset(text) == cpus
    assert text == reference_format(cpus)
    assert format_cpuset(parse_cpuset(text)) == text
    assert " " not in text and "^" not in text


@given(cpu_sets)
def test_format_never_writes_degenerate_ranges(cpus: frozenset[int]) -> None:
    for part in format_cpuset(cpus).split(","):
        if "-" in part:
            start, end = (int(x) for x in part.split("-"))
            assert start < end


@given(st.text())
@example("0-3,^2")
@example("9" * 5000)
def test_arbitrary_text_only_raises_cpuset_error(text: str) -> None:
    try:
        result = parse_cpuset(text)
    except CpusetError:
        return
    assert result
    assert all(0 <= cpu <= MAX_CPU_ID for cpu in result)


@given(st.text(alphabet="0123456789-^, \t+x"))
def test_cpuset_like_text_only_raises_cpuset_error(text: str) -> None:
    try:
        result = parse_cpuset(text)
    except CpusetError:
        return
    assert result
    assert all(0 <= cpu <= MAX_CPU_ID for cpu in result)


def _good_elements() -> st.SearchStrategy[list[str]]:
    single = st.integers(0, 100).map(str)
    ranged = st.tuples(st.integers(0, 50), st.integers(0, 50)).map(lambda p: f"{min(p)}-{max(p)}")
    return st.lists(single | ranged, max_size=3)


_bad_tokens = st.one_of(
    st.tuples(st.integers(1, 500), st.integers(1, 500))
    .filter(lambda p: p[0] > p[1])
    .map(lambda p: f"{p[0]}-{p[1]}"),  # reversed range
    st.from_regex(r"[a-z]{1,4}", fullmatch=True),  # words
    st.integers(0, 999).map(lambda n: f"0x{n}"),  # hex
    st.integers(0, 999).map(lambda n: f"+{n}"),  # signs
    st.integers(1, 999).map(lambda n: f"-{n}"),  # negatives
    st.integers(0, 999).map(lambda n: f"{n}-"),  # open range
    st.integers(0, 999).map(lambda n: f"{n}-x"),  # non-numeric end
    st.integers(0, 99).map(lambda n: f"{n}-{n + 1}-{n + 2}"),  # double range
    st.integers(MAX_CPU_ID + 1, 10**9).map(str),  # absurdly large
    st.integers(0, 99).map(lambda n: f"{n}.5"),  # decimals
)


@given(_good_elements(), _bad_tokens, _good_elements(), st.booleans())
def test_malformed_element_is_named_in_error(
    before: list[str], bad: str, after: list[str], negate: bool
) -> None:
    token = f"^{bad}" if negate else bad
    text = ",".join([*before, token, *after])
    with pytest.raises(CpusetError) as excinfo:
        parse_cpuset(text)
    message = str(excinfo.value)
    # The element itself is quoted and named as the culprit, not just the whole input echoed.
    assert f"'{token}' in cpuset" in message, message


@given(
    st.integers(1, 512).flatmap(
        lambda w: st.tuples(st.just(w), st.frozensets(st.integers(0, w - 1), min_size=1))
    )
)
def test_cpumap_round_trip(width_and_cpus: tuple[int, frozenset[int]]) -> None:
    width, cpus = width_and_cpus
    cpumap = cpuset_to_cpumap(cpus, width)
    assert len(cpumap) == width
    assert all(isinstance(bit, bool) for bit in cpumap)
    assert cpumap_to_cpuset(cpumap) == cpus


@given(st.integers(1, 64), st.frozensets(st.integers(0, 200), min_size=1))
def test_cpumap_rejects_exactly_the_missing_cpus(width: int, cpus: frozenset[int]) -> None:
    missing = {cpu for cpu in cpus if cpu >= width}
    if not missing:
        assert cpumap_to_cpuset(cpuset_to_cpumap(cpus, width)) == cpus
        return
    with pytest.raises(CpusetError) as excinfo:
        cpuset_to_cpumap(cpus, width)
    assert format_cpuset(missing) in str(excinfo.value)
    assert f"it has {width} CPU" in str(excinfo.value)
