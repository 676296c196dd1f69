"""libvirt errors as NUMA Portal exceptions.

Everything that leaves ``numaportal.virt`` raises a :class:`VirtError` subclass, never a raw
``libvirt.libvirtError``: callers (services, Celery tasks, views) decide what to do from the
class — retry a :class:`HostUnreachable`, show the user an :class:`InvalidRequest` — and show
``str(e)``, which is libvirt's own text, unchanged. The operator must see exactly what
libvirt said ("CPU hot unplug not supported without ACPI"), not our paraphrase of it.

Mapping, with the code (and error domain) each documented failure was seen to carry on the
lab (libvirt 9.0.0, QEMU 7.2) or on the test driver:

- numatune strict nodeset / mode change on a running domain: 55 OPERATION_INVALID (qemu)
  -> InvalidRequest
- live call on a shut-off domain ("domain is not running"): 55 (domain) -> InvalidRequest
- setvcpus above the live maximum: 8 INVALID_ARG (qemu) -> InvalidRequest
- maximum that contradicts <topology>: 8 INVALID_ARG (qemu) -> InvalidRequest
- vCPU unplug without ACPI (QEMU's device_del error): 1 INTERNAL_ERROR (qemu)
  -> OperationUnsupported, by message (see _BY_MESSAGE)
- guest vCPUs without a guest agent channel: 74 ARGUMENT_UNSUPPORTED (qemu)
  -> OperationUnsupported
- test driver pinVcpuFlags with LIVE/CONFIG ("unsupported flags"): 8 INVALID_ARG (test)
  -> OperationUnsupported, by message
- a function the driver lacks (setGuestVcpus, setKeepAlive on test): 3 NO_SUPPORT
  -> OperationUnsupported
- connection refused, ssh cannot resolve the host: 38 SYSTEM_ERROR (rpc) -> HostUnreachable
- read-only connection: 29 OPERATION_DENIED -> InvalidRequest
- no such domain: 42 NO_DOMAIN -> DomainNotFound
"""

from __future__ import annotations

from typing import Any

import libvirt

__all__ = [
    "DomainNotFound",
    "HostUnreachable",
    "InvalidRequest",
    "InvalidURI",
    "OperationFailed",
    "OperationUnsupported",
    "ReadbackMismatch",
    "VirtError",
    "classify",
    "translate",
]


class VirtError(Exception):
    """Base of every error ``numaportal.virt`` raises.

    ``message`` is libvirt's text unchanged (or ours, for errors we detect before calling
    libvirt); ``code`` is libvirt's error code (``None`` when libvirt was not involved);
    ``uri`` is the connection the error happened on, when known.
    """

    def __init__(
        self,
        message: str,
        code: int | None = None,
        uri: str | None = None,
        *,
        error_domain: int | None = None,
    ) -> None:
        # Only the message goes into args: Celery's JSON result serialisation rebuilds an
        # exception as cls(*args), and str(e) must be exactly libvirt's message.
        super().__init__(message)
        self.message = message
        self.code = code
        self.uri = uri
        self.error_domain = error_domain

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep code/uri (and subclass attributes) across pickling (Celery's pickle serialiser,
        # multiprocessing), which by default would only replay args.
        return (type(self), (self.message,), dict(self.__dict__))


class HostUnreachable(VirtError):
    """The hypervisor could not be reached or authenticated to; transient, worth a retry."""


class DomainNotFound(VirtError):
    """No such domain on this host (undefined, renamed, or a transient one that stopped)."""


class OperationUnsupported(VirtError):
    """The driver, the hypervisor or this domain's configuration cannot do this at all."""


class InvalidRequest(VirtError):
    """The request is wrong for this domain or host as it is now; retrying will not help."""


class InvalidURI(InvalidRequest):
    """A connection URI was refused before libvirt saw it."""


class OperationFailed(VirtError):
    """libvirt tried and failed, for any reason not covered by a more specific class."""


class ReadbackMismatch(OperationFailed):
    """libvirt accepted a change but reading it back shows something else."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        uri: str | None = None,
        *,
        expected: str | None = None,
        actual: str | None = None,
        error_domain: int | None = None,
    ) -> None:
        super().__init__(message, code, uri, error_domain=error_domain)
        self.expected = expected
        self.actual = actual


def _codes(*names: str) -> frozenset[int]:
    # getattr: a constant missing from an older libvirt-python must not break the import.
    return frozenset(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


_BY_CODE: tuple[tuple[frozenset[int], type[VirtError]], ...] = (
    (_codes("VIR_ERR_NO_DOMAIN"), DomainNotFound),
    (
        _codes(
            "VIR_ERR_NO_SUPPORT",
            "VIR_ERR_OPERATION_UNSUPPORTED",
            "VIR_ERR_ARGUMENT_UNSUPPORTED",
            "VIR_ERR_CONFIG_UNSUPPORTED",
        ),
        OperationUnsupported,
    ),
    (
        _codes(
            "VIR_ERR_INVALID_ARG",
            "VIR_ERR_OPERATION_INVALID",
            "VIR_ERR_XML_ERROR",
            "VIR_ERR_XML_DETAIL",
            "VIR_ERR_XML_INVALID_SCHEMA",
            "VIR_ERR_INVALID_DOMAIN",
            "VIR_ERR_NO_NAME",
            # Read-only connection or an ACL: this connection may not do it, whatever we retry.
            "VIR_ERR_OPERATION_DENIED",
        ),
        InvalidRequest,
    ),
    (
        _codes(
            "VIR_ERR_NO_CONNECT",
            "VIR_ERR_RPC",
            "VIR_ERR_AUTH_FAILED",
            "VIR_ERR_AUTH_CANCELLED",
            "VIR_ERR_AUTH_UNAVAILABLE",
            "VIR_ERR_OPERATION_TIMEOUT",
            # A connection closed under us (keepalive timeout, daemon restart) makes every
            # later call on it fail with "invalid connection pointer".
            "VIR_ERR_INVALID_CONN",
            "VIR_ERR_NO_HOSTNAME",
        ),
        HostUnreachable,
    ),
)

# Error domains of the transport: a system or internal error raised there is a socket or
# ssh failure ("Connection refused", "Cannot recv data", "client socket is closed"), i.e. the
# host is unreachable, whereas the same codes from a hypervisor driver mean the operation
# itself failed (a cgroup write, a QEMU monitor command).
_TRANSPORT_DOMAINS = _codes("VIR_FROM_RPC", "VIR_FROM_REMOTE", "VIR_FROM_SSH", "VIR_FROM_LIBSSH")
_TRANSPORT_CODES = _codes("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_INTERNAL_ERROR")

# Messages whose code is too generic to classify them. Each was seen on a real host or the
# test driver; the match is on libvirt's/QEMU's own wording, stable across releases.
_BY_MESSAGE: tuple[tuple[str, type[VirtError]], ...] = (
    # virCheckFlags() reports flags a driver does not implement as VIR_ERR_INVALID_ARG, but
    # for the user it means "this host cannot do that", not "you asked wrongly".
    ("unsupported flags (", OperationUnsupported),
    # QEMU refuses vCPU unplug on a machine without ACPI; libvirt wraps it as an internal
    # error of the monitor command. Retrying cannot help: the VM's configuration forbids it.
    ("hot unplug not supported", OperationUnsupported),
)


def classify(code: int | None, error_domain: int | None, message: str) -> type[VirtError]:
    """The exception class for a libvirt error code, error domain and message."""
    for fragment, cls in _BY_MESSAGE:
        if fragment in message:
            return cls
    if code is None:
        return OperationFailed
    if code in _TRANSPORT_CODES and error_domain in _TRANSPORT_DOMAINS:
        return HostUnreachable
    for codes, cls in _BY_CODE:
        if code in codes:
            return cls
    return OperationFailed


def translate(err: libvirt.libvirtError, uri: str | None = None) -> VirtError:
    """Turn a ``libvirtError`` into the matching :class:`VirtError` subclass.

    The message is libvirt's own (``get_error_message()``), which is what ``str(err)`` shows
    too; only when libvirt left none (a binding that failed without setting an error) do we
    fall back to the binding's generic text.
    """
    code = err.get_error_code()
    error_domain = err.get_error_domain()
    message = err.get_error_message() or str(err) or "unknown libvirt error"
    cls = classify(code, error_domain, message)
    return cls(message, code, uri, error_domain=error_domain)
