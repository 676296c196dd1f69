"""The memory placement form: one ``numatune`` change (mode and nodeset)."""

from __future__ import annotations

from django import forms

from changes.forms.base import (
    ChangeForm,
    NodesetField,
    Preview,
    locality_note,
    own_memory,
    predicted_locality,
    scope_has,
)
from changes.models import Change
from hosts.selectors import safe_nodeset
from numaportal.virt.cpuset import parse_nodeset
from numaportal.virt.numatune import NUMATUNE_MODES
from numaportal.virt.scope import Scope
from vms import whatif

#: What each of libvirt's modes means, in the form's words.
MODE_WORDS = {
    "strict": "only these cells; allocation fails rather than going elsewhere",
    "preferred": "these cells first, others when they are full",
    "interleave": "round-robin over these cells",
    "restrictive": "like strict, enforced by cgroups only",
}
#: libvirt's modes, in its order (KeyError at import when a mode has no words).
MODE_CHOICES = [(mode, f"{mode} — {MODE_WORDS[mode]}") for mode in NUMATUNE_MODES]

#: libvirt's refusal the form explains before the operator runs into it.
STRICT_LIVE_REFUSAL = "can't change nodeset for strict mode for running domain"


class NumatuneForm(ChangeForm):
    slug = "numatune"
    title = "Memory placement (numatune)"
    now_template = "changes/forms/_now_numatune.html"
    explain_template = "changes/forms/_explain_numatune.html"

    mode = forms.ChoiceField(choices=MODE_CHOICES, widget=forms.RadioSelect)
    nodeset = NodesetField(label="Nodeset (cells)", help_text="e.g. 1 or 0-1")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["nodeset"].known = frozenset(c.id for c in self.topology.cells)
        self.fields["mode"].initial = self.vm.numatune_mode or "strict"
        self.fields["nodeset"].initial = self.vm.numatune_nodeset

    @property
    def refuses_live_strict(self) -> bool:
        return self.vm.is_running

    def changes(self):
        data = self.cleaned_data
        params = {"mode": data["mode"], "nodeset": data["nodeset"]}
        return [(Change.Kind.NUMATUNE, params, data["scope"])]

    def preview(self) -> Preview:
        data = self.cleaned_data
        before = f"{self.vm.numatune_mode or '(none)'} {self.vm.numatune_nodeset or ''}".strip()
        preview = Preview(columns=("what", "before", "after", "cells before", "cells after"))
        preview.rows.append(
            (
                "memory",
                before,
                f"{data['mode']} {data['nodeset']}",
                self.vm.memory_cells or "—",
                data["nodeset"],
            )
        )
        live = self.vm.is_running and scope_has(data["scope"], Scope.LIVE)
        refused = live and (data["mode"] == "strict" or self.vm.numatune_mode in ("", "strict"))
        if refused:
            preview.warnings.append(
                "libvirt refuses to change the nodeset of a running VM in strict mode "
                f'("{STRICT_LIVE_REFUSAL}"): the live part will fail with that message. '
                "Choose config scope to apply it at the next boot."
            )
        vcpu_cells = safe_nodeset(self.vm.cells)
        nodes = parse_nodeset(data["nodeset"])
        after, when = self._locality(preview, vcpu_cells, nodes, live=live, refused=refused)
        if vcpu_cells and not nodes <= vcpu_cells:
            figure = f"locality {after:.2f} {when}" if after is not None else "remote memory"
            preview.warnings.append(
                f"Memory bound to cell(s) {data['nodeset']} while the vCPUs run on cell(s) "
                f"{self.vm.cells}: {figure}."
            )
        elif vcpu_cells and nodes != vcpu_cells:
            preview.warnings.append(
                f"Memory on cell(s) {data['nodeset']} while the vCPUs run on {self.vm.cells}: "
                "remote memory (cross-node)."
            )
        preview.notes.append(self.scope_note())
        return preview

    def _locality(
        self,
        preview: Preview,
        home: frozenset[int],
        nodes: frozenset[int],
        *,
        live: bool,
        refused: bool,
    ) -> tuple[float | None, str]:
        """The what-if note (its vCPUs stay where they are); returns the locality the new
        binding gives and when ("after": moved live now; "after next boot")."""
        if not home:
            return None, ""
        vm, data = self.vm, self.cleaned_data
        own = own_memory(vm)
        now, boot = predicted_locality(vm, home, whatif.placed_on(nodes), now_memory=own)
        head = "Predicted locality (memory where its vCPUs run, by distance): "
        at_boot = (
            f"after next boot {boot:.2f} (memory placed on cell(s) {data['nodeset']}, "
            f"vCPUs on cell(s) {vm.cells} as now)"
        )
        now_text = f"now {now:.2f}" if now is not None else "now unknown"
        if not vm.is_running:
            preview.notes.append(head + at_boot)
            return boot, "after next boot"
        if refused:
            preview.notes.append(
                f"{head}{now_text}, and unchanged: libvirt refuses the live part, so nothing "
                f"changes; in config scope: {at_boot}."
            )
            return boot, "after next boot"
        if live and data["mode"] == "restrictive" and vm.numatune_mode == "restrictive":
            # A restrictive numatune changes the cgroup's memory nodes: the kernel moves the pages.
            moved = whatif.moved_to(own, nodes) if own else whatif.placed_on(nodes)
            _, after = predicted_locality(vm, home, moved, now_memory=own)
            note = locality_note(now, after)
            preview.notes.append(
                f"{note} after: its memory moves to cell(s) {data['nodeset']} live, its vCPUs "
                f"stay on cell(s) {vm.cells}."
            )
            return after, "after"
        if live:
            config = scope_has(data["scope"], Scope.CONFIG)
            preview.notes.append(
                f"{head}{now_text}; live: not predicted (only a restrictive numatune, kept "
                "restrictive, is known to move a running VM's memory)"
                + (f"; {at_boot}." if config else ".")
            )
            return (boot, "after next boot") if config else (None, "")
        preview.notes.append(f"{head}{now_text}; {at_boot}.")
        return boot, "after next boot"
