"""Issue 14, item 2: the values that were a 500 (or were taken though the field next to them
refuses them), one test each. The fields themselves are tested in
``tests/unit/test_bounds.py``.
"""

from __future__ import annotations

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from balancing.forms import PolicyForm
from balancing.models import BalancingPolicy
from tests.web.changes_helpers import make_change

pytestmark = [pytest.mark.web, pytest.mark.django_db]

BEYOND_64_BITS = str(2**63)  # 9223372036854775808: SQLite raised OverflowError
#: Digits ``int()`` and ``float()`` take but the cpuset fields refuse: Arabic-Indic and
#: fullwidth three.
UNICODE_THREES = ("\u0663", "\uff13")


def names(response) -> list[str]:
    return [c.reason for c in response.context["changes"]]


# --- /changes/?vm= and its CSV export ---------------------------------------------------------


@pytest.mark.parametrize("value", [BEYOND_64_BITS, "-9223372036854775809", "9" * 40, "0", "-1"])
def test_change_list_vm_out_of_range_is_a_form_error_and_no_rows(viewer_client, inventory, value):
    """Was: OverflowError (Python int too large to convert to SQLite INTEGER), a 500."""
    make_change(inventory["db01"], reason="a pin")
    response = viewer_client.get(reverse("changes:list"), {"vm": value})
    assert response.status_code == 200
    assert names(response) == []  # not every change, as an ignored filter would list
    assert response.context["filter"].errors["vm"]
    # the vm field is hidden: its error is still on the page
    assert 'id="filter-errors"' in response.content.decode()


def test_change_list_vm_at_the_64_bit_limit_is_just_no_such_vm(viewer_client, inventory):
    make_change(inventory["db01"], reason="a pin")
    response = viewer_client.get(reverse("changes:list"), {"vm": str(2**63 - 1)})
    assert response.status_code == 200
    assert names(response) == []
    assert not response.context["filter"].errors


@pytest.mark.parametrize("value", [BEYOND_64_BITS, "x", "\u0663"])
def test_change_export_refuses_a_bad_filter_before_it_streams(viewer_client, inventory, value):
    """Was: headers sent (200, text/csv, attachment), then the stream cut by the OverflowError."""
    make_change(inventory["db01"], reason="a pin")
    response = viewer_client.get(reverse("changes:export"), {"vm": value})
    assert response.status_code == 400
    assert not isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/plain")
    assert "Content-Disposition" not in response
    assert response.content.decode().startswith("vm: ")


def test_change_export_with_a_good_vm_filter_still_streams(viewer_client, inventory):
    make_change(inventory["db01"], reason="a pin")
    make_change(inventory["web01"], reason="another")
    response = viewer_client.get(reverse("changes:export"), {"vm": inventory["db01"].pk})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert "a pin" in body and "another" not in body


def test_change_filter_text_of_a_thousand_words_is_a_form_error(viewer_client, inventory):
    """Was: one LIKE per word, and SQLite's "Expression tree is too large" (a 500)."""
    response = viewer_client.get(reverse("changes:list"), {"q": "a " * 1500})
    assert response.status_code == 200
    assert response.context["filter"].errors["q"]
    export = viewer_client.get(reverse("changes:export"), {"q": "a " * 1500})
    assert export.status_code == 400


@pytest.mark.parametrize("zone", ["Etc/GMT+12", "Pacific/Kiritimati"])
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("created_before", "9999-12-31"),
        ("created_after", "0001-01-01"),
        ("created_after", "\u0662\u0660\u0662\u0664-01-01"),
    ],
)
def test_change_filter_dates_out_of_range_are_form_errors(
    viewer_client, inventory, settings, zone, param, value
):
    """Was (TIME_ZONE west of UTC): the end of 9999-12-31 is past datetime.max in UTC, and
    SQLite's adapter raised OverflowError "date value out of range"."""
    settings.TIME_ZONE = zone
    response = viewer_client.get(reverse("changes:list"), {param: value})
    assert response.status_code == 200
    assert response.context["filter"].errors
    assert viewer_client.get(reverse("changes:export"), {param: value}).status_code == 400


# --- count fields take ASCII digits only (as the cpuset fields do) ------------------------------


@pytest.fixture
def op_client(client, operator_user):
    client.force_login(operator_user)
    return client


def change_url(vm, kind: str) -> str:
    return reverse("vms:change", args=[vm.host.name, vm.uuid, kind])


@pytest.mark.parametrize("three", UNICODE_THREES)
@pytest.mark.parametrize(("kind", "field"), [("hot-add", "count"), ("maximum", "maximum")])
def test_count_fields_refuse_unicode_digits(op_client, inventory, vm_factory, three, kind, field):
    """Was: forms.IntegerField took them (int("\u0663") == 3) and previewed a change of 3."""
    vm = vm_factory(inventory["hv01"], "small", vcpus=2, vcpu_max=4)
    data = {field: three, "scope": "config" if kind == "maximum" else "live+config", "reason": "r"}
    response = op_client.post(change_url(vm, kind), data)
    assert response.status_code == 200
    assert response.context["step"] == "form"
    assert "digits 0-9" in " ".join(response.context["form"].errors[field])
    # the same value in ASCII is taken
    ascii_data = {**data, field: "3"}
    assert op_client.post(change_url(vm, kind), ascii_data).context["step"] == "preview"


@pytest.mark.parametrize("three", UNICODE_THREES)
def test_hot_remove_count_refuses_unicode_digits(op_client, inventory, vm_factory, three):
    vm = vm_factory(inventory["hv01"], "wide", vcpus=4, vcpu_max=4)
    data = {"count": three, "scope": "live+config", "reason": "r"}
    response = op_client.post(change_url(vm, "hot-remove"), data)
    assert response.context["step"] == "form"
    assert response.context["form"].errors["count"]


POLICY = {
    "mode": "off",
    "min_improvement_pct": "5",
    "max_moves": "3",
    "strategy": "spread",
    "cpu_overcommit": "1",
    "emulator": "cell",
    "housekeeping": "",
    "reserved": "",
    "memory_reserve_mib": "0",
    "locality_threshold": "0.9",
    "reason": "bounds test",
}


@pytest.mark.parametrize(
    "field",
    ["min_improvement_pct", "max_moves", "cpu_overcommit", "memory_reserve_mib"],
)
@pytest.mark.parametrize("value", [*UNICODE_THREES, "1e309", "nan", "inf", BEYOND_64_BITS])
def test_policy_numbers_take_ascii_finite_numbers_only(inventory, field, value):
    """Was: FloatField and IntegerField took "\u0663" as 3 (float() and int() do)."""
    host = inventory["hv01"]
    assert PolicyForm(POLICY, instance=BalancingPolicy(host=host), host=host).is_valid()
    form = PolicyForm({**POLICY, field: value}, instance=BalancingPolicy(host=host), host=host)
    assert not form.is_valid()
    assert form.errors[field]


# --- the other lists: VMs, plans, paging, the pin helper's ?cell= ------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vms:list", {"host": "no-such-host"}),
        ("vms:list", {"state": "exploded"}),
        ("vms:list", {"name": "x" * 256}),
        ("balancing:list", {"status": "exploded"}),
    ],
)
def test_a_bad_list_filter_lists_nothing_and_says_why(viewer_client, inventory, name, params):
    """Was: the bad value ignored and every row listed, as if unfiltered."""
    response = viewer_client.get(reverse(name), params)
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 0
    assert response.context["filter"].errors
    assert 'id="filter-errors"' in response.content.decode()


@pytest.mark.parametrize("page", ["\u0663", "\uff13", "3.0", BEYOND_64_BITS, "-1", "\x00"])
def test_a_page_number_is_ascii_digits_or_the_first_page(viewer_client, inventory, page):
    for i in range(120):
        make_change(inventory["db01"], reason=f"change {i:03}")
    response = viewer_client.get(reverse("changes:list"), {"page": page})
    assert response.status_code == 200
    assert response.context["page"].number == 1
    assert viewer_client.get(reverse("changes:list"), {"page": "3"}).context["page"].number == 3


@pytest.mark.parametrize("cell", ["\u0661", BEYOND_64_BITS, "-0", "1.0"])
def test_the_pin_helper_cell_is_ascii_digits(op_client, inventory, cell):
    """``?fill=cell&cell=`` pins into that cell; int() took "\u0661" as cell 1."""
    vm = inventory["db01"]
    url = change_url(vm, "vcpupin")
    pinned = op_client.get(url, {"fill": "cell", "cell": "1"}).context["form"]
    assert pinned["vcpu_0"].value() == "6-11,18-23"
    response = op_client.get(url, {"fill": "cell", "cell": cell})
    assert response.status_code == 200
    assert response.context["form"]["vcpu_0"].value() != "6-11,18-23"
