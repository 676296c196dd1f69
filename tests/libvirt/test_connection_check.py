"""The bound on connection attempts, and the connection test that leaves nothing behind.

Issue 14, item 1: registering a host whose endpoint accepts TCP and never answers left a
thread and an ESTABLISHED socket behind per attempt (worker threads 2 -> 5, 8 sockets). Here,
against a real silent endpoint on 127.0.0.1:

- :func:`check_connection` (the registration's test, in a child process) times out and leaves
  no thread, no socket and no process behind, and never runs more children than its bound;
- :func:`open_connection` (in-process, for syncs and changes) cannot be aborted inside
  libvirt, so it is bounded: attempts beyond the bound fail at once without a thread.
"""

from __future__ import annotations

import threading
import time

import libvirt
import pytest

from numaportal.virt import connection
from numaportal.virt.connection import ConnectSlotsBusy, open_connection
from numaportal.virt.connection_check import CHECK_SLOTS, check_connection
from numaportal.virt.errors import HostUnreachable, InvalidURI
from tests.silent_endpoint import (
    SilentEndpoint,
    child_processes,
    established_to,
    sockets_held_to,
    thread_ids,
)

pytestmark = pytest.mark.libvirt


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- the connection test (a child process) ----------------------------------------------------


def test_check_connection_answers_with_what_the_host_says() -> None:
    answer = check_connection("TEST:///default", timeout=30)
    assert answer.uri == "test:///default"  # validated and normalised first
    assert answer.hypervisor.startswith("TEST ")
    assert answer.cell_count == 2 and answer.cpu_count > 0
    assert answer.libvirt_version.count(".") == 2
    assert f"answered in {answer.seconds:.1f} s" in answer.describe()
    assert "2 NUMA cells" in answer.describe()


def test_check_connection_refused_is_libvirts_own_message() -> None:
    uri = "qemu+tcp://127.0.0.1:1/system"
    with pytest.raises(HostUnreachable) as info:
        check_connection(uri, timeout=30)
    err = info.value
    assert str(err) == "unable to connect to server at '127.0.0.1:1': Connection refused"
    assert err.code == libvirt.VIR_ERR_SYSTEM_ERROR and err.uri == uri


def test_check_connection_validates_before_starting_anything() -> None:
    before = child_processes()
    with pytest.raises(InvalidURI, match="transport 'ext' is not allowed"):
        check_connection("qemu+ext:///system?command=/bin/true", timeout=5)
    assert child_processes() == before


def test_a_silent_endpoint_times_out_leaving_no_thread_socket_or_process() -> None:
    with SilentEndpoint() as endpoint:
        threads, children = thread_ids(), child_processes()
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as info:
            check_connection(endpoint.uri, timeout=2)
        elapsed = time.monotonic() - started
        assert str(info.value) == f"timed out after 2s connecting to {endpoint.uri}"
        assert endpoint.accepted == 1  # the child did reach it, and got no answer
        assert 2 <= elapsed < 4
        # Nothing is left, while the endpoint is still there holding its end open.
        assert thread_ids() - threads == set()
        assert child_processes() - children == set()
        assert established_to(endpoint.port) == 0
        assert sockets_held_to(endpoint.port) == 0
        assert CHECK_SLOTS.held == 0


def test_checks_beyond_the_bound_fail_at_once_and_never_exceed_it() -> None:
    bound, attempts = 2, 5
    results: dict[int, tuple[BaseException, float]] = {}

    def attempt(i: int) -> None:
        started = time.monotonic()
        try:
            check_connection(endpoint.uri, timeout=3, slots=bound)
        except Exception as exc:
            results[i] = (exc, time.monotonic() - started)

    with SilentEndpoint() as endpoint:
        children = child_processes()
        workers = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
        peak_sockets = peak_children = 0
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            peak_sockets = max(peak_sockets, established_to(endpoint.port))
            peak_children = max(peak_children, len(child_processes() - children))
            time.sleep(0.02)
        for worker in workers:
            worker.join()

        busy = [(e, t) for e, t in results.values() if isinstance(e, ConnectSlotsBusy)]
        timed_out = [e for e, _ in results.values() if "timed out after 3s" in str(e)]
        assert len(results) == attempts
        assert len(busy) == attempts - bound and len(timed_out) == bound
        assert all(t < 1.0 for _, t in busy), busy  # at once, not after the timeout
        assert f"all {bound} connection test slots" in str(busy[0][0])
        assert peak_children <= bound and peak_sockets <= bound
        assert endpoint.accepted == bound
        assert child_processes() - children == set()
        assert established_to(endpoint.port) == 0
        assert CHECK_SLOTS.held == 0


# --- in-process opens: bounded ---------------------------------------------------------------


def _open_threads(uri: str) -> int:
    """Helper threads of in-process opens of *uri* still alive (open_connection names them)."""
    return sum(1 for t in threading.enumerate() if t.name == f"libvirt-open {uri}")


def test_in_process_opens_beyond_the_bound_fail_at_once_without_a_thread(monkeypatch) -> None:
    # Slots of this test's own: another test's hung open may still hold (and free) one.
    slots = connection.Slots("libvirt connection")
    monkeypatch.setattr(connection, "OPEN_SLOTS", slots)
    bound = 2
    with SilentEndpoint() as endpoint:
        threads = thread_ids()
        for _ in range(2):
            with pytest.raises(HostUnreachable, match=r"timed out after 0\.3s"):
                open_connection(endpoint.uri, timeout=0.3, slots=bound)
        # Both helpers are stuck inside libvirt with their sockets: that is what the bound caps.
        assert _open_threads(endpoint.uri) == 2
        assert wait_for(lambda: established_to(endpoint.port) == 2)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ConnectSlotsBusy, match=r"all 2 libvirt connection slots"):
                open_connection(endpoint.uri, timeout=0.3, slots=bound)
            assert time.monotonic() - started < 0.5  # at once: no thread, no timeout
        assert _open_threads(endpoint.uri) == 2 and slots.held == bound
        assert endpoint.accepted == 2 and established_to(endpoint.port) == 2

        # When the peer finally hangs up, libvirt returns: the helpers end, the slots free up.
        endpoint.hang_up()
        assert wait_for(lambda: _open_threads(endpoint.uri) == 0)
        assert wait_for(lambda: slots.held == 0)
        assert established_to(endpoint.port) == 0
        assert wait_for(lambda: thread_ids() - threads <= {t.native_id for t in _event_loop()})


def _event_loop() -> list[threading.Thread]:
    # The first in-process open of a process starts libvirt's event loop thread, for good.
    return [t for t in threading.enumerate() if t.name == "libvirt-event-loop"]


def test_the_slots_setting_reaches_numaportal_virt(settings) -> None:
    # NumaPortalConfig.ready() hands NUMAPORTAL_LIBVIRT_CONNECT_SLOTS over (virt has no Django).
    assert connection.connect_slots() == settings.NUMAPORTAL_LIBVIRT_CONNECT_SLOTS == 4
    with pytest.raises(ValueError, match="positive integer"):
        connection.set_connect_slots(0)
