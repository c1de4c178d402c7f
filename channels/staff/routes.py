"""`/staff`: the console pages. Every POST is a form carrying the session's CSRF token; every
page but the login needs a staff session; the audit log needs an admin."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from bot import context, conversations, handoffs, messages
from bot.handoffs import HandoffClosed, HandoffError, HandoffNotFound
from bot.render import TEMPLATES_DIR
from channels import handoff_actions
from channels.handoff_actions import MAX_TEXT, Actor
from channels.staff import canned, handoff_view, ops, queue, throttle
from channels.staff.auth import check_password, hash_password
from channels.staff.models import (
    StaffUser,
    audit,
    by_email,
    member_clinic_ids,
    memberships,
    names,
    patient_source_ids,
    recent_audit,
)
from channels.staff.pages import Clock, StaffRoute, fragment, redirect, render
from channels.staff.security import (
    CSRF_FIELD,
    Staff,
    choose_clinic,
    csrf_protected,
    csrf_token,
    current_staff,
    flash,
    is_signed_in,
    log_in,
    log_out,
    now,
    require_admin,
    safe_next,
)
from status import caregivers, limits, patients
from status import links as status_links
from status.alerts import Topic
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.integrations import receipts
from status.settings import Settings

router = APIRouter(prefix="/staff", route_class=StaffRoute, include_in_schema=False)
STATIC_DIR = TEMPLATES_DIR / "staff" / "static"
STATIC_FILES = {"staff.css": "text/css", "staff.js": "text/javascript"}


@cache
def _nobody() -> StaffUser:
    """An unknown email is checked against this, so it costs what a wrong password does."""
    return StaffUser(password_hash=hash_password("not-anyone's-password"))


def _db(request: Request):
    return request.app.state.db


def _not_found(request: Request, staff: Staff, what: str) -> Response:
    return render(request, "message.html", 404, staff=staff, title="Not found", message=what)


# --- login ------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/staff") -> Response:
    if is_signed_in(request):
        return redirect(safe_next(next))
    return render(request, "login.html", next=safe_next(next), email="", error=None)


@router.post("/login", dependencies=[Depends(csrf_protected)])
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    next: str = Form("/staff"),
) -> Response:
    at = now(request)
    email = limits.scrub(email)[: limits.EMAIL]
    address = request.client.host if request.client else None
    login_keys = throttle.keys(email, address)
    with _db(request).read_session() as session:
        locked = throttle.locked_until(session, login_keys, at)
    if locked is not None:
        return _locked(request, email, next, locked, at)
    with _db(request).session() as session:
        user = by_email(session, email) if email.strip() else None
        ok = check_password(user or _nobody(), password) and user is not None and user.active
        if ok:
            user.last_login_at = at
            home = memberships(session, user)
            audit(session, "login", clinic_id=home[0][0].id if home else DEFAULT_ID,
                  staff_id=user.id)  # fmt: skip
            throttle.record_success(session, login_keys)
            log_in(request, session, user, at)
        else:
            throttle.record_failure(session, login_keys, at, request.app.state.settings)
            for clinic_id in _failure_audited_in(session, user):
                audit(
                    session,
                    "login_failed",
                    clinic_id=clinic_id,
                    staff_id=user.id if user is not None else None,
                    actor="anonymous",
                    detail=f"email {email[:100]!r} from {address or 'unknown address'}",
                )
            locked = throttle.locked_until(session, login_keys, at)
    if locked is not None:
        return _locked(request, email, next, locked, at)
    if not ok:
        return render(
            request,
            "login.html",
            401,
            next=safe_next(next),
            email=email,
            error="Wrong email or password, or this login is disabled.",
        )
    return redirect(safe_next(next))


def _failure_audited_in(session: Session, user: StaffUser | None) -> list[int]:
    """Where a failed login is audited: a staff member's in each clinic they are a member of
    (its admins see it, no other clinic's do); an unknown email's in the default clinic's."""
    return (member_clinic_ids(session, user) if user is not None else []) or [DEFAULT_ID]


def _locked(request: Request, email: str, next: str, until: datetime, at: datetime) -> Response:
    """The login page, saying the login is locked and until when (429, Retry-After)."""
    wait = max(int((until - at).total_seconds()), 1)
    local = until.astimezone(ZoneInfo(request.app.state.settings.clinic_timezone))
    response = render(
        request,
        "login.html",
        429,
        next=safe_next(next),
        email=email,
        error=(
            "Too many wrong passwords: logging in is locked until "
            f"{local:%H:%M} ({(wait + 59) // 60} min). Try again then, or ask an admin to "
            "unlock it (patient-status staff unlock --email ...)."
        ),
    )
    response.headers["Retry-After"] = str(wait)
    return response


@router.post("/logout", dependencies=[Depends(csrf_protected)])
def logout(request: Request, staff: Staff = Depends(current_staff)) -> Response:
    log_out(request)
    return redirect("/staff/login")


# --- the queue --------------------------------------------------------------------------------


def _clinic_settings(request: Request, staff: Staff) -> Settings:
    """The settings of the clinic the console shows (its name, time zone, SLA)."""
    profiles = request.app.state.runtime.engine.profiles
    with _db(request).read_session() as session:
        if staff.clinic_id not in staff.clinic_ids:
            return request.app.state.settings
        return profiles.get(session, staff.clinic_id).settings


def _clock(request: Request, staff: Staff) -> Clock:
    return Clock(_clinic_settings(request, staff).clinic_timezone)


def _actor(staff: Staff) -> Actor:
    return Actor(staff.clinic_ids, staff.id, staff.actor)


@router.post("/clinic", dependencies=[Depends(csrf_protected)])
def switch_clinic(
    request: Request,
    staff: Staff = Depends(current_staff),
    clinic: str = Form(""),
    back_to: str = Form("/staff"),
) -> Response:
    """One click: the console shows another of the staff member's clinics."""
    chosen = next((c for c in staff.clinics if c.slug == clinic), None)
    if chosen is None or not choose_clinic(request, staff, chosen.id):
        return _not_found(request, staff, f"You do not work for a clinic {clinic[:40]!r}.")
    flash(request, f"Now showing {chosen.name}.")
    return redirect(safe_next(back_to) if back_to.startswith("/staff/ops") else "/staff")


def _queue_rows(request: Request, staff: Staff, queue_name: str, assignee: str, status: str):
    now = utcnow()
    clinic_id = staff.clinic_id
    with _db(request).read_session() as session:
        if status == "resolved":
            rows = queue.recently_resolved(session, clinic_id, now=now)
        else:
            rows = queue.open_queue(
                session, clinic_id, now=now, staff_id=staff.id, queue=queue_name,
                assignee=assignee,
            )  # fmt: skip
        counts = queue.open_counts(session, clinic_id)
    return rows, counts


def _filters(queue_name: str, assignee: str, status: str) -> tuple[str, str, str]:
    queue_name = queue_name if queue_name in queue.QUEUES else ""
    assignee = assignee if assignee in queue.ASSIGNEE_FILTERS else ""
    status = "resolved" if status == "resolved" else "open"
    return queue_name, assignee, status


@router.get("")
def queue_page(
    request: Request,
    staff: Staff = Depends(current_staff),
    queue_name: str = Query("", alias="queue"),
    assignee: str = "",
    status: str = "open",
) -> Response:
    queue_name, assignee, status = _filters(queue_name, assignee, status)
    rows, counts = _queue_rows(request, staff, queue_name, assignee, status)
    return render(
        request,
        "queue.html",
        staff=staff,
        clock=_clock(request, staff),
        rows=rows,
        counts=counts,
        queues=queue.QUEUES,
        queue_name=queue_name,
        assignee=assignee,
        status=status,
        assignee_filters=queue.ASSIGNEE_FILTERS,
        back_to=_queue_url(queue_name, assignee, status),
        targets=queue.sla_targets(_clinic_settings(request, staff)),
    )


def _queue_url(queue_name: str, assignee: str, status: str) -> str:
    query = {k: v for k, v in (("queue", queue_name), ("assignee", assignee)) if v}
    if status != "open":
        query["status"] = status
    return "/staff" + (f"?{urlencode(query)}" if query else "")


@router.get("/queue/live")
def queue_live(
    request: Request,
    staff: Staff = Depends(current_staff),
    queue_name: str = Query("", alias="queue"),
    assignee: str = "",
    status: str = "open",
) -> JSONResponse:
    """The queue's rows, re-rendered, for the page to refresh itself (timers, new hand-offs)."""
    queue_name, assignee, status = _filters(queue_name, assignee, status)
    rows, counts = _queue_rows(request, staff, queue_name, assignee, status)
    html = fragment(
        "_queue_rows.html",
        rows=rows,
        staff=staff,
        status=status,
        csrf=csrf_token(request),
        csrf_field=CSRF_FIELD,
        back_to=_queue_url(queue_name, assignee, status),
        clock=_clock(request, staff),
    )
    return JSONResponse({"html": html, "counts": counts}, headers={"Cache-Control": "no-store"})


# --- a hand-off -------------------------------------------------------------------------------


def _detail_context(request: Request, staff: Staff, detail: handoff_view.Detail) -> dict:
    settings = _clinic_settings(request, staff)
    return {
        "d": detail,
        "h": detail.handoff,
        "sla": queue.sla(detail.handoff, utcnow()),
        "canned": canned.canned_replies(
            first_name=detail.patient.first_name if detail.patient else None,
            staff=staff.name,
            clinic=settings.clinic_name,
            phone=settings.clinic_support_phone,
        ),
        "max_text": MAX_TEXT,
    }


@router.get("/handoffs/{handoff_id}")
def handoff_page(
    handoff_id: int, request: Request, staff: Staff = Depends(current_staff)
) -> Response:
    with _db(request).session() as session:
        try:
            detail = handoff_actions.view(
                session, _actor(staff), handoff_id, utcnow(), "hand-off page"
            )
        except HandoffNotFound:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
    if detail.handoff.clinic_id != staff.clinic_id:  # another of theirs: show that clinic
        choose_clinic(request, staff, detail.handoff.clinic_id)
        staff = replace(staff, clinic_id=detail.handoff.clinic_id)
    thread = detail.thread
    frozen = detail.frozen
    return render(
        request,
        "handoff.html",
        staff=staff,
        clock=_clock(request, staff),
        thread=thread,
        stamp=_stamp(_thread_html(request, staff, thread)),
        frozen_json=json.dumps(frozen, indent=2, ensure_ascii=False) if frozen else "",
        **_detail_context(request, staff, detail),
    )


def _thread_html(request: Request, staff: Staff, items: list) -> str:
    return fragment("_thread.html", thread=items, clock=_clock(request, staff))


def _stamp(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:16]


@router.get("/handoffs/{handoff_id}/live")
def handoff_live(
    handoff_id: int, request: Request, stamp: str = "", staff: Staff = Depends(current_staff)
) -> JSONResponse:
    """The conversation, re-rendered when it changed: new messages, delivery statuses, notes."""
    with _db(request).read_session() as session:
        handoff = handoffs.by_id(session, staff.clinic_ids, handoff_id)
        if handoff is None:
            return JSONResponse({"detail": f"no hand-off #{handoff_id}"}, status_code=404)
        entries = handoffs.entries(session, handoff_id)
        msgs = handoff_view.messages_for(session, handoff)
        ids = {e.staff_id for e in entries} | {m.staff_id for m in msgs}
        items = handoff_view.thread(msgs, entries, names(session, ids))
    html = _thread_html(request, staff, items)
    new = _stamp(html)
    body = {"stamp": new, "status": handoff.status, "changed": new != stamp}
    if new != stamp:
        body["html"] = html
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _back(handoff_id: int, anchor: str = "") -> Response:
    return redirect(f"/staff/handoffs/{handoff_id}{anchor}")


@router.post("/handoffs/{handoff_id}/take", dependencies=[Depends(csrf_protected)])
def take(
    handoff_id: int,
    request: Request,
    staff: Staff = Depends(current_staff),
    back_to: str = Form(""),
) -> Response:
    with _db(request).session() as session:
        try:
            took = handoff_actions.take(session, _actor(staff), handoff_id, utcnow())
        except HandoffNotFound:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        except HandoffClosed:
            flash(request, f"Hand-off #{handoff_id} is already resolved.", "error")
        else:
            flash(
                request,
                f"You took hand-off #{handoff_id}."
                if took
                else f"Hand-off #{handoff_id} is already yours.",
            )
    return redirect(safe_next(back_to)) if back_to else _back(handoff_id)


@router.post("/handoffs/{handoff_id}/reply", dependencies=[Depends(csrf_protected)])
def reply(
    handoff_id: int,
    request: Request,
    staff: Staff = Depends(current_staff),
    text: str = Form(""),
) -> Response:
    if limits.unstorable(text):  # sent as written or refused, as the hand-off API does
        flash(
            request,
            "Not sent: the reply holds a NUL or a lone surrogate, which cannot be sent; remove it.",
            "error",
        )
        return _back(handoff_id, "#thread")
    sent = False
    with _db(request).session() as session:
        try:
            handoff_actions.reply(session, _actor(staff), handoff_id, text, utcnow())
        except HandoffNotFound:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        except HandoffClosed:
            flash(
                request, "This hand-off is resolved: the bot has the conversation again.", "error"
            )
        except HandoffError as exc:
            flash(request, f"Not sent: {exc.message}.", "error")
        else:
            sent = True
    if sent:
        request.app.state.runtime.notify()
        flash(request, "Reply queued for the patient's channel.")
    return _back(handoff_id, "#thread")


@router.post("/handoffs/{handoff_id}/note", dependencies=[Depends(csrf_protected)])
def note(
    handoff_id: int,
    request: Request,
    staff: Staff = Depends(current_staff),
    text: str = Form(""),
) -> Response:
    text = limits.scrub(text)
    with _db(request).session() as session:
        try:
            handoff_actions.note(session, _actor(staff), handoff_id, text, utcnow())
        except HandoffNotFound:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        except HandoffError as exc:
            flash(request, f"Not saved: {exc.message}.", "error")
        else:
            flash(request, "Note saved (staff only; the patient does not see it).")
    return _back(handoff_id, "#thread")


@router.post("/handoffs/{handoff_id}/resolve", dependencies=[Depends(csrf_protected)])
def resolve(
    handoff_id: int,
    request: Request,
    staff: Staff = Depends(current_staff),
    note: str = Form(""),
) -> Response:
    note = limits.scrub(note)
    with _db(request).session() as session:
        try:
            handoff_actions.resolve(session, _actor(staff), handoff_id, note, utcnow())
        except HandoffNotFound:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        except HandoffClosed:
            flash(request, f"Hand-off #{handoff_id} was already resolved.", "error")
        else:
            flash(request, f"Hand-off #{handoff_id} resolved: the bot answers this patient again.")
    return _back(handoff_id)


# --- a patient --------------------------------------------------------------------------------


@router.get("/patients/{patient_id}")
def patient_page(
    patient_id: str, request: Request, staff: Staff = Depends(current_staff)
) -> Response:
    return patient_view(request, staff, patient_id)


def patient_view(
    request: Request, staff: Staff, patient_id: str, status: int = 200, **extra
) -> Response:
    """The patient page; `extra` adds what an action just made (a new status link)."""
    now = utcnow()
    with _db(request).session() as session:
        patient = patients.by_source_id(session, staff.clinic_id, patient_id)
        if patient is None:
            return _not_found(request, staff, f"There is no patient {patient_id!r}.")
        carers = caregivers.for_patient(session, patient.clinic_id, patient.id)
        page_links = status_links.working(session, patient.clinic_id, patient.id, now)
        conv = next(iter(conversations.for_patient(session, patient.id)), None)
        live = context.build(session, patient, conv, now)
        msgs = messages.for_patient(session, patient.id, limit=100)
        staff_names = names(session, {m.staff_id for m in msgs})
        rows = queue.for_patient(session, patient.id, now=now)
        audit(session, "viewed", clinic_id=patient.clinic_id, staff_id=staff.id,
              patient_id=patient.id, detail="patient page")  # fmt: skip
    alerts = live.get("alerts") or []
    return render(
        request,
        "patient.html",
        status,
        staff=staff,
        clock=_clock(request, staff),
        patient=patient,
        caregivers=carers,
        page_links=page_links,
        topics=[t.value for t in Topic],
        new_link=extra.get("new_link"),
        problem=extra.get("problem"),
        live=live,
        rows=rows,
        items=handoff_view.compare_items({}, live.get("snapshot") or {}),
        understood=handoff_view.understood(msgs),
        alerts=handoff_view.compare_alerts(alerts, alerts),
        thread=handoff_view.thread(msgs, [], staff_names),
    )


# --- operations, audit ------------------------------------------------------------------------


@router.get("/ops")
def ops_page(request: Request, staff: Staff = Depends(current_staff), days: int = 30) -> Response:
    days = min(max(days, 1), 365)
    now = utcnow()
    settings = _clinic_settings(request, staff)
    clinic_id = staff.clinic_id  # the clinic shown: another's figures never mix in
    with _db(request).read_session() as session:
        states = ops.states(session, clinic_id, now, ops.stuck_thresholds(settings))
        churn = ops.churn(session, clinic_id, now, days)
        figures = ops.assistant(session, clinic_id, now, days)
        failed = ops.failed_messages(session, clinic_id)
        codes = ops.failure_codes(session, clinic_id)
        unknown = ops.unknown_messages(session, clinic_id)
        unmapped = receipts.unmapped(session, clinic_id)
    return render(
        request,
        "ops.html",
        staff=staff,
        clock=_clock(request, staff),
        kinds=ops.KINDS,
        states=states,
        churn=churn,
        figures=figures,
        failed=failed,
        codes=codes,
        unknown=unknown,
        unmapped=unmapped,
        days=days,
    )


@router.get("/audit")
def audit_page(request: Request, staff: Staff = Depends(require_admin)) -> Response:
    with _db(request).read_session() as session:
        entries = recent_audit(session, staff.clinic_ids, limit=300)
        who = names(session, {e.staff_id for e in entries})
        patient_ids = patient_source_ids(session, {e.patient_id for e in entries})
    return render(
        request, "audit.html", staff=staff, entries=entries, who=who, patient_ids=patient_ids
    )


# --- static files (no CDN: the console works offline) -----------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    path: Path = STATIC_DIR / name
    return FileResponse(
        path, media_type=STATIC_FILES[name], headers={"Cache-Control": "public, max-age=300"}
    )
