"""The memory placement form: one ``numatune`` change (mode and nodeset)."""

from __future__ import annotations

from django import forms

from changes.forms.base import ChangeForm, NodesetField, Preview, scope_has
from changes.models import Change
from hosts.selectors import safe_nodeset
from numaportal.virt.cpuset import parse_nodeset
from numaportal.virt.numatune import NUMATUNE_MODES
from numaportal.virt.scope import Scope

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
        if (
            self.vm.is_running
            and scope_has(data["scope"], Scope.LIVE)
            and (data["mode"] == "strict" or self.vm.numatune_mode in ("", "strict"))
        ):
            preview.warnings.append(
                "libvirt refuses to change the nodeset of a running VM in strict mode "
                f'("{STRICT_LIVE_REFUSAL}"): the live part will fail with that message. '
                "Choose config scope to apply it at the next boot."
            )
        vcpu_cells = safe_nodeset(self.vm.cells)
        nodes = parse_nodeset(data["nodeset"])
        if vcpu_cells and nodes != vcpu_cells:
            preview.warnings.append(
                f"Memory on cell(s) {data['nodeset']} while the vCPUs run on {self.vm.cells}: "
                "remote memory (cross-node)."
            )
        preview.notes.append(self.scope_note())
        return preview
