"""The FastAPI application: every HTTP route of the product, assembled."""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from channels import api, handoff_api, simulator, telegram, twilio_sms
from channels.runtime import Runtime
from channels.staff import routes as staff_routes
from channels.staff import security as staff_security
from status import metrics
from status.db import Database, DatabaseUnavailable
from status.settings import Settings, get_settings

access = logging.getLogger("patient_status.http")


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
    if os.environ.get("PATIENT_STATUS_CONFIGURE_LOGGING") == "1":
        from status.logs import configure

        configure(settings.log_format, settings.log_level)
    db = db or Database(settings.database_url)
    runtime = runtime or Runtime(settings, db, echo=settings.demo_mode)
    if run_workers is None:
        # `serve` says so explicitly; an app built in code (tests, scripts) runs none by default
        run_workers = os.environ.get("PATIENT_STATUS_RUN_WORKERS", "0") == "1"

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

    @app.middleware("http")
    async def timing(request: Request, call_next):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        if template.startswith(("/webhooks", "/events", "/api")):
            metrics.WEBHOOK_SECONDS.labels(template).observe(elapsed)
        if not template.startswith(("/healthz", "/metrics", "/simulator/api", "/staff/static")):
            # the route template, never the path or query: they can carry ids and phones
            access.info(
                "request",
                extra={"method": request.method, "route": template,
                       "status": response.status_code, "ms": round(elapsed * 1000, 1)},
            )  # fmt: skip
        return response

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(app.state.db)
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness: `{"status": "ok", ...}`, or 503 naming what is down and why."""
        checks: dict[str, str] = {}
        try:
            app.state.db.check()
            checks["database"] = "ok"
        except DatabaseUnavailable as exc:
            checks["database"] = exc.cause
        down = sorted(name for name, state in checks.items() if state != "ok")
        body = {"status": "down" if down else "ok", "down": down, "checks": checks}
        return JSONResponse(body, status_code=503 if down else 200)

    app.include_router(api.router)
    app.include_router(twilio_sms.router)
    app.include_router(telegram.router)
    app.include_router(simulator.router)
    # --- staff console and hand-off API (channels/staff, channels/handoff_api) ---
    app.add_middleware(SessionMiddleware, **staff_security.session_options(settings))
    app.include_router(staff_routes.router)
    app.include_router(handoff_api.router)
    return app
