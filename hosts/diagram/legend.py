"""The legend above the cells: the key to the marks, then every VM in its colour."""

from __future__ import annotations

from hosts.diagram.colours import OVER_COLOUR, vm_colour
from hosts.diagram.markup import attrs, esc, plural, safe_href
from hosts.diagram.model import DiagramVm
from numaportal.virt.cpuset import format_cpuset

#: The VM legend scrolls (a few lines high) above this many VMs.
LEGEND_OPEN_MAX = 16


def legend(vms: list[DiagramVm], id_prefix: str) -> str:
    """The key to the marks, then *vms* (sorted by the caller), each with its facts."""
    key_hatch = f"{id_prefix}-float-key"
    key = (
        '<ul class="numa-key">'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect width="22" height="12" rx="2" fill="#2f6db5"/></svg> pinned vCPU</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect x="0.5" y="0.5" width="21" height="11" rx="2" fill="#2f6db5" stroke="#1d2330"'
        ' stroke-dasharray="3 2" opacity="0.6"/></svg> pinned to a range</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        '<rect x="0.75" y="0.75" width="20.5" height="10.5" rx="2" fill="#fff"'
        ' stroke="#2f6db5" stroke-width="1.5" stroke-dasharray="2 1.5"/></svg>'
        " unpinned vCPU last ran here</li>"
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        f'<defs><pattern id="{esc(key_hatch)}" width="6" height="6"'
        ' patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c9d3e6" stroke-width="2.2"/></pattern></defs>'
        f'<rect x="0.5" y="0.5" width="21" height="11" fill="url(#{esc(key_hatch)})"'
        ' stroke="#8c97ab"/></svg> VMs may float here</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="12" height="12" aria-hidden="true">'
        '<rect width="12" height="12" rx="2" fill="#555"/><text x="6" y="9.5" font-size="9"'
        ' font-weight="700" fill="#fff" text-anchor="middle">E</text></svg> emulator pin</li>'
        '<li><svg xmlns="http://www.w3.org/2000/svg" width="22" height="12" aria-hidden="true">'
        f'<rect x="1.25" y="1.25" width="19.5" height="9.5" fill="#fff" stroke="{OVER_COLOUR}"'
        ' stroke-width="2.5"/></svg> over-committed</li>'
        "</ul>"
    )
    if not vms:
        return key + '<p class="numa-legend-empty">No VMs on this host.</p>'
    items = []
    for vm in vms:
        # A square of the VM's colour; its size and shape are diagram.css's (one line of a
        # thousand-VM legend is kept short).
        swatch = f'<i class="swatch"{attrs(style="background:" + vm_colour(vm.uuid))}></i>'
        href = safe_href(vm.url)
        name = f"<a{attrs(href=href)}>{esc(vm.name)}</a>" if href else esc(vm.name)
        facts = []
        if vm.vcpu_affinity:
            facts.append(f"vCPUs {format_cpuset(vm.vcpu_affinity)}")
            if vm.pinned_vcpus:
                facts.append(f"{len(vm.pinned_vcpus)} pinned")
        if vm.emulatorpin:
            facts.append(f"emulator {format_cpuset(vm.emulatorpin)}")
        if vm.memory_cells:
            facts.append(f"memory node {format_cpuset(vm.memory_cells)}")
        cross = ' <span class="cross-node">cross-node</span>' if vm.cross_node else ""
        items.append(
            f"<li{attrs(class_='vm', data_vm_uuid=vm.uuid)}>{swatch} {name}"
            f' <span class="facts">{esc(", ".join(facts))}</span>{cross}</li>'
        )
    # A host with a hundred VMs would push the diagram off the screen: the list scrolls in a
    # few lines instead. (Not a <details>: every <details> in the fragment is a NUMA cell.)
    classes = "numa-legend" + (" scrolling" if len(vms) > LEGEND_OPEN_MAX else "")
    return (
        key
        + f'<p class="numa-vms">{plural(len(vms), "VM")}:</p>'
        + f"<ul{attrs(class_=classes)}>{''.join(items)}</ul>"
    )
