"""The schema's error responses: drf-spectacular documents each operation's success only, but
every operation also answers errors, as JSON (:mod:`api.errors`): 401 without a valid token
or session, 403 for a role that does not allow it, 404 for an object (or page) that is not
there, 400 for a refused request (its fields and reasons). This hook adds those to every
operation that can answer them, unless a view documented its own, so that a client (and
schemathesis) knows every status the API answers and the error body's shape."""

from __future__ import annotations

from typing import Any

__all__ = ["document_errors"]

ERROR = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": (
        '{"detail": "reason"} for a refusal that names no field, else {"<field>": '
        '["reason", ...], ...} in the forms\' words ("non_field_errors" for the whole '
        "request); a field of a nested object has its own object of fields."
    ),
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
WORDS = {
    "400": "Refused: the fields and their reasons.",
    "401": "No valid token or session.",
    "403": "Your role does not allow this.",
    "404": "Not found (or not there for you), or no such page.",
}


def _codes(path: str, operation: dict[str, Any]) -> list[str]:
    codes = []
    params = operation.get("parameters", [])
    if "requestBody" in operation or any(p.get("in") == "query" for p in params):
        codes.append("400")
    if operation.get("security") != [] and operation.get("security") != [{}]:
        codes += ["401", "403"]
    if "{" in path or any(p.get("name") == "page" for p in params):
        codes.append("404")
    return codes


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR, ERROR_SCHEMA)
    ref = {"$ref": f"#/components/schemas/{ERROR}"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "patch", "post", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code in _codes(path, operation):
                responses.setdefault(
                    code,
                    {"description": WORDS[code], "content": {"application/json": {"schema": ref}}},
                )
    return result
