"""The emulator pinning form: one ``emulatorpin`` change."""

from __future__ import annotations

from changes.forms.base import ChangeForm, CpusetField, Preview, cells_of, nodes_text
from changes.models import Change
from hosts.selectors import safe_cpuset, safe_nodeset
from numaportal.virt.cpuset import parse_cpuset


class EmulatorPinForm(ChangeForm):
    slug = "emulatorpin"
    title = "Emulator pinning"

    cpuset = CpusetField(label="Emulator cpuset", help_text="e.g. 18-23 (virsh emulatorpin)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cpuset"].known = self.topology.cpu_ids
        self.fields["cpuset"].initial = self._current()

    def _current(self) -> str:
        return (self.vm.emulatorpin if self.vm.is_running else self.vm.emulatorpin_config) or ""

    def changes(self):
        return [
            (
                Change.Kind.EMULATORPIN,
                {"cpuset": self.cleaned_data["cpuset"]},
                self.cleaned_data["scope"],
            )
        ]

    def preview(self) -> Preview:
        topo = self.topology
        before = self._current()
        after = self.cleaned_data["cpuset"]
        preview = Preview()
        preview.rows.append(
            (
                "emulator threads",
                before or "not pinned",
                after,
                nodes_text(cells_of(topo, safe_cpuset(before) or topo.cpu_ids)),
                nodes_text(cells_of(topo, parse_cpuset(after))),
            )
        )
        cells = cells_of(topo, parse_cpuset(after))
        if len(cells) > 1:
            preview.warnings.append(f"The emulator threads span cells {nodes_text(cells)}.")
        vcpu_cells = safe_nodeset(self.vm.cells)
        if vcpu_cells and not cells <= vcpu_cells:
            preview.warnings.append(
                f"The emulator lands on cell(s) {nodes_text(cells - vcpu_cells)}, where none of "
                f"the VM's vCPUs run (they run on {nodes_text(vcpu_cells)})."
            )
        shared = self._shared_warning(parse_cpuset(after), "The emulator pin")
        if shared:
            preview.warnings.append(shared)
        preview.notes.append(self.scope_note())
        return preview
