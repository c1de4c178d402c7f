"""The FastAPI application: every HTTP route of the product, assembled."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from channels import api, simulator, telegram, twilio_sms
from channels.runtime import Runtime
from status.db import Database
from status.settings import Settings, get_settings


def change_hooks(settings: Settings) -> list:
    """What reacts to applied state changes, inside the same transaction (proactive rules)."""
    from bot.proactive.notifier import Notifier

    return [Notifier(settings).on_changes]


def snapshot_extensions() -> list:
    """What the API snapshot adds to the status store's: what the patient was already told."""
    from bot.context import last_told

    def told(session, snap) -> None:  # noqa: ANN001
        snap.extra["last_told"] = last_told(session, snap.patient.id)

    return [told]


def create_app(
    settings: Settings | None = None,
    db: Database | None = None,
    *,
    runtime: Runtime | None = None,
    run_workers: bool | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.database_url)
    runtime = runtime or Runtime(settings, db, echo=settings.demo_mode)
    if run_workers is None:
        run_workers = os.environ.get("PATIENT_STATUS_RUN_WORKERS", "1") != "0"

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await runtime.start(workers=run_workers)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Patient Status Assistant",
        description="Answers patients from the live state of their care.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.runtime = runtime
    app.state.on_changes = [runtime.notifier.on_changes]  # run in the /events transaction
    app.state.snapshot_extensions = snapshot_extensions()

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        with app.state.db.session() as session:
            session.connection().exec_driver_sql("SELECT 1")
        return "ok"

    app.include_router(api.router)
    app.include_router(twilio_sms.router)
    app.include_router(telegram.router)
    app.include_router(simulator.router)
    # --- staff console and hand-off API (channels/staff, channels/handoff_api) ---
    return app
