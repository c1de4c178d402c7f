"""Rendering staff pages: the one jinja2 environment, shared helpers, safe response headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from markupsafe import Markup

from bot.render import environment
from channels.staff import security, times, words
from channels.staff.times import duration
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


class Clock:
    """Times as staff read them: in the clinic's time zone, in words, ages relative to `now`;
    each shown time is a `<time>` element keeping the exact instant (see `times`)."""

    def __init__(self, tz: str, now: datetime | None = None) -> None:
        self.zone = ZoneInfo(tz)
        self.now = now or utcnow()

    def at(self, value: datetime | date | str | None) -> Markup:
        """`Today 9:35 AM`, `Mon, Nov 23 9:35 AM`; a calendar date as `Sun, Nov 22`."""
        return times.element(value, times.words(value, self.now, self.zone), self.zone)

    def day(self, value: datetime | date | str | None) -> Markup:
        """The calendar day alone: `Tomorrow`, `Sun, Nov 22` (a date-time's day in the zone)."""
        moment = times.parse(value)
        if isinstance(moment, datetime):
            moment = moment.astimezone(self.zone).date()
        return times.element(value, times.words(moment, self.now, self.zone), self.zone)

    def ago(self, value: datetime | str | None) -> Markup:
        """`12 min ago` (`in 12 min` ahead), exact time in the tooltip."""
        return times.element(value, times.age(value, self.now), self.zone)

    def since(self, value: datetime | str | None) -> Markup:
        """How long since `value`, without "ago" (`12 min`): a waiting time."""
        moment = times.parse(value)
        if not isinstance(moment, datetime):
            return Markup("")
        return times.element(moment, duration((self.now - moment).total_seconds()), self.zone)

    def words(self, value: datetime | date | str | None) -> str:
        return times.words(value, self.now, self.zone)

    def text(self, value: str | None) -> Markup:
        """Our own text (a next step, a packet as JSON) with its ISO times in words."""
        return times.in_text(value, self.now, self.zone)

    @staticmethod
    def duration(seconds: float | None) -> str:
        return duration(seconds)


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    *,
    staff=None,
    **context,
) -> HTMLResponse:
    settings = request.app.state.settings
    shown = getattr(staff, "clinic", None)  # the clinic the console shows
    values = {
        "request_path": request.url.path,
        "staff": staff,
        "csrf": security.csrf_token(request),
        "csrf_field": security.CSRF_FIELD,
        "flashes": security.take_flashes(request),
        "clinic": shown.name if shown is not None else settings.clinic_name,
        "clock": Clock(settings.clinic_timezone),
        "reason_words": words.reason_words,
        "timeline_words": words.timeline_words,
    }
    values.update(context)
    html = environment().get_template(f"staff/{name}").render(**values)
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
