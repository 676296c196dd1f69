"""``/api/v1/hosts/{name}/numastat/?window=``: a host's numastat history over one of the
history page's windows (``1h``, ``24h``, ``7d``, ``30d``; none: ``24h``), read by the same
function as the page (:func:`hosts.history.history`: raw samples up to the raw retention,
rollups plus the raw tail beyond it) and the latest values (:func:`hosts.history.latest`).

A removed host's history is kept, and shown, as on the page. Unlike the page, which shows the
default window for an unknown one, the API refuses it (400): a script asking for "2y" should
not silently get 24 hours.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import validation_error
from api.parameters import host_name
from api.serializers.numastat import NumastatHistorySerializer
from hosts import history as numastat_history
from hosts.models import Host
from numaportal import roles

__all__ = ["NumastatView", "WindowForm"]


class WindowForm(forms.Form):
    window = forms.ChoiceField(
        choices=[(w.key, w.label) for w in numastat_history.WINDOWS.values()], required=False
    )

    def window_key(self) -> str:
        return self.cleaned_data["window"] or numastat_history.DEFAULT_WINDOW


class NumastatView(GenericAPIView):
    """Per-cell rates, local ratio and free memory over the window, and the latest values."""

    read_permission = roles.VIEW_HOST
    serializer_class = NumastatHistorySerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        parameters=[
            host_name("name"),
            OpenApiParameter(
                "window",
                OpenApiTypes.STR,
                enum=list(numastat_history.WINDOWS),
                default=numastat_history.DEFAULT_WINDOW,
                description="; ".join(
                    f"{w.key}: {w.label}, {w.bucket_s} s buckets"
                    for w in numastat_history.WINDOWS.values()
                ),
            ),
        ],
        responses={200: NumastatHistorySerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        host = get_object_or_404(Host, name=name)
        form = WindowForm(request.query_params)
        if not form.is_valid():
            raise validation_error(ValidationError(form.errors.as_data()))
        history = numastat_history.history(host, form.window_key())
        latest = numastat_history.latest(host)
        chart = history.as_json()
        data = {
            "host": host.name,
            "window": history.window,
            "windows": list(numastat_history.WINDOWS.values()),
            "start": history.start,
            "end": history.end,
            "cells": history.cells,
            "has_counters": history.has_counters,
            "ever_sampled": bool(history.cells) or latest is not None or host.cell_rollups.exists(),
            "times": chart["times"],
            "series": chart["series"],
            "free_mib": chart["free_mib"],
            "latest": latest,
        }
        return Response(self.get_serializer(data).data)
