"""What every change form shares: scope and reason, the preview, the id-set fields, the pin
helpers.

Every form is validated against the host's *stored* topology (what the last sync read from
libvirt's capabilities) before anything is queued, then again by the kind's own validation
(:func:`changes.kinds.validation.validate_change`, the one the API and the scheduler share), so
its errors are the same words. A form knows how to describe its change (:meth:`ChangeForm.preview`:
rows of before -> after, and warnings) and which records to request (:meth:`ChangeForm.changes`:
one ``(kind, params, scope)`` per record). The views only glue these to
:func:`changes.requests.request_change`.

The pin helpers are pure functions of a :class:`HostTopology` (no Django), so the planner and
the tests can call them on any capabilities fixture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import ValidationError

from changes.kinds.validation import validate_change
from hosts.selectors import safe_cpuset, safe_nodeset
from numaportal.virt.cpuset import CpusetError, format_cpuset, format_nodeset, parse_cpuset
from numaportal.virt.cpuset import parse_nodeset as _parse_nodeset
from numaportal.virt.scope import Scope
from numaportal.virt.topology import HostTopology
from vms import locality, whatif
from vms.models import VcpuPin, VirtualMachine, VmCellMemory

__all__ = [
    "SCOPES",
    "ChangeForm",
    "CpusetField",
    "NodesetField",
    "Preview",
    "cells_of",
    "locality_note",
    "nodes_text",
    "one_vcpu_per_core",
    "own_memory",
    "pin_all_into_cell",
    "predicted_locality",
    "scope_has",
    "stranded_memory_warning",
]

# --- pure helpers -----------------------------------------------------------------------------


def pin_all_into_cell(topology: HostTopology, cell_id: int, vcpus: int) -> dict[int, str]:
    """ "Pin all vCPUs into cell N": every vCPU may run on any CPU of that cell (and no other).

    KeyError (naming the host's cells) for a cell that does not exist; ValueError for a
    memory-only cell, which has no CPU to pin to.
    """
    cell = topology.cell(cell_id)
    if not cell.cpu_ids:
        raise ValueError(f"cell {cell_id} has no CPUs (memory only)")
    cpuset = format_cpuset(cell.cpu_ids)
    return dict.fromkeys(range(vcpus), cpuset)


def _threads_in_order(topology: HostTopology, cell_id: int | None) -> list[int]:
    """Host CPUs in "one per physical core, siblings last" order.

    First the first thread of every core (cores ordered by their lowest CPU id, so cells come
    in their CPU order), then the second thread of every core, and so on. CPUs without core
    information (offline CPUs) come last, by id.
    """
    cores = [
        threads
        for threads in topology.cores().values()
        if cell_id is None or topology.node_of(threads[0]) == cell_id
    ]
    cores.sort(key=lambda threads: threads[0])
    grouped = {cpu for threads in cores for cpu in threads}
    order: list[int] = []
    depth = max((len(threads) for threads in cores), default=0)
    for level in range(depth):
        order.extend(threads[level] for threads in cores if len(threads) > level)
    wanted = topology.cpu_ids if cell_id is None else topology.cell(cell_id).cpu_ids
    order.extend(sorted(wanted - grouped))
    return order


def one_vcpu_per_core(
    topology: HostTopology, vcpus: int, cell_id: int | None = None
) -> dict[int, str]:
    """ "One vCPU per physical core, siblings last": vCPU i -> one host CPU.

    vCPUs take the first thread of distinct cores first (no two vCPUs share a core while a free
    core is left), then the sibling threads. With *cell_id* only that cell's CPUs are used.
    With more vCPUs than threads the order wraps around (over-commit, which the preview warns
    about). Empty when there is no CPU to use.
    """
    order = _threads_in_order(topology, cell_id)
    if not order:
        return {}
    return {vcpu: str(order[vcpu % len(order)]) for vcpu in range(vcpus)}


def cells_of(topology: HostTopology, cpus: Iterable[int]) -> frozenset[int]:
    """Cells of the CPUs the topology knows (unknown CPUs are ignored, not guessed)."""
    known = topology.cpu_ids
    return topology.cells_of(c for c in cpus if c in known)


def nodes_text(cells: Iterable[int]) -> str:
    """Cells as a nodeset, "—" for none (the preview's cells columns)."""
    cells = frozenset(cells)
    return format_nodeset(cells) if cells else "—"


def own_memory(vm: VirtualMachine) -> dict[int, float]:
    """The VM's own memory per cell (MiB) at its last sample; empty when none is known."""
    return {r.cell_id: r.own_mib for r in VmCellMemory.objects.filter(vm=vm)}


def predicted_locality(
    vm: VirtualMachine,
    new_cells: Iterable[int],
    memory: Mapping[int, float] | None = None,
    *,
    now_memory: Mapping[int, float] | None = None,
) -> tuple[float | None, float | None]:
    """What-if: the VM's locality now and with its vCPUs on *new_cells* (and its memory per
    cell as *memory*, default: where its last sample found it), distance-weighted as
    :mod:`vms.locality` computes it; None where nothing is known. *now_memory*: the memory
    now when the caller has read it already (:func:`own_memory`)."""
    if now_memory is None:
        now_memory = own_memory(vm)
    distances = locality.parse_distances((c.cell_id, c.distances) for c in vm.host.cells.all())
    home_now = safe_nodeset(vm.cells)
    return (
        locality.locality(now_memory, home_now, distances) if home_now else None,
        locality.locality(now_memory if memory is None else memory, set(new_cells), distances),
    )


def locality_note(now: float | None, after: float | None) -> str:
    """ "Predicted locality: 1.00 now -> 0.00 after" (or "" when nothing is known)."""
    if after is None:
        return ""
    before = f"{now:.2f} now" if now is not None else "unknown now"
    return f"Predicted locality (memory where its vCPUs run, by distance): {before} -> {after:.2f}"


def stranded_memory_warning(vm: VirtualMachine, new_cells: Iterable[int]) -> str:
    """What-if for a move of *vm*'s vCPUs to *new_cells*: the warning when much of its memory
    (as last sampled, its own, in MiB) would stay on other cells, remote until it is moved;
    "" when it would be local or nothing is known."""
    stranded = whatif.stranded_text(own_memory(vm), new_cells)
    if not stranded:
        return ""
    return f'{stranded}: move it live with "Move memory (to cell N)" where its numatune allows.'


# --- fields -----------------------------------------------------------------------------------


class _IdSetField(forms.CharField):
    """A set of ids in virsh syntax whose members all exist on the host; cleans to canonical
    text. The subclasses say which ids (CPUs or cells) and how to name them."""

    parse = staticmethod(parse_cpuset)
    format = staticmethod(format_cpuset)
    what, plural, missing_code = "CPU", "CPUs", "no_such_cpu"

    def __init__(self, *, known: frozenset[int] = frozenset(), **kwargs) -> None:
        kwargs.setdefault("max_length", 1024)
        super().__init__(**kwargs)
        self.known = known

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return ""
        try:
            ids = self.parse(value)
        except CpusetError as exc:
            raise ValidationError(str(exc), code="syntax") from None
        missing = ids - self.known
        if missing:
            known = self.format(self.known) if self.known else "none known"
            raise ValidationError(
                f"{self.what} {self.format(missing)} is not on this host "
                f"(its {self.plural}: {known})",
                code=self.missing_code,
            )
        return self.format(ids)


class CpusetField(_IdSetField):
    """A cpuset whose CPUs all exist on the host."""

    def __init__(self, *, host_cpus: frozenset[int] = frozenset(), **kwargs) -> None:
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 14, "autocomplete": "off"}))
        super().__init__(known=host_cpus, **kwargs)


class NodesetField(_IdSetField):
    """A nodeset whose cells exist on the host."""

    parse = staticmethod(_parse_nodeset)
    format = staticmethod(format_nodeset)
    what, plural, missing_code = "cell", "cells", "no_such_cell"

    def __init__(self, *, cells: frozenset[int] = frozenset(), **kwargs) -> None:
        kwargs.setdefault("max_length", 255)
        super().__init__(known=cells, **kwargs)


# --- preview ----------------------------------------------------------------------------------


@dataclass
class Preview:
    """What the preview step shows: a table of before -> after, warnings and notes."""

    columns: tuple[str, ...] = ("what", "before", "after", "cells before", "cells after")
    rows: list[tuple[str, ...]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


#: The scopes a change form offers (libvirt's, in the words of the form), the default first.
SCOPES = [
    (Scope.BOTH.value, "live + config (now, and kept at the next boot)"),
    (Scope.LIVE.value, "live only (lost at the next shutdown)"),
    (Scope.CONFIG.value, "config only (takes effect at the next boot)"),
]


def scope_has(scope: str, part: Scope) -> bool:
    """Whether *scope* covers *part* (live, config)."""
    return part in Scope(scope).parts


class ChangeForm(forms.Form):
    """Scope and reason, and the contract every change form fulfils."""

    #: URL slug of the form ("vcpupin", "hot-add", ...) and its title.
    slug = ""
    title = ""
    scopes = SCOPES
    #: What the change page shows around the form (templates/changes/forms/, a VM partial for
    #: the vCPU counts): the target now, what to know before filling it in ("": nothing), the
    #: fields.
    now_template = "changes/forms/_now_pins.html"
    explain_template = ""
    fields_template = "changes/forms/_fields.html"
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        max_length=2000,
        help_text="Why: kept in the change record for reviewers.",
    )

    def __init__(self, *args, vm: VirtualMachine, topology: HostTopology, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vm = vm
        self.topology = topology
        #: (kind, normalised params, scope) of each record, as the service validated them in
        #: clean(): what the preview can show of what validation decided (a hot-add's pins).
        self.validated: list[tuple[str, dict, str]] = []
        self.fields["scope"] = forms.ChoiceField(
            choices=self.scopes,
            initial=self.scopes[0][0],
            widget=forms.RadioSelect,
            help_text="A live-only change is lost at the next shutdown; only the config "
            "(<cputune>, <numatune>) survives.",
        )
        # scope first, reason last, whatever the subclass declares in between
        order = [name for name in self.fields if name not in ("scope", "reason")]
        self.order_fields([*order, "scope", "reason"])

    def clean_reason(self) -> str:
        reason = (self.cleaned_data.get("reason") or "").strip()
        if not reason:
            raise ValidationError("Say why: the reason is kept in the change record.")
        return reason

    def clean(self):
        cleaned = super().clean()
        scope = cleaned.get("scope")
        if scope and scope_has(scope, Scope.LIVE) and not self.vm.is_running:
            self.add_error(
                "scope",
                f"{self.vm.name} is not running: a live change has nothing to act on; "
                "choose config.",
            )
        if not self.errors:
            for kind, params, change_scope in self.changes():
                self._validate_with_service(kind, params, change_scope)
        return cleaned

    def _validate_with_service(self, kind: str, params: dict, scope: str) -> None:
        """The kind's own validation (the one request_change applies), as field errors."""
        try:
            self.validated.append((kind, validate_change(self.vm, kind, params, scope), scope))
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for name, errors in exc.error_dict.items():
                    target = self._field_for(name, params)
                    for error in errors:
                        self.add_error(target, error)
            else:
                self.add_error(None, exc)

    def _field_for(self, name: str, params: dict) -> str | None:
        """The form field a service-side error key belongs to (None: the whole form)."""
        if name in self.fields:
            return name
        alias = {"online": "online_in_guest", "cpus": "count", "vcpu": None}.get(name)
        if alias in self.fields:
            return alias
        if name == "cpuset" and "vcpu" in params and f"vcpu_{params['vcpu']}" in self.fields:
            return f"vcpu_{params['vcpu']}"
        return None

    # -- to override ---------------------------------------------------------------------------

    def changes(self) -> list[tuple[str, dict, str]]:
        """(kind, params, scope) of every record to request, in the order to apply them."""
        raise NotImplementedError

    def preview(self) -> Preview:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------

    def other_pins(self) -> dict[int, list[str]]:
        """Host CPU -> names of the *other* present VMs pinned there (vCPU or emulator pins)."""
        used: dict[int, set[str]] = {}
        others = VirtualMachine.objects.filter(host_id=self.vm.host_id, gone_at__isnull=True)
        others = others.exclude(pk=self.vm.pk)
        for name, running, live, config in VcpuPin.objects.filter(vm__in=others).values_list(
            "vm__name", "vm__vcpu_current_live", "pin_live", "pin_config"
        ):
            for cpu in safe_cpuset(live if running is not None else config):
                used.setdefault(cpu, set()).add(name)
        for name, running, live, config in others.values_list(
            "name", "vcpu_current_live", "emulatorpin", "emulatorpin_config"
        ):
            cpus = safe_cpuset(live if running is not None else config)
            if cpus and cpus != self.topology.cpu_ids:
                for cpu in cpus:
                    used.setdefault(cpu, set()).add(f"{name} (emulator)")
        return {cpu: sorted(names) for cpu, names in used.items()}

    def _shared_warning(self, cpus: frozenset[int], what: str) -> str | None:
        pinned = self.other_pins()
        shared = {cpu: pinned[cpu] for cpu in sorted(cpus) if cpu in pinned}
        if not shared:
            return None
        parts = [f"{cpu} ({', '.join(names)})" for cpu, names in shared.items()]
        return f"{what} lands on CPUs already pinned by other VMs: " + "; ".join(parts)

    def scope_note(self) -> str:
        scope = self.cleaned_data.get("scope", "")
        if scope == Scope.LIVE:
            return "Live only: lost at the next shutdown of the VM."
        if scope == Scope.CONFIG:
            return "Config only: takes effect at the next boot, the running VM is not touched."
        return "Live and config: applied now and kept in the persistent definition."
