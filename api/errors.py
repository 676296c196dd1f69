"""Errors as JSON, in the forms' words: ``{"field": ["reason", ...]}`` for what was refused
(a service's :class:`django.core.exceptions.ValidationError` keeps its fields), ``{"detail":
"..."}`` for the rest, and libvirt's refusals in libvirt's words."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from numaportal.virt.errors import VirtError

__all__ = ["exception_handler", "validation_error"]


def validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A service's refusal as DRF's: its fields and reasons as they are; "non_field_errors"
    for a refusal that names no field."""
    if hasattr(exc, "error_dict"):
        detail: Any = {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    else:
        detail = {"non_field_errors": exc.messages}
    return exceptions.ValidationError(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = validation_error(exc)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, VirtError):
        # The host refused or did not answer: libvirt's words, not a 500.
        return Response({"detail": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
    return drf_exception_handler(exc, context)
