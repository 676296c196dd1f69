"""Change history review: the filtered list, its CSV export, one change with its diffs.

Read-only by design: there is no edit or delete URL for a change record (they are
append-only; the worker is the only writer after ``request_change`` created them).
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_safe

from changes.filters import ChangeFilter
from changes.models import Change
from changes.progress import running_move
from numaportal import roles
from numaportal.bounds import filter_results
from numaportal.formatting import params_text
from vms.models import VirtualMachine
from web.access import requires
from web.htmx import refresh_when_finished
from web.paging import paginate

PAGE_SIZE = 50
ACTIVE_STATUSES = frozenset({"queued", "running"})


def _queryset():
    return Change.objects.history()


@require_safe
@requires(roles.VIEW_CHANGE)
def change_list(request: HttpRequest) -> HttpResponse:
    change_filter = ChangeFilter(request.GET, queryset=_queryset())
    # a bad value lists nothing and says why (next to its field, or above the form)
    page, query = paginate(request, filter_results(change_filter), PAGE_SIZE, keys=True)
    changes = list(page.object_list)
    return render(
        request,
        "changes/change_list.html",
        {
            "filter": change_filter,
            "page": page,
            "changes": changes,
            # the table refreshes itself while a change on this page is queued or running
            "polling": any(c.status in ACTIVE_STATUSES for c in changes),
            "query": query,
            "group": change_filter.form.cleaned_data.get("group")
            if change_filter.is_valid()
            else None,
            "for_vm": _filtered_vm(change_filter),
        },
    )


def _filtered_vm(change_filter: ChangeFilter) -> VirtualMachine | None:
    """The VM the list is narrowed to (?vm=<id>), to name it in the heading."""
    if not change_filter.is_valid() or not change_filter.form.cleaned_data.get("vm"):
        return None
    return (
        VirtualMachine.objects.select_related("host")
        .filter(pk=change_filter.form.cleaned_data["vm"])
        .first()
    )


# --- CSV export -------------------------------------------------------------------------------

CSV_COLUMNS = [
    "id",
    "group_id",
    "created_at",
    "started_at",
    "finished_at",
    "host",
    "vm",
    "vm_uuid",
    "kind",
    "params",
    "scope",
    "status",
    "actor",
    "reason",
    "error",
    "outcome",
]

#: A cell starting with one of these is a formula to spreadsheet programs (CSV injection).
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """Text for one CSV cell; a formula-leading cell gets a leading apostrophe (OWASP)."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text.startswith(FORMULA_LEADS):
        return "'" + text
    return text


def csv_row(change: Change) -> list[str]:
    values = [
        change.pk,
        change.group_id,
        change.created_at,
        change.started_at,
        change.finished_at,
        change.host.name if change.host_id else "",
        change.target_name,
        change.vm.uuid if change.vm_id else "",
        change.kind,
        params_text(change.params),
        change.scope,
        change.status,
        change.actor_name,
        change.reason,
        change.error,
        change.outcome,
    ]
    return [csv_safe(v) for v in values]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(changes: Iterable[Change]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for change in changes:
        yield writer.writerow(csv_row(change))


def filter_errors_text(change_filter: ChangeFilter) -> str:
    """The filter's errors as text, one ``field: message`` line each (the export's 400)."""
    return "".join(
        f"{name}: {message}\n"
        for name, messages in change_filter.errors.items()
        for message in messages
    )


@require_safe
@requires(roles.VIEW_CHANGE)
def change_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered list (same filters as the page, every page) as CSV.

    The filters are validated before the response starts: once the headers (200, an
    attachment) are out, a refused query could only cut the stream. A bad value is a 400 with
    the reasons as text."""
    change_filter = ChangeFilter(request.GET, queryset=_queryset())
    if not change_filter.is_valid():
        return HttpResponseBadRequest(
            filter_errors_text(change_filter), content_type="text/plain; charset=utf-8"
        )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(
        _csv_lines(change_filter.qs.iterator(chunk_size=500)), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="changes-{stamp}.csv"'
    return response


# --- one change -------------------------------------------------------------------------------


def _tuning(snapshot: dict | None) -> dict | None:
    if not snapshot:
        return None
    if "tuning" in snapshot:
        return snapshot["tuning"]
    keys = ("config_tuning", "live_tuning", "vcpucount", "emulatorpin_config", "emulatorpin_live")
    return {key: snapshot.get(key) for key in keys if key in snapshot} or None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True)


def unified(before: Any, after: Any, what: str) -> str:
    """A unified diff of two texts (or JSON values); empty when they are equal."""
    a, b = _text(before), _text(after)
    if a == b:
        return ""
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True),
            b.splitlines(keepends=True),
            fromfile=f"{what} before",
            tofile=f"{what} after",
        )
    )


def diffs(change: Change) -> list[dict[str, str]]:
    """The before/after diffs the page shows: persistent XML, live XML and the tuning."""
    before, after = change.before or {}, change.after or {}
    if not before or not after:
        return []
    if change.scope == Change.Scope.PORTAL:  # a portal setting (vm_flags, balancing_policy)
        what = "portal setting"
        return [{"what": what, "diff": unified(before, after, what), "slug": "portal"}]
    if change.vm_id is None:  # a host setting (numa_balancing): no XML, no tuning
        what = "host setting"
        return [{"what": what, "diff": unified(before, after, what), "slug": "host"}]
    sections = [
        ("persistent XML", before.get("persistent_xml"), after.get("persistent_xml")),
        ("live XML", before.get("live_xml"), after.get("live_xml")),
        ("tuning", _tuning(before), _tuning(after)),
        ("vCPU placement (vcpuinfo)", before.get("vcpu_info"), after.get("vcpu_info")),
    ]
    return [
        {"what": what, "diff": unified(a, b, what), "slug": what.split()[0].lower()}
        for what, a, b in sections
    ]


def _status_context(change: Change) -> dict[str, Any]:
    # A running memory move also shows how far it has got (the worker writes it as it goes).
    return {
        "change": change,
        "polling": change.status in ACTIVE_STATUSES,
        "move": running_move(change),
    }


@require_safe
@requires(roles.VIEW_CHANGE)
def change_detail(request: HttpRequest, pk) -> HttpResponse:
    change = get_object_or_404(Change.objects.select_related("host", "vm__host", "actor"), pk=pk)
    group = []
    if change.group_id:
        group = list(_queryset().filter(group_id=change.group_id))
    duration = None
    if change.started_at and change.finished_at:
        duration = (change.finished_at - change.started_at).total_seconds()
    context = {
        **_status_context(change),
        "params": sorted((change.params or {}).items()),
        "diffs": diffs(change),
        "group": group,
        "duration": duration,
    }
    return render(request, "changes/change_detail.html", context)


@require_safe
@requires(roles.VIEW_CHANGE)
def change_status(request: HttpRequest, pk) -> HttpResponse:
    """The status box alone (with a running memory move's progress), for htmx polling; when the
    change has ended the page reloads (HX-Refresh) so that its diffs and outcome show."""
    change = get_object_or_404(Change, pk=pk)
    context = {**_status_context(change), "oob": bool(request.GET.get("polling"))}
    response = render(request, "changes/_change_status.html", context)
    refresh_when_finished(request, response, change.status in ACTIVE_STATUSES)
    return response
