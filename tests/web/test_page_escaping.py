"""Escaping on the inventory pages: a hostile VM name on the host page, VM list, VM detail
and dashboard (the diagram stays well-formed XML), a hostile host error on the dashboard."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.web.diagram_xml import diagram_tree, local

pytestmark = [pytest.mark.web, pytest.mark.django_db]

HOSTILE = "<script>alert('x')</script>&\"vm\""

# --- escaping -----------------------------------------------------------------------------------


def test_hostile_vm_name_is_escaped_everywhere(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm = vm_factory(
        host,
        HOSTILE,
        pins={0: "0", 1: "6"},
        emulatorpin="1",
        memory_cells="0",
        drift=True,
        drift_detail=f"<img src=x onerror=alert(1)> {HOSTILE}",
    )
    pages = [
        ops_client.get(reverse("hosts:detail", args=[host.name])),
        ops_client.get(reverse("vms:list")),
        ops_client.get(vm.get_absolute_url()),
        ops_client.get(reverse("hosts:list")),
    ]
    for response in pages:
        page = response.content.decode()
        assert response.status_code == 200
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    for response in pages[:3]:
        assert "&lt;script&gt;alert(" in response.content.decode()
    # the diagram is well-formed XML whose text holds the name as text, not markup
    tree = diagram_tree(pages[0])
    assert not [el for el in tree.iter() if local(el.tag) in {"script", "img"}]
    assert any(HOSTILE in (el.text or "") for el in tree.iter())


def test_hostile_host_error_is_escaped(ops_client, host_factory):
    host_factory("hv01", last_error="<script>alert(1)</script>", sync_status="error")
    page = ops_client.get(reverse("hosts:list")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
