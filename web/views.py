"""Project-level pages: the home page that says what is running (and the least-local VMs)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from balancing import locality
from numaportal import roles
from web import status
from web.access import requires


@require_safe
@requires(roles.VIEW_STATUS)
def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {"components": status.collect()}
    # The status table needs the viewer role (it names the database, broker, workers and the
    # libvirt host); the least-local VMs need the VMs' view permission on top.
    if request.user.has_perm(roles.VIEW_VM):
        context["least_local"] = locality.least_local()
        context["locality_below_count"] = locality.below_threshold_count()
    return render(request, "home.html", context)


@require_safe
@requires(roles.VIEW_STATUS)
def status_fragment(request: HttpRequest) -> HttpResponse:
    """The status table alone; htmx on the home page swaps it in every few seconds."""
    return render(request, "_status_table.html", {"components": status.collect()})
