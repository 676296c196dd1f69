"""Template filters for values the pages format the same way everywhere.

``{{ vm.memory_kib|kib }}`` → "1.5 GiB"; ``{{ change.params|params }}`` → compact JSON;
``{{ cpus|cpuset }}`` → "0-3,8" (libvirt's cpuset syntax) for any iterable of CPU ids.
Django autoescapes what they return: none of them marks text safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from numaportal.formatting import format_kib, params_text
from numaportal.virt.cpuset import format_cpuset

register = template.Library()


@register.filter(name="kib")
def kib(value: int | None) -> str:
    return format_kib(value)


@register.filter(name="params")
def params(value: Any) -> str:
    return params_text(value)


@register.filter(name="cpuset")
def cpuset(value: Iterable[int] | None) -> str:
    return format_cpuset(value) if value else ""
