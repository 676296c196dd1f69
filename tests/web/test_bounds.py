"""Issue 14, item 2: the values that were a 500 (or were taken though the field next to them
refuses them), one test each. The fields themselves are tested in
``tests/unit/test_bounds.py``.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from balancing.forms import PolicyForm
from balancing.models import BalancingPolicy

pytestmark = [pytest.mark.web, pytest.mark.django_db]

BEYOND_64_BITS = str(2**63)  # 9223372036854775808: SQLite raised OverflowError
#: Digits ``int()`` and ``float()`` take but the cpuset fields refuse: Arabic-Indic and
#: fullwidth three.
UNICODE_THREES = ("\u0663", "\uff13")


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
