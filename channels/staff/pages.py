"""Rendering staff pages: the one jinja2 environment, shared helpers, safe response headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from bot.render import environment
from channels.staff import security
from status.db import utcnow

# Patient data is on every page: keep it out of caches, frames and other origins' reach.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def duration(seconds: float | int | None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    if seconds is None:
        return ""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


class Clock:
    """Times as staff read them: in the clinic's time zone, with ages relative to `now`."""

    def __init__(self, tz: str, now: datetime | None = None) -> None:
        self.zone = ZoneInfo(tz)
        self.now = now or utcnow()

    def at(self, value: datetime | str | None) -> str:
        """`Nov 20 14:05`."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        local = value.astimezone(self.zone)
        return f"{local:%b} {local.day} {local:%H:%M}"

    def ago(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return f"{duration((self.now - value).total_seconds())} ago"

    @staticmethod
    def duration(seconds: float | int | None) -> str:
        return duration(seconds)


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    *,
    staff=None,
    **context,  # noqa: ANN001
) -> HTMLResponse:
    settings = request.app.state.settings
    html = (
        environment()
        .get_template(f"staff/{name}")
        .render(
            request_path=request.url.path,
            staff=staff,
            csrf=security.csrf_token(request),
            csrf_field=security.CSRF_FIELD,
            flashes=security.take_flashes(request),
            clinic=settings.clinic_name,
            clock=Clock(settings.clinic_timezone),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def fragment(name: str, **context) -> str:
    return environment().get_template(f"staff/{name}").render(**context)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


class StaffRoute(APIRoute):
    """Turns the console's refusals into what a person (or the page's poller) can act on:
    the login page, or a 403 page saying what was refused and why."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except security.LoginRequired as exc:
                if wants_json(request):
                    return JSONResponse({"detail": "log in again"}, status_code=401)
                return redirect("/staff/login?" + urlencode({"next": exc.next_url}))
            except security.Forbidden as exc:
                if wants_json(request):
                    return JSONResponse({"detail": exc.message}, status_code=403)
                return render(request, "message.html", 403, title="Refused", message=exc.message)

        return guarded
