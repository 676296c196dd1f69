"""Path parameters the schema must describe as the URL patterns match them: a host's name is a
slug (``<slug:name>``), so that generated clients (and schemathesis) never send one Django's
resolver answers with its HTML 404 before the API is reached."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

__all__ = ["SLUG", "host_name"]

SLUG = r"^[-a-zA-Z0-9_]+$"


def host_name(parameter: str = "name") -> OpenApiParameter:
    """The host-name path parameter called *parameter*."""
    return OpenApiParameter(
        parameter,
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        pattern=SLUG,
        description="a host's name",
    )
