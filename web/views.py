"""Project-level pages: the home page that says what is running."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from web import status


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"components": status.collect()})


@login_required
def status_fragment(request: HttpRequest) -> HttpResponse:
    """The status table alone; htmx on the home page swaps it in every few seconds."""
    return render(request, "_status_table.html", {"components": status.collect()})
