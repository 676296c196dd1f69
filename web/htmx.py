"""The two htmx conventions the pages use: is this an htmx request, and "reload when done".

A status box polls its own URL with ``?polling=1`` while its record is queued or running; the
poll that sees the end answers ``HX-Refresh`` so the whole page reloads with the result.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

__all__ = ["is_htmx", "refresh_when_finished"]


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def refresh_when_finished(request: HttpRequest, response: HttpResponse, active: bool) -> None:
    """Ask htmx to reload the page when a polling request sees its record no longer active."""
    if request.GET.get("polling") and not active:
        response["HX-Refresh"] = "true"
