"""The management commands' errors: a service's refusal as a :class:`CommandError` (exit
status 1) in the service's words — the form's field and reason, libvirt's message."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError

from numaportal.virt.errors import VirtError

__all__ = ["refusal"]


def _lines(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [
            message if field == "__all__" else f"{field}: {message}"
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    return list(exc.messages)


def refusal(exc: Exception, what: str) -> CommandError:
    """``raise refusal(exc, "not registering host x") from None``."""
    if isinstance(exc, ValidationError):
        words = "; ".join(_lines(exc))
    elif isinstance(exc, (VirtError, PermissionDenied, ValueError)):
        words = str(exc)
    else:  # pragma: no cover - callers pass the errors above
        raise exc
    return CommandError(f"{what}: {words}")
