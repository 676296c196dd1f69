"""The vCPU pinning form: one cpuset per vCPU; one ``vcpupin`` change per changed vCPU."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError

from changes.forms.base import (
    ChangeForm,
    CpusetField,
    Preview,
    cells_of,
    locality_note,
    nodes_text,
    predicted_locality,
    scope_has,
    stranded_memory_warning,
)
from changes.models import Change
from hosts.selectors import safe_cpuset
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.scope import Scope


class VcpuPinForm(ChangeForm):
    """One cpuset per vCPU (fields ``vcpu_0`` .. ``vcpu_<max-1>``); blank = leave as it is."""

    slug = "vcpupin"
    title = "vCPU pinning"
    fields_template = "changes/forms/_fields_vcpupin.html"

    def __init__(self, *args, initial_pins: Mapping[int, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = self._current_pins()
        initial_pins = initial_pins or {}
        host_cpus = self.topology.cpu_ids
        fields = {}
        for vcpu in range(self.vcpu_count):
            fields[f"vcpu_{vcpu}"] = CpusetField(
                host_cpus=host_cpus,
                required=False,
                label=f"vCPU {vcpu}",
                initial=initial_pins.get(vcpu, self.current.get(vcpu, "")),
                help_text=self._vcpu_help(vcpu),
            )
        self.fields = {**fields, **self.fields}

    @property
    def vcpu_count(self) -> int:
        return max(self.vm.vcpu_max_config, self.vm.vcpu_max_live or 0)

    def _current_pins(self) -> dict[int, str]:
        live = self.vm.is_running
        return {
            pin.vcpu: (pin.pin_live if live else pin.pin_config) or ""
            for pin in self.vm.vcpus.all()
        }

    def _vcpu_help(self, vcpu: int) -> str:
        pins = {p.vcpu: p for p in self.vm.vcpus.all()}
        pin = pins.get(vcpu)
        if pin is None:
            return "not pinned"
        parts = []
        if self.vm.is_running:
            parts.append(f"live {pin.pin_live or 'not pinned'}")
            if not pin.online:
                parts.append("offline")
        parts.append(f"config {pin.pin_config or 'not pinned'}")
        return ", ".join(parts)

    def vcpu_fields(self):
        return [self[f"vcpu_{v}"] for v in range(self.vcpu_count)]

    def _wanted(self) -> dict[int, str]:
        return {
            v: self.cleaned_data.get(f"vcpu_{v}") or ""
            for v in range(self.vcpu_count)
            if self.cleaned_data.get(f"vcpu_{v}")
        }

    def _changed(self) -> dict[int, str]:
        scope = self.cleaned_data.get("scope", Scope.BOTH)
        pins = {p.vcpu: p for p in self.vm.vcpus.all()}
        changed = {}
        for vcpu, cpuset in self._wanted().items():
            pin = pins.get(vcpu)
            before = []
            if scope_has(scope, Scope.LIVE):
                before.append(pin.pin_live if pin else "")
            if scope_has(scope, Scope.CONFIG):
                before.append(pin.pin_config if pin else "")
            if any(b != cpuset for b in before):
                changed[vcpu] = cpuset
        return changed

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not self._changed():
            raise ValidationError(
                "Nothing to change: every vCPU is already pinned like this in this scope."
            )
        return cleaned

    def changes(self):
        scope = self.cleaned_data["scope"]
        return [
            (Change.Kind.VCPUPIN, {"vcpu": vcpu, "cpuset": cpuset}, scope)
            for vcpu, cpuset in sorted(self._changed().items())
        ]

    def preview(self) -> Preview:
        preview = Preview(
            columns=("vCPU", "pinned before", "pinned after", "cells before", "cells after")
        )
        topo = self.topology
        changed = self._changed()
        after_cells: set[int] = set()
        online = {p.vcpu: p.online for p in self.vm.vcpus.all()}
        for vcpu in range(self.vcpu_count):
            before = self.current.get(vcpu, "")
            after = changed.get(vcpu, before)
            before_cells = cells_of(topo, safe_cpuset(before) or topo.cpu_ids)
            cells_after = cells_of(topo, safe_cpuset(after) or topo.cpu_ids)
            if online.get(vcpu, True):
                after_cells |= cells_after
            preview.rows.append(
                (
                    f"vCPU {vcpu}" + ("" if vcpu not in changed else " (changed)"),
                    before or "not pinned",
                    after or "not pinned",
                    nodes_text(before_cells),
                    nodes_text(cells_after),
                )
            )
        if len(after_cells) > 1:
            preview.warnings.append(
                f"The vCPUs land on different cells ({nodes_text(after_cells)}): memory accesses "
                "of some vCPUs will be remote."
            )
        if self.vm.is_running and scope_has(self.cleaned_data["scope"], Scope.LIVE):
            stranded = stranded_memory_warning(self.vm, after_cells)
            if stranded:
                preview.warnings.append(stranded)
            note = locality_note(*predicted_locality(self.vm, after_cells))
            if note:
                preview.notes.append(note)
        new_cpus = frozenset(c for cpuset in changed.values() for c in parse_cpuset(cpuset))
        shared = self._shared_warning(new_cpus, "The pin")
        if shared:
            preview.warnings.append(shared)
        counts: dict[str, int] = {}
        for cpuset in {**self.current, **changed}.values():
            if cpuset and len(parse_cpuset(cpuset)) == 1:
                counts[cpuset] = counts.get(cpuset, 0) + 1
        doubled = sorted(c for c, n in counts.items() if n > 1)
        if doubled:
            preview.warnings.append(
                "Several vCPUs of this VM are pinned to the same CPU: " + ", ".join(doubled)
            )
        preview.notes.append(
            f"{len(changed)} change record(s), one per changed vCPU, sharing one group id."
        )
        preview.notes.append(self.scope_note())
        return preview
