"""Permission denials in the log as one line each, not a traceback.

Django logs every 403 on ``django.request`` — a raised ``PermissionDenied`` with the exception
attached (``exc_info``), so each denial wrote a full traceback: a user clicking around without
a role, or a scanner, filled the log with stack frames that say nothing (the reason is the
exception's message). :class:`ForbiddenInOneLine` (installed on ``django.request`` by
``numaportal.settings.LOGGING``) rewrites those records into::

    forbidden: user=bob method=POST path=/hosts/hv01/remove/ reason=needs hosts.delete_host

without ``exc_info``. Every other record of the logger (404s, 405s, and the 500s whose
tracebacks matter) passes unchanged. Values are made printable (a path may carry a decoded
newline), so a denial is always exactly one line.
"""

from __future__ import annotations

import logging

__all__ = ["ForbiddenInOneLine"]


def _printable(value: object) -> str:
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ForbiddenInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        if getattr(record, "forbidden_in_one_line", False):
            # Rewritten already: a second django.setup() in the process (numaportal.wsgi
            # imported by a test, say) configures LOGGING again, and dictConfig adds this
            # filter to the logger a second time; the first one took the reason away.
            return True
        record.forbidden_in_one_line = True
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        exc = record.exc_info[1] if record.exc_info else None
        reason = str(exc) if exc is not None and str(exc) else "permission denied"
        record.msg = "forbidden: user=%s method=%s path=%s reason=%s"
        record.args = tuple(
            _printable(v)
            for v in (
                name,
                getattr(request, "method", "-"),
                getattr(request, "path", "-"),
                reason,
            )
        )
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True
