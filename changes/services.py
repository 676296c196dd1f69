"""The worker side of a change: apply, verify, record; reconcile the interrupted; find drift.

:func:`apply_change` is what ``changes.tasks.apply_change`` runs for a record written by
:func:`vms.services.request_change`:

1. a per-VM lock in Redis (two changes to one VM never interleave; a second one waits up to
   ``NUMAPORTAL_CHANGE_LOCK_WAIT`` seconds, then fails with "another change to this VM is
   running: <id>"); the lock's value is the holder's change id and it expires after the task's
   hard time limit plus a margin, so a killed worker cannot hold it forever;
2. ``queued`` -> ``running`` (``started_at``), the state before (:func:`operations.snapshot`)
   stored at once, so an interrupted change still shows where it started from;
3. the change through :mod:`numaportal.virt.operations` (each verifies by reading back);
4. the state after, and a second verification against the request on that snapshot;
5. ``succeeded`` or ``failed`` with libvirt's message unchanged, what really happened
   (``outcome``), the readable ``diff``; then the VM row is refreshed by a host sync.

Every path ends the record ``succeeded`` or ``failed``; a worker killed in between leaves it
``running``, and :func:`reconcile_stale_changes` (beat, every 120 s) ends it ``failed`` with the
state read back from the host.

Host-level changes (no VM: ``numa_balancing``, recorded by
:func:`hosts.balancing.request_numa_balancing`) take a per-host lock and run
:func:`_run_numa_balancing` instead of steps 2-5: only the worker ON that host
(``NUMAPORTAL_ON_HOST``) reads and writes its ``/proc/sys/kernel/numa_balancing``; before and
after are ``{"numa_balancing": <value>}``. The reconciler cannot read a host setting from the
beat worker and says so; drift is about VMs only.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from changes.models import Change
from numaportal.virt import connection as virt_connection
from numaportal.virt import operations
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset, parse_nodeset
from numaportal.virt.errors import VirtError
from vms.models import VirtualMachine
from vms.numa import guest_online_commands

__all__ = [
    "INTERRUPTED",
    "LOST",
    "apply_change",
    "check_drift",
    "describe_tuning_changes",
    "lock_key",
    "make_diff",
    "reconcile_stale_changes",
]

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted (worker lost); state read back from the host"
LOST = "never started (task lost); state read back from the host"
#: Seconds the lock outlives the task's hard time limit.
LOCK_MARGIN_S = 60
#: After a live hot-add the guest kernel needs a moment before the agent can online the CPU.
GUEST_ONLINE_TRIES = 10

Snap = dict[str, Any] | None

Status = Change.Status
Kind = Change.Kind

# --- the per-VM lock ------------------------------------------------------------------------

_redis_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One client per process (Celery's prefork children must not share a socket)."""
    pid = os.getpid()
    client = _redis_clients.get(pid)
    if client is None:
        client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
        _redis_clients.clear()
        _redis_clients[pid] = client
    return client


def lock_key(change: Change) -> str:
    vm_uuid = change.vm.uuid if change.vm is not None else "host"
    return f"numaportal:change-lock:{change.host_id}:{vm_uuid}"


def _lock_timeout() -> int:
    return int(settings.CELERY_TASK_TIME_LIMIT) + LOCK_MARGIN_S


def _lock(change: Change) -> redis.lock.Lock:
    return _redis().lock(lock_key(change), timeout=_lock_timeout(), thread_local=False)


def _target_word(change: Change) -> str:
    return "VM" if change.vm_id is not None else "host"


def _holder(change: Change) -> str | None:
    value = _redis().get(lock_key(change))
    return value.decode() if isinstance(value, bytes) else value


# --- recording ------------------------------------------------------------------------------


def _finish(
    change: Change,
    status: str,
    *,
    from_statuses: Iterable[str],
    error: str = "",
    outcome: str = "",
    after: dict[str, Any] | None = None,
    diff: str = "",
) -> bool:
    """One conditional update to a final status; False if the record had moved on meanwhile."""
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "error": error,
        "outcome": outcome,
        "diff": diff,
    }
    if after is not None:
        fields["after"] = after
    done = Change.objects.filter(pk=change.pk, status__in=list(from_statuses)).update(**fields)
    return bool(done)


def _refresh_vm(change: Change) -> None:
    """Refresh the VM row: a whole-host sync (10 calls + 3 per running domain, see README).

    Best effort: the change's own record is already final, and the periodic sync follows.
    """
    from hosts.services import sync_host  # hosts.services imports vms; keep imports one-way

    try:
        sync_host(change.host_id)
    except Exception:
        log.exception("refreshing host %s after change %s failed", change.host_id, change.pk)


# --- the diff -------------------------------------------------------------------------------

# Tuning keys that are identity or bookkeeping, not placement: left out of the words.
_TUNING_NOISE = frozenset({"name", "uuid", "domain_type", "domain_id", "guest_agent_connected"})
_TUNING_WORDS = {
    "vcpu_max": "maximum vCPUs",
    "vcpu_current": "vCPUs",
    "vcpu_placement": "vCPU placement",
    "vcpu_cpuset": "default vCPU cpuset",
    "vcpupin": "vcpupin of vCPU",
    "emulatorpin": "emulatorpin",
    "numatune_mode": "numatune mode",
    "numatune_nodeset": "numatune nodeset",
    "numatune_placement": "numatune placement",
    "numatune_memnodes": "numatune memnode of guest cell",
    "memory_kib": "memory (KiB)",
    "current_memory_kib": "current memory (KiB)",
    "vcpus_enabled": "vCPU enabled",
    "vcpus_hotpluggable": "vCPU hotpluggable",
    "guest_numa_cells": "guest NUMA cells",
    "has_acpi": "ACPI",
    "has_guest_agent_channel": "guest agent channel",
}


def _word(value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _changes_in(
    where: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[str]:
    before, after = before or {}, after or {}
    lines = []
    for key in sorted((before.keys() | after.keys()) - _TUNING_NOISE):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        label = _TUNING_WORDS.get(key, key)
        if isinstance(old, dict | type(None)) and isinstance(new, dict | type(None)):
            old, new = old or {}, new or {}
            for sub in sorted(old.keys() | new.keys(), key=lambda k: (len(str(k)), str(k))):
                if old.get(sub) != new.get(sub):
                    lines.append(
                        f"{where}: {label} {sub}: {_word(old.get(sub))} -> {_word(new.get(sub))}"
                    )
        else:
            lines.append(f"{where}: {label}: {_word(old)} -> {_word(new)}")
    return lines


def describe_tuning_changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[str]:
    """What changed between two snapshots (``DomainSnapshot.as_dict()``), in words."""
    before, after = before or {}, after or {}
    lines = _changes_in("config", before.get("config_tuning"), after.get("config_tuning"))
    lines += _changes_in("live", before.get("live_tuning"), after.get("live_tuning"))
    for key, label in (("emulatorpin_live", "live"), ("emulatorpin_config", "config")):
        old, new = before.get(key), after.get(key)
        # The parsed XML lacks an emulator pin that only the cgroup holds; say it when it moved.
        if old != new and not any(line.startswith(f"{label}: emulatorpin") for line in lines):
            lines.append(f"{label}: emulator affinity: {_word(old)} -> {_word(new)}")
    old_count, new_count = before.get("vcpucount") or {}, after.get("vcpucount") or {}
    for key in ("current_live", "max_live"):
        if old_count.get(key) != new_count.get(key) and not any(
            line.startswith("live: vCPUs:") or line.startswith("live: maximum") for line in lines
        ):
            lines.append(
                f"vcpucount {key}: {_word(old_count.get(key))} -> {_word(new_count.get(key))}"
            )
    if before.get("state") != after.get("state") and before and after:
        lines.append(f"state: {before.get('state')} -> {after.get('state')}")
    return lines


def _xml_lines(xml: str | None) -> list[str]:
    return [line.rstrip() for line in (xml or "").splitlines()]


def make_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """The tuning changes in words, then unified diffs of the persistent and the live XML."""
    if not before or not after:
        return ""
    words = describe_tuning_changes(before, after)
    out = ["Tuning:"] + [f"  {line}" for line in words] if words else ["Tuning: unchanged"]
    for key, title in (("persistent_xml", "persistent XML"), ("live_xml", "live XML")):
        diff = list(
            difflib.unified_diff(
                _xml_lines(before.get(key)),
                _xml_lines(after.get(key)),
                f"{title} before",
                f"{title} after",
                n=2,
                lineterm="",
            )
        )
        if diff:
            out += ["", *diff]
    return "\n".join(out)


# --- applying -------------------------------------------------------------------------------


def _cpus_text(cpus: Iterable[int]) -> str:
    cpus = sorted(cpus)
    return f"vCPU{'s' if len(cpus) > 1 else ''} {format_cpuset(cpus)}"


def _online_commands(cpus: Iterable[int], online: bool) -> str:
    return "; ".join(guest_online_commands(cpus, online))


def _scope_words(scope: str) -> str:
    return {"live": "live", "config": "in the config", "live+config": "live and in the config"}[
        scope
    ]


def _guest_vcpus_with_retry(dom: Any, cpus: frozenset[int], online: bool) -> None:
    """set_guest_vcpus, retried briefly: a just-hot-added CPU takes a moment to reach the guest.

    "not configured" (no agent channel) is final at once; other errors are retried.
    """
    for attempt in range(GUEST_ONLINE_TRIES):
        try:
            operations.set_guest_vcpus(dom, cpus, online)
            return
        except operations.VirtError as exc:
            if "not configured" in str(exc) or attempt == GUEST_ONLINE_TRIES - 1:
                raise
            time.sleep(1)


def _setvcpus(dom: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
    params, scope = change.params, change.scope
    if "maximum" in params:
        operations.set_vcpus(dom, params["maximum"], operations.Scope.CONFIG, maximum=True)
        return "", f"maximum raised to {params['maximum']} vCPUs in the config (from next boot)"
    count = params["count"]
    old_live = (before.get("vcpucount") or {}).get("current_live")
    live = "live" in scope and old_live is not None
    steps: list[str] = []
    removing = frozenset(range(count, old_live)) if live and count < old_live else frozenset()
    if removing:
        try:
            _guest_vcpus_with_retry(dom, removing, False)
            steps.append(f"{_cpus_text(removing)} offlined in the guest by the agent")
        except VirtError as exc:
            steps.append(
                f"{_cpus_text(removing)} not offlined in the guest: {exc} "
                f"(in the guest: `{_online_commands(removing, False)}`)"
            )
    try:
        operations.set_vcpus(dom, count, scope)
    except VirtError as exc:
        try:
            now_live = operations.vcpucount(dom).current_live
        except VirtError:
            now_live = None
        counted = f"; the host still counts {now_live} vCPUs" if now_live is not None else ""
        if removing and "timed out" in str(exc):
            # With ACPI QEMU asks the guest; libvirt gives up waiting for the eject.
            steps.append(f"live unplug not confirmed: {exc}{counted}")
        elif removing:
            steps.append(f"live unplug refused by QEMU: {exc}{counted}")
        else:
            steps.append(f"libvirt refused {count} vCPUs {_scope_words(scope)}: {exc}{counted}")
        return str(exc), "; ".join(steps)
    if live and count > old_live:
        added = frozenset(range(old_live, count))
        text = f"{_cpus_text(added)} hot-added live"
        if params.get("online_in_guest"):
            try:
                _guest_vcpus_with_retry(dom, added, True)
                text += "; onlined in the guest by the agent"
            except VirtError as exc:
                text += (
                    f"; guest agent not answering ({exc}): run "
                    f"`{_online_commands(added, True)}` in the guest"
                )
        else:
            text += (
                f"; the guest still has to online {'them' if len(added) > 1 else 'it'} "
                f"(`{_online_commands(added, True)}`, or a guest_vcpus change)"
            )
        steps.append(text)
    elif removing:
        steps.append(f"{_cpus_text(removing)} unplugged live")
    elif live:
        steps.append(f"{count} vCPUs live (unchanged)")
    if "config" in scope:
        steps.append(f"{count} vCPUs in the config (from next boot)")
    return "", "; ".join(steps)


def _perform(dom: Any, change: Change, before: dict[str, Any]) -> tuple[str, str]:
    """Apply *change*; (libvirt's error or "", what happened in words)."""
    params, scope = change.params, change.scope
    try:
        if change.kind == Kind.VCPUPIN:
            operations.pin_vcpu(dom, params["vcpu"], params["cpuset"], scope)
            return "", (f"vCPU {params['vcpu']} pinned to {params['cpuset']} {_scope_words(scope)}")
        if change.kind == Kind.EMULATORPIN:
            operations.pin_emulator(dom, params["cpuset"], scope)
            return "", f"emulator pinned to {params['cpuset']} {_scope_words(scope)}"
        if change.kind == Kind.NUMATUNE:
            operations.set_numatune(dom, params["mode"], params["nodeset"], scope)
            return "", (
                f"memory placement {params['mode']} on node(s) {params['nodeset']} "
                f"{_scope_words(scope)}"
            )
        if change.kind == Kind.PLAN_MOVE:
            return _place(dom, change)
        if change.kind == Kind.SETVCPUS:
            return _setvcpus(dom, change, before)
        if change.kind == Kind.GUEST_VCPUS:
            cpus = parse_cpuset(params["cpus"])
            state = "onlined" if params["online"] else "offlined"
            try:
                operations.set_guest_vcpus(dom, cpus, params["online"])
            except VirtError as exc:
                return str(exc), (
                    f"{_cpus_text(cpus)} not {state} in the guest; by hand, in the guest: "
                    f"`{_online_commands(cpus, params['online'])}`"
                )
            return "", f"{_cpus_text(cpus)} {state} in the guest by the agent"
    except VirtError as exc:
        return str(exc), ""
    return f"unknown kind of change {change.kind!r}", ""


def _place(dom: Any, change: Change) -> tuple[str, str]:
    """A balancing plan's placement of one VM: every vcpupin, the emulatorpin (in the change's
    scope), then numatune in the config — libvirt refuses a new strict nodeset for a running
    domain, so the memory follows at the next boot."""
    params, scope, done = change.params, change.scope, []
    try:
        for vcpu, cpuset in sorted(params["vcpupin"].items(), key=lambda kv: int(kv[0])):
            operations.pin_vcpu(dom, int(vcpu), cpuset, scope)
            done.append(f"vCPU {vcpu} -> {cpuset}")
        operations.pin_emulator(dom, params["emulatorpin"], scope)
        done.append(f"emulator -> {params['emulatorpin']}")
        operations.set_numatune(dom, params["mode"], params["nodeset"], "config")
        done.append(f"numatune {params['mode']} {params['nodeset']} in the config")
    except VirtError as exc:
        return str(exc), ("done before the error: " + "; ".join(done)) if done else ""
    memory = (
        f"memory bound to node(s) {params['nodeset']} from the next boot (a running VM's "
        "memory stays where it is until then)"
    )
    return "", (
        f"placed on cell(s) {params.get('cells', params['nodeset'])} {_scope_words(scope)}: "
        f"{', '.join(done[:-1])}; {memory}"
    )


def _parts(scope: str) -> tuple[str, ...]:
    return ("live", "config") if scope == "live+config" else (scope,)


def _same_set(text: str | None, wanted: str, *, nodes: bool = False) -> bool:
    if not text:
        return False
    try:
        parse = parse_nodeset if nodes else parse_cpuset
        return parse(text) == parse(wanted)
    except CpusetError:
        return False


def verify_after(change: Change, after: dict[str, Any]) -> str:
    """Compare the after snapshot with the request; a description of the mismatch or ""."""
    params, problems = change.params, []
    for part in _parts(change.scope):
        tuning = after.get(f"{part}_tuning") or {}
        if change.kind == Kind.VCPUPIN:
            got = (tuning.get("vcpupin") or {}).get(str(params["vcpu"]))
            if not _same_set(got, params["cpuset"]):
                problems.append(
                    f"vCPU {params['vcpu']} is pinned to {_word(got)} {part}, "
                    f"not {params['cpuset']}"
                )
        elif change.kind == Kind.EMULATORPIN:
            got = after.get(f"emulatorpin_{part}")
            if not _same_set(got, params["cpuset"]):
                problems.append(f"emulator affinity is {_word(got)} {part}, not {params['cpuset']}")
        elif change.kind == Kind.NUMATUNE:
            mode, nodeset = tuning.get("numatune_mode"), tuning.get("numatune_nodeset")
            if mode != params["mode"] or not _same_set(nodeset, params["nodeset"], nodes=True):
                problems.append(
                    f"numatune is {_word(mode)} {_word(nodeset)} {part}, "
                    f"not {params['mode']} {params['nodeset']}"
                )
        elif change.kind == Kind.PLAN_MOVE:
            pins = tuning.get("vcpupin") or {}
            for vcpu, cpuset in params["vcpupin"].items():
                if not _same_set(pins.get(str(vcpu)), cpuset):
                    problems.append(
                        f"vCPU {vcpu} is pinned to {_word(pins.get(str(vcpu)))} {part}, "
                        f"not {cpuset}"
                    )
            got = after.get(f"emulatorpin_{part}")
            if not _same_set(got, params["emulatorpin"]):
                problems.append(
                    f"emulator affinity is {_word(got)} {part}, not {params['emulatorpin']}"
                )
        elif change.kind == Kind.SETVCPUS:
            counts = after.get("vcpucount") or {}
            if "maximum" in params:
                got = counts.get("max_config")
                if got != params["maximum"]:
                    problems.append(f"maximum is {got} in the config, not {params['maximum']}")
            else:
                got = counts.get(f"current_{part}")
                if got != params["count"]:
                    problems.append(f"{got} vCPUs {part}, not {params['count']}")
    if change.kind == Kind.PLAN_MOVE:
        config = after.get("config_tuning") or {}
        mode, nodeset = config.get("numatune_mode"), config.get("numatune_nodeset")
        if mode != params["mode"] or not _same_set(nodeset, params["nodeset"], nodes=True):
            problems.append(
                f"numatune is {_word(mode)} {_word(nodeset)} config, "
                f"not {params['mode']} {params['nodeset']}"
            )
    if not problems:
        return ""
    return "read back after the change: " + "; ".join(problems)


def _snapshot_dict(dom: Any) -> dict[str, Any]:
    return operations.snapshot(dom).as_dict()


def _failure_outcome(
    outcome: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> str:
    """For a failed change: what happened anyway, from the snapshots, when nothing said it."""
    if outcome:
        return outcome
    if not before or not after:
        return ""
    changed = describe_tuning_changes(before, after)
    if not changed:
        return "nothing was changed on the host"
    return "changed on the host nevertheless: " + "; ".join(changed)


def apply_change(change_id: str) -> Change:
    """Apply one queued change (the worker path); the final record. See the module docstring."""
    change = Change.objects.select_related("host", "vm").get(pk=change_id)
    if change.is_finished:
        log.info("change %s already %s: not applied again", change.pk, change.status)
        return change
    if change.status == Status.RUNNING:
        # A second delivery (acks_late after a worker died, or a duplicate): never apply twice.
        # If its worker is gone, reconcile_stale_changes ends it after the time limit.
        log.warning("change %s is already running: not applied again", change.pk)
        return change

    lock = _lock(change)
    token = str(change.pk)
    try:
        acquired = lock.acquire(
            blocking=True, blocking_timeout=settings.NUMAPORTAL_CHANGE_LOCK_WAIT, token=token
        )
    except redis.RedisError as exc:
        _finish(
            change,
            Status.FAILED,
            from_statuses=[Status.QUEUED],
            error=f"could not take the {_target_word(change)}'s lock: {exc}",
            outcome="nothing was changed",
        )
        change.refresh_from_db()
        return change
    if not acquired:
        holder = _holder(change) or "unknown"
        _finish(
            change,
            Status.FAILED,
            from_statuses=[Status.QUEUED],
            error=f"another change to this {_target_word(change)} is running: {holder}",
            outcome=(
                f"nothing was changed: waited {settings.NUMAPORTAL_CHANGE_LOCK_WAIT:g} s "
                "for the other change to end"
            ),
        )
        change.refresh_from_db()
        return change

    try:
        started = Change.objects.filter(pk=change.pk, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=timezone.now()
        )
        if not started:  # cancelled (or reconciled) while it waited
            change.refresh_from_db()
            return change
        if change.kind == Kind.NUMA_BALANCING:
            _run_numa_balancing(change)
        else:
            _run(change)
    finally:
        try:
            lock.release()
        except redis.RedisError as exc:  # expired (hard time limit passed) or Redis gone
            log.warning("releasing the lock of change %s: %s", change.pk, exc)
    change.refresh_from_db()
    if change.vm_id is not None:
        _refresh_vm(change)
    return change


def _run(change: Change) -> None:
    """Connect, snapshot, apply, snapshot, verify, record. Ends the record in every case."""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    error, outcome = "", ""
    try:
        with virt_connection.connect(
            change.host.uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT
        ) as conn:
            dom = operations.lookup_domain(conn, str(change.vm.uuid))
            before = _snapshot_dict(dom)
            Change.objects.filter(pk=change.pk).update(before=before)
            error, outcome = _perform(dom, change, before)
            try:
                after = _snapshot_dict(dom)
            except VirtError as exc:
                error = error or f"the state after the change could not be read: {exc}"
            if not error and after is not None:
                error = verify_after(change, after)
    except VirtError as exc:
        error = str(exc)
    except BaseException as exc:
        # A bug, the database, or the soft time limit: the record must not stay running.
        _finish(
            change,
            Status.FAILED,
            from_statuses=[Status.RUNNING],
            error=f"internal error: {exc!r}",
            outcome=_failure_outcome("", before, after),
            after=after,
            diff=make_diff(before, after),
        )
        raise
    status = Status.FAILED if error else Status.SUCCEEDED
    _finish(
        change,
        status,
        from_statuses=[Status.RUNNING],
        error=error,
        outcome=_failure_outcome(outcome, before, after) if error else outcome,
        after=after,
        diff=make_diff(before, after),
    )
    log.info("change %s %s%s", change.pk, status, f": {error}" if error else "")


# --- host settings: numa_balancing ---------------------------------------------------------

#: The kernel setting survives no reboot; every outcome says so.
NOT_PERSISTENT = "live; not persistent across reboot: lost at reboot unless set in /etc/sysctl.d"


def _balancing_words(before: int | None, after: int | None) -> str:
    return f"numa_balancing {_word(before)} -> {_word(after)}"


def _host_setting_not_read(change: Change) -> str:
    return (
        f"not read back: {change.kind} is read only by the worker on {change.host.name} "
        "(its next numastat sample shows the value in force)"
    )


def _switch_numa_balancing(change: Change) -> tuple[Snap, Snap, str, str]:
    """Check the worker is on the host, read, write, read back: (before, after, error, outcome).

    A VirtError before anything was written (not on this host, the file unreadable) propagates.
    """
    from hosts.models import Host  # hosts.sampling imports vms; keep imports one-way
    from hosts.sampling import check_on_host
    from numaportal.virt import hostprobe

    host, wanted = change.host, change.params.get("value")
    check_on_host(host)  # NotOnThisHost: this worker's /proc is another machine's
    root = settings.NUMAPORTAL_PROBE_ROOT
    old = hostprobe.read_numa_balancing(root)
    before = {"numa_balancing": old}
    Change.objects.filter(pk=change.pk).update(before=before)
    error = ""
    try:
        hostprobe.write_numa_balancing(wanted, root)
    except VirtError as exc:  # EPERM, no such file, a value the probe refuses
        error = str(exc)
    try:
        got = hostprobe.read_numa_balancing(root)
    except VirtError as exc:
        error = error or f"the value after the change could not be read: {exc}"
        return before, None, error, f"numa_balancing was {old} before; not read back after"
    Host.objects.filter(pk=host.pk).update(numa_balancing=got)  # the last value read
    if not error and got != wanted:
        error = f"read back after the change: numa_balancing is {got}, not {wanted} as requested"
    if error and got == old:
        outcome = f"nothing was changed on host {host.name}: numa_balancing is still {old}"
    else:
        nevertheless = "changed nevertheless: " if error else ""
        outcome = (
            f"{nevertheless}{_balancing_words(old, got)} on host {host.name} ({NOT_PERSISTENT})"
        )
    return before, {"numa_balancing": got}, error, outcome


def _run_numa_balancing(change: Change) -> None:
    """On the host's own worker: switch /proc/sys/kernel/numa_balancing, verify by reading
    back, record; ends the record in every case.

    A worker that does not run on the change's host (``NUMAPORTAL_ON_HOST``) fails the change
    before touching any file. A probe error (no such file, EPERM) ends the change failed with
    the probe's message in ``error``. On success the host row holds the value read back.
    """
    before: Snap = None
    after: Snap = None
    try:
        before, after, error, outcome = _switch_numa_balancing(change)
    except VirtError as exc:  # NotOnThisHost, HostProbeError: nothing was written
        error, outcome = str(exc), "nothing was changed: no file was written"
    except BaseException as exc:
        # A bug, the database, or the soft time limit: the record must not stay running.
        _finish(
            change,
            Status.FAILED,
            from_statuses=[Status.RUNNING],
            error=f"internal error: {exc!r}",
        )
        raise
    status = Status.FAILED if error else Status.SUCCEEDED
    diff = ""
    if before and after:
        diff = _balancing_words(before["numa_balancing"], after["numa_balancing"])
    _finish(
        change,
        status,
        from_statuses=[Status.RUNNING],
        error=error,
        outcome=outcome,
        after=after,
        diff=diff,
    )
    log.info("change %s %s%s", change.pk, status, f": {error}" if error else "")


# --- reconciling interrupted changes --------------------------------------------------------


def _reconcile(change: Change, message: str) -> bool:
    """End a stale change ``failed`` with the host's real state; False if skipped this time."""
    lock = _lock(change)
    token = str(change.pk)
    holder = _holder(change)
    if holder == token:
        # The lock of the dead worker that ran this very change: nobody else will release it.
        _redis().delete(lock_key(change))
    elif holder is not None:
        log.info(
            "change %s: %s busy with change %s, reconcile later",
            change.pk,
            _target_word(change),
            holder,
        )
        return False
    if not lock.acquire(blocking=True, blocking_timeout=5, token=f"reconcile-{token}"):
        return False
    try:
        after: dict[str, Any] | None = None
        error = message
        if change.vm_id is None:
            # A host setting (numa_balancing) is readable only by the host's own worker, not
            # by the beat worker running this: say so instead of pretending to read it back.
            error = f"{message.split(';')[0]}; {_host_setting_not_read(change)}"
        else:
            try:
                with virt_connection.connect(
                    change.host.uri, timeout=settings.NUMAPORTAL_LIBVIRT_TIMEOUT, readonly=True
                ) as conn:
                    dom = operations.lookup_domain(conn, str(change.vm.uuid))
                    after = _snapshot_dict(dom)
            except VirtError as exc:
                error = f"{message.split(';')[0]}; the host could not be read back: {exc}"
        before = Change.objects.filter(pk=change.pk).values_list("before", flat=True).first()
        done = _finish(
            change,
            Status.FAILED,
            from_statuses=[change.status],
            error=error,
            outcome=_failure_outcome("", before, after),
            after=after,
            diff=make_diff(before, after),
        )
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()
    if done and change.vm_id is not None:
        _refresh_vm(change)
    return done


def reconcile_stale_changes(
    older_than_s: float | None = None, queued_older_than_s: float | None = None
) -> int:
    """End changes left ``running`` past the task's hard time limit (its worker was killed) and
    changes ``queued`` for longer than ``NUMAPORTAL_CHANGE_QUEUED_TIMEOUT`` (their task was
    lost): each is read back from its host and marked ``failed``. Returns how many were ended.
    """
    if older_than_s is None:
        older_than_s = float(settings.CELERY_TASK_TIME_LIMIT) + LOCK_MARGIN_S
    if queued_older_than_s is None:
        queued_older_than_s = settings.NUMAPORTAL_CHANGE_QUEUED_TIMEOUT
    now = timezone.now()
    stale = [
        (change, INTERRUPTED)
        for change in Change.objects.select_related("host", "vm").filter(
            status=Status.RUNNING, started_at__lt=now - timedelta(seconds=older_than_s)
        )
    ] + [
        (change, LOST)
        for change in Change.objects.select_related("host", "vm")
        .filter(status=Status.QUEUED, created_at__lt=now - timedelta(seconds=queued_older_than_s))
        # A balancing plan runs its changes one after another: a queued one whose group is
        # still progressing (another of its changes started recently) is waiting its turn.
        .exclude(
            Exists(
                Change.objects.filter(
                    group_id=OuterRef("group_id"),
                    started_at__gte=now - timedelta(seconds=queued_older_than_s),
                )
            )
        )
    ]
    ended = 0
    for change, message in stale:
        try:
            if _reconcile(change, message):
                ended += 1
                log.warning("change %s reconciled: %s", change.pk, message)
        except Exception:
            # One host that cannot be read must not keep the other stale changes running.
            log.exception("reconciling change %s failed", change.pk)
    return ended


# --- drift ----------------------------------------------------------------------------------

#: The placement a change sets; the rest of the tuning is not the portal's business.
_DRIFT_KEYS = (
    "vcpu_current",
    "vcpu_max",
    "vcpupin",
    "emulatorpin",
    "numatune_mode",
    "numatune_nodeset",
)


def _outside_changes(vm: VirtualMachine, change_id: Any, after: dict[str, Any]) -> list[str]:
    lines = []
    for part, stored in (("live", vm.tuning_live), ("config", vm.tuning_config)):
        left = after.get(f"{part}_tuning")
        if left is None or stored is None:
            continue
        now = {k: stored.get(k) for k in _DRIFT_KEYS}
        then = {k: left.get(k) for k in _DRIFT_KEYS}
        for line in _changes_in(part, then, now):
            lines.append(f"{line} since change {change_id}")
    return lines


def check_drift() -> int:
    """Flag VMs whose tuning drifted; how many VMs are drifted now.

    Two kinds, from the stored inventory (the 300 s sync keeps it fresh; no libvirt call here):

    * live vs persistent tuning — the sync computes it (``drift``, "live-only: lost at next
      shutdown"); counted here;
    * changed outside the portal — the VM's tuning differs from the state the last finished
      change left (its ``after``; failed changes count too: they record what really happened),
      compared only once the VM was synced after that change. Stored in ``changed_outside``
      and ``changed_outside_detail``, which the sync does not overwrite.
    """
    last_change = (
        Change.objects.filter(vm=OuterRef("pk"), finished_at__isnull=False, after__isnull=False)
        .order_by("-finished_at")
        .values("pk")[:1]
    )
    vms = list(
        VirtualMachine.objects.present()
        .filter(host__enabled=True, host__removed_at__isnull=True)
        .annotate(last_change_id=Subquery(last_change))
    )
    ids = [vm.last_change_id for vm in vms if vm.last_change_id is not None]
    changes = {
        c.pk: c for c in Change.objects.filter(pk__in=ids).only("pk", "finished_at", "after")
    }
    dirty = []
    drifted = 0
    for vm in vms:
        change = changes.get(vm.last_change_id)
        lines: list[str] = []
        if (
            change is not None
            and vm.last_seen_at is not None
            and vm.last_seen_at >= change.finished_at
        ):
            lines = _outside_changes(vm, change.pk, change.after or {})
        detail = "\n".join(lines)
        if (vm.changed_outside, vm.changed_outside_detail) != (bool(lines), detail):
            vm.changed_outside, vm.changed_outside_detail = bool(lines), detail
            dirty.append(vm)
        if vm.drift or vm.changed_outside:
            drifted += 1
    if dirty:
        VirtualMachine.objects.bulk_update(dirty, ["changed_outside", "changed_outside_detail"])
    return drifted
