"""The API's docs page works without the internet: /api/docs/ loads Swagger UI from the
portal's own static files (drf-spectacular-sidecar), nothing from a CDN; the schema it shows,
/api/schema/, is valid OpenAPI (drf-spectacular's validation, as `manage.py spectacular
--validate --fail-on-warn` runs it)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.api, pytest.mark.django_db]

DOCS = "/api/docs/"
SCHEMA = "/api/schema/"


class _Links(HTMLParser):
    """Every URL the page makes the browser load or link to: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append((tag, value))


@pytest.fixture
def docs_html(viewer_api) -> str:
    assert Client().get(DOCS).status_code == 401  # the viewer role, as every page
    response = viewer_api.get(DOCS)
    assert response.status_code == 200
    return response.content.decode()


def test_the_docs_page_loads_nothing_from_elsewhere(docs_html):
    # No absolute URL anywhere in the page (attributes, inline script, styles).
    assert re.findall(r"(?i)https?://\S+", docs_html) == []
    assert re.findall(r"""(?i)["'(]//[a-z0-9]""", docs_html) == []  # protocol-relative
    parser = _Links()
    parser.feed(docs_html)
    assert parser.urls, "no assets found: has the page changed?"
    static = "/" + settings.STATIC_URL.lstrip("/")
    for tag, url in parser.urls:
        assert url.startswith(static), f"<{tag}> loads {url}, not a local static file"
    # The page's script fetches the schema from the portal itself.
    assert re.search(r'url:\s*"/api/schema/"', docs_html), "the schema URL is not local"


def test_the_docs_page_shows_no_online_validator_badge(docs_html):
    """Swagger UI's standalone layout shows a badge image from validator.swagger.io (its
    default validatorUrl): a request to the internet on every visit. The page uses the base
    layout, which has no badge; if it ever uses the standalone one, validatorUrl must be off."""
    layout = re.search(r'layout:\s*"(\w+)"', docs_html)
    assert layout, "no layout in the page's script"
    if layout.group(1) != "BaseLayout":
        assert re.search(r'"validatorUrl":\s*("none"|null)', docs_html), layout.group(1)


def test_every_asset_of_the_docs_page_is_a_static_file_the_portal_has(docs_html, settings):
    parser = _Links()
    parser.feed(docs_html)
    static = "/" + settings.STATIC_URL.lstrip("/")
    # whitenoise serves STATIC_ROOT, which `collectstatic` (make run) fills; here it serves
    # what the finders find, i.e. what collectstatic would collect.
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    client = Client()
    for _tag, url in parser.urls:
        relative = url.split("?", 1)[0][len(static) :]
        found = finders.find(relative)
        assert found, f"{url}: no such static file (django.contrib.staticfiles finders)"
        assert Path(found).stat().st_size > 0, found
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body == Path(found).read_bytes(), url


def test_the_schema_is_served_as_openapi_3(viewer_api):
    response = viewer_api.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/hosts/" in schema["paths"]
    assert "knoxApiToken" in schema["components"]["securitySchemes"]


def test_the_schema_is_valid_openapi(tmp_path):
    """drf-spectacular's own validation (the OpenAPI 3 JSON schema) with warnings as errors:
    an endpoint the generator cannot describe fails here."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3.")
