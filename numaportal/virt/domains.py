"""Finding domains on a connection: by name or UUID, or all of them with their state.

:func:`lookup_domain` returns a :class:`Domain`, the handle the operations of pinning.py,
numatune.py, vcpus.py and snapshot.py take, so that code outside numaportal.virt never holds
libvirt's own objects. (Parsing a domain's XML is :mod:`numaportal.virt.domain`'s job.)
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass, field

import libvirt

from numaportal.virt.errors import InvalidRequest, translate
from numaportal.virt.hostfacts import uri_of

__all__ = ["Domain", "DomainSummary", "domain_state_name", "list_domains", "lookup_domain"]

# virsh's words for virDomainState, so the portal says what operators already read in
# `virsh list`.
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "idle",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def domain_state_name(state: int) -> str:
    """virsh's word for a ``VIR_DOMAIN_*`` state ("running", "shut off", ...)."""
    return _STATE_NAMES.get(state, f"unknown ({state})")


@dataclass(frozen=True, slots=True)
class Domain:
    """One domain on one open connection, as services hold it between lookup and operations.

    Only numaportal.virt reaches into ``virdomain``, libvirt's object; it keeps its connection
    alive, but calls through it fail once that connection is closed, so a Domain is for use
    inside the ``with connect(...)`` block it was looked up in.
    """

    name: str
    uuid: str
    #: The connection's URI, for error messages; None when libvirt could not say.
    uri: str | None
    virdomain: libvirt.virDomain = field(repr=False, compare=False)

    @classmethod
    def of(cls, virdomain: libvirt.virDomain) -> Domain:
        """The handle of a domain object libvirt returned.

        No round trip: libvirt keeps name and UUID in the client-side object, and the URI in
        the client-side connection.
        """
        return cls(
            name=virdomain.name(),
            uuid=virdomain.UUIDString(),
            uri=uri_of(virdomain.connect()),
            virdomain=virdomain,
        )


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid_module.UUID(text)
    except ValueError:
        return False
    return True


def lookup_domain(conn: libvirt.virConnect, name_or_uuid: str) -> Domain:
    """The domain with this name or UUID; :class:`DomainNotFound` if there is none."""
    if not isinstance(name_or_uuid, str) or not name_or_uuid:
        raise InvalidRequest(f"a domain name or UUID is required, not {name_or_uuid!r}")
    try:
        if _looks_like_uuid(name_or_uuid):
            try:
                return Domain.of(conn.lookupByUUIDString(name_or_uuid))
            except libvirt.libvirtError as exc:
                # A domain may be *named* like a UUID; fall back to the name before giving up.
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        return Domain.of(conn.lookupByName(name_or_uuid))
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """One line of ``virsh list --all``."""

    name: str
    uuid: str
    state: str

    @property
    def active(self) -> bool:
        return self.state not in {"shut off", "crashed"}


def list_domains(conn: libvirt.virConnect) -> tuple[DomainSummary, ...]:
    """Every domain on the host, with its state, in one ``getAllDomainStats`` round trip.

    Name and UUID are cached in the client-side domain object, so no call per domain is made:
    that matters over ``qemu+ssh://`` to a host with hundreds of VMs.
    """
    try:
        stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
    except libvirt.libvirtError as exc:
        raise translate(exc, uri_of(conn)) from exc
    summaries = [
        DomainSummary(dom.name(), dom.UUIDString(), domain_state_name(values["state.state"]))
        for dom, values in stats
    ]
    return tuple(sorted(summaries, key=lambda d: d.name))
