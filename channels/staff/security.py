"""Staff sessions and CSRF.

The cookie is Starlette's signed session (itsdangerous, keyed by `SECRET_KEY`): httponly,
SameSite=Lax, scoped to `/staff`, Secure when `PUBLIC_BASE_URL` is https, expiring after a shift.
It holds a random session token, a CSRF token and one-shot flash messages; nothing about patients.
The session itself lives server-side (`staff_sessions`, the token hashed): logging out, a new
password or STAFF_IDLE_MINUTES without a request end it, whatever the cookie still says.

Every POST form carries the session's CSRF token in a hidden `csrf_token` field; a POST without
it, or with another one, is refused with 403 before anything is read or written.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels.staff.models import Role, StaffSession, StaffUser, by_id, memberships
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.settings import Settings

log = logging.getLogger("patient_status.staff")

COOKIE = "ps_staff"
COOKIE_PATH = "/staff"
MAX_AGE_SECONDS = 12 * 60 * 60  # one shift
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
CSRF_FIELD = "csrf_token"
DEFAULT_SECRET = "dev-insecure-secret-change-me"


def session_options(settings: Settings) -> dict:
    """Keyword arguments for Starlette's SessionMiddleware."""
    if settings.secret_key == DEFAULT_SECRET and not settings.demo_mode:
        log.warning("SECRET_KEY is the built-in default: set it before staff log in for real")
    return {
        "secret_key": settings.secret_key,
        "session_cookie": COOKIE,
        "max_age": MAX_AGE_SECONDS,
        "path": COOKIE_PATH,
        "same_site": "lax",
        "https_only": (settings.public_base_url or "").startswith("https://"),
    }


# --- refusals: turned into pages by the staff router's route class ------------------------------


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__("log in to use the staff console")
        self.next_url = next_url


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfRefused(Forbidden):
    def __init__(self, missing: bool) -> None:
        what = "is missing" if missing else "does not match this session"
        super().__init__(
            f"This form's security token {what}, so nothing was done. "
            "Go back, reload the page and try again. (CSRF protection)"
        )
        self.missing = missing


# --- the session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicChoice:
    id: int
    slug: str
    name: str
    role: str


@dataclass(frozen=True)
class Staff:
    """The logged-in staff member, as the pages need them (detached from any DB session).

    `clinics` are the ones they may see (every clinic for a platform admin); `clinic_id` is the
    one the console shows now, and `role` their role there."""

    id: int
    name: str
    email: str
    role: str
    clinic_id: int = DEFAULT_ID
    clinics: tuple[ClinicChoice, ...] = ()
    platform_admin: bool = False

    @property
    def clinic_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.clinics)

    @property
    def clinic(self) -> ClinicChoice | None:
        return next((c for c in self.clinics if c.id == self.clinic_id), None)

    @property
    def is_admin(self) -> bool:
        return self.platform_admin or self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use (the login form needs one too)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, submitted: object) -> None:
    expected = request.session.get("csrf")
    if not isinstance(submitted, str) or not submitted:
        raise CsrfRefused(missing=True)
    if not expected or not secrets.compare_digest(submitted.encode(), expected.encode()):
        raise CsrfRefused(missing=False)


async def csrf_protected(request: Request) -> None:
    """Dependency for every POST form."""
    form = await request.form()
    check_csrf(request, form.get(CSRF_FIELD))


def now(request: Request) -> datetime:
    """The one clock (`status.clock`: tests move it instead of sleeping)."""
    return utcnow()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def log_in(request: Request, session: Session, user: StaffUser, at: datetime) -> None:
    """A fresh session for this person: nothing carried over, a new token and CSRF token."""
    token = secrets.token_urlsafe(32)
    session.add(StaffSession(token_hash=_hash(token), staff_id=user.id, created_at=at,
                             last_seen_at=at))  # fmt: skip
    request.session.clear()
    request.session["sid"] = token
    request.session["csrf"] = secrets.token_urlsafe(32)


def end_sessions(session: Session, staff_id: int, at: datetime) -> None:
    """Every open session of this person ends (a new password, a deactivated login)."""
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None))
        .values(ended_at=at)
    )


def log_out(request: Request) -> None:
    token = request.session.get("sid")
    if isinstance(token, str):
        with request.app.state.db.session() as session:
            session.execute(
                update(StaffSession)
                .where(StaffSession.token_hash == _hash(token), StaffSession.ended_at.is_(None))
                .values(ended_at=now(request))
            )
    request.session.clear()


def _signed_in(request: Request) -> Staff | None:
    """The session's staff member while the session is open, active and recently used."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        return None
    at = now(request)
    idle = timedelta(minutes=request.app.state.settings.staff_idle_minutes)
    db = request.app.state.db
    with db.read_session() as session:
        query = select(StaffSession).where(StaffSession.token_hash == _hash(token))
        row = session.scalars(query).one_or_none()
        user = by_id(session, row.staff_id) if row is not None else None
    if row is None or row.ended_at is not None or user is None or not user.active:
        return None
    if at - row.last_seen_at > idle:
        with db.session() as session:
            session.execute(
                update(StaffSession).where(StaffSession.id == row.id).values(ended_at=at)
            )
        flash(request, "Your session ended after a while without use. Please log in again.")
        return None
    if at - row.last_seen_at > TOUCH_EVERY:
        with db.session() as session:
            session.execute(
                update(StaffSession).where(StaffSession.id == row.id).values(last_seen_at=at)
            )
    with db.read_session() as session:
        choices = tuple(
            ClinicChoice(
                clinic.id, clinic.slug, clinic.name or request.app.state.settings.clinic_name, role
            )
            for clinic, role in memberships(session, user)
        )
    chosen = request.session.get("clinic")
    current = next((c for c in choices if c.id == chosen), choices[0] if choices else None)
    return Staff(
        user.id, user.name, user.email, current.role if current else user.role,
        clinic_id=current.id if current else -1, clinics=choices,
        platform_admin=user.platform_admin,
    )  # fmt: skip


def choose_clinic(request: Request, staff: Staff, clinic_id: int) -> bool:
    """Show this clinic from now on (one of theirs); False if it is not."""
    if clinic_id not in staff.clinic_ids:
        return False
    request.session["clinic"] = clinic_id
    return True


def is_signed_in(request: Request) -> bool:
    return _signed_in(request) is not None


def flash(request: Request, text: str, level: str = "info") -> None:
    request.session["flash"] = [*request.session.get("flash", []), [level, text]]


def take_flashes(request: Request) -> list[tuple[str, str]]:
    return [tuple(f) for f in request.session.pop("flash", [])]


def current_staff(request: Request) -> Staff:
    """Dependency: the logged-in, still active staff member, or a trip to the login page."""
    user = _signed_in(request)
    if user is None:
        if "sid" in request.session:  # ended, idle, or the login deactivated: forget it
            flashes = request.session.get("flash", [])
            request.session.clear()
            if flashes:
                request.session["flash"] = flashes
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return user


def require_admin(request: Request) -> Staff:
    staff = current_staff(request)
    if not staff.is_admin:
        raise Forbidden("Only an admin can see this page.")
    return staff


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path inside the console, never another site."""
    inside = bool(target) and target.startswith("/staff") and not target.startswith("//")
    if inside and "\\" not in target and "://" not in target:
        return target
    return "/staff"
