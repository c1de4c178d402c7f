"""The hand-off API (Bearer API_KEY), for clinics that work hand-offs in their own CRM.

`GET /api/handoffs[?status=open|resolved]`, `GET /api/handoffs/{id}`,
`POST /api/handoffs/{id}/reply {"text"}`, `POST /api/handoffs/{id}/resolve {"note"?}`.
Replies leave through the patient's channel (SMS or Telegram) via the outbox. Errors are JSON
`{"detail": "..."}`: 401 bad key, 404 unknown hand-off, 409 already resolved, 422 bad body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bot import handoffs
from bot.handoffs import HandoffClosed, HandoffError, HandoffNotFound, HandoffStatus
from channels import handoff_actions, openapi
from channels.deps import read_body, require_api_key
from channels.handoff_actions import MAX_NOTE, MAX_TEXT, Actor
from channels.staff import handoff_view, models
from status import limits, patients
from status.db import utcnow
from status.patients import Patient

router = APIRouter(
    prefix="/api/handoffs",
    responses={**openapi.API, **openapi.NOT_FOUND, **openapi.CONFLICT, **openapi.TOO_LARGE},
)
STATUSES = tuple(s.value for s in HandoffStatus)
BLANK = " \t\n\r\f\v"  # what counts as an empty reply, in the document and here alike


class Unprocessable(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(422, message)


async def _json_object(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await read_body(request, limits.MAX_WEBHOOK_BODY)
    if not raw.strip():
        if required:
            raise Unprocessable('the body is empty; send JSON like {"text": "..."}')
        return {}
    try:
        body = limits.load_json(raw, max_bytes=limits.MAX_WEBHOOK_BODY)
    except limits.LimitExceeded as exc:
        raise Unprocessable(f"the body is refused: {exc.rule}") from exc
    except ValueError as exc:
        raise Unprocessable(f"the body is {exc}") from exc
    if not isinstance(body, dict):
        raise Unprocessable(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _text_field(body: dict, name: str, *, required: bool, limit: int) -> str | None:
    unknown = sorted(set(body) - {name})
    if unknown:
        raise Unprocessable(f"unknown field(s) {', '.join(map(repr, unknown))}; send only {name!r}")
    value = body.get(name)
    if value is None:
        if required:
            raise Unprocessable(f'"{name}" is required: send {{"{name}": "..."}}')
        return None
    if not isinstance(value, str):
        raise Unprocessable(f'"{name}" must be a string, not {type(value).__name__}')
    if limits.unstorable(value):  # what a person writes is sent as written, or refused
        raise Unprocessable(
            f'"{name}" holds a NUL or a lone surrogate, which cannot be sent; remove it'
        )
    if required and not value.strip(BLANK):
        raise Unprocessable(f'"{name}" is empty; write what the patient should receive')
    if len(value) > limit:
        raise Unprocessable(f'"{name}" has {len(value)} characters; the limit is {limit}')
    return value.strip(BLANK) or None


def _http(exc: HandoffError, action: str) -> HTTPException:
    """A typed failure of a hand-off action as the response a caller can act on (another
    clinic's hand-off is 404, as an unknown one)."""
    if isinstance(exc, HandoffNotFound):
        return HTTPException(404, exc.message)
    if isinstance(exc, HandoffClosed) and action == "resolve":
        return HTTPException(409, f"hand-off {exc.handoff_id} is already resolved; nothing changed")
    if isinstance(exc, HandoffClosed):
        return HTTPException(
            409,
            f"hand-off {exc.handoff_id} is resolved and the bot has the conversation again; "
            "nothing was sent",
        )
    return Unprocessable(f"cannot {action} hand-off {exc.handoff_id}: {exc.message}")


@router.get("")
def list_handoffs(
    request: Request,
    status: HandoffStatus | None = None,
    limit: int = Query(200, ge=1, le=limits.MAX_LIMIT),
    clinic_id: int = Depends(require_api_key),
) -> dict:
    """The key's clinic's hand-offs, with the context packet frozen at hand-off time."""
    with request.app.state.db.session() as session:
        rows = handoffs.list_handoffs(session, [clinic_id], status, limit=limit)
        source = patients.source_ids(session, {h.patient_id for h in rows})
        staff = models.names(session, {h.assignee_id for h in rows})
        items = [
            {**handoff_view.summary_dict(h, source.get(h.patient_id), staff), "context": h.context}
            for h in rows
        ]
    return {"handoffs": items, "count": len(items)}


@router.get("/{handoff_id}")
def get_handoff(
    handoff_id: int, request: Request, clinic_id: int = Depends(require_api_key)
) -> dict:
    """One hand-off: its entries, the transcript, the frozen packet and the live one."""
    with request.app.state.db.session() as session:
        try:
            detail = handoff_actions.view(
                session, Actor.api(clinic_id), handoff_id, utcnow(), "api"
            )
        except HandoffError as exc:
            raise _http(exc, "view") from exc
        return handoff_view.detail_dict(detail)


def _body_schema(name: str, limit: int, *, required: bool) -> dict:
    """The documented JSON body: one string field (nothing else; required or optional)."""
    # No NUL anywhere (it cannot be sent) and, when required, not only BLANK (spelled out: the
    # same in every regex engine).
    field = {"type": "string", "minLength": 1, "maxLength": limit, "pattern": r"^[^\x00]*$"}
    if required:
        field["pattern"] = r"^[^\x00]*[^ \t\n\r\f\v\x00][^\x00]*$"
    else:
        field = {"anyOf": [field, {"type": "null"}]}
    schema = {"type": "object", "properties": {name: field}, "additionalProperties": False}
    if required:
        schema["required"] = [name]
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


@router.post(
    "/{handoff_id}/reply",
    status_code=202,
    openapi_extra=_body_schema("text", MAX_TEXT, required=True),
)
async def reply(
    handoff_id: int, request: Request, clinic_id: int = Depends(require_api_key)
) -> JSONResponse:
    """Queue a staff reply to the patient, through the channel the conversation is on."""
    body = await _json_object(request, required=True)
    text = _text_field(body, "text", required=True, limit=MAX_TEXT)

    def write() -> dict:
        with request.app.state.db.session() as session:
            try:
                message = handoff_actions.reply(
                    session, Actor.api(clinic_id), handoff_id, text or "", utcnow()
                )
            except HandoffError as exc:
                raise _http(exc, "reply to") from exc
            return {
                "handoff_id": handoff_id,
                "message_id": message.id,
                "channel": message.channel,
                "status": message.status,
            }

    result = await run_in_threadpool(write)
    request.app.state.runtime.notify()
    return JSONResponse(result, status_code=202)


@router.post("/{handoff_id}/resolve", openapi_extra=_body_schema("note", MAX_NOTE, required=False))
async def resolve(
    handoff_id: int, request: Request, clinic_id: int = Depends(require_api_key)
) -> dict:
    """Close the hand-off and give the conversation back to the bot."""
    body = await _json_object(request, required=False)
    note = _text_field(body, "note", required=False, limit=MAX_NOTE)

    def write() -> dict:
        with request.app.state.db.session() as session:
            try:
                handoff = handoff_actions.resolve(
                    session, Actor.api(clinic_id), handoff_id, note, utcnow()
                )
            except HandoffError as exc:
                raise _http(exc, "resolve") from exc
            patient = session.get(Patient, handoff.patient_id) if handoff.patient_id else None
            return handoff_view.summary_dict(handoff, patient.source_id if patient else None)

    return await run_in_threadpool(write)
