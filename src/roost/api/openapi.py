"""The OpenAPI document, completed once for every route: how to authenticate, and the
problem responses (RFC 9457, ``application/problem+json``) any route may give.

Routers declare only their success responses. Every error goes through
:mod:`roost.api.problems`, whatever the route, so the error responses are documented here,
centrally, instead of on each route (where they would drift): a route that needs a token gets
401 and 403, every route 404, 409, 413, 422 and 429, and 500 and 503 when its service fails
or is off. A client generated from the document, or schemathesis checking it
(tests/integration/test_openapi_fuzz.py), so sees every status code the API can answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from roost.api.problems import PROBLEM

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong and what to change."},
        "errors": {
            "type": "array",
            "description": "422 only: each invalid field and why.",
            "items": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_EVERY_ROUTE = {
    404: "No such object (or one outside the token's sites).",
    409: "The request contradicts what is stored.",
    413: "The request body is larger than allowed.",
    422: "Invalid input; the problem names each field.",
    429: "Too many requests; retry later.",
    500: "Internal error (the server log has the details).",
    503: "The service that answers this is not running.",
}
# routes that take a credential of their own: an enrollment token, a node's certificate
_OWN_CREDENTIAL = ("/api/v1/enroll", "/api/v1/nodes/self")
_WITH_TOKEN = {
    401: "No token, or an invalid, expired or revoked one.",
    403: "The token's role or sites do not allow this.",
}


def _problem(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {PROBLEM: {"schema": ref}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``, built once and cached as FastAPI does."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    # FastAPI's own 422 documents its default body, which Roost does not send
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            errors = dict(_EVERY_ROUTE)
            if "requestBody" in operation:
                errors[400] = "The body cannot be read (not UTF-8, or not the declared type)."
            if "security" in operation:  # an API token (roost.api.deps.require)
                errors |= _WITH_TOKEN
            elif path.startswith(_OWN_CREDENTIAL):
                errors[401] = _WITH_TOKEN[401]
            responses = operation.setdefault("responses", {})
            for status, text in errors.items():
                if str(status) not in responses or status == 422:
                    responses[str(status)] = _problem(text)
    app.openapi_schema = doc
    return doc
