"""Forms of the hosts pages."""

from __future__ import annotations

from django import forms

from hosts.models import Host

RESERVED_NAMES = frozenset({"add"})


class HostRegisterForm(forms.ModelForm):
    """Register a hypervisor by libvirt URI.

    Field validation (slug name, unique name) is the model's; whether the URI is acceptable
    is decided by ``hosts.services.validate_registration`` (the view puts its refusal on the
    ``uri`` field), whether the host answers by the connection test a worker runs afterwards.
    """

    class Meta:
        model = Host
        fields = ["name", "uri", "enabled", "worker_queue"]
        widgets = {
            "uri": forms.TextInput(
                attrs={"placeholder": "qemu+ssh://root@hv01.example.net/system", "size": 60}
            ),
            "worker_queue": forms.TextInput(attrs={"placeholder": "host.hv01"}),
        }

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        # /hosts/add/ is the form itself; a host of that name would have no page.
        if name in RESERVED_NAMES:
            raise forms.ValidationError(f"{name!r} is reserved by the portal; choose another.")
        return name


class CellChoiceForm(forms.Form):
    """Which cell the distance matrix labels local / neighbour / remote from."""

    cell = forms.TypedChoiceField(coerce=int, required=False, label="Distances from cell")

    def __init__(self, *args, cell_ids: list[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cell"].choices = [(c, f"cell {c}") for c in cell_ids]

    def chosen(self, default: int | None) -> int | None:
        if self.is_valid() and self.cleaned_data["cell"] not in (None, ""):
            return self.cleaned_data["cell"]
        return default
