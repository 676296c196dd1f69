"""How the tuning operations call libvirt; shared by pinning, numatune, vcpus and snapshot.

Private to :mod:`numaportal.virt`. Every mutation of those modules:

1. validates what can be checked without changing anything (CPUs exist on the host, the vCPU
   index is below the maximum), raising :class:`InvalidRequest` that names the problem, so a
   typo never reaches libvirt;
2. makes one libvirt call with the scope's flags (LIVE|CONFIG together where the driver
   allows; QEMU's ``setNumaParameters`` and the test driver's ``pinEmulator`` call the two
   "mutually exclusive", and then :func:`apply` applies live first, then config);
3. reads the result back for each affected scope and raises :class:`ReadbackMismatch` (see
   :func:`mismatch`) if it is not what was asked: libvirt returning 0 is not proof (the test
   driver truncates cpumaps, QEMU may round, a guest may refuse).

libvirt errors come out as :mod:`numaportal.virt.errors` classes with libvirt's text intact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import libvirt

from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest, OperationFailed, ReadbackMismatch, translate
from numaportal.virt.scope import Scope

T = TypeVar("T")


def call(dom: Domain, fn: Callable[[], T]) -> T:
    """Run one libvirt call, translating its error."""
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.uri) from exc


def _flags_exclusive(exc: libvirt.libvirtError) -> bool:
    # VIR_EXCLUSIVE_FLAGS_RET's wording: "Flags 'VIR_DOMAIN_AFFECT_LIVE' and
    # 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive".
    message = exc.get_error_message() or ""
    return exc.get_error_code() == libvirt.VIR_ERR_INVALID_ARG and "mutually exclusive" in message


def apply(dom: Domain, scope: Scope, fn: Callable[[int], object]) -> None:
    """Call ``fn(flags)`` for *scope*: once with both flags, or live then config if refused."""
    try:
        fn(scope.flags)
        return
    except libvirt.libvirtError as exc:
        if not (scope is Scope.BOTH and _flags_exclusive(exc)):
            raise translate(exc, dom.uri) from exc
    # Live first: the live change is the one libvirt is likelier to refuse (a running QEMU
    # cannot do everything), and refusing it before the config is touched keeps both unchanged.
    for part in scope.parts:
        call(dom, lambda part=part: fn(part.flags))


def cpuset_argument(cpus: Iterable[int] | str, what: str) -> frozenset[int]:
    """A caller's CPU (or node) ids as a set; :class:`InvalidRequest` naming *what* if bad."""
    try:
        if isinstance(cpus, str):
            return parse_cpuset(cpus)
        result = frozenset(cpus)
        format_cpuset(result)  # validates: non-empty, non-negative ints, not absurdly large
    except CpusetError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None
    except TypeError:
        raise InvalidRequest(f"{what}: expected CPU ids, got {cpus!r}") from None
    return result


def mismatch(what: str, part: Scope, expected: str, actual: str) -> ReadbackMismatch:
    """The error of a read-back that is not what was asked."""
    return ReadbackMismatch(
        f"{what} ({part.value}): asked for {expected}, libvirt reports {actual}",
        expected=expected,
        actual=actual,
    )


def max_vcpus(dom: Domain, part: Scope) -> int:
    """The domain's maximum vCPU count in one single scope."""
    flags = libvirt.VIR_DOMAIN_VCPU_MAXIMUM | part.flags
    return call(dom, lambda: dom.virdomain.vcpusFlags(flags))


# --- reading state while the domain may start or stop ---------------------------------------


class StoppedMeanwhile(Exception):
    """The domain stopped between our isActive() and a live query."""


def live_query(dom: Domain, fn: Callable[[], T]) -> T:
    """A live-only query; :class:`StoppedMeanwhile` if the domain stopped under us."""
    try:
        return fn()
    except libvirt.libvirtError as exc:
        try:
            active = dom.virdomain.isActive()
        except libvirt.libvirtError:
            active = True  # cannot tell: report the original error
        if not active:
            raise StoppedMeanwhile from exc
        raise translate(exc, dom.uri) from exc


def retrying(dom: Domain, fn: Callable[[bool, bool], T]) -> T:
    """``fn(active, persistent)`` with the domain's state now, again if it stopped meanwhile."""
    # A domain that stops between our state check and a live query is not an error of the
    # query: look again, now seeing it shut off. Three tries cover a start/stop race.
    for _attempt in range(3):
        active = bool(call(dom, dom.virdomain.isActive))
        persistent = bool(call(dom, dom.virdomain.isPersistent))
        try:
            return fn(active, persistent)
        except StoppedMeanwhile:
            continue
    raise OperationFailed("the domain kept changing state while its state was read", None, dom.uri)
