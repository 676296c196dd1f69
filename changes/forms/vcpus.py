"""The vCPU count forms: CPU hot-add, the config maximum, CPU hot-remove (``setvcpus``, and a
``guest_vcpus`` offlining first when a hot-remove asks the guest agent)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from changes.forms.base import ChangeForm, Preview, scope_has
from changes.kinds.setvcpus import MAX_VCPUS, pinned_words, placement_groups
from changes.kinds.words import cpus_text, scope_words
from changes.models import Change
from numaportal.bounds import WholeNumberField
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.scope import Scope
from vms.models import VirtualMachine
from vms.numa import guest_online_commands

#: QEMU's refusal the hot-remove form explains before the operator runs into it.
UNPLUG_REFUSAL = "CPU hot unplug not supported without ACPI"


def _current_count_rows(
    vm: VirtualMachine, count: int, *, live: bool, config: bool
) -> list[tuple[str, str, str]]:
    """The "current config" and "current live" rows of a vCPU-count preview: before, after."""
    return [
        (
            "current config",
            str(vm.vcpu_current_config),
            str(count if config else vm.vcpu_current_config),
        ),
        (
            "current live",
            _dash(vm.vcpu_current_live),
            _dash(count if live and vm.is_running else vm.vcpu_current_live),
        ),
    ]


def _live_or_config_current(vm: VirtualMachine) -> int:
    return vm.vcpu_current_live if vm.is_running else vm.vcpu_current_config


def _maximum(vm: VirtualMachine) -> int:
    return vm.vcpu_max_live if vm.is_running and vm.vcpu_max_live else vm.vcpu_max_config


def _agent_field(label: str) -> forms.BooleanField:
    """Whether the worker asks the guest agent to online/offline the vCPUs (on by default)."""
    return forms.BooleanField(required=False, initial=True, label=label)


class _VcpusForm(ChangeForm):
    """The vCPU count forms: their "Now" box shows the counts."""

    now_template = "vms/_vcpucount.html"


class _CountForm(_VcpusForm):
    """Hot-add and hot-remove: the vCPU count after the change (``self.current`` now)."""

    count = WholeNumberField(label="vCPUs after the change", min_value=1, max_value=MAX_VCPUS)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = _live_or_config_current(self.vm)


class HotAddForm(_CountForm):
    slug = "hot-add"
    title = "CPU hot-add"
    explain_template = "changes/forms/_explain_hot_add.html"

    online_in_guest = _agent_field("Online the new CPUs in the guest (through the guest agent)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.maximum = _maximum(self.vm)
        self.fields["count"].initial = min(self.current + 1, self.maximum)
        self.fields["count"].help_text = (
            f"now {self.current}; at most {self.maximum} (the maximum can only be raised in "
            "the config and takes effect at the next boot)"
        )

    def clean_count(self) -> int:
        count = self.cleaned_data["count"]
        if count > self.maximum:
            raise ValidationError(
                f"{count} is more than the maximum of {self.maximum} vCPUs; the maximum can "
                "only be raised in the config (its own change) and takes effect at the next "
                "boot."
            )
        if count <= self.current:
            raise ValidationError(
                f"{self.vm.name} has {self.current} vCPUs already; to remove vCPUs use "
                "CPU hot-remove."
            )
        return count

    def changes(self):
        data = self.cleaned_data
        params: dict = {"count": data["count"]}
        if data.get("online_in_guest") and scope_has(data["scope"], Scope.LIVE):
            params["online_in_guest"] = True
        return [(Change.Kind.SETVCPUS, params, data["scope"])]

    def preview(self) -> Preview:
        data = self.cleaned_data
        preview = Preview(columns=("vcpucount", "before", "after"))
        vm = self.vm
        live = scope_has(data["scope"], Scope.LIVE)
        config = scope_has(data["scope"], Scope.CONFIG)
        preview.rows.append(("maximum config", str(vm.vcpu_max_config), str(vm.vcpu_max_config)))
        preview.rows.append(("maximum live", _dash(vm.vcpu_max_live), _dash(vm.vcpu_max_live)))
        preview.rows.extend(_current_count_rows(vm, data["count"], live=live, config=config))
        self._placement(preview, data["scope"])
        if live:
            first, last = self.current, data["count"] - 1
            preview.commands = guest_online_commands(range(first, last + 1))
            if data.get("online_in_guest"):
                preview.notes.append(
                    "The worker then onlines the new CPUs through the guest agent. When the "
                    "agent does not answer, run this inside the guest:"
                )
            else:
                preview.notes.append(
                    "The new vCPUs appear offline in the guest; online them inside the guest:"
                )
        preview.notes.append(self.scope_note())
        return preview

    def _placement(self, preview: Preview, scope: str) -> None:
        """Where validation placed the new vCPUs (the host's balancing policy): a row each, and
        what the worker does about it."""
        params = next((p for kind, p, _ in self.validated if kind == Change.Kind.SETVCPUS), {})
        for added, cpuset, why in placement_groups(params):
            where = pinned_words(cpuset, why) if cpuset else why
            preview.rows.extend((f"vCPU {vcpu}", "—", where) for vcpu in added)
            if cpuset:
                preview.notes.append(
                    f"{cpus_text(added)} {'are' if len(added) > 1 else 'is'} pinned to {where} "
                    f"{scope_words(scope)} right after the hot-add, in the same change, as the "
                    "host's balancing policy places it."
                )


def _dash(value) -> str:
    return "—" if value is None else str(value)


class MaximumForm(_VcpusForm):
    slug = "maximum"
    title = "Raise the vCPU maximum (config)"
    explain_template = "changes/forms/_explain_maximum.html"
    scopes = [(Scope.CONFIG.value, "config only (the maximum takes effect at the next boot)")]

    maximum = WholeNumberField(label="Maximum vCPUs", min_value=1, max_value=MAX_VCPUS)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["maximum"].initial = self.vm.vcpu_max_config + 1
        self.fields["maximum"].help_text = (
            f"config maximum now {self.vm.vcpu_max_config}; the running VM keeps its maximum "
            "until the next boot"
        )

    def clean_maximum(self) -> int:
        maximum = self.cleaned_data["maximum"]
        if maximum < self.vm.vcpu_current_config:
            raise ValidationError(
                f"The maximum cannot be below the {self.vm.vcpu_current_config} vCPUs the "
                "config starts with."
            )
        if maximum == self.vm.vcpu_max_config:
            raise ValidationError(f"The config maximum is {maximum} already.")
        return maximum

    def changes(self):
        return [
            (Change.Kind.SETVCPUS, {"maximum": self.cleaned_data["maximum"]}, Scope.CONFIG.value)
        ]

    def preview(self) -> Preview:
        preview = Preview(columns=("vcpucount", "before", "after"))
        preview.rows.append(
            ("maximum config", str(self.vm.vcpu_max_config), str(self.cleaned_data["maximum"]))
        )
        preview.rows.append(
            ("maximum live", _dash(self.vm.vcpu_max_live), _dash(self.vm.vcpu_max_live))
        )
        preview.notes.append(
            "The maximum lives in the persistent config only: it takes effect at the next boot."
        )
        return preview


class HotRemoveForm(_CountForm):
    slug = "hot-remove"
    title = "CPU hot-remove"
    explain_template = "changes/forms/_explain_hot_remove.html"

    offline_in_guest = _agent_field("First offline the CPUs in the guest (through the guest agent)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["count"].initial = max(self.current - 1, 1)
        self.fields["count"].help_text = f"now {self.current}"

    def clean_count(self) -> int:
        count = self.cleaned_data["count"]
        if count >= self.current:
            raise ValidationError(
                f"{self.vm.name} has {self.current} vCPUs; hot-remove needs fewer "
                "(to add vCPUs use CPU hot-add)."
            )
        return count

    def changes(self):
        data = self.cleaned_data
        records = []
        if data.get("offline_in_guest") and scope_has(data["scope"], Scope.LIVE):
            cpus = format_cpuset(range(data["count"], self.current))
            records.append(
                (Change.Kind.GUEST_VCPUS, {"cpus": cpus, "online": False}, Scope.LIVE.value)
            )
        records.append((Change.Kind.SETVCPUS, {"count": data["count"]}, data["scope"]))
        return records

    def preview(self) -> Preview:
        data = self.cleaned_data
        vm = self.vm
        live = scope_has(data["scope"], Scope.LIVE)
        config = scope_has(data["scope"], Scope.CONFIG)
        preview = Preview(columns=("vcpucount", "before", "after (if the hypervisor agrees)"))
        preview.rows.extend(_current_count_rows(vm, data["count"], live=live, config=config))
        if live:
            preview.warnings.append(
                "Unplugging a vCPU from a running VM needs the guest's cooperation (ACPI). "
                f'QEMU without ACPI refuses it ("{UNPLUG_REFUSAL}"); with ACPI the unplug '
                "request can time out, the guest no longer lists the CPU and the host may "
                "still count it. The change record's outcome shows what really happened."
            )
            preview.commands = guest_online_commands(range(data["count"], self.current), False)
            preview.notes.append(
                "Without the guest agent, offline the CPUs inside the guest first:"
            )
        preview.notes.append(self.scope_note())
        return preview
