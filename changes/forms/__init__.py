"""The change forms of the VM page, one module per form family, and :data:`FORMS`: the form of
each URL slug (``/vms/<host>/<uuid>/change/<slug>/``), in the order the page lists them."""

from __future__ import annotations

from changes.forms.base import (
    SCOPES,
    ChangeForm,
    CpusetField,
    NodesetField,
    Preview,
    cells_of,
    one_vcpu_per_core,
    pin_all_into_cell,
)
from changes.forms.emulatorpin import EmulatorPinForm
from changes.forms.memory import MemoryMoveForm
from changes.forms.numatune import STRICT_LIVE_REFUSAL, NumatuneForm
from changes.forms.vcpupin import VcpuPinForm
from changes.forms.vcpus import UNPLUG_REFUSAL, HotAddForm, HotRemoveForm, MaximumForm

__all__ = [
    "FORMS",
    "SCOPES",
    "STRICT_LIVE_REFUSAL",
    "UNPLUG_REFUSAL",
    "ChangeForm",
    "CpusetField",
    "EmulatorPinForm",
    "HotAddForm",
    "HotRemoveForm",
    "MaximumForm",
    "MemoryMoveForm",
    "NodesetField",
    "NumatuneForm",
    "Preview",
    "VcpuPinForm",
    "cells_of",
    "one_vcpu_per_core",
    "pin_all_into_cell",
]

FORMS: dict[str, type[ChangeForm]] = {
    form.slug: form
    for form in (
        VcpuPinForm,
        EmulatorPinForm,
        NumatuneForm,
        MemoryMoveForm,
        HotAddForm,
        MaximumForm,
        HotRemoveForm,
    )
}
