"""The "move memory to cell N" form: one ``memory_move`` change, live, with a preview of how
much of the VM's memory would move (from its last sample) and how."""

from __future__ import annotations

from changes.forms.base import (
    ChangeForm,
    NodesetField,
    Preview,
    locality_note,
    predicted_locality,
)
from changes.kinds.memory_move import METHODS, method_for, refusal
from changes.models import Change
from hosts.selectors import safe_nodeset
from numaportal.virt.cpuset import parse_nodeset
from numaportal.virt.scope import Scope
from vms import whatif
from vms.models import VmCellMemory

#: What each way of moving does, in the form's words.
METHOD_WORDS = {
    "numatune": "a live numatune (restrictive) through libvirt: the cgroup's memory nodes change "
    "and the kernel moves the pages; libvirt's XML says the new cells",
    "migratepages": "page migration of the VM's QEMU process by the host's own worker "
    "(migratepages): the VM has no binding, so nothing pulls the pages back",
}
assert set(METHOD_WORDS) == set(METHODS.values())


class MemoryMoveForm(ChangeForm):
    slug = "memory"
    title = "Move memory (to cell N)"
    now_template = "changes/forms/_now_memory.html"
    explain_template = "changes/forms/_explain_memory.html"
    scopes = [(Scope.LIVE.value, "live: the memory moves now")]

    cells = NodesetField(label="Move to cell(s)", help_text="e.g. 1, or 0-1")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cells"].known = frozenset(c.id for c in self.topology.cells)
        self.fields["cells"].initial = self.vm.cells

    @property
    def method(self) -> str | None:
        return method_for(self.vm.numatune_mode)

    @property
    def method_words(self) -> str:
        method = self.method
        return METHOD_WORDS[method] if method else refusal(self.vm.numatune_mode)

    def changes(self):
        data = self.cleaned_data
        return [(Change.Kind.MEMORY_MOVE, {"cells": data["cells"]}, Scope.LIVE.value)]

    def preview(self) -> Preview:
        cells = parse_nodeset(self.cleaned_data["cells"])
        rows = list(VmCellMemory.objects.filter(vm=self.vm).order_by("cell_id"))
        preview = Preview(columns=("cell", "now (MiB)", "after (MiB)"))
        total = sum(r.own_mib for r in rows)
        moving = sum(r.own_mib for r in rows if r.cell_id not in cells)
        own = {r.cell_id: r.own_mib for r in rows}
        for cell in sorted(set(own) | cells):
            if cell not in cells:
                after = "0.0"
            elif len(cells) == 1:
                after = f"{own.get(cell, 0.0) + moving:.1f}"
            else:  # the kernel spreads what moves over the cells asked
                after = f"{own.get(cell, 0.0):.1f} + part of {moving:.1f}"
            preview.rows.append((str(cell), f"{own.get(cell, 0.0):.1f}", after))
        if rows:
            preview.notes.append(
                f"About {moving:.1f} of {total:.1f} MiB would move to cell(s) "
                f"{self.cleaned_data['cells']} (last sample {rows[0].sampled_at:%Y-%m-%d %H:%M:%S} "
                "UTC; mapped files' page cache is not the VM's and is not counted)."
            )
        else:
            preview.warnings.append(
                "No memory per cell is known for this VM yet (no sample from its host's own "
                "worker): how much would move is unknown."
            )
        if rows:
            # After the move: all of it on the cells asked, its vCPUs where they are.
            note = locality_note(
                *predicted_locality(
                    self.vm,
                    safe_nodeset(self.vm.cells),
                    whatif.moved_to(own, cells),
                    now_memory=own,
                )
            )
            if note:
                preview.notes.append(note)
        preview.notes.append(f"How: {self.method_words}.")
        preview.notes.append(
            "Its numatune at the next boot is unchanged: a numatune change in config scope "
            "keeps the memory there after a reboot."
        )
        return preview
