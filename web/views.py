"""Project-level pages: the ops dashboard (the landing page), the status page that says what is
running, and what the login page says to a locked-out login."""

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from numaportal import roles
from web import dashboard, status
from web.access import requires


@require_safe
@requires(roles.VIEW_HOST)
def home(request: HttpRequest) -> HttpResponse:
    """The ops dashboard: the fleet's state, each figure a link to the filtered list."""
    board = dashboard.collect(request.user, timezone.now())
    return render(request, "home.html", {"board": board})


@require_safe
@requires(roles.VIEW_STATUS)
def status_page(request: HttpRequest) -> HttpResponse:
    """What is running: database, Redis, workers, beat, libvirt (the viewer role: it names them)."""
    return render(request, "status.html", {"components": status.collect()})


@require_safe
@requires(roles.VIEW_STATUS)
def status_fragment(request: HttpRequest) -> HttpResponse:
    """The status table alone; htmx on the status page swaps it in every few seconds."""
    return render(request, "_status_table.html", {"components": status.collect()})


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """django-axes' lockout response (``AXES_LOCKOUT_CALLABLE``): the login page again, status
    429, saying why and for how long. The form is unbound (a bound one would authenticate, and
    fail, once more); the username typed is kept."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    cool_off = _minutes(settings.AXES_COOLOFF_TIME.total_seconds())
    message = (
        f"Too many failed logins for this username from your address: logging in is locked for "
        f"{cool_off} (after {settings.AXES_FAILURE_LIMIT} failures in a row). "
        "An admin can unlock it sooner."
    )
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
