"""`/staff`: the console pages. Every POST is a form carrying the session's CSRF token; every
page but the login needs a staff session; the audit log needs an admin."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from bot import context, conversations, handoffs, messages
from bot.handoffs import HandoffClosed, HandoffStatus
from bot.render import TEMPLATES_DIR
from channels.staff import canned, handoff_view, ops, queue, throttle
from channels.staff.auth import check_password, hash_password
from channels.staff.models import (
    StaffUser,
    audit,
    by_email,
    names,
    patient_source_ids,
    recent_audit,
)
from channels.staff.pages import Clock, StaffRoute, fragment, redirect, render
from channels.staff.security import (
    CSRF_FIELD,
    Staff,
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
from status.alerts import Topic
from status.db import utcnow

router = APIRouter(prefix="/staff", route_class=StaffRoute, include_in_schema=False)
STATIC_DIR = TEMPLATES_DIR / "staff" / "static"
STATIC_FILES = {"staff.css": "text/css", "staff.js": "text/javascript"}
MAX_TEXT = 1600  # ten SMS segments: longer than any reply a patient should get by text


@cache
def _nobody() -> StaffUser:
    """An unknown email is checked against this, so it costs what a wrong password does."""
    return StaffUser(password_hash=hash_password("not-anyone's-password"))


def _db(request: Request):  # noqa: ANN202
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
            audit(session, "login", staff_id=user.id)
            throttle.record_success(session, login_keys)
            log_in(request, session, user, at)
        else:
            throttle.record_failure(session, login_keys, at, request.app.state.settings)
            audit(
                session,
                "login_failed",
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


def _queue_rows(request: Request, staff: Staff, queue_name: str, assignee: str, status: str):  # noqa: ANN202
    now = utcnow()
    with _db(request).read_session() as session:
        if status == "resolved":
            rows = queue.recently_resolved(session, now=now)
        else:
            rows = queue.open_queue(
                session, now=now, staff_id=staff.id, queue=queue_name, assignee=assignee
            )
        counts = queue.open_counts(session)
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
        rows=rows,
        counts=counts,
        queues=queue.QUEUES,
        queue_name=queue_name,
        assignee=assignee,
        status=status,
        assignee_filters=queue.ASSIGNEE_FILTERS,
        back_to=_queue_url(queue_name, assignee, status),
        targets=queue.sla_targets(request.app.state.settings),
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
        clock=Clock(request.app.state.settings.clinic_timezone),
    )
    return JSONResponse({"html": html, "counts": counts}, headers={"Cache-Control": "no-store"})


# --- a hand-off -------------------------------------------------------------------------------


def _detail_context(request: Request, staff: Staff, detail: handoff_view.Detail) -> dict:
    settings = request.app.state.settings
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
        detail = handoff_view.load(session, handoff_id, utcnow())
        if detail is None:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        audit(
            session,
            "viewed",
            staff_id=staff.id,
            patient_id=detail.handoff.patient_id,
            handoff_id=handoff_id,
            detail="hand-off page",
        )
    thread = detail.thread
    frozen = detail.frozen
    return render(
        request,
        "handoff.html",
        staff=staff,
        thread=thread,
        stamp=_stamp(_thread_html(request, thread)),
        frozen_json=json.dumps(frozen, indent=2, ensure_ascii=False) if frozen else "",
        **_detail_context(request, staff, detail),
    )


def _thread_html(request: Request, items: list) -> str:
    clock = Clock(request.app.state.settings.clinic_timezone)
    return fragment("_thread.html", thread=items, clock=clock)


def _stamp(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:16]


@router.get("/handoffs/{handoff_id}/live")
def handoff_live(
    handoff_id: int, request: Request, stamp: str = "", staff: Staff = Depends(current_staff)
) -> JSONResponse:
    """The conversation, re-rendered when it changed: new messages, delivery statuses, notes."""
    with _db(request).read_session() as session:
        handoff = handoffs.by_id(session, handoff_id)
        if handoff is None:
            return JSONResponse({"detail": f"no hand-off #{handoff_id}"}, status_code=404)
        entries = handoffs.entries(session, handoff_id)
        msgs = handoff_view.messages_for(session, handoff)
        ids = {e.staff_id for e in entries} | {m.staff_id for m in msgs}
        items = handoff_view.thread(msgs, entries, names(session, ids))
        html = _thread_html(request, items)
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
        handoff = handoffs.by_id(session, handoff_id)
        if handoff is None:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        if handoff.status != HandoffStatus.OPEN:
            flash(request, f"Hand-off #{handoff_id} is already resolved.", "error")
        elif handoff.assignee_id == staff.id:
            flash(request, f"Hand-off #{handoff_id} is already yours.")
        else:
            handoffs.take(session, handoff, staff_id=staff.id, now=utcnow())
            audit(
                session,
                "took",
                staff_id=staff.id,
                patient_id=handoff.patient_id,
                handoff_id=handoff_id,
            )
            flash(request, f"You took hand-off #{handoff_id}.")
    return redirect(safe_next(back_to)) if back_to else _back(handoff_id)


@router.post("/handoffs/{handoff_id}/reply", dependencies=[Depends(csrf_protected)])
def reply(
    handoff_id: int,
    request: Request,
    staff: Staff = Depends(current_staff),
    text: str = Form(""),
) -> Response:
    text = limits.scrub(text)
    sent = False
    with _db(request).session() as session:
        handoff = handoffs.by_id(session, handoff_id)
        if handoff is None:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        if handoff.status != HandoffStatus.OPEN:
            flash(
                request, "This hand-off is resolved: the bot has the conversation again.", "error"
            )
        elif len(text) > MAX_TEXT:
            flash(
                request,
                f"The reply is too long ({len(text)} characters, at most {MAX_TEXT}).",
                "error",
            )
        else:
            try:
                message = handoffs.staff_reply(
                    session, handoff, staff_id=staff.id, text=text, now=utcnow()
                )
            except ValueError as exc:
                flash(request, f"Not sent: {exc}.", "error")
            else:
                audit(
                    session,
                    "replied",
                    staff_id=staff.id,
                    patient_id=handoff.patient_id,
                    handoff_id=handoff_id,
                    detail=f"message {message.id}: {text.strip()[:500]}",
                )
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
        handoff = handoffs.by_id(session, handoff_id)
        if handoff is None:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        try:
            handoffs.add_note(session, handoff, staff_id=staff.id, text=text, now=utcnow())
        except ValueError as exc:
            flash(request, f"Not saved: {exc}.", "error")
        else:
            audit(
                session,
                "noted",
                staff_id=staff.id,
                patient_id=handoff.patient_id,
                handoff_id=handoff_id,
                detail=text.strip()[:500],
            )
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
        handoff = handoffs.by_id(session, handoff_id)
        if handoff is None:
            return _not_found(request, staff, f"There is no hand-off #{handoff_id}.")
        try:
            handoffs.resolve_and_return(
                session, handoff, staff_id=staff.id, note=note.strip() or None, now=utcnow()
            )
        except HandoffClosed:
            flash(request, f"Hand-off #{handoff_id} was already resolved.", "error")
        else:
            audit(
                session,
                "resolved",
                staff_id=staff.id,
                patient_id=handoff.patient_id,
                handoff_id=handoff_id,
                detail=note.strip()[:500],
            )
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
        patient = patients.by_source_id(session, patient_id)
        if patient is None:
            return _not_found(request, staff, f"There is no patient {patient_id!r}.")
        carers = caregivers.for_patient(session, patient.id)
        conv = next(iter(conversations.for_patient(session, patient.id)), None)
        live = context.build(session, patient, conv, now)
        msgs = messages.for_patient(session, patient.id, limit=100)
        staff_names = names(session, {m.staff_id for m in msgs})
        rows = queue.for_patient(session, patient.id, now=now)
        audit(session, "viewed", staff_id=staff.id, patient_id=patient.id, detail="patient page")
    alerts = live.get("alerts") or []
    return render(
        request,
        "patient.html",
        status,
        staff=staff,
        patient=patient,
        caregivers=carers,
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
    settings = request.app.state.settings
    with _db(request).read_session() as session:
        states = ops.states(session, now, ops.stuck_thresholds(settings))
        churn = ops.churn(session, now, days)
        figures = ops.assistant(session, now, days)
        failed = ops.failed_messages(session)
        codes = ops.failure_codes(session)
        unknown = ops.unknown_messages(session)
    return render(
        request,
        "ops.html",
        staff=staff,
        kinds=ops.KINDS,
        states=states,
        churn=churn,
        figures=figures,
        failed=failed,
        codes=codes,
        unknown=unknown,
        days=days,
    )


@router.get("/audit")
def audit_page(request: Request, staff: Staff = Depends(require_admin)) -> Response:
    with _db(request).read_session() as session:
        entries = recent_audit(session, limit=300)
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
