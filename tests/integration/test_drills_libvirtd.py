"""The drills that stop or pause a libvirtd (:mod:`web.drills`), against a real libvirtd of the
test's own (:class:`tests.private_libvirtd.PrivateLibvirtd`), so that the lab's daemon, which
the other tests use, keeps running:

- libvirtd stopped while a sync of its host is in flight: the host says so in libvirt's words,
  the other host (libvirt's test:///default) is unaffected, the next sync after the start
  succeeds;
- the worker killed while its change is ``running`` (the daemon paused, so the change hangs in
  its connection): the reconciliation ends it with the host's state read back.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hosts.models import Host
from tests.conftest import new_queue
from tests.integration.conftest import DOMAIN_XML, THROWAWAY_PREFIX
from tests.private_libvirtd import PrivateLibvirtd
from tests.worker_process import WorkerProcess
from vms import sync
from vms.models import VirtualMachine
from web import drills

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def daemon() -> Iterator[PrivateLibvirtd]:
    # A short directory: QEMU's capability probe puts a UNIX socket under it (108 bytes at
    # most), and pytest's tmp_path is too long for that.
    directory = Path(tempfile.mkdtemp(prefix="npd-"))
    private = PrivateLibvirtd(directory)
    private.start()
    try:
        yield private
    finally:
        private.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _synced(name: str, uri: str) -> Host:
    host = Host.objects.create(name=name, uri=uri)
    synced = sync.sync_host(host.pk)
    assert synced.sync_status == Host.SyncStatus.OK, synced.last_error
    return synced


def test_libvirtd_stopped_during_a_sync_shows_the_error_and_recovers(
    daemon, worker_queue, client, operator
) -> None:
    host = _synced("pd", daemon.uri)
    other = _synced("td", "test:///default")
    client.force_login(operator)
    fetch = drills.client_fetcher(client, drills.host_pages([host, other]))
    result = drills.libvirtd_stopped(host, [other], daemon, fetch)
    print(result.report())
    assert result.ok, result.report()
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK
    assert daemon.process is not None  # started again


def test_a_change_whose_worker_is_killed_while_running_ends_reconciled(
    settings, daemon, operator, tmp_path
) -> None:
    daemon.define(DOMAIN_XML.format(name=f"{THROWAWAY_PREFIX}{secrets.token_hex(4)}"))
    host = _synced("pd", daemon.uri)
    vm = VirtualMachine.objects.select_related("host").get(host=host)
    assert not vm.is_running
    queue = new_queue()
    settings.NUMAPORTAL_CENTRAL_QUEUE = queue
    worker = WorkerProcess(queue, tmp_path / "worker.log")
    try:
        result = drills.worker_killed(
            vm, operator, worker, queued_older_than_s=3, daemon=daemon, running_older_than_s=3
        )
    finally:
        worker.close()
    print(result.report())
    assert result.ok, result.report() + "\n" + (tmp_path / "worker.log").read_text()
    assert worker.process.returncode == -9
