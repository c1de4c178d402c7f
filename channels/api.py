"""The headless API: events in, snapshots out (Bearer API_KEY)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from channels import openapi
from channels.deps import get_read_session, get_session, read_body, require_api_key
from status import limits, patients, snapshot
from status.events.apply import apply_in_transaction
from status.events.schemas import EventProblem, InvalidEvents, json_schema, parse_body

router = APIRouter()


@router.post(
    "/events",
    status_code=202,
    dependencies=[Depends(require_api_key)],
    responses={**openapi.BAD_REQUEST, **openapi.API, **openapi.TOO_LARGE},
)
async def post_events(request: Request) -> JSONResponse:
    raw = await read_body(request, limits.MAX_EVENTS_BODY)
    if not raw.strip():
        raise HTTPException(400, 'the body is empty; send an event object or {"events": [...]}')
    # Parsing, validation, the state changes and the proactive rules run in a worker thread: a
    # batch of thousands must not stall the event loop that answers Twilio and Telegram.
    try:
        counts = await asyncio.to_thread(_apply_body, request.app.state, raw)
    except InvalidEvents as exc:
        return JSONResponse(exc.as_body(), status_code=422)
    request.app.state.runtime.notify()
    return JSONResponse(counts, status_code=202)


def _apply_body(state, raw: bytes) -> dict:  # noqa: ANN001
    try:
        body = limits.load_json(raw, max_bytes=limits.MAX_EVENTS_BODY)
    except limits.LimitExceeded as exc:
        problem = EventProblem(index=0, field=exc.field, message=exc.rule)
        raise InvalidEvents([problem], f"the body is outside a limit: {exc.rule}") from exc
    except ValueError as exc:
        raise HTTPException(400, f"the body is {exc}") from exc
    events = parse_body(body)
    # one transaction: all or nothing (run again if a concurrent delivery of an id wins)
    result = apply_in_transaction(state.db, events, state.on_changes)
    return {"accepted": len(events), **result.counts()}


def _patient(session: Session, patient_id: str) -> patients.Patient:
    patient = patients.by_source_id(session, patient_id)
    if patient is None:
        if len(patient_id) > limits.SOURCE_ID or limits.unstorable(patient_id):
            raise HTTPException(404, f"no patient with this patient_id (at most {limits.SOURCE_ID} "
                                "characters, no NUL)")  # fmt: skip
        raise HTTPException(404, f"no patient with patient_id {patient_id!r}")
    return patient


@router.get("/events/schema")
def events_schema() -> dict:
    return json_schema()


@router.get(
    "/api/patients/{patient_id}/status",
    dependencies=[Depends(require_api_key)],
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def patient_status(
    patient_id: str, request: Request, session: Session = Depends(get_read_session)
) -> dict:
    patient = _patient(session, patient_id)
    snap = snapshot.build(session, patient)
    for extend in request.app.state.snapshot_extensions:
        extend(session, snap)
    return snap.to_dict()


@router.post(
    "/api/patients/{patient_id}/telegram-link",
    status_code=201,
    dependencies=[Depends(require_api_key)],
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def telegram_link(
    patient_id: str, request: Request, session: Session = Depends(get_session)
) -> dict:
    """A single-use, expiring t.me deep link the clinic sends the patient to connect Telegram."""
    from channels import telegram_links
    from status.db import utcnow

    settings = request.app.state.settings
    patient = _patient(session, patient_id)
    token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    return {
        "url": telegram_links.deep_link(settings.telegram_bot_username, token),
        "expires_in_days": telegram_links.LINK_TTL.days,
    }
