"""``vm_flags``: a VM's flags for the balancing planner (``VirtualMachine.balancing_locked``,
``dedicated``), saved by :func:`changes.requests.set_vm_flags`; a portal kind (nothing on the
host changes until a plan or a hot-add uses them)."""

from __future__ import annotations

from changes.kinds.base import PortalKind, Target
from changes.models import Change

#: The flags, in the order the record keeps them.
FIELDS = ("balancing_locked", "dedicated")


class VmFlags(PortalKind):
    name = Change.Kind.VM_FLAGS.value
    target = Target.VM
    effect = (
        "saved in the portal; nothing changed on the host (the balancing planner and hot-adds "
        "read the flags from now on)"
    )


KIND = VmFlags()
