"""Bounded, typed input: the one place a query string or form value becomes a number, a date
or a UUID, so that no value can reach the database as something it refuses (a 500).

Python is generous where a database is not: ``int()`` and ``float()`` take any Unicode digit
(Arabic-Indic U+0663, fullwidth U+FF13), ``str.isdigit()`` is true for a superscript "²" (which
``int()`` then refuses), an ``int`` has no upper bound while SQLite raises ``OverflowError`` past
2**63 - 1 (and PostgreSQL "value out of range" past its column type), ``float("1e309")`` is
``inf``, and a date near year 1 or 9999 leaves ``datetime``'s range once the time zone moves it
to UTC. Everything here accepts ASCII only (digits ``[0-9]``, as the cpuset parser does) and
within bounds, and refuses the rest as a ``ValidationError`` (a form error, a 400), never as an
exception:

- :func:`parse_whole`: text of ASCII digits to an int within ``minimum..maximum``, or None;
- :class:`WholeNumberField` (form field; ``forms.IntegerField`` semantics, ASCII digits,
  never beyond 64 bits) and :class:`IdField` (1 .. 2**63 - 1: a primary key);
- :class:`DecimalNumberField` (``forms.FloatField``: ASCII, finite);
- :class:`BoundedDateField` (``forms.DateField``: ASCII, :data:`DATE_MIN` .. :data:`DATE_MAX`);
- :class:`AsciiUUIDField` (``forms.UUIDField``: ``uuid.UUID`` takes Unicode hex digits too);
- :class:`SearchTextField` (``forms.CharField`` for text searched word by word: bounded length
  and word count, each word one ``LIKE`` clause);
- the django-filter filters made of them (:class:`IdFilter`, :class:`AsciiUUIDFilter`,
  :class:`SearchTextFilter`, :class:`BoundedDateFromToRangeFilter`), and
  :func:`filter_results`: a FilterSet's rows, none when a value is invalid (the page shows
  why) rather than silently unfiltered.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django_filters.fields import DateRangeField, RangeField

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "MAX_ID",
    "AsciiUUIDField",
    "AsciiUUIDFilter",
    "BoundedDateField",
    "BoundedDateFromToRangeFilter",
    "DecimalNumberField",
    "IdField",
    "IdFilter",
    "SearchTextField",
    "SearchTextFilter",
    "WholeNumberField",
    "filter_results",
    "parse_whole",
]

#: The largest value of a signed 64-bit column (BigAutoField, SQLite's INTEGER).
MAX_ID = 2**63 - 1
#: Dates a filter accepts: far enough from ``datetime``'s ends (years 1 and 9999) that no time
#: zone (UTC-12 .. UTC+14) moves the start or the end of the day outside it.
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(9998, 12, 31)

_WHOLE = re.compile(r"-?[0-9]{1,32}")
_DECIMAL = re.compile(
    r"[+-]?(?:[0-9]{1,32}(?:\.[0-9]{0,32})?|\.[0-9]{1,32})(?:[eE][+-]?[0-9]{1,4})?"
)
#: What ``str.strip()`` would remove but only the ASCII part of it: "\u2003" is not a blank here.
_BLANKS = " \t\r\n\f\v"


def parse_whole(value: Any, *, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """*value* (text of ASCII digits, a "-" first when *minimum* is negative; or an int) as an
    int within ``minimum..maximum``, else None. ``bool`` is not a number here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _WHOLE.fullmatch(text := value.strip(_BLANKS)):
        if text.startswith("-") and minimum >= 0:
            return None  # "-0" is not how a count or an id is written
        number = int(text)
    else:
        return None
    return number if minimum <= number <= maximum else None


class WholeNumberField(forms.IntegerField):
    """``forms.IntegerField`` of ASCII digits only (no U+0663, U+FF13, "3.0" or "1e3"), never
    beyond a 64-bit column either way; ``min_value`` / ``max_value`` narrow it as usual."""

    default_error_messages = {"invalid": "Enter a whole number (digits 0-9)."}

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        number = parse_whole(value, minimum=-MAX_ID - 1, maximum=MAX_ID)
        if number is None:
            text = value.strip(_BLANKS) if isinstance(value, str) else ""
            if _WHOLE.fullmatch(text):  # digits, but more than 64 bits hold
                low = -MAX_ID - 1 if self.min_value is None else self.min_value
                high = MAX_ID if self.max_value is None else self.max_value
                raise ValidationError(
                    "Enter a number from %(low)s to %(high)s.",
                    code="out_of_range",
                    params={"low": low, "high": high},
                )
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class IdField(WholeNumberField):
    """A primary key: 1 .. 2**63 - 1 (what a BigAutoField holds on every database)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class DecimalNumberField(forms.FloatField):
    """``forms.FloatField`` of ASCII digits (an optional sign, a point, an exponent); finite
    ("nan", "inf" and "1e309" are refused, as ``forms.FloatField`` refuses the first two)."""

    default_error_messages = {"invalid": "Enter a number (digits 0-9, a point: 0.5)."}

    def to_python(self, value: Any) -> float | None:
        if value in self.empty_values:
            return None
        if isinstance(value, bool):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and _DECIMAL.fullmatch(text := value.strip(_BLANKS)):
            number = float(text)
        else:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if not math.isfinite(number):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class BoundedDateField(forms.DateField):
    """``forms.DateField`` of ASCII text (its ``strptime`` takes Arabic-Indic digits for a
    year), from :data:`DATE_MIN` to :data:`DATE_MAX`."""

    def to_python(self, value: Any) -> date | None:
        if isinstance(value, str) and not value.isascii():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        parsed = super().to_python(value)
        if parsed is not None and not DATE_MIN <= parsed <= DATE_MAX:
            raise ValidationError(
                "Enter a date from %(low)s to %(high)s.",
                code="out_of_range",
                params={"low": DATE_MIN.isoformat(), "high": DATE_MAX.isoformat()},
            )
        return parsed


class AsciiUUIDField(forms.UUIDField):
    """``forms.UUIDField`` of ASCII hex digits (``uuid.UUID`` takes Unicode digits)."""

    def to_python(self, value: Any):
        if isinstance(value, str) and not value.isascii():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class SearchTextField(forms.CharField):
    """Text searched word by word (each word one ``LIKE``): at most *max_words* words and
    ``max_length`` characters; SQLite refuses a query of a thousand ``LIKE`` clauses."""

    def __init__(self, *, max_words: int = 20, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)
        self.max_words = max_words

    def validate(self, value: str) -> None:
        super().validate(value)
        if len(value.split()) > self.max_words:
            raise ValidationError(
                "Search for at most %(count)s words.",
                code="too_many_words",
                params={"count": self.max_words},
            )


# --- django-filter ------------------------------------------------------------------------------


class IdFilter(django_filters.Filter):
    """A primary or foreign key by id (``?vm=12``): :class:`IdField`, not the ``NumberFilter``'s
    decimal (which passes ``Decimal("9223372036854775808")`` to the database)."""

    field_class = IdField


class AsciiUUIDFilter(django_filters.UUIDFilter):
    field_class = AsciiUUIDField


class SearchTextFilter(django_filters.CharFilter):
    """Text searched word by word by the filter's method: :class:`SearchTextField`."""

    field_class = SearchTextField


class _BoundedDateRangeField(DateRangeField):
    """django-filter's DateRangeField (its time-zone handling) with bounded dates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # DateRangeField.__init__ only builds its two forms.DateField: skip it for these.
        RangeField.__init__(self, (BoundedDateField(), BoundedDateField()), *args, **kwargs)


class BoundedDateFromToRangeFilter(django_filters.DateFromToRangeFilter):
    """``?<name>_after=`` / ``?<name>_before=``, each a :class:`BoundedDateField`."""

    field_class = _BoundedDateRangeField


def filter_results(filterset: django_filters.FilterSet) -> QuerySet:
    """The rows of a bound FilterSet; none when a value is invalid (as django-filter's own
    ``FilterView`` does), so a bad ``?vm=`` lists nothing instead of every change. The form
    then carries the errors for the page to show."""
    if filterset.is_bound and not filterset.is_valid():
        return filterset.queryset.none()
    return filterset.qs
