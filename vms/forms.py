"""Change forms of the VM page: vCPU pinning, emulator pinning, memory placement, CPU hot-add,
the config maximum and CPU hot-remove.

Every form is validated against the host's *stored* topology (what the last sync read from
libvirt's capabilities) before anything is queued, then again by
``vms.validation.validate_change`` (the colleague's service-side check, the one the API and the
scheduler share). A form knows how to describe its change (:meth:`ChangeForm.preview`: rows of
before -> after, and warnings) and which records to request (:meth:`ChangeForm.changes`: one
``(kind, params, scope)`` per record). The views only glue these to ``request_change``.

The pin helpers at the top are pure functions of a :class:`HostTopology` (no Django), so the
planner and the tests can call them on any capabilities fixture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import ValidationError

from hosts.selectors import safe_cpuset, safe_nodeset
from numaportal.virt.cpuset import CpusetError, format_cpuset, format_nodeset, parse_cpuset
from numaportal.virt.cpuset import parse_nodeset as _parse_nodeset
from numaportal.virt.topology import HostTopology
from vms.models import VirtualMachine
from vms.numa import guest_online_commands

__all__ = [
    "SCOPES",
    "ChangeForm",
    "CpusetField",
    "EmulatorPinForm",
    "HotAddForm",
    "HotRemoveForm",
    "MaximumForm",
    "NodesetField",
    "NumatuneForm",
    "Preview",
    "VcpuPinForm",
    "cells_of",
    "guest_online_commands",
    "one_vcpu_per_core",
    "pin_all_into_cell",
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


def _nodes(cells: Iterable[int]) -> str:
    cells = frozenset(cells)
    return format_nodeset(cells) if cells else "—"


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


SCOPES = [
    ("live+config", "live + config (now, and kept at the next boot)"),
    ("live", "live only (lost at the next shutdown)"),
    ("config", "config only (takes effect at the next boot)"),
]

#: The exact libvirt refusals the forms explain before the operator runs into them.
STRICT_LIVE_REFUSAL = "can't change nodeset for strict mode for running domain"
UNPLUG_REFUSAL = "CPU hot unplug not supported without ACPI"


def _scope_has(scope: str, part: str) -> bool:
    return part in scope.split("+")


class ChangeForm(forms.Form):
    """Scope and reason, and the contract every change form fulfils."""

    #: URL slug of the form ("vcpupin", "hot-add", ...) and its title.
    slug = ""
    title = ""
    scopes = SCOPES
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        max_length=2000,
        help_text="Why: kept in the change record for reviewers.",
    )

    def __init__(self, *args, vm: VirtualMachine, topology: HostTopology, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vm = vm
        self.topology = topology
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
        if scope and _scope_has(scope, "live") and not self.vm.is_running:
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
        """The shared validation of ``vms.validation`` (when it is installed), as field errors."""
        try:
            from changes.kinds.validation import validate_change
        except ImportError:  # pragma: no cover - before the service layer lands
            return
        try:
            validate_change(self.vm, kind, params, scope)
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
        from vms.models import VcpuPin

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
        if scope == "live":
            return "Live only: lost at the next shutdown of the VM."
        if scope == "config":
            return "Config only: takes effect at the next boot, the running VM is not touched."
        return "Live and config: applied now and kept in the persistent definition."


# --- vCPU pinning -----------------------------------------------------------------------------


class VcpuPinForm(ChangeForm):
    """One cpuset per vCPU (fields ``vcpu_0`` .. ``vcpu_<max-1>``); blank = leave as it is."""

    slug = "vcpupin"
    title = "vCPU pinning"

    def __init__(self, *args, initial_pins: Mapping[int, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = self._current_pins()
        initial_pins = initial_pins or {}
        host_cpus = self.topology.cpu_ids
        fields = {}
        for vcpu in range(self.vcpu_count):
            fields[f"vcpu_{vcpu}"] = CpusetField(
                host_cpus=host_cpus,
                required=False,
                label=f"vCPU {vcpu}",
                initial=initial_pins.get(vcpu, self.current.get(vcpu, "")),
                help_text=self._vcpu_help(vcpu),
            )
        self.fields = {**fields, **self.fields}

    @property
    def vcpu_count(self) -> int:
        return max(self.vm.vcpu_max_config, self.vm.vcpu_max_live or 0)

    def _current_pins(self) -> dict[int, str]:
        live = self.vm.is_running
        return {
            pin.vcpu: (pin.pin_live if live else pin.pin_config) or ""
            for pin in self.vm.vcpus.all()
        }

    def _vcpu_help(self, vcpu: int) -> str:
        pins = {p.vcpu: p for p in self.vm.vcpus.all()}
        pin = pins.get(vcpu)
        if pin is None:
            return "not pinned"
        parts = []
        if self.vm.is_running:
            parts.append(f"live {pin.pin_live or 'not pinned'}")
            if not pin.online:
                parts.append("offline")
        parts.append(f"config {pin.pin_config or 'not pinned'}")
        return ", ".join(parts)

    def vcpu_fields(self):
        return [self[f"vcpu_{v}"] for v in range(self.vcpu_count)]

    def _wanted(self) -> dict[int, str]:
        return {
            v: self.cleaned_data.get(f"vcpu_{v}") or ""
            for v in range(self.vcpu_count)
            if self.cleaned_data.get(f"vcpu_{v}")
        }

    def _changed(self) -> dict[int, str]:
        scope = self.cleaned_data.get("scope", "live+config")
        pins = {p.vcpu: p for p in self.vm.vcpus.all()}
        changed = {}
        for vcpu, cpuset in self._wanted().items():
            pin = pins.get(vcpu)
            before = []
            if _scope_has(scope, "live"):
                before.append(pin.pin_live if pin else "")
            if _scope_has(scope, "config"):
                before.append(pin.pin_config if pin else "")
            if any(b != cpuset for b in before):
                changed[vcpu] = cpuset
        return changed

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not self._changed():
            raise ValidationError(
                "Nothing to change: every vCPU is already pinned like this in this scope."
            )
        return cleaned

    def changes(self):
        scope = self.cleaned_data["scope"]
        return [
            ("vcpupin", {"vcpu": vcpu, "cpuset": cpuset}, scope)
            for vcpu, cpuset in sorted(self._changed().items())
        ]

    def preview(self) -> Preview:
        preview = Preview(
            columns=("vCPU", "pinned before", "pinned after", "cells before", "cells after")
        )
        topo = self.topology
        changed = self._changed()
        after_cells: set[int] = set()
        online = {p.vcpu: p.online for p in self.vm.vcpus.all()}
        for vcpu in range(self.vcpu_count):
            before = self.current.get(vcpu, "")
            after = changed.get(vcpu, before)
            before_cells = cells_of(topo, safe_cpuset(before) or topo.cpu_ids)
            cells_after = cells_of(topo, safe_cpuset(after) or topo.cpu_ids)
            if online.get(vcpu, True):
                after_cells |= cells_after
            preview.rows.append(
                (
                    f"vCPU {vcpu}" + ("" if vcpu not in changed else " (changed)"),
                    before or "not pinned",
                    after or "not pinned",
                    _nodes(before_cells),
                    _nodes(cells_after),
                )
            )
        if len(after_cells) > 1:
            preview.warnings.append(
                f"The vCPUs land on different cells ({_nodes(after_cells)}): memory accesses "
                "of some vCPUs will be remote."
            )
        new_cpus = frozenset(c for cpuset in changed.values() for c in parse_cpuset(cpuset))
        shared = self._shared_warning(new_cpus, "The pin")
        if shared:
            preview.warnings.append(shared)
        counts: dict[str, int] = {}
        for cpuset in {**self.current, **changed}.values():
            if cpuset and len(parse_cpuset(cpuset)) == 1:
                counts[cpuset] = counts.get(cpuset, 0) + 1
        doubled = sorted(c for c, n in counts.items() if n > 1)
        if doubled:
            preview.warnings.append(
                "Several vCPUs of this VM are pinned to the same CPU: " + ", ".join(doubled)
            )
        preview.notes.append(
            f"{len(changed)} change record(s), one per changed vCPU, sharing one group id."
        )
        preview.notes.append(self.scope_note())
        return preview


# --- emulator pinning -------------------------------------------------------------------------


class EmulatorPinForm(ChangeForm):
    slug = "emulatorpin"
    title = "Emulator pinning"

    cpuset = CpusetField(label="Emulator cpuset", help_text="e.g. 18-23 (virsh emulatorpin)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cpuset"].known = self.topology.cpu_ids
        self.fields["cpuset"].initial = self._current()

    def _current(self) -> str:
        return (self.vm.emulatorpin if self.vm.is_running else self.vm.emulatorpin_config) or ""

    def changes(self):
        return [
            ("emulatorpin", {"cpuset": self.cleaned_data["cpuset"]}, self.cleaned_data["scope"])
        ]

    def preview(self) -> Preview:
        topo = self.topology
        before = self._current()
        after = self.cleaned_data["cpuset"]
        preview = Preview()
        preview.rows.append(
            (
                "emulator threads",
                before or "not pinned",
                after,
                _nodes(cells_of(topo, safe_cpuset(before) or topo.cpu_ids)),
                _nodes(cells_of(topo, parse_cpuset(after))),
            )
        )
        cells = cells_of(topo, parse_cpuset(after))
        if len(cells) > 1:
            preview.warnings.append(f"The emulator threads span cells {_nodes(cells)}.")
        vcpu_cells = safe_nodeset(self.vm.cells)
        if vcpu_cells and not cells <= vcpu_cells:
            preview.warnings.append(
                f"The emulator lands on cell(s) {_nodes(cells - vcpu_cells)}, where none of the "
                f"VM's vCPUs run (they run on {_nodes(vcpu_cells)})."
            )
        shared = self._shared_warning(parse_cpuset(after), "The emulator pin")
        if shared:
            preview.warnings.append(shared)
        preview.notes.append(self.scope_note())
        return preview


# --- memory placement -------------------------------------------------------------------------

NUMATUNE_MODES = [
    ("strict", "strict — only these cells; allocation fails rather than going elsewhere"),
    ("preferred", "preferred — these cells first, others when they are full"),
    ("interleave", "interleave — round-robin over these cells"),
    ("restrictive", "restrictive — like strict, enforced by cgroups only"),
]


class NumatuneForm(ChangeForm):
    slug = "numatune"
    title = "Memory placement (numatune)"

    mode = forms.ChoiceField(choices=NUMATUNE_MODES, widget=forms.RadioSelect)
    nodeset = NodesetField(label="Nodeset (cells)", help_text="e.g. 1 or 0-1")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["nodeset"].known = frozenset(c.id for c in self.topology.cells)
        self.fields["mode"].initial = self.vm.numatune_mode or "strict"
        self.fields["nodeset"].initial = self.vm.numatune_nodeset

    @property
    def refuses_live_strict(self) -> bool:
        return self.vm.is_running

    def changes(self):
        data = self.cleaned_data
        return [("numatune", {"mode": data["mode"], "nodeset": data["nodeset"]}, data["scope"])]

    def preview(self) -> Preview:
        data = self.cleaned_data
        before = f"{self.vm.numatune_mode or '(none)'} {self.vm.numatune_nodeset or ''}".strip()
        preview = Preview(columns=("what", "before", "after", "cells before", "cells after"))
        preview.rows.append(
            (
                "memory",
                before,
                f"{data['mode']} {data['nodeset']}",
                self.vm.memory_cells or "—",
                data["nodeset"],
            )
        )
        if (
            self.vm.is_running
            and _scope_has(data["scope"], "live")
            and (data["mode"] == "strict" or self.vm.numatune_mode in ("", "strict"))
        ):
            preview.warnings.append(
                "libvirt refuses to change the nodeset of a running VM in strict mode "
                f'("{STRICT_LIVE_REFUSAL}"): the live part will fail with that message. '
                "Choose config scope to apply it at the next boot."
            )
        vcpu_cells = safe_nodeset(self.vm.cells)
        nodes = _parse_nodeset(data["nodeset"])
        if vcpu_cells and nodes != vcpu_cells:
            preview.warnings.append(
                f"Memory on cell(s) {data['nodeset']} while the vCPUs run on {self.vm.cells}: "
                "remote memory (cross-node)."
            )
        preview.notes.append(self.scope_note())
        return preview


# --- vCPU count: hot-add, maximum, hot-remove -----------------------------------------------


def _current_count_rows(
    vm: VirtualMachine, count: int, *, live: bool, config: bool
) -> list[tuple[str, str, str]]:
    """The "current config" and "current live" rows of a vCPU-count preview: before, after."""
    return [
        (
            "current config",
            str(vm.vcpu_current_config),
            str(count if config else vm.vcpu_current_config),
        ),
        (
            "current live",
            _dash(vm.vcpu_current_live),
            _dash(count if live and vm.is_running else vm.vcpu_current_live),
        ),
    ]


def _live_or_config_current(vm: VirtualMachine) -> int:
    return vm.vcpu_current_live if vm.is_running else vm.vcpu_current_config


def _maximum(vm: VirtualMachine) -> int:
    return vm.vcpu_max_live if vm.is_running and vm.vcpu_max_live else vm.vcpu_max_config


class HotAddForm(ChangeForm):
    slug = "hot-add"
    title = "CPU hot-add"

    count = forms.IntegerField(label="vCPUs after the change", min_value=1)
    online_in_guest = forms.BooleanField(
        required=False,
        initial=True,
        label="Online the new CPUs in the guest (through the guest agent)",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = _live_or_config_current(self.vm)
        self.maximum = _maximum(self.vm)
        self.fields["count"].initial = min(self.current + 1, self.maximum)
        self.fields["count"].help_text = (
            f"now {self.current}; at most {self.maximum} (the maximum can only be raised in "
            "the config and takes effect at the next boot)"
        )

    def clean_count(self) -> int:
        count = self.cleaned_data["count"]
        if count > self.maximum:
            raise ValidationError(
                f"{count} is more than the maximum of {self.maximum} vCPUs; the maximum can "
                "only be raised in the config (its own change) and takes effect at the next "
                "boot."
            )
        if count <= self.current:
            raise ValidationError(
                f"{self.vm.name} has {self.current} vCPUs already; to remove vCPUs use "
                "CPU hot-remove."
            )
        return count

    def changes(self):
        data = self.cleaned_data
        params: dict = {"count": data["count"]}
        if data.get("online_in_guest") and _scope_has(data["scope"], "live"):
            params["online_in_guest"] = True
        return [("setvcpus", params, data["scope"])]

    def preview(self) -> Preview:
        data = self.cleaned_data
        preview = Preview(columns=("vcpucount", "before", "after"))
        vm = self.vm
        live = _scope_has(data["scope"], "live")
        config = _scope_has(data["scope"], "config")
        preview.rows.append(("maximum config", str(vm.vcpu_max_config), str(vm.vcpu_max_config)))
        preview.rows.append(("maximum live", _dash(vm.vcpu_max_live), _dash(vm.vcpu_max_live)))
        preview.rows.extend(_current_count_rows(vm, data["count"], live=live, config=config))
        if live:
            first, last = self.current, data["count"] - 1
            preview.commands = guest_online_commands(range(first, last + 1))
            if data.get("online_in_guest"):
                preview.notes.append(
                    "The worker then onlines the new CPUs through the guest agent. When the "
                    "agent does not answer, run this inside the guest:"
                )
            else:
                preview.notes.append(
                    "The new vCPUs appear offline in the guest; online them inside the guest:"
                )
        preview.notes.append(self.scope_note())
        return preview


def _dash(value) -> str:
    return "—" if value is None else str(value)


class MaximumForm(ChangeForm):
    slug = "maximum"
    title = "Raise the vCPU maximum (config)"
    scopes = [("config", "config only (the maximum takes effect at the next boot)")]

    maximum = forms.IntegerField(label="Maximum vCPUs", min_value=1, max_value=4096)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["maximum"].initial = self.vm.vcpu_max_config + 1
        self.fields["maximum"].help_text = (
            f"config maximum now {self.vm.vcpu_max_config}; the running VM keeps its maximum "
            "until the next boot"
        )

    def clean_maximum(self) -> int:
        maximum = self.cleaned_data["maximum"]
        if maximum < self.vm.vcpu_current_config:
            raise ValidationError(
                f"The maximum cannot be below the {self.vm.vcpu_current_config} vCPUs the "
                "config starts with."
            )
        if maximum == self.vm.vcpu_max_config:
            raise ValidationError(f"The config maximum is {maximum} already.")
        return maximum

    def changes(self):
        return [("setvcpus", {"maximum": self.cleaned_data["maximum"]}, "config")]

    def preview(self) -> Preview:
        preview = Preview(columns=("vcpucount", "before", "after"))
        preview.rows.append(
            ("maximum config", str(self.vm.vcpu_max_config), str(self.cleaned_data["maximum"]))
        )
        preview.rows.append(
            ("maximum live", _dash(self.vm.vcpu_max_live), _dash(self.vm.vcpu_max_live))
        )
        preview.notes.append(
            "The maximum lives in the persistent config only: it takes effect at the next boot."
        )
        return preview


class HotRemoveForm(ChangeForm):
    slug = "hot-remove"
    title = "CPU hot-remove"

    count = forms.IntegerField(label="vCPUs after the change", min_value=1)
    offline_in_guest = forms.BooleanField(
        required=False,
        initial=True,
        label="First offline the CPUs in the guest (through the guest agent)",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = _live_or_config_current(self.vm)
        self.fields["count"].initial = max(self.current - 1, 1)
        self.fields["count"].help_text = f"now {self.current}"

    def clean_count(self) -> int:
        count = self.cleaned_data["count"]
        if count >= self.current:
            raise ValidationError(
                f"{self.vm.name} has {self.current} vCPUs; hot-remove needs fewer "
                "(to add vCPUs use CPU hot-add)."
            )
        return count

    def changes(self):
        data = self.cleaned_data
        records = []
        if data.get("offline_in_guest") and _scope_has(data["scope"], "live"):
            cpus = format_cpuset(range(data["count"], self.current))
            records.append(("guest_vcpus", {"cpus": cpus, "online": False}, "live"))
        records.append(("setvcpus", {"count": data["count"]}, data["scope"]))
        return records

    def preview(self) -> Preview:
        data = self.cleaned_data
        vm = self.vm
        live = _scope_has(data["scope"], "live")
        config = _scope_has(data["scope"], "config")
        preview = Preview(columns=("vcpucount", "before", "after (if the hypervisor agrees)"))
        preview.rows.extend(_current_count_rows(vm, data["count"], live=live, config=config))
        if live:
            preview.warnings.append(
                "Unplugging a vCPU from a running VM needs the guest's cooperation (ACPI). "
                f'QEMU without ACPI refuses it ("{UNPLUG_REFUSAL}"); with ACPI the unplug '
                "request can time out, the guest no longer lists the CPU and the host may "
                "still count it. The change record's outcome shows what really happened."
            )
            preview.commands = guest_online_commands(range(data["count"], self.current), False)
            preview.notes.append(
                "Without the guest agent, offline the CPUs inside the guest first:"
            )
        preview.notes.append(self.scope_note())
        return preview


FORMS: dict[str, type[ChangeForm]] = {
    form.slug: form
    for form in (VcpuPinForm, EmulatorPinForm, NumatuneForm, HotAddForm, MaximumForm, HotRemoveForm)
}


class BalancingFlagsForm(forms.ModelForm):
    """The VM's flags for the placement planner (vms.placement.VmDemand.locked / dedicated)."""

    class Meta:
        model = VirtualMachine
        fields = ["balancing_locked", "dedicated"]
        labels = {
            "balancing_locked": "Locked: never moved by a balancing plan",
            "dedicated": "Dedicated: whole cores of its own, no over-commit",
        }
