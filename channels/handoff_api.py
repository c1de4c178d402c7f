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
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from bot import handoffs
from bot.handoffs import Handoff, HandoffClosed, HandoffStatus
from channels import openapi
from channels.deps import read_body, require_api_key
from channels.staff import handoff_view, models
from status import limits
from status.db import utcnow
from status.patients import Patient

router = APIRouter(
    prefix="/api/handoffs",
    dependencies=[Depends(require_api_key)],
    responses={**openapi.API, **openapi.NOT_FOUND, **openapi.CONFLICT, **openapi.TOO_LARGE},
)
ACTOR = "api"
MAX_TEXT = 1600  # ten SMS segments
MAX_NOTE = 2000
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
    value = limits.scrub(value)  # kept, as a patient's text is, with NULs replaced
    if required and not value.strip(BLANK):
        raise Unprocessable(f'"{name}" is empty; write what the patient should receive')
    if len(value) > limit:
        raise Unprocessable(f'"{name}" has {len(value)} characters; the limit is {limit}')
    return value.strip(BLANK) or None


def _get(session, handoff_id: int) -> Handoff:  # noqa: ANN001
    handoff = handoffs.by_id(session, handoff_id)
    if handoff is None:
        raise HTTPException(404, f"no hand-off with id {handoff_id}")
    return handoff


@router.get("")
def list_handoffs(
    request: Request,
    status: HandoffStatus | None = None,
    limit: int = Query(200, ge=1, le=limits.MAX_LIMIT),
) -> dict:
    """Newest first, with the context packet frozen at hand-off time."""
    with request.app.state.db.session() as session:
        rows = handoffs.list_handoffs(session, status, limit=limit)
        patient_ids = {h.patient_id for h in rows if h.patient_id}
        source = (
            dict(
                session.execute(
                    select(Patient.id, Patient.source_id).where(Patient.id.in_(patient_ids))
                ).all()
            )
            if patient_ids
            else {}
        )
        staff = models.names(session, {h.assignee_id for h in rows})
        items = [
            {**handoff_view.summary_dict(h, source.get(h.patient_id), staff), "context": h.context}
            for h in rows
        ]
    return {"handoffs": items, "count": len(items)}


@router.get("/{handoff_id}")
def get_handoff(handoff_id: int, request: Request) -> dict:
    """One hand-off: its entries, the transcript, the frozen packet and the live one."""
    with request.app.state.db.session() as session:
        detail = handoff_view.load(session, handoff_id, utcnow())
        if detail is None:
            raise HTTPException(404, f"no hand-off with id {handoff_id}")
        models.audit(
            session,
            "viewed",
            actor=ACTOR,
            patient_id=detail.handoff.patient_id,
            handoff_id=handoff_id,
            detail="api",
        )
        return handoff_view.detail_dict(detail)


def _body_schema(name: str, limit: int, *, required: bool) -> dict:
    """The documented JSON body: one string field (nothing else; required or optional)."""
    field = {"type": "string", "minLength": 1, "maxLength": limit}
    if required:
        field["pattern"] = r"[^ \t\n\r\f\v]"  # not only BLANK (spelled out: same in every engine)
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
async def reply(handoff_id: int, request: Request) -> JSONResponse:
    """Queue a staff reply to the patient, through the channel the conversation is on."""
    body = await _json_object(request, required=True)
    text = _text_field(body, "text", required=True, limit=MAX_TEXT)

    def write() -> dict:
        with request.app.state.db.session() as session:
            handoff = _get(session, handoff_id)
            if handoff.status != HandoffStatus.OPEN:
                raise HTTPException(
                    409,
                    f"hand-off {handoff_id} is resolved and the bot has the conversation again; "
                    "nothing was sent",
                )
            try:
                message = handoffs.staff_reply(
                    session, handoff, staff_id=None, text=text, now=utcnow()
                )
            except ValueError as exc:  # e.g. an unknown sender with no channel to reply on
                raise Unprocessable(f"cannot reply to hand-off {handoff_id}: {exc}") from exc
            models.audit(
                session,
                "replied",
                actor=ACTOR,
                patient_id=handoff.patient_id,
                handoff_id=handoff_id,
                detail=f"message {message.id}: {text[:500]}",
            )
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
async def resolve(handoff_id: int, request: Request) -> dict:
    """Close the hand-off and give the conversation back to the bot."""
    body = await _json_object(request, required=False)
    note = _text_field(body, "note", required=False, limit=MAX_NOTE)

    def write() -> dict:
        with request.app.state.db.session() as session:
            handoff = _get(session, handoff_id)
            try:
                handoffs.resolve_and_return(
                    session, handoff, staff_id=None, note=note, now=utcnow()
                )
            except HandoffClosed as exc:
                raise HTTPException(
                    409, f"hand-off {handoff_id} is already resolved; nothing changed"
                ) from exc
            models.audit(
                session,
                "resolved",
                actor=ACTOR,
                patient_id=handoff.patient_id,
                handoff_id=handoff_id,
                detail=note or "",
            )
            patient = session.get(Patient, handoff.patient_id) if handoff.patient_id else None
            return handoff_view.summary_dict(handoff, patient.source_id if patient else None)

    return await run_in_threadpool(write)
