"""`/s/{token}`: the patient's status page behind a link, then their date of birth.

Before verification the page is a one-field form (no patient data at all); a right date of
birth sets a short-lived session cookie scoped to the link's path (HttpOnly, SameSite=Strict,
Secure when PUBLIC_BASE_URL is https). Three wrong dates lock the link and hand it to staff.
Every POST carries a CSRF token (an HMAC of this device's random cookie) and, for actions, a
per-form nonce: a double tap finds its nonce recorded and does nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from functools import cache
from urllib.parse import urlsplit

import yaml
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from bot import context, conversations, handoffs, inbox
from bot.conversations import Conversation
from bot.handoffs import Reason
from bot.render import TEMPLATES_DIR, day_date, day_time, environment
from bot.understanding.extract import parse_dob
from status import (
    alerts,
    branding,
    caregivers,
    clinics,
    limits,
    links,
    refills,
    snapshot,
    timeline,
)  # fmt: skip
from status.db import utcnow
from status.links import LinkState, StatusLink
from status.patients import Patient
from status.settings import Settings

router = APIRouter(include_in_schema=False)
STATIC = TEMPLATES_DIR / "status_page" / "static"
SESSION_COOKIE = "ps_session"
DEVICE_COOKIE = "ps_device"
CSRF_FIELD = "csrf_token"
MAX_MESSAGE = 1000
DONE = {"refill", "confirm", "reschedule", "message", "alerts", "again"}
STATUS_FOR = {
    LinkState.UNKNOWN: 404, LinkState.EXPIRED: 410, LinkState.REVOKED: 410,
    LinkState.LOCKED: 423,
}  # fmt: skip


@cache
def words(lang: str) -> dict:
    name = lang if lang in ("en", "es") else "en"
    path = TEMPLATES_DIR / "status_page" / "words" / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _secure(settings: Settings) -> bool:
    return (settings.public_base_url or "").lower().startswith("https://")


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="status-page-session")


def _csrf_for(settings: Settings, device: str) -> str:
    key = hashlib.sha256(b"status-page csrf\0" + settings.secret_key.encode()).digest()
    return hmac.new(key, device.encode(), hashlib.sha256).hexdigest()


def _clinic_settings(request: Request, session: Session, clinic_id: int | None) -> Settings:
    """The deployment's settings as the link's clinic sees them (its payment page, its phone)."""
    clinic = clinics.by_id(session, clinic_id) if clinic_id is not None else None
    return clinics.settings_for(_settings(request), clinic or clinics.default(session))


def _headers(nonce: str, settings: Settings, brand: branding.Branding) -> dict[str, str]:
    form_action = "'self'"
    pay = urlsplit(settings.payment_update_url)
    if pay.scheme in ("http", "https") and pay.netloc:
        form_action += f" {pay.scheme}://{pay.netloc}"  # the payment button redirects there
    img_src = "'self'" + (f" {brand.logo_origin}" if brand.logo_origin else "")
    csp = (
        "default-src 'none'; style-src 'self' 'nonce-" + nonce + f"'; img-src {img_src}; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Robots-Tag": "noindex, nofollow",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": csp,
    }


def _render(
    request: Request,
    session: Session,
    template: str,
    status: int,
    lang: str,
    clinic_id: int | None,
    **ctx,
) -> HTMLResponse:
    """A page in the clinic's look (its name, colours, logo and phone); None: the default
    clinic's (a link that is no one's)."""
    brand = branding.for_clinic(session, _settings(request), clinic_id)
    nonce = secrets.token_urlsafe(12)
    body = (
        environment()
        .get_template(f"status_page/{template}")
        .render(lang=lang, w=words(lang), brand=brand, csp_nonce=nonce, **ctx)
    )
    headers = _headers(nonce, _clinic_settings(request, session, clinic_id), brand)
    return HTMLResponse(body, status_code=status, headers=headers)


def _device(request: Request) -> tuple[str, bool]:
    """This browser's random id (for CSRF), and whether it is new (to be set as a cookie)."""
    found = request.cookies.get(DEVICE_COOKIE, "")
    if 20 <= len(found) <= 64 and found.replace("-", "").replace("_", "").isalnum():
        return found, False
    return secrets.token_urlsafe(24), True


def _with_device(response: Response, settings: Settings, device: str, new: bool) -> Response:
    if new:
        response.set_cookie(
            DEVICE_COOKIE, device, path="/s", httponly=True, secure=_secure(settings),
            samesite="strict",
        )  # fmt: skip
    return response


def _csrf_ok(request: Request, submitted: str) -> bool:
    device = request.cookies.get(DEVICE_COOKIE, "")
    if not device or not submitted:
        return False
    return hmac.compare_digest(_csrf_for(_settings(request), device), submitted)


def _verified(request: Request, link: StatusLink) -> bool:
    settings = _settings(request)
    raw = request.cookies.get(SESSION_COOKIE, "")
    if not raw:
        return False
    try:
        data = _serializer(settings).loads(raw, max_age=settings.status_session_minutes * 60)
    except BadSignature:
        return False
    return isinstance(data, dict) and data.get("l") == link.id


def _unavailable(
    request: Request, session: Session, link: StatusLink | None, state: LinkState
) -> HTMLResponse:
    lang = _lang(session, link) if link is not None else "en"
    clinic_id = link.clinic_id if link is not None else None
    return _render(
        request, session, "unavailable.html", STATUS_FOR[state], lang, clinic_id, state=state.value
    )


def _open(session: Session, token: str, now: datetime) -> tuple[StatusLink | None, LinkState]:
    link = links.find(session, token)
    if link is None:
        return None, LinkState.UNKNOWN
    return link, link.state(now)


def _lang(session: Session, link: StatusLink) -> str:
    patient = session.get(Patient, link.patient_id)
    return patient.language if patient else "en"


# --- the page -----------------------------------------------------------------------------------


@router.get("/s/static/page.css")
def stylesheet() -> Response:
    return FileResponse(
        STATIC / "page.css", media_type="text/css", headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/s/{token}")
def status_page(token: str, request: Request, done: str = "", tries: int = -1) -> Response:
    settings = _settings(request)
    now = utcnow()
    device, new = _device(request)
    with request.app.state.db.session() as session:
        link, state = _open(session, token, now)
        if link is None or state != LinkState.OK:
            return _unavailable(request, session, link, state)
        lang = _lang(session, link)
        csrf = _csrf_for(settings, device)
        if not _verified(request, link):
            response = _render(
                request, session, "verify.html", 200, lang, link.clinic_id, token=token,
                csrf=csrf, problem=None,
            )  # fmt: skip
            return _with_device(response, settings, device, new)
        response = _page(session, request, link, token, csrf, now, lang, done)
    return _with_device(response, settings, device, new)


def _page(
    session: Session,
    request: Request,
    link: StatusLink,
    token: str,
    csrf: str,
    now: datetime,
    lang: str,
    done: str,
) -> HTMLResponse:
    patient = session.get(Patient, link.patient_id)
    snap = snapshot.build(session, patient, now)
    carer = _caregiver(session, link)
    show = {topic: carer is None or carer.receives(alerts.Topic(topic)) for topic in alerts.TOPICS}
    show["shipping"] = show["shipping"] or show["refills"]
    muted, only_urgent = alerts.muted_topics(session, link.clinic_id, patient.id)
    return _render(
        request, session, "page.html", 200, lang, link.clinic_id, token=token, csrf=csrf, snap=snap,
        patient=patient, tz=patient.timezone, caregiver=carer, show=show,
        done=done if done in DONE else "", next_text=_next_text(snap, lang),
        can_refill=bool(snap.prescriptions) and not snap.refills_in_progress,
        confirmed=timeline.actions_on(session, patient.id, "confirm", "appointment"),
        topics=[t.value for t in alerts.TOPICS], muted={t.value for t in muted},
        only_urgent=only_urgent, new_nonce=lambda: secrets.token_urlsafe(16),
    )  # fmt: skip


def _next_text(snap: snapshot.Snapshot, lang: str) -> str:
    step = snap.next_step
    phrase = words(lang)["next"].get(step.kind) or words(lang)["next"]["none"]
    title = ""
    if step.kind == "complete_task":
        task = next((t for t in snap.tasks if t.source_id == step.source_id), None)
        title = task.title if task else ""
    when = ""
    if isinstance(step.due, datetime):
        when = day_time(step.due, lang, snap.patient.timezone)
    elif step.due is not None:
        when = day_date(step.due, lang)
    return phrase.format(title=title, when=when)


# --- verification -------------------------------------------------------------------------------


@router.post("/s/{token}")
def verify(
    token: str,
    request: Request,
    date_of_birth: str = Form("", max_length=200),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    settings = _settings(request)
    now = utcnow()
    device, new = _device(request)
    with request.app.state.db.session() as session:
        link, state = _open(session, token, now)
        if link is None or state != LinkState.OK:
            return _unavailable(request, session, link, state)
        lang = _lang(session, link)
        w = words(lang)
        csrf = _csrf_for(settings, device)

        def again(problem: str, status: int) -> Response:
            response = _render(
                request, session, "verify.html", status, lang, link.clinic_id, token=token,
                csrf=csrf, problem=problem,
            )  # fmt: skip
            return _with_device(response, settings, device, new)

        if not _csrf_ok(request, csrf_token):
            return again(w["dob_format"], 403)
        patient = session.get(Patient, link.patient_id)
        dob = parse_dob(date_of_birth, today=now.date())
        if dob is None:
            return again(w["dob_format"], 422)
        # The address's three tries, shared with its conversation and taken before comparing:
        # tries sent at once, or on one new link after another, are still three.
        conv = _conversation(session, link, patient)
        taken = conversations.take_verification_try(session, conv, links.MAX_TRIES)
        if taken is None:  # locked here or in the conversation, or out of tries
            return _unavailable(request, session, link, LinkState.LOCKED)
        if dob != patient.date_of_birth:
            if links.wrong_try(link, now, taken):
                conv.locked_at = now
                conv.clear_expectation()
                _hand_off_locked(session, request, patient, conv, now)
                return _unavailable(request, session, link, LinkState.LOCKED)
            return again(f"{w['dob_wrong']}: {links.MAX_TRIES - taken}", 422)
        conv.failed_verifications = 0
        link.failed_tries = 0
        response = RedirectResponse(f"/s/{token}", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, _serializer(settings).dumps({"l": link.id, "d": device}),
        max_age=int(settings.status_session_minutes * 60), path=f"/s/{token}", httponly=True,
        secure=_secure(settings), samesite="strict",
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return _with_device(response, settings, device, new)


def _caregiver(session: Session, link: StatusLink) -> caregivers.Caregiver | None:
    if link.caregiver_id is None:
        return None
    return caregivers.by_id(session, link.clinic_id, link.caregiver_id)


def _conversation(session: Session, link: StatusLink, patient: Patient):
    """The conversation the page writes into (at the patient's clinic): the caregiver's own,
    else the patient's."""
    carer = _caregiver(session, link)
    if carer is not None:
        return conversations.get_or_create(session, link.clinic_id, carer.channel, carer.address)
    channel, address = conversations.patient_address(patient)
    return conversations.get_or_create(session, link.clinic_id, channel, address)


def _hand_off_locked(
    session: Session, request: Request, patient: Patient, conv: Conversation, now: datetime
) -> None:
    _hand_off(session, request, patient, conv, Reason.VERIFICATION_LOCKED,
              "three wrong dates of birth on the status page", now)  # fmt: skip


def _hand_off(session, request, patient, conv, reason: Reason, summary: str, now) -> None:
    handoff, created = handoffs.open_or_add(
        session, clinic_id=patient.clinic_id, reason=reason, now=now, patient_id=patient.id,
        conversation_id=conv.id, summary=summary,
        settings=_clinic_settings(request, session, patient.clinic_id),
        context=lambda: context.build(session, patient, conv, now),
    )  # fmt: skip
    timeline.record(
        session, patient.id, kind=timeline.EntryKind.HANDOFF, occurred_at=now,
        summary=f"hand-off {'opened' if created else 'updated'}: {reason.value}",
        entity_type="handoff", entity_source_id=str(handoff.id),
    )  # fmt: skip
    for listener in request.app.state.runtime.engine.handoff_listeners:
        listener(session, handoff, reason, created)


# --- actions ------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _act(request: Request, session: Session, token: str, csrf: str, nonce: str, kind: str, now):
    """The link, its patient, and whether this form was already done; refusals raise."""
    link, state = _open(session, token, now)
    if link is None or state != LinkState.OK:
        raise _Refused(_unavailable(request, session, link, state))
    if not _verified(request, link):
        raise _Refused(RedirectResponse(f"/s/{token}", status_code=303))
    if not _csrf_ok(request, csrf) or not 8 <= len(nonce) <= 64:
        raise _Refused(
            Response("This form is out of date: reload the page and try again.", 403,
                     media_type="text/plain", headers={"Cache-Control": "no-store"})
        )  # fmt: skip
    first = links.record_action(session, link, nonce, kind, now)
    return link, session.get(Patient, link.patient_id), first


def _back(token: str, done: str) -> Response:
    return RedirectResponse(f"/s/{token}?done={done}", status_code=303)


def _record(
    session: Session, patient: Patient, now, action: str, summary: str, entity=None, source_id=None
) -> None:
    timeline.record(
        session, patient.id, kind=timeline.EntryKind.PATIENT_ACTION, occurred_at=now,
        summary=summary, entity_type=entity, entity_source_id=source_id,
        changes={"action": action},
    )  # fmt: skip


@router.post("/s/{token}/refill")
def request_refill(
    token: str, request: Request, csrf_token: str = Form(""), nonce: str = Form("")
) -> Response:
    now = utcnow()
    with request.app.state.db.session() as session:
        try:
            _link, patient, first = _act(request, session, token, csrf_token, nonce, "refill", now)
        except _Refused as refused:
            return refused.response
        if not first:
            return _back(token, "again")
        snap = snapshot.build(session, patient, now)
        rx = snap.refill_request_for
        refills.request_by_patient(
            session, patient.id, clinic_id=patient.clinic_id,
            prescription_source_id=rx.source_id if rx else "", due_date=snap.next_refill_date,
            channel="the status page", now=now,
        )  # fmt: skip
    return _back(token, "refill")


@router.post("/s/{token}/appointment")
def appointment(
    token: str,
    request: Request,
    csrf_token: str = Form(""),
    nonce: str = Form(""),
    appointment_id: str = Form("", max_length=128),
    choice: str = Form(""),
) -> Response:
    now = utcnow()
    if choice not in ("confirm", "reschedule"):
        return Response("choice must be confirm or reschedule", 422, media_type="text/plain")
    with request.app.state.db.session() as session:
        try:
            link, patient, first = _act(request, session, token, csrf_token, nonce, choice, now)
        except _Refused as refused:
            return refused.response
        snap = snapshot.build(session, patient, now)
        appt = next((a for a in snap.appointments if a.source_id == appointment_id), None)
        if appt is None:
            return Response("no such upcoming appointment", 404, media_type="text/plain")
        if not first:
            return _back(token, "again")
        if choice == "confirm":
            _record(session, patient, now, "confirm",
                    f"patient confirmed appointment {appt.source_id} on the status page",
                    "appointment", appt.source_id)  # fmt: skip
        else:
            _record(session, patient, now, "reschedule",
                    f"patient asked to reschedule appointment {appt.source_id} on the status page",
                    "appointment", appt.source_id)  # fmt: skip
            conv = _conversation(session, link, patient)
            _hand_off(session, request, patient, conv, Reason.RESCHEDULE,
                      f"asked on the status page to reschedule appointment {appt.source_id}",
                      now)  # fmt: skip
    return _back(token, choice)


@router.post("/s/{token}/pay")
def update_payment(
    token: str, request: Request, csrf_token: str = Form(""), nonce: str = Form("")
) -> Response:
    now = utcnow()
    with request.app.state.db.session() as session:
        try:
            link, patient, first = _act(request, session, token, csrf_token, nonce, "pay", now)
        except _Refused as refused:
            return refused.response
        if first:
            _record(session, patient, now, "pay", "patient opened the payment-update link")
        pay_url = _clinic_settings(request, session, link.clinic_id).payment_update_url
    return RedirectResponse(pay_url, status_code=303)


@router.post("/s/{token}/message")
def message_clinic(
    token: str,
    request: Request,
    csrf_token: str = Form(""),
    nonce: str = Form(""),
    text: str = Form("", max_length=MAX_MESSAGE * 2),
) -> Response:
    """The text enters the patient's conversation through the inbox, like an SMS: in order,
    once (the nonce is its provider id), and the turn hands it to staff."""
    now = utcnow()
    settings = _settings(request)
    text = limits.scrub(text).strip()[:MAX_MESSAGE]
    if not text:
        return Response("the message is empty", 422, media_type="text/plain")
    with request.app.state.db.session() as session:
        try:
            link, patient, first = _act(request, session, token, csrf_token, nonce, "message", now)
        except _Refused as refused:
            return refused.response
        if not first:
            return _back(token, "again")
        conv = _conversation(session, link, patient)
        inbox.store(
            session, settings.secret_key, clinic_id=link.clinic_id, source="status_page",
            provider_id=f"{link.id}:{nonce}", action=inbox.Action.PAGE, channel=conv.channel,
            address=conv.address, payload={"text": text, "patient_id": patient.id}, now=now,
        )  # fmt: skip
        _record(session, patient, now, "message", "patient wrote to the clinic on the status page")
    request.app.state.runtime.notify_inbox()
    return _back(token, "message")


@router.post("/s/{token}/alerts")
def alert_choices(
    token: str,
    request: Request,
    csrf_token: str = Form(""),
    nonce: str = Form(""),
    topics: list[str] = Form([]),
    only_urgent: str = Form(""),
) -> Response:
    now = utcnow()
    wanted = {alerts.Topic(t) for t in topics if t in alerts.Topic.__members__.values()}
    with request.app.state.db.session() as session:
        try:
            link, patient, first = _act(request, session, token, csrf_token, nonce, "alerts", now)
        except _Refused as refused:
            return refused.response
        if link.caregiver_id is not None:
            return Response("alerts are the patient's to choose", 403, media_type="text/plain")
        if first:
            alerts.replace(session, link.clinic_id, patient.id, wanted=wanted,
                           only_urgent=bool(only_urgent), now=now)  # fmt: skip
            _record(session, patient, now, "alerts",
                    "patient chose alerts on the status page: "
                    + (", ".join(sorted(t.value for t in wanted)) or "none")
                    + (" (only urgent)" if only_urgent else ""))  # fmt: skip
    return _back(token, "alerts")
