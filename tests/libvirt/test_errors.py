"""Error translation: libvirt's failures as our classes, with libvirt's text intact."""

from __future__ import annotations

import pickle

import libvirt
import pytest

from numaportal.virt import connection, errors
from numaportal.virt.errors import (
    DomainNotFound,
    HostUnreachable,
    InvalidRequest,
    InvalidURI,
    OperationFailed,
    OperationUnsupported,
    ReadbackMismatch,
    VirtError,
    translate,
)

pytestmark = pytest.mark.libvirt


# --- errors ---------------------------------------------------------------------------------


def _libvirt_error(code: int, domain: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError("synthetic")
    # The tuple libvirt-python keeps from virGetLastError(): code, domain, message, level, ...
    exc.err = (code, domain, message, 2, None, None, None, 0, 0)
    return exc


# Each row is a failure seen on the lab (libvirt 9.0.0 + QEMU 7.2) or on the test driver, with
# the code and error domain it carried.
SEEN_ERRORS = [
    (
        55,
        libvirt.VIR_FROM_QEMU,
        "Requested operation is not valid: can't change nodeset for strict mode for running domain",
        InvalidRequest,
    ),
    (
        55,
        libvirt.VIR_FROM_QEMU,
        "Requested operation is not valid: can't change numatune mode for running domain",
        InvalidRequest,
    ),
    (
        1,
        libvirt.VIR_FROM_QEMU,
        "internal error: unable to execute QEMU command 'device_del': CPU hot unplug not "
        "supported without ACPI",
        OperationUnsupported,
    ),
    (
        74,
        libvirt.VIR_FROM_QEMU,
        "argument unsupported: QEMU guest agent is not configured",
        OperationUnsupported,
    ),
    (
        8,
        libvirt.VIR_FROM_TEST,
        "unsupported flags (0x1) in function testDomainPinVcpuFlags",
        OperationUnsupported,
    ),
    (
        3,
        libvirt.VIR_FROM_NONE,
        "this function is not supported by the connection driver: virDomainSetGuestVcpus",
        OperationUnsupported,
    ),
    (
        8,
        libvirt.VIR_FROM_QEMU,
        "invalid argument: requested vcpus is greater than max allowable vcpus for the live "
        "domain: 5 > 4",
        InvalidRequest,
    ),
    (
        55,
        libvirt.VIR_FROM_DOMAIN,
        "Requested operation is not valid: domain is not running",
        InvalidRequest,
    ),
    (
        38,
        libvirt.VIR_FROM_RPC,
        "unable to connect to server at '127.0.0.1:1': Connection refused",
        HostUnreachable,
    ),
    (
        38,
        libvirt.VIR_FROM_RPC,
        "Cannot recv data: ssh: Could not resolve hostname nosuchhost.invalid: Name or service "
        "not known: Connection reset by peer",
        HostUnreachable,
    ),
    (1, libvirt.VIR_FROM_RPC, "internal error: client socket is closed", HostUnreachable),
    (45, libvirt.VIR_FROM_RPC, "authentication failed: no agent", HostUnreachable),
    (68, libvirt.VIR_FROM_RPC, "Timed out during operation", HostUnreachable),
    (39, libvirt.VIR_FROM_RPC, "RPC error", HostUnreachable),
    (
        42,
        libvirt.VIR_FROM_QEMU,
        "Domain not found: no domain with matching name 'x'",
        DomainNotFound,
    ),
    (27, libvirt.VIR_FROM_DOMAIN, "XML error: bad", InvalidRequest),
    (7, libvirt.VIR_FROM_DOMAIN, "invalid domain pointer", InvalidRequest),
    (67, libvirt.VIR_FROM_QEMU, "unsupported configuration: x", OperationUnsupported),
    (84, libvirt.VIR_FROM_QEMU, "Operation not supported: x", OperationUnsupported),
    (38, libvirt.VIR_FROM_CGROUP, "Unable to write to '/sys/fs/cgroup/x': EBUSY", OperationFailed),
    (1, libvirt.VIR_FROM_QEMU, "internal error: some QEMU failure", OperationFailed),
    (9, libvirt.VIR_FROM_QEMU, "operation failed: x", OperationFailed),
]


@pytest.mark.parametrize(("code", "domain", "message", "cls"), SEEN_ERRORS)
def test_translate_maps_codes_and_keeps_libvirts_text(
    code: int, domain: int, message: str, cls: type[VirtError]
) -> None:
    err = translate(_libvirt_error(code, domain, message), uri="qemu:///system")
    assert type(err) is cls
    assert str(err) == message
    assert err.message == message
    assert err.code == code
    assert err.uri == "qemu:///system"
    assert err.error_domain == domain


def test_error_hierarchy() -> None:
    assert issubclass(ReadbackMismatch, OperationFailed)
    assert issubclass(InvalidURI, InvalidRequest)
    for cls in (HostUnreachable, DomainNotFound, OperationUnsupported, InvalidRequest):
        assert issubclass(cls, VirtError)
    # connection.py re-exports errors.py's classes, not copies of them.
    assert errors.VirtError is connection.VirtError
    assert errors.translate is connection.translate


def test_errors_survive_pickling_and_rebuild_from_args() -> None:
    err = translate(
        _libvirt_error(74, libvirt.VIR_FROM_QEMU, "argument unsupported: no agent"), "qemu:///x"
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is OperationUnsupported
    assert (str(back), back.code, back.uri) == (str(err), 74, "qemu:///x")
    # Celery's JSON result backend rebuilds exceptions as cls(*args).
    assert str(type(err)(*err.args)) == str(err)
    mismatch = ReadbackMismatch("x (live): asked for 1, libvirt reports 0-1", expected="1")
    back = pickle.loads(pickle.dumps(mismatch))
    assert back.expected == "1" and back.actual is None and str(back) == str(mismatch)
