"""Where a tuning change applies: the running domain, its persistent config, or both."""

from __future__ import annotations

import enum

import libvirt

from numaportal.virt.errors import InvalidRequest

__all__ = ["Scope"]


class Scope(enum.StrEnum):
    """Where a change applies: the running domain, its persistent config, or both.

    The seed's warning is why this matters: a live-only pin is lost at the next shutdown; only
    the config (``<cputune>``) survives. BOTH is therefore the default everywhere.
    """

    LIVE = "live"
    CONFIG = "config"
    BOTH = "live+config"

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        """``"live"``, ``"config"`` or ``"live+config"`` (case-insensitive) as a Scope."""
        if isinstance(value, Scope):
            return value
        if isinstance(value, str):
            normalised = value.strip().lower()
            for scope in cls:
                if scope.value == normalised:
                    return scope
        choices = ", ".join(repr(s.value) for s in cls)
        raise InvalidRequest(f"unknown scope {value!r}: expected one of {choices}")

    @property
    def flags(self) -> int:
        """The ``VIR_DOMAIN_AFFECT_*`` flags of this scope."""
        return {
            Scope.LIVE: libvirt.VIR_DOMAIN_AFFECT_LIVE,
            Scope.CONFIG: libvirt.VIR_DOMAIN_AFFECT_CONFIG,
            Scope.BOTH: libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        }[self]

    @property
    def parts(self) -> tuple[Scope, ...]:
        """The single scopes this one covers, live first (the order changes are applied in)."""
        return (Scope.LIVE, Scope.CONFIG) if self is Scope.BOTH else (self,)
