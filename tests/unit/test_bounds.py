"""numaportal.bounds: ASCII digits within 64 bits, finite decimals, dates a time zone cannot
push out of range; and the change kinds' ``int_field``, which reads text the same way.
Pure: form fields without a database."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from django.core.exceptions import ValidationError
from hypothesis import example, given
from hypothesis import strategies as st

from changes.kinds.fields import Errors, int_field
from numaportal.bounds import (
    DATE_MAX,
    DATE_MIN,
    MAX_ID,
    AsciiUUIDField,
    BoundedDateField,
    DecimalNumberField,
    IdField,
    SearchTextField,
    WholeNumberField,
    parse_whole,
)

pytestmark = pytest.mark.unit

#: Every decimal digit Unicode knows that is not ASCII: int() takes each of them.
NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())
#: Characters str.isdigit() calls digits though they are not decimal ("²", "①"): int() refuses.
DIGIT_LOOKALIKES = st.characters(categories=["No"]).filter(str.isdigit)


def refused(field, value) -> set[str]:
    """The codes of the errors *field* refuses *value* with (it must refuse it)."""
    with pytest.raises(ValidationError) as info:
        field.clean(value)
    return {error.code for error in info.value.error_list}


# --- whole numbers -----------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_ID))
def test_ascii_digits_parse_to_their_number(number):
    assert parse_whole(str(number)) == number
    assert parse_whole(f" {number}\t") == number
    if number:
        assert IdField().clean(str(number)) == number


@given(st.text(NON_ASCII_DIGITS | DIGIT_LOOKALIKES | st.sampled_from("0123456789"), min_size=1))
@example("\u0663")  # Arabic-Indic three: int() == 3
@example("\uff13")  # fullwidth three
@example("\u00b2")  # superscript two: isdigit(), and int() raises ValueError
def test_only_ascii_digits_are_numbers(text):
    if text.isascii():
        assert parse_whole(text) == int(text)
        return
    assert parse_whole(text) is None
    assert "invalid" in refused(WholeNumberField(), text)
    errors = Errors()
    assert int_field(text, "count", errors) is None  # was int("\u00b2"): ValueError
    assert "count" in errors


@pytest.mark.parametrize("text", [str(MAX_ID + 1), str(-MAX_ID - 2), "9" * 32])
def test_beyond_64_bits_is_out_of_range_not_an_overflow(text):
    assert parse_whole(text) is None
    assert "out_of_range" in refused(WholeNumberField(), text)
    assert "out_of_range" in refused(IdField(), text)


@pytest.mark.parametrize(
    "text", ["", "1.0", "1e3", "0x10", "+1", "1_000", "\u0661", "1\x00", "\x00", "one", "9" * 40]
)
def test_what_is_not_a_whole_number(text):
    assert parse_whole(text) is None
    if text:
        assert refused(WholeNumberField(), text)


def test_bounds_of_the_fields():
    assert parse_whole("5", minimum=6) is None
    assert parse_whole("-5", minimum=-10) == -5
    assert parse_whole("-0") is None
    assert parse_whole(True) is None
    assert parse_whole(7) == 7
    assert WholeNumberField(min_value=1, max_value=4).clean("4") == 4
    assert "max_value" in refused(WholeNumberField(min_value=1, max_value=4), "5")
    assert "min_value" in refused(IdField(), "0")
    assert IdField().clean(str(MAX_ID)) == MAX_ID
    assert WholeNumberField(required=False).clean("") is None


def test_int_field_takes_ints_and_ascii_text():
    errors = Errors()
    assert int_field("3", "count", errors, minimum=1) == 3
    assert int_field(3, "count", errors, minimum=1) == 3
    assert int_field(" 12 ", "vcpu", errors) == 12
    assert not errors.errors
    for bad in ("-1", "1234567", "\uff13", True, 1.5):
        assert int_field(bad, "count", errors) is None
    assert len(errors.errors["count"]) == 5


# --- decimals ----------------------------------------------------------------------------------


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip(number):
    assert DecimalNumberField().clean(repr(number)) == number


@pytest.mark.parametrize(
    "text", ["nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "\u0663", "0\u066b5", "1,5", "."]
)
def test_what_is_not_a_finite_ascii_decimal(text):
    assert "invalid" in refused(DecimalNumberField(), text)


@pytest.mark.parametrize(
    ("text", "number"), [("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 0.001)]
)
def test_decimals(text, number):
    assert DecimalNumberField().clean(text) == number


# --- dates, UUIDs, search text --------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["0001-01-01", "9999-12-31", "1969-12-31", "0000-00-00", "9999-99-99"]
)
def test_dates_out_of_range_or_impossible_are_refused(text):
    assert refused(BoundedDateField(), text)


def test_dates_in_range_and_in_ascii():
    assert BoundedDateField().clean(DATE_MIN.isoformat()) == DATE_MIN
    assert BoundedDateField().clean(DATE_MAX.isoformat()) == DATE_MAX
    assert BoundedDateField().clean("2024-02-29") == date(2024, 2, 29)
    arabic = "".join(
        unicodedata.lookup(f"ARABIC-INDIC DIGIT {w}") for w in ("TWO", "ZERO", "TWO", "FOUR")
    )
    assert "invalid" in refused(BoundedDateField(), f"{arabic}-01-01")


def test_uuids_of_ascii_hex_only():
    assert str(AsciiUUIDField().clean("12345678-1234-5678-1234-567812345678")).startswith("1234")
    assert "invalid" in refused(AsciiUUIDField(), "\u0663" * 32)


def test_search_text_is_bounded_in_words_and_length():
    assert SearchTextField(required=False).clean("memory to node 1") == "memory to node 1"
    assert "too_many_words" in refused(SearchTextField(), "a " * 21)
    assert "max_length" in refused(SearchTextField(), "a" * 501)
