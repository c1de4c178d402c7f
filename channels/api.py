"""The headless API: events in, snapshots out (Bearer API_KEY)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.routing import Route

from channels import openapi
from channels.deps import check_api_key, get_session, read_body, require_api_key
from status import limits, patients, read_model, snapshot
from status.db import Database, RawCursor, utcnow
from status.events.apply import apply_in_transaction
from status.events.schemas import EventProblem, InvalidEvents, json_schema, parse_body

router = APIRouter()
_READS = ThreadPoolExecutor(4, thread_name_prefix="status-read")  # the status API's reads


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


def _no_patient(patient_id: str) -> HTTPException:
    if len(patient_id) > limits.SOURCE_ID or limits.unstorable(patient_id):
        return HTTPException(404, f"no patient with this patient_id (at most {limits.SOURCE_ID} "
                             "characters, no NUL)")  # fmt: skip
    return HTTPException(404, f"no patient with patient_id {patient_id!r}")


def _patient(session: Session, patient_id: str) -> patients.Patient:
    patient = patients.by_source_id(session, patient_id)
    if patient is None:
        raise _no_patient(patient_id)
    return patient


@router.get("/events/schema")
def events_schema() -> dict:
    return json_schema()


@router.get("/api/patients/{patient_id}/status", responses={**openapi.API, **openapi.NOT_FOUND})
async def patient_status(patient_id: str, request: Request) -> Response:
    """The patient's snapshot. Documented here; served by `STATUS_ROUTE`, a plain Starlette
    route placed ahead of this one (the same answer without FastAPI's per-request work)."""
    return await _status(request, patient_id)


async def _serve_status(request: Request) -> Response:
    request.scope["route"] = STATUS_ROUTE  # as FastAPI sets it: the access log's route name
    return await _status(request, request.path_params["patient_id"])


STATUS_ROUTE = Route("/api/patients/{patient_id}/status", _serve_status, methods=["GET"])


async def _status(request: Request, patient_id: str) -> Response:
    # The API key checked here, not as a dependency; one hop to a thread of the route's own for
    # the whole read (cheaper than Starlette's threadpool); the JSON rendered there (the bytes
    # JSONResponse would send) and returned as is (no jsonable_encoder pass).
    check_api_key(request)
    state = request.app.state
    content = await asyncio.get_running_loop().run_in_executor(
        _READS, _patient_status, state.db, state.snapshot_extensions, patient_id
    )
    return Response(content, media_type="application/json")


def _patient_status(db: Database, extensions: list, patient_id: str) -> bytes:
    """Two statements on a pooled autocommit connection, no ORM session: the patient joined to
    their read-model row, then what each extension adds (`last_told`)."""

    def read(reader: RawCursor) -> dict | None:
        found = read_model.read_patient_and_state(reader, patient_id)
        if found is None:
            raise _no_patient(patient_id)
        patient, stored = found
        if stored is None:
            return None  # no usable row: built from the tables below
        snap = snapshot.assemble(patient, stored, utcnow())
        for extend in extensions:
            extend(reader, snap)
        return snap.to_dict()

    content = db.raw_autocommit(read)
    if content is None:
        with db.read_session() as session:
            snap = snapshot.build_fresh(session, _patient(session, patient_id), utcnow())
        db.raw_autocommit(lambda reader: [extend(reader, snap) for extend in extensions])
        content = snap.to_dict()
    return JSONResponse(content).body


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

    settings = request.app.state.settings
    patient = _patient(session, patient_id)
    token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    return {
        "url": telegram_links.deep_link(settings.telegram_bot_username, token),
        "expires_in_days": telegram_links.LINK_TTL.days,
    }
