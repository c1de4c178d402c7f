"""The FastAPI application: every HTTP route of the product, assembled."""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import inbox
from channels import (
    access,
    api,
    care_api,
    handoff_api,
    integrations,
    openapi,
    simulator,
    status_page,
    telegram,
    twilio_sms,
)
from channels.deps import require_metrics_token
from channels.runtime import Runtime, freeze_start_up
from channels.staff import care as staff_care
from channels.staff import routes as staff_routes
from channels.staff import security as staff_security
from status import limits, metrics
from status.db import AsyncReads, Database, DatabaseUnavailable
from status.settings import Settings, get_settings


class AccessLog:
    """Per request: a body declared over the limit refused at once (413), the route's latency
    in the metrics, and one log line naming the route.

    Plain ASGI: `@app.middleware("http")` would add a task and a response stream per request,
    which costs more than some routes (the status API) do themselves.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limits.MAX_EVENTS_BODY:
            # refused before anything reads it; routes that read a body also stop at their limit
            response = JSONResponse(
                {"detail": f"the body is over the limit of {limits.MAX_EVENTS_BODY} bytes"}, 413
            )
            await response(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            if not template.startswith(
                ("/healthz", "/metrics", "/simulator/api", "/staff/static", "/s/static")
            ):
                timed = template.startswith(("/webhooks", "/events", "/api"))
                seconds = metrics.WEBHOOK_SECONDS.labels(template) if timed else None
                access.record(seconds, scope["method"], template, status, started)


class App(FastAPI):
    """The FastAPI app with its two hottest routes in front of it, which skip the middleware
    stack: the inbound SMS webhook (`twilio_sms.InboundSms`), which a provider may call
    hundreds of times a second, and the status API's GET (`api.StatusApi`), a one-row read."""

    inbound_sms: twilio_sms.InboundSms
    status_api: api.StatusApi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if (
                scope["path"] == twilio_sms.InboundSms.ROUTE
                and scope["method"] == "POST"
                and await self.inbound_sms(scope, receive, send)
            ):
                return
            patient_id = api.StatusApi.patient_id(scope)
            if patient_id is not None:
                await self.status_api(scope, receive, send, patient_id)
                return
        await super().__call__(scope, receive, send)


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
    async def lifespan(app: FastAPI):
        if os.environ.get("PATIENT_STATUS_FREEZE_GC") == "1":  # `serve`
            freeze_start_up(turns=run_workers)  # before the first turn
        await runtime.start(workers=run_workers, beside_webhooks=run_workers)
        try:
            yield
        finally:
            await runtime.stop()
            await inbox.GroupWriter.of(db).close()
            if app.state.status_reads is not None:
                await app.state.status_reads.close()

    app = App(
        title="Patient Status Assistant",
        description="Answers patients from the live state of their care.",
        version="0.1.0",
        lifespan=lifespan,
        # The interactive docs and the document only when DOCS=on (app.openapi() works anyway)
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    openapi.install(app)
    app.state.settings = settings
    app.state.db = db
    app.state.runtime = runtime
    app.inbound_sms = twilio_sms.InboundSms(app.state)
    app.status_api = api.StatusApi(app.state)
    app.state.on_changes = [runtime.notifier.on_changes]  # run in the /events transaction
    # the status API's read on PostgreSQL: async connections of the app's event loop
    app.state.status_reads = None if db.is_sqlite else AsyncReads(db.url, db.engine.dialect)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and the rule only: pydantic's `input` (and `ctx`) would echo what was sent.
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_middleware(AccessLog)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=openapi.UNAUTHORIZED,
        dependencies=[Depends(require_metrics_token)],
    )
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(app.state.db)
        return Response(body, media_type=content_type)

    @app.get("/healthz", responses={503: {"description": "Down: the body names what and why"}})
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
    # the hot read first, as a plain Starlette route (its FastAPI twin stays for the docs)
    app.router.routes.insert(0, api.STATUS_ROUTE)
    app.include_router(integrations.router)
    app.include_router(care_api.router)
    app.include_router(twilio_sms.router)
    app.include_router(telegram.router)
    app.include_router(simulator.router)
    app.include_router(status_page.router)
    # --- staff console and hand-off API (channels/staff, channels/handoff_api) ---
    app.add_middleware(SessionMiddleware, **staff_security.session_options(settings))
    app.include_router(staff_routes.router)
    app.include_router(staff_care.router)
    app.include_router(handoff_api.router)
    return app
