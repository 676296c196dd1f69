"""VM pages: the list across hosts (filtered) and one VM's placement, as virsh shows it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from hosts import selectors
from vms.filters import VirtualMachineFilter
from vms.models import VirtualMachine

PAGE_SIZE = 100


def _viewer(view):
    return login_required(
        permission_required("vms.view_virtualmachine", raise_exception=True)(view)
    )


@require_GET
@_viewer
def vm_list(request: HttpRequest) -> HttpResponse:
    queryset = selectors.host_vm_filter(VirtualMachine.objects.all())
    vm_filter = VirtualMachineFilter(request.GET, queryset=queryset)
    page = Paginator(vm_filter.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "vms/vm_list.html",
        {"filter": vm_filter, "page": page, "vms": page.object_list, "query": query.urlencode()},
    )


@require_GET
@_viewer
def vm_detail(request: HttpRequest, host_name: str, uuid) -> HttpResponse:
    vm = selectors.vm_with_vcpus(host_name, uuid).first()
    if vm is None:
        raise Http404("No such VM on this host.")
    width, cell_of = selectors.host_cpu_map(vm.host)
    context = {
        "vm": vm,
        "host": vm.host,
        "vcpu_rows": selectors.vcpuinfo_rows(vm, width, cell_of),
        "strip_width": width,
        "memory": selectors.format_kib(vm.memory_kib),
        "current_memory": selectors.format_kib(vm.current_memory_kib),
    }
    return render(request, "vms/vm_detail.html", context)
