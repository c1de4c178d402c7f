"""The OpenAPI document: every response code the API returns, with its body, and the event
schema as the body of `POST /events`. Served at /openapi.json (with /docs) only when DOCS=on;
`app.openapi()` builds it in-process for the test suite either way."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from status import limits
from status.events.schemas import json_schema


class Problem(BaseModel):
    """Every error: what is wrong, in words a caller can act on (never the value sent)."""

    detail: str


class FieldProblem(BaseModel):
    field: str
    message: str
    index: int | None = None  # the event's place in a batch
    id: str | None = None  # the event's id


class Invalid(BaseModel):
    detail: str
    errors: list[FieldProblem] = []


def _problem(description: str, model: type[BaseModel] = Problem) -> dict[str, Any]:
    return {"model": model, "description": description}


BAD_REQUEST = {400: _problem("The body is not what this route reads (not JSON, a field missing)")}
UNAUTHORIZED = {401: _problem("Missing or wrong credentials")}
FORBIDDEN = {403: _problem("A provider signature is missing or does not match")}
NOT_FOUND = {404: _problem("No such record")}
CONFLICT = {409: _problem("The record's state does not allow this (e.g. already resolved)")}
TOO_LARGE = {413: _problem(f"The body is over its size limit (at most {limits.MAX_EVENTS_BODY})")}
INVALID = {422: _problem("A field breaks a rule; each problem names the field", Invalid)}

API = {**UNAUTHORIZED, **INVALID}  # every Bearer API_KEY route
WEBHOOK = {**BAD_REQUEST, **UNAUTHORIZED, **FORBIDDEN, **TOO_LARGE, **INVALID}


def install(app: FastAPI) -> None:
    """Build the document once, with the event schemas among the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        events = json_schema(ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(events.pop("$defs", {}))
        batch = {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "items": events, "minItems": 1, "maxItems": 5000}
            },
        }
        body = {"oneOf": [events, batch]}
        post = document["paths"]["/events"]["post"]
        post["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
