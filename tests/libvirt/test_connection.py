"""URI validation, opening (timeouts, failures), host facts and error translation."""

from __future__ import annotations

import json
import pickle
import socket
import time

import libvirt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numaportal.virt import errors
from numaportal.virt.connection import (
    DomainNotFound,
    HostInfo,
    HostUnreachable,
    InvalidRequest,
    InvalidURI,
    OperationFailed,
    OperationUnsupported,
    ReadbackMismatch,
    VirtError,
    _batch_uri,
    connect,
    format_version,
    host_info,
    open_connection,
    translate,
    validate_uri,
)

pytestmark = pytest.mark.libvirt


# --- validate_uri ---------------------------------------------------------------------------

GOOD_URIS = [
    ("qemu:///system", "qemu:///system"),
    ("qemu:///session", "qemu:///session"),
    ("QEMU:///system", "qemu:///system"),
    ("qemu:///system?", "qemu:///system"),
    ("test:///default", "test:///default"),
    ("TEST:///default", "test:///default"),
    ("qemu+unix:///system", "qemu+unix:///system"),
    ("qemu+ssh://root@kvm01.example.com/system", "qemu+ssh://root@kvm01.example.com/system"),
    ("qemu+ssh://KVM01.Example.COM:2222/system", "qemu+ssh://kvm01.example.com:2222/system"),
    (
        "qemu+ssh://ops@10.0.0.5/system?keyfile=/etc/numaportal/id_ed25519&no_tty=1",
        "qemu+ssh://ops@10.0.0.5/system?keyfile=/etc/numaportal/id_ed25519&no_tty=1",
    ),
    (
        "qemu+libssh2://h1/system?known_hosts=/etc/ssh/known&known_hosts_verify=normal"
        "&sshauth=agent,privkey",
        "qemu+libssh2://h1/system?known_hosts=/etc/ssh/known&known_hosts_verify=normal"
        "&sshauth=agent,privkey",
    ),
    ("qemu+libssh://h1/system?known_hosts_verify=auto", None),
    ("qemu+tls://[2001:db8::1]:16514/system?pkipath=/etc/pki/libvirt", None),
    ("qemu://kvm02/system?pkipath=/etc/pki/libvirt", None),
    ("qemu+tcp://127.0.0.1:16509/system", None),
]


@pytest.mark.parametrize(("uri", "normalised"), GOOD_URIS)
def test_validate_uri_accepts_and_normalises(uri: str, normalised: str | None) -> None:
    result = validate_uri(uri)
    assert result == (normalised or uri)
    assert validate_uri(result) == result  # normalising is idempotent


HOSTILE_URIS = [
    # runs commands on the worker or the remote host
    ("qemu+ext:///system?command=/bin/sh", "transport 'ext' is not allowed: it runs an arbitrary"),
    ("qemu+ssh://h/system?command=/bin/sh", "parameter 'command' is not allowed"),
    ("qemu+ssh://h/system?netcat=/tmp/evil", "parameter 'netcat' is not allowed"),
    ("qemu+ssh://h/system?proxy=netcat", "parameter 'proxy' is not allowed"),
    ("qemu+ssh://-oProxyCommand=touch/system", "starts with '-'"),
    ("qemu+ssh://-oProxyCommand=touch@h/system", "user name"),
    # parser differentials: libvirt splits on ';' and percent-decodes, Python does neither
    ("qemu+ssh://h/system?keyfile=/k;command=/bin/sh", "not allowed: ;"),
    ("qemu+ssh://h/system?co%6dmand=/bin/sh", "not allowed: %"),
    # reads files / talks to sockets on the worker
    ("test:///etc/passwd", "only allowed as test:///default"),
    ("test:///default?x=1", "only allowed as test:///default"),
    ("test+tcp://h/default", "only allowed as test:///default"),
    ("qemu:///system?socket=/run/docker.sock", "parameter 'socket' is not allowed"),
    ("qemu+unix:///system?socket=/run/docker.sock", "parameter 'socket' is not allowed"),
    ("qemu+ssh://h/system?name=test:///etc/shadow", "parameter 'name' is not allowed"),
    ("qemu+ssh://h/system?mode=legacy", "parameter 'mode' is not allowed"),
    ("qemu:///embed?root=/tmp/x", "path '/embed' is not allowed"),
    ("qemu+ssh://h/system?keyfile=relative/key", "plain absolute path"),
    ("qemu+ssh://h/system?keyfile=/a/../../etc/shadow", "plain absolute path"),
    # switches verification off
    ("qemu+tls://h/system?no_verify=1", "parameter 'no_verify' is not allowed"),
    ("qemu+libssh://h/system?known_hosts_verify=ignore", "'ignore' would disable host key"),
    ("qemu+tls://h/system?tls_priority=NONE", "parameter 'tls_priority' is not allowed"),
    # other drivers and transports
    ("xen:///system", "driver 'xen' is not supported"),
    ("lxc:///", "driver 'lxc' is not supported"),
    ("esx://h/?no_verify=1", "driver 'esx' is not supported"),
    ("qemu+foo://h/system", "transport 'foo' is not supported"),
    # shape
    ("", "it is empty"),
    ("qemu:/system", "expected DRIVER[+TRANSPORT]://"),
    ("qemu:///", "path '/' is not allowed"),
    ("qemu:///nonsense", "path '/nonsense' is not allowed"),
    ("qemu+ssh:///system", "transport 'ssh' needs a host"),
    ("qemu+unix://h/system", "the unix transport is local"),
    ("qemu+ssh://u:secret@h/system", "a password in the URI is not allowed"),
    ("qemu+ssh://@h/system", "empty user name"),
    ("qemu+ssh://h:0/system", "port '0'"),
    ("qemu+ssh://h:99999/system", "port '99999'"),
    ("qemu+ssh://h:22x/system", "port '22x'"),
    ("qemu+ssh://h_1/system", "not a valid host name"),
    ("qemu+tls://[::g]/system", "not a valid IPv6 address"),
    ("qemu+ssh://h/system#frag", "not allowed: #"),
    ("qemu+ssh://h/system?keyfile=/a&keyfile=/b", "given twice"),
    ("qemu+ssh://h/system?keyfile", "malformed query parameter"),
    ("qemu+ssh://h/system?pkipath=/etc/pki", "only applies to the tls transport"),
    ("qemu+ssh://h/system?no_tty=yes", "must be 0 or 1"),
    ("qemu+libssh://h/system?sshauth=gssapi", "parameter 'sshauth' must list"),
    ("qemu:///system?keyfile=/k", "a local qemu URI takes no parameters"),
    # whitespace, control characters, non-ASCII
    ("qemu:///system ", "whitespace or a control character"),
    ("qemu:///system\n", "whitespace or a control character"),
    ("qemu:///sys\x00tem", "whitespace or a control character"),
    ("qemu+ssh://h\t/system", "whitespace or a control character"),
    ("qemu+ssh://h\u00e9/system", "non-ASCII"),
    ("qemu+ssh://xn--h\u2024/system", "non-ASCII"),
    ('qemu+ssh://h/system?keyfile=/k"', 'not allowed: "'),
    ("qemu+ssh://h/system?keyfile=/$(id)", "not allowed: $ ( )"),
]


@pytest.mark.parametrize(("uri", "problem"), HOSTILE_URIS)
def test_validate_uri_refuses_hostile_uris(uri: str, problem: str) -> None:
    with pytest.raises(InvalidURI) as info:
        validate_uri(uri)
    assert problem in str(info.value)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.code is None


def test_validate_uri_names_the_ext_transport_problem() -> None:
    with pytest.raises(InvalidURI, match="transport 'ext' is not allowed: it runs an arbitrary "):
        validate_uri("qemu+ext:///system")


def test_validate_uri_refuses_overlong() -> None:
    uri = "qemu+ssh://h/system?keyfile=/" + "a" * 1000
    assert len(uri) > 1024
    with pytest.raises(InvalidURI, match="longer than 1024"):
        validate_uri(uri)
    # exactly at the limit is fine when otherwise valid
    ok = "qemu+ssh://h/system?keyfile=/" + "a" * (1024 - len("qemu+ssh://h/system?keyfile=/"))
    assert validate_uri(ok) == ok


def test_validate_uri_refuses_non_strings() -> None:
    with pytest.raises(InvalidURI, match="must be a string"):
        validate_uri(b"qemu:///system")  # type: ignore[arg-type]


@given(st.text(max_size=200))
def test_validate_uri_never_raises_anything_else(text: str) -> None:
    try:
        result = validate_uri(text)
    except InvalidURI:
        return
    assert validate_uri(result) == result


@given(
    st.from_regex(
        r"qemu\+(ssh|tls|tcp|libssh2)://[a-z0-9.\-@:\[\]_]{0,30}/(system|session)(\?[a-z_=/,&.]{0,40})?",
        fullmatch=True,
    )
)
def test_validate_uri_fuzzed_remote_uris(text: str) -> None:
    try:
        result = validate_uri(text)
    except InvalidURI:
        return
    assert validate_uri(result) == result
    assert "command" not in result and "socket" not in result and "netcat" not in result


# --- open_connection ------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_test_driver")
def test_open_connection_to_the_test_driver() -> None:
    conn = open_connection("test:///default")
    try:
        assert conn.getURI() == "test:///default"
        assert conn.getType() == "TEST"
    finally:
        conn.close()


def test_open_connection_validates_before_opening() -> None:
    with pytest.raises(InvalidURI, match="only allowed as test:///default"):
        open_connection("test:///etc/passwd")


def test_open_connection_refused_is_host_unreachable_with_libvirts_message() -> None:
    uri = "qemu+tcp://127.0.0.1:1/system"
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as info:
        open_connection(uri, timeout=5)
    assert time.monotonic() - started < 5
    err = info.value
    assert str(err) == "unable to connect to server at '127.0.0.1:1': Connection refused"
    assert err.message == str(err)
    assert err.code == libvirt.VIR_ERR_SYSTEM_ERROR
    assert err.uri == uri


def test_open_connection_times_out_on_a_silent_server() -> None:
    # A listening socket that never answers: the kernel completes the TCP handshake and
    # libvirt then waits forever for the daemon's reply, like an ssh host that went dark.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    uri = f"qemu+tcp://127.0.0.1:{port}/system"
    try:
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as info:
            open_connection(uri, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        listener.close()  # resets the pending connection: the abandoned open thread ends
    assert 0.4 < elapsed < 3
    assert str(info.value) == f"timed out after 0.5s connecting to {uri}"
    assert info.value.code is None
    assert info.value.uri == uri


def test_open_connection_unresolvable_ssh_host_is_host_unreachable() -> None:
    # Whether ssh is missing or the name does not resolve, it is the RPC layer that fails.
    with pytest.raises(HostUnreachable) as info:
        open_connection("qemu+ssh://nosuchhost.invalid/system", timeout=10)
    assert info.value.code == libvirt.VIR_ERR_SYSTEM_ERROR
    assert info.value.message


def test_ssh_uris_are_opened_without_a_tty() -> None:
    # ssh must fail rather than prompt for a password on the worker's terminal.
    assert _batch_uri("qemu+ssh://h/system") == "qemu+ssh://h/system?no_tty=1"
    assert _batch_uri("qemu+ssh://h/system?keyfile=/k") == "qemu+ssh://h/system?keyfile=/k&no_tty=1"
    assert _batch_uri("qemu+ssh://h/system?no_tty=0") == "qemu+ssh://h/system?no_tty=0"
    assert _batch_uri("qemu+tls://h/system") == "qemu+tls://h/system"


def test_open_connection_refuses_non_positive_timeout() -> None:
    with pytest.raises(InvalidRequest, match="timeout must be positive"):
        open_connection("test:///default", timeout=0)


@pytest.mark.usefixtures("fresh_test_driver")
def test_open_connection_readonly_reads_but_cannot_change() -> None:
    conn = open_connection("test:///default", readonly=True)
    try:
        dom = conn.lookupByName("test")
        assert dom.isActive()
        with pytest.raises(libvirt.libvirtError) as info:
            dom.pinEmulator((True,) * 8, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        err = translate(info.value)
        assert isinstance(err, InvalidRequest)
        assert str(err) == "operation forbidden: read only access prevents virDomainPinEmulator"
    finally:
        conn.close()


@pytest.mark.usefixtures("fresh_test_driver")
def test_connect_closes_the_connection() -> None:
    with connect("test:///default") as conn:
        assert conn.getURI() == "test:///default"
    with pytest.raises(libvirt.libvirtError, match="invalid connection pointer"):
        conn.getURI()


@pytest.mark.usefixtures("fresh_test_driver")
def test_connect_gives_each_opening_fresh_test_driver_state() -> None:
    with connect("test:///default") as conn:
        dom = conn.lookupByName("test")
        dom.pinEmulator((True,) + (False,) * 7, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        assert dom.emulatorPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)[1] is False
        # A domain object holds a reference to its connection; the test driver's state only
        # goes away with the last reference.
        del dom
    with connect("test:///default") as conn:
        pins = conn.lookupByName("test").emulatorPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)
        assert all(pins)


# --- host_info ------------------------------------------------------------------------------


def test_host_info_on_the_test_driver(conn: libvirt.virConnect) -> None:
    info = host_info(conn)
    assert isinstance(info, HostInfo)
    assert info.uri == "test:///default"
    assert info.hypervisor_type == "TEST"
    assert info.hostname
    assert info.libvirt_version >= 9_000_000
    assert info.cpu_count == 8
    assert info.cpus_online <= frozenset(range(8))
    assert "<cells num='2'>" in info.capabilities_xml
    # The test driver reports 2 cells; getCellsFreeMemory returns bytes and we keep KiB.
    assert set(info.cells_free_memory_kib) == {0, 1}
    assert all(v > 0 for v in info.cells_free_memory_kib.values())
    data = info.as_dict()
    json.dumps(data)
    assert data["libvirt_version"] == format_version(info.libvirt_version)


def test_format_version() -> None:
    assert format_version(9_000_000) == "9.0.0"
    assert format_version(7_002_022) == "7.2.22"
    assert format_version(12_008_001) == "12.8.1"


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
    assert errors.VirtError is VirtError
    assert errors.translate is translate


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
