"""Scope: where a change applies (live, config or both) and its libvirt flags."""

from __future__ import annotations

import json
from typing import Any

import libvirt
import pytest

from numaportal.virt.errors import InvalidRequest
from numaportal.virt.scope import Scope

pytestmark = pytest.mark.libvirt

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def test_scope_values_and_flags() -> None:
    assert [s.value for s in Scope] == ["live", "config", "live+config"]
    assert Scope.LIVE.flags == LIVE
    assert Scope.CONFIG.flags == CONFIG
    assert Scope.BOTH.flags == LIVE | CONFIG
    assert Scope.BOTH.parts == (Scope.LIVE, Scope.CONFIG)
    assert Scope.CONFIG.parts == (Scope.CONFIG,)
    assert json.dumps(Scope.BOTH) == '"live+config"'


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("live", Scope.LIVE),
        ("config", Scope.CONFIG),
        ("live+config", Scope.BOTH),
        (" LIVE+Config ", Scope.BOTH),
        (Scope.CONFIG, Scope.CONFIG),
    ],
)
def test_scope_parse(text: str, scope: Scope) -> None:
    assert Scope.parse(text) is scope


@pytest.mark.parametrize("text", ["", "both", "current", "live,config", None, 1])
def test_scope_parse_refuses_others(text: Any) -> None:
    with pytest.raises(InvalidRequest, match="unknown scope"):
        Scope.parse(text)
