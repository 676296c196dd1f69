"""``balancing_policy``: a host's balancing policy, saved by
:func:`balancing.policies.update_policy` (``balancing`` sits above ``changes``: it calls
:func:`changes.recording.record_portal_change`, never the other way round); a portal kind."""

from __future__ import annotations

from changes.kinds.base import PortalKind, Target
from changes.models import Change


class BalancingPolicy(PortalKind):
    name = Change.Kind.BALANCING_POLICY.value
    target = Target.HOST
    effect = (
        "saved in the portal; nothing changed on the host (the scheduler and the next plans "
        "of this host use it)"
    )


KIND = BalancingPolicy()
