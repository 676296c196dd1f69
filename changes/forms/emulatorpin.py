"""The emulator pinning form: one ``emulatorpin`` change."""

from __future__ import annotations

from changes.forms.base import (
    ChangeForm,
    CpusetField,
    Preview,
    cells_of,
    nodes_text,
    own_memory,
    predicted_locality,
)
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
        memory = own_memory(self.vm)
        # Where its memory is: its last sample, else its binding (numatune).
        memory_cells = frozenset(c for c, mib in memory.items() if mib > 0) or safe_nodeset(
            self.vm.memory_cells
        )
        if vcpu_cells and not cells <= vcpu_cells:
            lonely = cells - vcpu_cells - memory_cells
            if lonely and memory_cells:
                preview.warnings.append(
                    f"The emulator lands on cell(s) {nodes_text(lonely)}, where the VM has neither "
                    f"vCPUs (on {nodes_text(vcpu_cells)}) nor memory (on "
                    f"{nodes_text(memory_cells)}): the emulator's own accesses to guest memory "
                    "(device emulation, I/O) go remote."
                )
            else:
                preview.warnings.append(
                    f"The emulator lands on cell(s) {nodes_text(cells - vcpu_cells)}, where none "
                    f"of the VM's vCPUs run (they run on {nodes_text(vcpu_cells)})."
                )
        now, _ = predicted_locality(self.vm, vcpu_cells, now_memory=memory)
        preview.notes.append(
            "Predicted locality (memory where its vCPUs run, by distance): "
            + (f"{now:.2f} now -> {now:.2f}" if now is not None else "unknown now,")
            + " unchanged: its vCPUs, not the emulator threads, decide its home cells, and "
            "pinning the emulator moves no memory."
        )
        shared = self._shared_warning(parse_cpuset(after), "The emulator pin")
        if shared:
            preview.warnings.append(shared)
        preview.notes.append(self.scope_note())
        return preview
