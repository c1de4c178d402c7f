"""The headless API: events in, snapshots out (Bearer API_KEY)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from channels import openapi
from channels.deps import get_session, read_body, require_api_key
from status import limits, patients, read_model, snapshot
from status.db import Database, utcnow
from status.events.apply import apply_in_transaction
from status.events.schemas import EventProblem, InvalidEvents, json_schema, parse_body

router = APIRouter()


@router.post(
    "/events",
    status_code=202,
    responses={**openapi.BAD_REQUEST, **openapi.API, **openapi.TOO_LARGE},
)
async def post_events(request: Request, clinic_id: int = Depends(require_api_key)) -> JSONResponse:
    """Events of the key's clinic: its patient ids, its prescription ids."""
    raw = await read_body(request, limits.MAX_EVENTS_BODY)
    if not raw.strip():
        raise HTTPException(400, 'the body is empty; send an event object or {"events": [...]}')
    # Parsing, validation, the state changes and the proactive rules run in a worker thread: a
    # batch of thousands must not stall the event loop that answers Twilio and Telegram.
    try:
        counts = await asyncio.to_thread(_apply_body, request.app.state, raw, clinic_id)
    except InvalidEvents as exc:
        return JSONResponse(exc.as_body(), status_code=422)
    request.app.state.runtime.notify()
    return JSONResponse(counts, status_code=202)


def _apply_body(state, raw: bytes, clinic_id: int) -> dict:  # noqa: ANN001
    try:
        body = limits.load_json(raw, max_bytes=limits.MAX_EVENTS_BODY)
    except limits.LimitExceeded as exc:
        problem = EventProblem(index=0, field=exc.field, message=exc.rule)
        raise InvalidEvents([problem], f"the body is outside a limit: {exc.rule}") from exc
    except ValueError as exc:
        raise HTTPException(400, f"the body is {exc}") from exc
    events = parse_body(body)
    # one transaction: all or nothing (run again if a concurrent delivery of an id wins)
    result = apply_in_transaction(state.db, events, state.on_changes, clinic_id=clinic_id)
    return {"accepted": len(events), **result.counts()}


def _no_patient(patient_id: str) -> HTTPException:
    if len(patient_id) > limits.SOURCE_ID or limits.unstorable(patient_id):
        return HTTPException(404, f"no patient with this patient_id (at most {limits.SOURCE_ID} "
                             "characters, no NUL)")  # fmt: skip
    return HTTPException(404, f"no patient with patient_id {patient_id!r}")


def _patient(session: Session, clinic_id: int, patient_id: str) -> patients.Patient:
    patient = patients.by_source_id(session, clinic_id, patient_id)
    if patient is None:
        raise _no_patient(patient_id)
    return patient


@router.get("/events/schema")
def events_schema() -> dict:
    return json_schema()


@router.get(
    "/api/patients/{patient_id}/status",
    responses={**openapi.API, **openapi.NOT_FOUND},
)
async def patient_status(
    patient_id: str, request: Request, clinic_id: int = Depends(require_api_key)
) -> JSONResponse:
    """The snapshot of the key's clinic's patient (another clinic's: 404, as unknown)."""
    # One hop to a worker thread for the whole read (a session per dependency would be one hop
    # each); the JSON is rendered there too, and returned as is (no jsonable_encoder pass).
    state = request.app.state
    content = await run_in_threadpool(
        _patient_status, state.db, state.snapshot_extensions, clinic_id, patient_id
    )
    return JSONResponse(content)


def _patient_status(db: Database, extensions: list, clinic_id: int, patient_id: str) -> dict:
    with db.read_session() as session:
        # one row: patient + snapshot
        found = read_model.patient_and_state(session, clinic_id, patient_id)
        if found is None:
            raise _no_patient(patient_id)
        patient, stored = found
        now = utcnow()
        snap = (
            snapshot.build_fresh(session, patient, now)
            if stored is None
            else snapshot.assemble(patient, stored, now)
        )
        for extend in extensions:
            extend(session, snap)
        return snap.to_dict()


@router.post(
    "/api/patients/{patient_id}/telegram-link",
    status_code=201,
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def telegram_link(
    patient_id: str,
    request: Request,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session),
) -> dict:
    """A single-use, expiring t.me deep link (to the clinic's own bot) the clinic sends the
    patient to connect Telegram."""
    from channels import telegram_links

    settings = request.app.state.runtime.engine.profiles.get(session, clinic_id).settings
    patient = _patient(session, clinic_id, patient_id)
    token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    return {
        "url": telegram_links.deep_link(settings.telegram_bot_username, token),
        "expires_in_days": telegram_links.LINK_TTL.days,
    }
