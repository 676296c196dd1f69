"""Libvirt domains a test created: removed afterwards, whatever state they are in."""

from __future__ import annotations

import contextlib

import libvirt


def remove_domain(dom: libvirt.virDomain) -> None:
    """Destroy (if running) and undefine; gone already is fine."""
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()
