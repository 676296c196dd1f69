"""Opening connections: the test driver, timeouts, refused and unreachable hosts."""

from __future__ import annotations

import socket
import time

import libvirt
import pytest

from numaportal.virt.connection import _batch_uri, connect, open_connection
from numaportal.virt.errors import HostUnreachable, InvalidRequest, InvalidURI, translate

pytestmark = pytest.mark.libvirt


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
