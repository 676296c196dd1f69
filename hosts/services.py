"""Service functions for hosts: views and tasks stay thin and call these."""

from __future__ import annotations

from django.conf import settings

from numaportal.virt import connection as virt_connection
from numaportal.virt import operations


def describe_host(uri: str) -> dict[str, str]:
    """What `virsh version`, `virsh nodeinfo` and `virsh list --all` say about one host."""
    with virt_connection.connect(
        uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
    ) as conn:
        info = virt_connection.host_info(conn)
        domains = operations.list_domains(conn)
    version = virt_connection.format_version
    running = sum(1 for d in domains if d.active)
    return {
        "URI": uri,
        "Host": info.hostname,
        "Hypervisor": f"{info.hypervisor_type} {version(info.hypervisor_version)}",
        "libvirt": version(info.libvirt_version),
        "Host CPUs": str(info.cpu_count),
        "NUMA cells": str(len(info.cells_free_memory_kib)),
        "Lab VMs": ", ".join(d.name for d in domains if d.name.startswith("numalab-")) or "none",
        "Domains": f"{len(domains)} ({running} running)",
    }
