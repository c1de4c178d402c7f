"""The headless API: events in, snapshots out (Bearer API_KEY)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from channels.deps import get_session, require_api_key
from status import patients, read_model, snapshot
from status.db import Database, utcnow
from status.events.apply import apply_events
from status.events.schemas import InvalidEvents, json_schema, parse_body

router = APIRouter()


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        raise HTTPException(400, 'the body is empty; send an event object or {"events": [...]}')
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from exc


@router.post("/events", status_code=202, dependencies=[Depends(require_api_key)])
async def post_events(request: Request) -> JSONResponse:
    body = await _json_body(request)
    # Validation, the state changes and the proactive rules run in a worker thread: a batch of
    # thousands must not stall the event loop that answers Twilio and Telegram meanwhile.
    try:
        counts = await asyncio.to_thread(_apply_body, request.app.state, body)
    except InvalidEvents as exc:
        return JSONResponse(exc.as_body(), status_code=422)
    request.app.state.runtime.notify()
    return JSONResponse(counts, status_code=202)


def _apply_body(state, body: object) -> dict:  # noqa: ANN001
    events = parse_body(body)
    with state.db.session() as session:  # this request's transaction: all or nothing
        result = apply_events(session, events)
        for hook in state.on_changes:
            hook(session, result.changes)
    return {"accepted": len(events), **result.counts()}


@router.get("/events/schema")
def events_schema() -> dict:
    return json_schema()


@router.get("/api/patients/{patient_id}/status", dependencies=[Depends(require_api_key)])
async def patient_status(patient_id: str, request: Request) -> JSONResponse:
    # One hop to a worker thread for the whole read (a session per dependency would be one hop
    # each); the JSON is rendered there too, and returned as is (no jsonable_encoder pass).
    state = request.app.state
    content = await run_in_threadpool(
        _patient_status, state.db, state.snapshot_extensions, patient_id
    )
    return JSONResponse(content)


def _patient_status(db: Database, extensions: list, patient_id: str) -> dict:
    with db.read_session() as session:
        found = read_model.patient_and_state(session, patient_id)  # one row: patient + snapshot
        if found is None:
            raise HTTPException(404, f"no patient with patient_id {patient_id!r}")
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
    dependencies=[Depends(require_api_key)],
)
def telegram_link(
    patient_id: str, request: Request, session: Session = Depends(get_session)
) -> dict:
    """A single-use, expiring t.me deep link the clinic sends the patient to connect Telegram."""
    from channels import telegram_links

    settings = request.app.state.settings
    patient = patients.by_source_id(session, patient_id)
    if patient is None:
        raise HTTPException(404, f"no patient with patient_id {patient_id!r}")
    token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    return {
        "url": telegram_links.deep_link(settings.telegram_bot_username, token),
        "expires_in_days": telegram_links.LINK_TTL.days,
    }
