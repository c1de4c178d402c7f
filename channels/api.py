"""The headless API: events in, snapshots out (Bearer API_KEY)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.orm import Session
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot import context
from channels import access, openapi
from channels.deps import get_session, keyed_clinic, read_body, require_api_key, wrong_key
from status import clinics, limits, metrics, patients, read_model, snapshot
from status.db import AsyncRawCursor, AsyncReads, Database, RawCursor, utcnow
from status.events.apply import apply_in_transaction
from status.events.schemas import EventProblem, InvalidEvents, json_schema, parse_body

router = APIRouter()
_READS = ThreadPoolExecutor(4, thread_name_prefix="status-read")  # the status API's reads
ROUTE = "/api/patients/{patient_id}/status"


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


def _apply_body(state, raw: bytes, clinic_id: int) -> dict:
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


@router.get(ROUTE, responses={**openapi.API, **openapi.NOT_FOUND})
async def patient_status(patient_id: str, request: Request) -> Response:
    """The snapshot of the key's clinic's patient (another clinic's: 404, as unknown).
    Documented here; served by `StatusApi`, plain ASGI ahead of the app, and for what that
    leaves to the app (HEAD) by `STATUS_ROUTE`, a plain Starlette route placed ahead of this
    one: the same answer without FastAPI's per-request work."""
    return await _status(request, patient_id)


async def _serve_status(request: Request) -> Response:
    request.scope["route"] = STATUS_ROUTE  # as FastAPI sets it: the access log's route name
    return await _status(request, request.path_params["patient_id"])


STATUS_ROUTE = Route(ROUTE, _serve_status, methods=["GET"])


async def _status(request: Request, patient_id: str) -> Response:
    content = await _status_json(
        request.app.state, request.headers.get("authorization", ""), patient_id
    )
    return Response(content, media_type="application/json")


class StatusApi:
    """`GET /api/patients/{patient_id}/status` as plain ASGI, called before the FastAPI app
    (`channels.app.App`), as the inbound SMS webhook is: the same answers as `STATUS_ROUTE`
    (200 with the snapshot, 401 and 404 naming the problem, 500 for a fault), the route's
    metric and access-log line, without the middleware stack, routing and request objects a
    one-row read does not need. HEAD, and paths Starlette would not match, are left to the app.
    """

    _PREFIX, _, _SUFFIX = ROUTE.partition("{patient_id}")  # "/api/patients/", "/status"

    def __init__(self, state: Any) -> None:
        self.state = state
        self.seconds = metrics.WEBHOOK_SECONDS.labels(ROUTE)

    @classmethod
    def patient_id(cls, scope: Scope) -> str | None:
        """The path's patient id when this is a GET of the route (as Starlette's `{patient_id}`
        matches the decoded path: at least one character, no slash), else None."""
        path: str = scope["path"]
        if scope["method"] != "GET" or not (
            path.startswith(cls._PREFIX) and path.endswith(cls._SUFFIX)
        ):
            return None
        patient_id = path[len(cls._PREFIX) : -len(cls._SUFFIX)]
        return patient_id if patient_id and "/" not in patient_id else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, patient_id: str) -> None:
        started = time.perf_counter()
        status = 500
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            try:
                body = await _status_json(self.state, authorization, patient_id)
            except HTTPException as exc:
                status = exc.status_code
                await JSONResponse({"detail": exc.detail}, status, exc.headers)(
                    scope, receive, send
                )
                return
            except Exception:
                # as Starlette's ServerErrorMiddleware: a plain 500, the error to the server's log
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                raise
            status = 200
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            access.record(self.seconds, "GET", ROUTE, status, started)


async def _status_json(state: Any, authorization: str, patient_id: str) -> bytes:
    # The API key checked here, not as a dependency, and a clinic key's clinic looked up in the
    # read itself. PostgreSQL: one statement on the event loop (`AsyncReads`); SQLite: one hop
    # to a thread of the route's own (cheaper than Starlette's threadpool) for the read. The
    # JSON rendered once, the bytes JSONResponse would send (no jsonable_encoder pass).
    keyed = keyed_clinic(state.settings, authorization)
    reads: AsyncReads | None = state.status_reads
    if reads is not None:
        content = await _patient_status_on_loop(reads, state.db, keyed, patient_id)
    else:
        content = await asyncio.get_running_loop().run_in_executor(
            _READS, _patient_status, state.db, keyed, patient_id
        )
    if content is None:
        raise wrong_key(state.settings)
    return content


# PostgreSQL's one statement: the key's clinic's patient, their read-model row and last_told
_STATUS_READ = read_model.keyed_read(context.last_told_json(read_model.PATIENT_ID))


async def _patient_status_on_loop(
    reads: AsyncReads, db: Database, keyed: clinics.KeyedClinic, patient_id: str
) -> bytes | None:
    """The snapshot's JSON from one prepared statement, awaited on the event loop. None: no
    clinic has that key (checked only when no patient was found)."""

    async def read(reader: AsyncRawCursor) -> dict | patients.Patient | None:
        found = await read_model.read_keyed(reader, _STATUS_READ, keyed, patient_id)
        if found is None:
            if await clinics.read_clinic_of_key_async(reader, keyed) is None:
                return None  # 401 rather than 404: the key is no clinic's (or was rotated)
            raise _no_patient(patient_id)
        patient, stored, (told,) = found
        if stored is None:
            return patient  # no usable row: built from the tables below
        snap = snapshot.assemble(patient, stored, utcnow())
        snap.extra["last_told"] = context.told_from_json(told)
        return snap.to_dict()

    content = await reads.run(read)
    if isinstance(content, patients.Patient):
        return await asyncio.get_running_loop().run_in_executor(
            _READS, _fresh_status, db, content.clinic_id, patient_id
        )
    return None if content is None else _json(content)


def _patient_status(db: Database, keyed: clinics.KeyedClinic, patient_id: str) -> bytes | None:
    """Two statements on a pooled autocommit connection, no ORM session: the key's clinic's
    patient joined to their read-model row, then `last_told`. None: no clinic has that key
    (checked only when no patient was found)."""

    def read(reader: RawCursor) -> dict | patients.Patient | None:
        found = read_model.read_patient_and_state(reader, keyed, patient_id)
        if found is None:
            if clinics.read_clinic_of_key(reader, keyed) is None:
                return None  # 401 rather than 404: the key is no clinic's (or was rotated)
            raise _no_patient(patient_id)
        patient, stored = found
        if stored is None:
            return patient  # no usable row: built from the tables below
        snap = snapshot.assemble(patient, stored, utcnow())
        snap.extra["last_told"] = context.read_last_told(reader, patient.id)
        return snap.to_dict()

    content = db.raw_autocommit(read)
    if isinstance(content, patients.Patient):
        return _fresh_status(db, content.clinic_id, patient_id)
    return None if content is None else _json(content)


def _fresh_status(db: Database, clinic_id: int, patient_id: str) -> bytes:
    """A patient without a usable read-model row: the snapshot from the tables."""
    with db.read_session() as session:
        patient = _patient(session, clinic_id, patient_id)
        snap = snapshot.build_fresh(session, patient, utcnow())
        snap.extra["last_told"] = context.last_told(session, patient.id)
    return _json(snap.to_dict())


def _json(content: dict) -> bytes:
    """The bytes `JSONResponse(content)` sends (compact, UTF-8; a snapshot holds no floats,
    where the two differ: orjson writes NaN as null), ~10x faster."""
    return orjson.dumps(content)


@router.post(
    "/api/patients/{patient_id}/telegram-link",
    status_code=201,
    responses={**openapi.API, **openapi.NOT_FOUND, **openapi.CONFLICT},
)
def telegram_link(
    patient_id: str,
    request: Request,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    """A single-use, expiring t.me deep link (to the clinic's own bot) the clinic sends the
    patient to connect Telegram."""
    from channels import telegram_links

    settings = request.app.state.runtime.engine.profiles.get(session, clinic_id).settings
    patient = _patient(session, clinic_id, patient_id)
    if not settings.telegram_bot_token or not settings.telegram_bot_username:
        # a link to no bot ("t.me/None") would reach the patient and lead nowhere
        raise HTTPException(
            409,
            "Telegram is not set up for this clinic: give it a bot first (patient-status "
            "clinic update SLUG --telegram-token, --telegram-secret, --telegram-username)",
        )
    token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    return {
        "url": telegram_links.deep_link(settings.telegram_bot_username, token),
        "expires_in_days": telegram_links.LINK_TTL.days,
    }
