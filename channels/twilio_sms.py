"""Twilio SMS webhooks: inbound messages and delivery status callbacks.

Thin by design: verify the signature, store the message in the inbox keyed by Twilio's id (a
redelivery is a no-op) and answer empty TwiML at once. The turn runs from the stored message in
the worker loop (channels/turns.py); replies leave through the outbox.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from bot import inbox, receipts
from bot import messages as message_queries
from bot.delivery import INVALID_ADDRESS, OPTED_OUT, delivery_failed
from bot.messages import FINAL, Message, OutStatus
from status.db import retrying, utcnow
from status.patients import InvalidPhone, normalize_phone
from status.settings import Settings

log = logging.getLogger("patient_status.twilio")
router = APIRouter()
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio's delivery states; only the final ones change what we recorded.
KNOWN_STATUSES = {
    "accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed",
    "read", "canceled",
}  # fmt: skip
OPTED_OUT_CODES = {"21610"}
BAD_ADDRESS_CODES = {"21211", "21614", "30006", "30005"}


def public_url(request: Request, settings: Settings) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + path (+ query), never the proxied one."""
    if settings.public_base_url:
        url = settings.public_base_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        return url
    return str(request.url)


async def verified_form(request: Request) -> dict[str, str]:
    settings: Settings = request.app.state.settings
    if not settings.twilio_auth_token:
        raise HTTPException(403, "TWILIO_AUTH_TOKEN is not configured; cannot verify Twilio")
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise HTTPException(403, "missing X-Twilio-Signature")
    form = await request.form()
    params = {key: str(value) for key, value in form.multi_items()}
    validator = RequestValidator(settings.twilio_auth_token)
    if not validator.validate(public_url(request, settings), params, signature):
        raise HTTPException(403, "X-Twilio-Signature does not match this request")
    return params


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post("/webhooks/twilio/sms")
async def inbound_sms(request: Request, form: dict = Depends(verified_form)) -> Response:
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = form.get("From")
    if not sid or not sender:
        raise HTTPException(400, "MessageSid and From are required")
    try:
        address = normalize_phone(sender)
    except InvalidPhone as exc:
        raise HTTPException(400, f"From: {exc}") from exc
    media = [
        form[f"MediaUrl{i}"]
        for i in range(_num_media(form.get("NumMedia")))
        if f"MediaUrl{i}" in form
    ]
    payload = {"text": form.get("Body", ""), "media": media}
    state = request.app.state
    stored = await asyncio.to_thread(_store, state, sid, address, payload)
    if stored:
        state.runtime.notify_inbox()
    return _twiml()


def _num_media(value: str | None) -> int:
    try:
        return max(0, min(int(value or 0), 10))  # Twilio sends at most 10
    except ValueError as exc:
        raise HTTPException(400, "NumMedia must be a whole number") from exc


def _store(state, sid: str, address: str, payload: dict) -> bool:  # noqa: ANN001
    """Record the message (a redelivered MessageSid is a no-op); its turn runs in the worker."""

    def store() -> bool:
        with state.db.session() as session:
            return inbox.store(
                session, state.settings.secret_key, source="twilio_sms", provider_id=sid,
                action=inbox.Action.SMS, channel="sms", address=address, payload=payload,
            )  # fmt: skip

    return retrying(store)


@router.post("/webhooks/twilio/status")
async def delivery_status(request: Request, form: dict = Depends(verified_form)) -> Response:
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or status not in KNOWN_STATUSES:
        raise HTTPException(400, "MessageSid and a known MessageStatus are required")
    outbox_id = request.query_params.get("outbox_id")
    if outbox_id is not None and not outbox_id.isdigit():
        raise HTTPException(400, "outbox_id must be a message id")
    await asyncio.to_thread(
        _record_status, request.app.state, sid, status, form.get("ErrorCode"), outbox_id
    )
    return Response(status_code=204)


def _record_status(state, sid: str, status: str, error_code: str | None, outbox_id) -> None:  # noqa: ANN001
    with state.db.session() as session:
        if not receipts.record(session, "twilio_status", f"{sid}:{status}"):
            return
        message = message_queries.by_provider_id(session, sid)
        if message is None and outbox_id is not None:
            message = _accepted_unrecorded(session, int(outbox_id), sid)
        if message is None:
            log.warning("status for unknown message", extra={"provider_id": sid})
            return
        apply_status(session, message, status, error_code, state.settings)


def _accepted_unrecorded(session: Session, outbox_id: int, sid: str) -> Message | None:
    """Twilio accepted our message but the sender never recorded it (it crashed): the callback's
    outbox id says which row it was, so it is recorded now and never sent again."""
    message = session.get(Message, outbox_id)
    if message is None or message.direction != "out" or message.channel != "sms":
        return None
    if message.provider_id is None and message.status in (OutStatus.PENDING, OutStatus.SENDING):
        message.provider_id = sid
        message.status = OutStatus.SENT
        message.sent_at = message.status_updated_at = utcnow()
        message.claimed_by = message.claimed_until = None
    return message if message.provider_id == sid else None


def apply_status(
    session: Session,
    message: Message,
    status: str,
    error_code: str | None,
    settings=None,  # noqa: ANN001
) -> None:
    now = utcnow()
    if message.status in FINAL:  # a late or repeated callback never moves a final state
        return
    mapped = {
        "delivered": OutStatus.DELIVERED,
        "read": OutStatus.DELIVERED,
        "undelivered": OutStatus.UNDELIVERED,
        "failed": OutStatus.FAILED,
    }.get(status)
    if mapped is None:  # queued / sending / sent: still on its way
        message.status_updated_at = now
        return
    message.status = mapped
    message.status_updated_at = now
    if mapped == OutStatus.DELIVERED:
        message.delivered_at = now
        return
    message.error_code = error_code
    if error_code in OPTED_OUT_CODES:
        reason = OPTED_OUT
    elif error_code in BAD_ADDRESS_CODES:
        reason = INVALID_ADDRESS
    else:
        reason = None
    delivery_failed(session, message, reason, error_code, now, settings)
