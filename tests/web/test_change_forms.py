"""The change forms of the VM page: field errors, preview (before -> after), confirm.

Confirm calls ``changes.requests.request_change``; the on-commit enqueue is captured and not run
(``django_capture_on_commit_callbacks(execute=False)``), so the records stay ``queued`` and no
worker touches anything. The pin helpers are tested in ``test_pin_helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from changes import forms
from changes.kinds.hotadd import FLOATS
from changes.models import Change
from numaportal.virt.cpuset import CpusetError, parse_cpuset

pytestmark = [pytest.mark.web, pytest.mark.django_db]

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"
REASON = "seed step 5: keep vCPUs on node 1"


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def op_client(client, operator_user):
    client.force_login(operator_user)
    return client


@pytest.fixture
def seed_vm(host_factory, vm_factory):
    """The seed's host (24 CPUs, node 1 = 6-11,18-23) with a running 2-of-4 vCPU VM, unpinned,
    and a neighbour VM pinned to CPU 22."""
    host = host_factory("ibm3650")
    vm_factory(host, "neighbour", pins={0: "22", 1: "23"})
    return vm_factory(host, "db01", vcpus=2, vcpu_max=4)


def url(vm, kind: str) -> str:
    return reverse("vms:change", args=[vm.host.name, vm.uuid, kind])


def errors_of(response, field: str) -> list[str]:
    return list(response.context["form"].errors.get(field, []))


# --- vCPU pinning ---------------------------------------------------------------------------------


def test_vcpupin_form_shows_every_vcpu_and_the_helpers(op_client, seed_vm):
    response = op_client.get(url(seed_vm, "vcpupin"))
    assert response.status_code == 200
    page = response.content.decode()
    for vcpu in range(4):
        assert f'name="vcpu_{vcpu}"' in page
    assert 'data-helper="cell-1"' in page and 'data-helper="cores"' in page
    assert 'value="live+config"' in page and "checked" in page  # default scope
    assert response.context["form"]["scope"].value() == "live+config"

    filled = op_client.get(url(seed_vm, "vcpupin"), {"fill": "cell", "cell": 1})
    form = filled.context["form"]
    assert [form[f"vcpu_{v}"].value() for v in range(4)] == ["6-11,18-23"] * 4
    cores = op_client.get(url(seed_vm, "vcpupin"), {"fill": "cores", "cell": 1})
    assert [cores.context["form"][f"vcpu_{v}"].value() for v in range(4)] == [
        "6",
        "7",
        "8",
        "9",
    ]
    # nonsense helper input is ignored, not an error
    assert op_client.get(url(seed_vm, "vcpupin"), {"fill": "cell", "cell": "x"}).status_code == 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "is not a decimal CPU id"),
        ("24", "CPU 24 is not on this host"),
        ("3-1", "start is greater than end"),
        ("0,,1", "empty element"),
        ("^3", "only exclusions"),
        ("99999", "larger than the maximum"),
    ],
)
def test_vcpupin_field_errors(op_client, seed_vm, value, message):
    response = op_client.post(
        url(seed_vm, "vcpupin"),
        {"vcpu_0": value, "scope": "live+config", "reason": REASON, "preview": "1"},
    )
    assert response.status_code == 200
    assert response.context["step"] == "form"
    assert any(message in e for e in errors_of(response, "vcpu_0")), errors_of(response, "vcpu_0")
    assert message in response.content.decode() or "&" in message


def test_reason_is_required_and_nothing_to_change_is_said(op_client, seed_vm):
    response = op_client.post(
        url(seed_vm, "vcpupin"), {"vcpu_0": "22", "scope": "live", "reason": "  ", "preview": "1"}
    )
    assert errors_of(response, "reason")
    response = op_client.post(
        url(seed_vm, "vcpupin"), {"scope": "live", "reason": REASON, "preview": "1"}
    )
    assert "Nothing to change" in " ".join(response.context["form"].non_field_errors())


def test_live_scope_on_a_shut_off_vm_is_refused(op_client, host_factory, vm_factory):
    host = host_factory("hv")
    vm = vm_factory(host, "off", running=False)
    response = op_client.post(
        url(vm, "vcpupin"), {"vcpu_0": "1", "scope": "live", "reason": REASON, "preview": "1"}
    )
    assert any("not running" in e for e in errors_of(response, "scope"))
    ok = op_client.post(
        url(vm, "vcpupin"), {"vcpu_0": "1", "scope": "config", "reason": REASON, "preview": "1"}
    )
    assert ok.context["step"] == "preview"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.text(alphabet="0123456789,-^ ", max_size=20),
        st.from_regex(r"[0-9]{1,3}(-[0-9]{1,3})?(,\^?[0-9]{1,3})*", fullmatch=True),
    )
)
def test_any_cpuset_text_parses_to_host_cpus_or_is_a_field_error(op_client, seed_vm, text):
    """Hypothesis over the cpuset field: never a 500; accepted only when the CPUs exist."""
    response = op_client.post(
        url(seed_vm, "vcpupin"),
        {"vcpu_0": text, "scope": "live+config", "reason": REASON, "preview": "1"},
    )
    assert response.status_code == 200
    form = response.context["form"]
    try:
        cpus = parse_cpuset(text.strip()) if text.strip() else None
    except CpusetError:
        cpus = False
    if cpus is False or (cpus and not cpus <= set(range(24))):
        assert form.errors.get("vcpu_0"), text
        assert response.context["step"] == "form"
    elif cpus:
        assert "vcpu_0" not in form.errors
        assert response.context["step"] == "preview"
        assert set(parse_cpuset(form.cleaned_data["vcpu_0"])) == cpus
    assert Change.objects.count() == 0


def test_vcpupin_preview_shows_before_after_cells_and_warnings(op_client, seed_vm):
    response = op_client.post(
        url(seed_vm, "vcpupin"),
        {"vcpu_0": "22", "vcpu_1": "0", "scope": "live+config", "reason": REASON, "preview": "1"},
    )
    assert response.context["step"] == "preview"
    preview = response.context["preview"]
    rows = {row[0]: row for row in preview.rows}
    assert rows["vCPU 0 (changed)"][1:] == ("not pinned", "22", "0-1", "1")
    assert rows["vCPU 1 (changed)"][1:] == ("not pinned", "0", "0-1", "0")
    assert rows["vCPU 2"][2] == "not pinned"
    warnings = " ".join(preview.warnings)
    assert "different cells (0-1)" in warnings
    assert "22 (neighbour)" in warnings  # the other VM's pin
    page = response.content.decode()
    assert 'id="change-preview"' in page and 'id="confirm"' in page
    assert 'type="hidden" name="vcpu_0" value="22"' in page
    assert Change.objects.count() == 0  # a preview queues nothing


def test_vcpupin_confirm_creates_one_queued_change_per_changed_vcpu(
    op_client, seed_vm, operator_user, django_capture_on_commit_callbacks
):
    data = {
        "vcpu_0": "22",
        "vcpu_1": "23",
        "vcpu_2": "",
        "scope": "live+config",
        "reason": REASON,
        "confirm": "1",
    }
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = op_client.post(url(seed_vm, "vcpupin"), data)
    assert response.status_code == 302
    changes = list(Change.objects.order_by("params__vcpu"))
    assert [(c.kind, c.params, c.scope) for c in changes] == [
        ("vcpupin", {"vcpu": 0, "cpuset": "22"}, "live+config"),
        ("vcpupin", {"vcpu": 1, "cpuset": "23"}, "live+config"),
    ]
    assert {c.status for c in changes} == {"queued"}
    assert {c.reason for c in changes} == {REASON}
    assert {c.actor_id for c in changes} == {operator_user.pk}
    assert {c.actor_name for c in changes} == {"op"}
    assert {c.vm_id for c in changes} == {seed_vm.pk}
    assert len({c.group_id for c in changes}) == 1
    assert response["Location"] == reverse("changes:list") + f"?group={changes[0].group_id}"
    assert len(callbacks) == 2  # one enqueue per record, not run here


def test_single_change_redirects_to_its_page(
    op_client, seed_vm, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = op_client.post(
            url(seed_vm, "vcpupin"),
            {"vcpu_1": "7", "scope": "live", "reason": REASON, "confirm": "1"},
        )
    change = Change.objects.get()
    assert response["Location"] == change.get_absolute_url()
    assert (change.params, change.scope) == ({"vcpu": 1, "cpuset": "7"}, "live")


def test_back_to_the_form_keeps_the_input(op_client, seed_vm):
    response = op_client.post(
        url(seed_vm, "vcpupin"),
        {"vcpu_0": "6", "scope": "config", "reason": REASON, "edit": "1"},
    )
    assert response.context["step"] == "form"
    assert response.context["form"]["vcpu_0"].value() == "6"
    assert Change.objects.count() == 0


# --- emulator pinning -----------------------------------------------------------------------------


def test_emulatorpin_errors_preview_and_confirm(
    op_client, seed_vm, django_capture_on_commit_callbacks
):
    bad = op_client.post(
        url(seed_vm, "emulatorpin"),
        {"cpuset": "18-30", "scope": "live", "reason": REASON, "preview": "1"},
    )
    assert any("CPU 24-30 is not on this host" in e for e in errors_of(bad, "cpuset"))
    empty = op_client.post(
        url(seed_vm, "emulatorpin"), {"cpuset": "", "scope": "live", "reason": REASON}
    )
    assert errors_of(empty, "cpuset")

    preview = op_client.post(
        url(seed_vm, "emulatorpin"),
        {"cpuset": "18-23", "scope": "live", "reason": REASON, "preview": "1"},
    )
    assert preview.context["step"] == "preview"
    row = preview.context["preview"].rows[0]
    assert row[1:] == ("not pinned", "18-23", "0-1", "1")
    assert "22 (neighbour)" in " ".join(preview.context["preview"].warnings)

    with django_capture_on_commit_callbacks(execute=False):
        op_client.post(
            url(seed_vm, "emulatorpin"),
            {"cpuset": "18-23", "scope": "live", "reason": REASON, "confirm": "1"},
        )
    change = Change.objects.get()
    assert (change.kind, change.params, change.scope) == (
        "emulatorpin",
        {"cpuset": "18-23"},
        "live",
    )


# --- memory placement -----------------------------------------------------------------------------


def test_numatune_explains_the_strict_live_refusal_and_offers_config(
    op_client, seed_vm, django_capture_on_commit_callbacks
):
    page = op_client.get(url(seed_vm, "numatune")).content.decode()
    assert "can&#x27;t change nodeset for strict mode for running domain" in page
    bad = op_client.post(
        url(seed_vm, "numatune"),
        {"mode": "strict", "nodeset": "2", "scope": "config", "reason": REASON, "preview": "1"},
    )
    assert any("cell 2 is not on this host" in e for e in errors_of(bad, "nodeset"))
    bad_mode = op_client.post(
        url(seed_vm, "numatune"),
        {"mode": "bogus", "nodeset": "1", "scope": "config", "reason": REASON, "preview": "1"},
    )
    assert errors_of(bad_mode, "mode")

    live = op_client.post(
        url(seed_vm, "numatune"),
        {
            "mode": "strict",
            "nodeset": "1",
            "scope": "live+config",
            "reason": REASON,
            "preview": "1",
        },
    )
    warnings = " ".join(live.context["preview"].warnings)
    assert "can't change nodeset for strict mode for running domain" in warnings
    assert "Choose config scope" in warnings

    config = op_client.post(
        url(seed_vm, "numatune"),
        {"mode": "strict", "nodeset": "1", "scope": "config", "reason": REASON, "preview": "1"},
    )
    assert "strict mode" not in " ".join(config.context["preview"].warnings)
    with django_capture_on_commit_callbacks(execute=False):
        op_client.post(
            url(seed_vm, "numatune"),
            {"mode": "strict", "nodeset": "1", "scope": "config", "reason": REASON, "confirm": "1"},
        )
    change = Change.objects.get()
    assert (change.kind, change.params, change.scope) == (
        "numatune",
        {"mode": "strict", "nodeset": "1"},
        "config",
    )


# --- vCPU count -----------------------------------------------------------------------------------


def test_hot_add_shows_the_matrix_limits_to_the_maximum_and_the_guest_command(
    op_client, seed_vm, django_capture_on_commit_callbacks
):
    page = op_client.get(url(seed_vm, "hot-add")).content.decode()
    assert 'class="grid vcpucount"' in page
    assert "takes effect at the next boot" in page
    too_many = op_client.post(
        url(seed_vm, "hot-add"),
        {"count": "5", "scope": "live", "reason": REASON, "preview": "1"},
    )
    assert any("more than the maximum of 4" in e for e in errors_of(too_many, "count"))
    same = op_client.post(
        url(seed_vm, "hot-add"), {"count": "2", "scope": "live", "reason": REASON, "preview": "1"}
    )
    assert any("has 2 vCPUs already" in e for e in errors_of(same, "count"))
    junk = op_client.post(
        url(seed_vm, "hot-add"), {"count": "x", "scope": "live", "reason": REASON, "preview": "1"}
    )
    assert errors_of(junk, "count")

    preview = op_client.post(
        url(seed_vm, "hot-add"),
        {
            "count": "3",
            "online_in_guest": "on",
            "scope": "live",
            "reason": REASON,
            "preview": "1",
        },
    )
    assert preview.context["step"] == "preview"
    rows = {row[0]: row for row in preview.context["preview"].rows}
    assert rows["current live"][1:] == ("2", "3")
    assert rows["current config"][1:] == ("2", "2")
    assert preview.context["preview"].commands == ["echo 1 > /sys/devices/system/cpu/cpu2/online"]
    assert "echo 1 &gt; /sys/devices/system/cpu/cpu2/online" in preview.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        op_client.post(
            url(seed_vm, "hot-add"),
            {
                "count": "3",
                "online_in_guest": "True",
                "scope": "live",
                "reason": REASON,
                "confirm": "1",
            },
        )
    change = Change.objects.get()
    # db01 is neither pinned nor bound to cells: its new vCPU floats, and the record says so
    assert (change.kind, change.params, change.scope) == (
        "setvcpus",
        {"count": 3, "online_in_guest": True, "placement": {"2": FLOATS}},
        "live",
    )


def test_raise_the_maximum_is_its_own_config_change(
    op_client, seed_vm, django_capture_on_commit_callbacks
):
    form_page = op_client.get(url(seed_vm, "maximum"))
    assert [c for c, _ in form_page.context["form"].fields["scope"].choices] == ["config"]
    live = op_client.post(
        url(seed_vm, "maximum"), {"maximum": "8", "scope": "live", "reason": REASON}
    )
    assert errors_of(live, "scope")
    low = op_client.post(
        url(seed_vm, "maximum"),
        {"maximum": "1", "scope": "config", "reason": REASON, "preview": "1"},
    )
    assert any("below the 2 vCPUs" in e for e in errors_of(low, "maximum"))
    with django_capture_on_commit_callbacks(execute=False):
        op_client.post(
            url(seed_vm, "maximum"),
            {"maximum": "8", "scope": "config", "reason": REASON, "confirm": "1"},
        )
    change = Change.objects.get()
    assert (change.kind, change.params, change.scope) == ("setvcpus", {"maximum": 8}, "config")


def test_hot_remove_explains_and_offlines_in_the_guest_first(
    op_client, host_factory, vm_factory, django_capture_on_commit_callbacks
):
    host = host_factory("hv")
    vm = vm_factory(host, "big", vcpus=3, vcpu_max=4)
    page = op_client.get(url(vm, "hot-remove")).content.decode()
    assert "CPU hot unplug not supported without ACPI" in page
    assert "outcome says what really happened" in page
    more = op_client.post(
        url(vm, "hot-remove"), {"count": "3", "scope": "live", "reason": REASON, "preview": "1"}
    )
    assert any("needs fewer" in e for e in errors_of(more, "count"))
    preview = op_client.post(
        url(vm, "hot-remove"),
        {"count": "2", "offline_in_guest": "on", "scope": "live", "reason": REASON, "preview": "1"},
    )
    assert "CPU hot unplug not supported without ACPI" in " ".join(
        preview.context["preview"].warnings
    )
    assert preview.context["preview"].commands == ["echo 0 > /sys/devices/system/cpu/cpu2/online"]
    with django_capture_on_commit_callbacks(execute=False):
        response = op_client.post(
            url(vm, "hot-remove"),
            {
                "count": "2",
                "offline_in_guest": "True",
                "scope": "live",
                "reason": REASON,
                "confirm": "1",
            },
        )
    assert response.status_code == 302
    changes = sorted(Change.objects.all(), key=lambda c: c.kind)
    assert [(c.kind, c.params, c.scope) for c in changes] == [
        ("guest_vcpus", {"cpus": "2", "online": False}, "live"),
        ("setvcpus", {"count": 2}, "live"),
    ]
    assert len({c.group_id for c in changes}) == 1


def test_unknown_form_and_gone_vm_are_404(op_client, seed_vm, host_factory, vm_factory):
    assert op_client.get(url(seed_vm, "reboot")).status_code == 404
    gone = vm_factory(seed_vm.host, "gone", gone_at="2024-01-01T00:00:00Z")
    assert op_client.get(url(gone, "vcpupin")).status_code == 404


def test_vm_page_offers_the_forms_to_operators_only(op_client, seed_vm, client, viewer):
    page = op_client.get(seed_vm.get_absolute_url()).content.decode()
    assert 'id="change-actions"' in page
    for slug in forms.FORMS:
        assert url(seed_vm, slug) in page
    client.force_login(viewer)
    page = client.get(seed_vm.get_absolute_url()).content.decode()
    assert 'id="change-actions"' not in page
    assert "/change/" not in page
