"""What validating a change needs to know about its target, as last synced (no libvirt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numaportal.virt.scope import Scope

__all__ = ["HostFacts", "VmFacts"]


@dataclass(frozen=True)
class VmFacts:
    """A VM as its row says: running or not, its vCPU counts, gone, persistent."""

    name: str
    running: bool
    vcpu_max_config: int
    vcpu_current_config: int
    vcpu_max_live: int | None = None
    vcpu_current_live: int | None = None
    gone: bool = False
    persistent: bool = True
    #: Its numatune mode and nodeset as last synced ("" when it has none: the default local
    #: policy).
    numatune_mode: str = ""
    numatune_nodeset: str = ""
    #: Balancing's flag: it needs CPUs of its own (whole cores), no over-commit.
    dedicated: bool = False
    #: Its host's on-host worker queue ("" when it has none).
    host_worker_queue: str = ""
    host_name: str = ""

    @classmethod
    def from_vm(cls, vm: Any) -> VmFacts:
        return cls(
            name=vm.name,
            running=vm.vcpu_current_live is not None,
            vcpu_max_config=vm.vcpu_max_config,
            vcpu_current_config=vm.vcpu_current_config,
            vcpu_max_live=vm.vcpu_max_live,
            vcpu_current_live=vm.vcpu_current_live,
            gone=vm.gone_at is not None,
            persistent=vm.persistent,
            numatune_mode=vm.numatune_mode,
            numatune_nodeset=vm.numatune_nodeset,
            dedicated=vm.dedicated,
            host_worker_queue=vm.host.worker_queue,
            host_name=vm.host.name,
        )

    def maxima(self, scope: str) -> list[tuple[str, int]]:
        """(scope part, maximum vCPUs) for each part of *scope* the VM has."""
        out = []
        for part in Scope(scope).parts:
            if part is Scope.LIVE and self.vcpu_max_live is not None:
                out.append((part.value, self.vcpu_max_live))
            elif part is Scope.CONFIG:
                out.append((part.value, self.vcpu_max_config))
        return out


@dataclass(frozen=True)
class HostFacts:
    """A host as its row says: removed or not, its on-host worker queue (the attribute names
    are the model's, so a Host serves wherever HostFacts is read)."""

    name: str
    is_removed: bool
    worker_queue: str

    @classmethod
    def from_host(cls, host: Any) -> HostFacts:
        return cls(name=host.name, is_removed=host.is_removed, worker_queue=host.worker_queue)
