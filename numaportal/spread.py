"""Spreading a periodic sweep's per-host tasks over its interval (pure: no Django, no Celery).

A beat sweep queues one task per host. Queued all at once, 500 hosts mean 500 libvirt
connections opened in the same second (and 500 answers written at once). Instead each host
gets a stable *phase*: an offset within the sweep's window derived from its id, the same at
every sweep, so a host is synced (or sampled) exactly one interval after its previous one, and
the hosts of a fleet are evenly spread over the window.

The phase is the fractional part of ``id * (golden ratio - 1)`` (Weyl / Fibonacci hashing):
for ids 1..n the points split the window into gaps of at most three distinct lengths (the
three-gap theorem), so consecutive ids never bunch up the way a random hash's would, and a
host added later lands in one of the widest gaps. A row id is stable and never reused.
"""

from __future__ import annotations

import math

__all__ = ["phase", "window"]

#: 1/φ = φ - 1: the irrational whose multiples are the most evenly spread modulo 1.
_INVERSE_GOLDEN = (math.sqrt(5) - 1) / 2


def window(interval_s: float, cap_s: float, margin_s: float) -> float:
    """Seconds after a sweep within which its tasks start: at most *cap_s*, and ending
    *margin_s* before the next sweep (so the last host's task has ended, or been stopped by its
    time limit, when the next sweep comes round); never negative."""
    return max(0.0, min(float(cap_s), float(interval_s) - float(margin_s)))


def phase(key: int, window_s: float) -> float:
    """The stable offset in ``[0, window_s)`` of the host with id *key* (0 for no window)."""
    if window_s <= 0:
        return 0.0
    return math.fmod(key * _INVERSE_GOLDEN, 1.0) % 1.0 * window_s
