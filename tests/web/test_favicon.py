"""The site's icon: /favicon.ico (what browsers ask for on every page) and the SVG the pages
link, served to anyone (the login page asks for it too), from the vendored static files."""

import pytest

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def test_favicon_ico_is_served_at_the_root_without_a_login(client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file's header: reserved 0, type 1 (icon)


def test_pages_link_the_vendored_icons(client) -> None:
    page = client.get("/login/").content.decode()
    assert 'rel="icon" href="/static/numaportal/favicon/favicon.svg"' in page
    svg = client.get("/static/numaportal/favicon/favicon.svg")
    assert svg.status_code == 200
    assert b"<svg" in b"".join(svg.streaming_content)
