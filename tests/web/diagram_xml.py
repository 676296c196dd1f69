"""The topology diagram of a host page read as XML (hosts.diagram emits well-formed XML): the
fragment itself, tag names without their namespace, the thread and core groups. Shared by the
page tests in tests/web/."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def diagram_tree(response) -> ET.Element:
    """The diagram fragment of a host page, as XML (hosts.diagram emits well-formed XML)."""
    diagram = response.context["diagram"]
    assert diagram is not None
    assert str(diagram) in response.content.decode()
    return ET.fromstring(str(diagram))


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def threads(tree: ET.Element) -> dict[int, ET.Element]:
    return {
        int(el.get("data-cpu")): el
        for el in tree.iter()
        if local(el.tag) == "g" and "thread" in (el.get("class") or "").split()
    }


def cores(tree: ET.Element) -> list[ET.Element]:
    return [el for el in tree.iter() if local(el.tag) == "g" and (el.get("class") or "") == "core"]
