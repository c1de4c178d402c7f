"""Twilio SMS webhooks: inbound messages and delivery status callbacks.

Thin by design: verify the signature, store the message in the inbox keyed by Twilio's id (a
redelivery is a no-op) and answer empty TwiML at once. The turn runs from the stored message in
the worker loop (channels/turns.py); replies leave through the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import URL
from starlette.types import Receive, Scope, Send
from twilio.request_validator import RequestValidator

from bot import inbox, receipts
from bot import messages as message_queries
from bot.delivery import INVALID_ADDRESS, OPTED_OUT, delivery_failed
from bot.inbound import Inbound
from bot.messages import FINAL, Message, OutStatus
from channels import access, openapi
from status import clinics, limits, metrics
from status.db import utcnow
from status.patients import InvalidPhone, normalize_phone
from status.settings import Settings

log = logging.getLogger("patient_status.twilio")
router = APIRouter(responses=openapi.WEBHOOK)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
EMPTY_TWIML_BYTES = EMPTY_TWIML.encode()
FORM = b"application/x-www-form-urlencoded"
# Twilio's delivery states; only the final ones change what we recorded.
KNOWN_STATUSES = {
    "accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed",
    "read", "canceled",
}  # fmt: skip
OPTED_OUT_CODES = {"21610"}
NO_TOKEN = "TWILIO_AUTH_TOKEN is not configured; cannot verify Twilio"
NO_SIGNATURE = "missing X-Twilio-Signature"
BAD_SIGNATURE = "X-Twilio-Signature does not match this request"
BAD_ADDRESS_CODES = {"21211", "21614", "30006", "30005"}


def public_url(request: Request | URL, settings: Settings) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + path (+ query), never the proxied one."""
    url = request if isinstance(request, URL) else request.url
    if settings.public_base_url:
        found = settings.public_base_url.rstrip("/") + url.path
        if url.query:
            found += "?" + url.query
        return found
    return str(url)


def signature_ok(auth_token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """Twilio's check (`RequestValidator.validate`), computing one HMAC where it computes two:
    HMAC-SHA1 of the URL followed by each parameter's name and value in name order, base64,
    as Twilio documents it. Only when that does not match are the URL's variants with and
    without the port tried, by twilio's own code (a forged request costs that much more)."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    if hmac.compare_digest(base64.b64encode(digest), signature.encode()):
        return True
    return bool(RequestValidator(auth_token).validate(url, params, signature))


async def verified_form(request: Request) -> dict[str, str]:
    settings: Settings = request.app.state.settings
    if not settings.twilio_auth_token:
        raise HTTPException(403, NO_TOKEN)
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise HTTPException(403, NO_SIGNATURE)
    form = await request.form()
    params = {key: str(value) for key, value in form.multi_items()}
    if not signature_ok(
        settings.twilio_auth_token, public_url(request, settings), params, signature
    ):
        raise HTTPException(403, BAD_SIGNATURE)
    return params


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


def parse_inbound(form: dict[str, str], received_at: datetime) -> Inbound:
    """A signed inbound-SMS form -> the message, or LimitExceeded naming the field.

    What only a broken or hostile sender would send is refused (a missing or oversized
    MessageSid, a From that is not a phone number); what a patient may type is kept, with the
    bytes a database cannot hold replaced (`limits.scrub`). Media are read from MediaUrl0..9
    whatever NumMedia claims, so a bad NumMedia costs nothing and loses nothing.
    """
    sid = limits.provider_id("MessageSid", form.get("MessageSid") or form.get("SmsSid"))
    sender = form.get("From")
    if not sender:
        raise limits.LimitExceeded("From", "is required")
    address = _e164(sender[: limits.PHONE])
    if address is None:
        raise limits.LimitExceeded("From", "must be a phone number")
    try:
        limits.media_count(form.get("NumMedia"))
    except limits.LimitExceeded as exc:
        log.warning("inbound SMS with a malformed NumMedia", extra={"rule": exc.rule})
    media = tuple(
        limits.scrub(form[key][: limits.URL])
        for key in (f"MediaUrl{i}" for i in range(limits.MAX_MEDIA))
        if form.get(key)
    )
    text = limits.scrub(form.get("Body", "")[: limits.MESSAGE_BODY])
    return Inbound("sms", address, text, sid, received_at, media)


@router.post(
    "/webhooks/twilio/sms",
    response_class=Response,
    responses={200: {"description": "empty TwiML", "content": {"application/xml": {}}}},
)
async def inbound_sms(request: Request, form: dict = Depends(verified_form)) -> Response:
    """Inbound SMS. Served by `InboundSms` in front of the app for Twilio's own requests
    (form-encoded); this route documents it and serves any other content type."""
    try:
        await accept_inbound(request.app.state, form)
    except limits.LimitExceeded as exc:
        raise HTTPException(400, str(exc)) from exc
    return _twiml()


async def accept_inbound(state: Any, form: dict[str, str]) -> None:
    """Store a verified inbound SMS in the inbox (LimitExceeded naming a malformed field)."""
    inbound = parse_inbound(form, utcnow())
    payload = {"text": inbound.text, "media": list(inbound.media)}
    # Record the message for the clinic it was written to (by its messaging service, else its
    # number), routed in the insert itself (a redelivered MessageSid is a no-op); its turn runs
    # in the worker.
    sent_to = clinics.SmsRecipient(
        to=_to_number(form.get("To")),
        messaging_service_sid=(form.get("MessagingServiceSid") or "")[:64] or None,
    )
    stored = await inbox.store_soon(
        state.db, state.settings.secret_key, clinic=sent_to, source="twilio_sms",
        provider_id=inbound.provider_id, action=inbox.Action.SMS, channel="sms",
        address=inbound.address, payload=payload,
    )  # fmt: skip
    if stored:
        state.runtime.notify_inbox()


class InboundSms:
    """`POST /webhooks/twilio/sms` as plain ASGI, called before the FastAPI app
    (`channels.app.App`): the same checks and answers as the route above (403 for a missing or
    wrong signature, 400 naming a malformed field, 413 over `limits.MAX_WEBHOOK_BODY`, empty
    TwiML once the message is stored), without the middleware stack, dependency injection and
    multipart parser a webhook does not need; the route's metric and access-log line too.

    Only form-encoded bodies (what Twilio sends) are taken; anything else is left to the app."""

    ROUTE = "/webhooks/twilio/sms"

    def __init__(self, state: Any) -> None:
        self.state = state
        self.seconds = metrics.WEBHOOK_SECONDS.labels(self.ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request; False (having read nothing) when the app should."""
        content_type = signature = declared = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"x-twilio-signature":
                signature = value
            elif name == b"content-length":
                declared = value
        if content_type.partition(b";")[0].strip().lower() != FORM:
            return False
        started = time.perf_counter()
        status = 500
        try:
            status, body, media_type = await self._answer(scope, receive, signature, declared)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", media_type),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            access.record(self.seconds, "POST", self.ROUTE, status, started)
        return True

    async def _answer(
        self, scope: Scope, receive: Receive, signature: bytes, declared: bytes
    ) -> tuple[int, bytes, bytes]:
        settings: Settings = self.state.settings
        if not settings.twilio_auth_token:
            return _refused(403, NO_TOKEN)
        if not signature:
            return _refused(403, NO_SIGNATURE)
        limit = limits.MAX_WEBHOOK_BODY
        too_large = f"the body is larger than the limit of {limit} bytes"
        if declared.isdigit() and int(declared) > limit:
            return _refused(413, too_large)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return _refused(400, "the request ended before its body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _refused(413, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        form = parse_form(b"".join(chunks))
        url = _signed_url(scope, settings)
        if not signature_ok(settings.twilio_auth_token, url, form, signature.decode("latin-1")):
            return _refused(403, BAD_SIGNATURE)
        try:
            await accept_inbound(self.state, form)
        except limits.LimitExceeded as exc:
            return _refused(400, str(exc))
        except Exception:
            log.exception("inbound SMS not stored")
            return _refused(500, "the message could not be stored; try again")
        return 200, EMPTY_TWIML_BYTES, b"application/xml"


def parse_form(body: bytes) -> dict[str, str]:
    """A form-encoded body as `urllib.parse.parse_qsl(..., keep_blank_values=True)` reads it
    (and Starlette's form parser: names and values percent-decoded as UTF-8, `+` a space), the
    last of a repeated name kept as `verified_form`'s dict does; what has nothing to decode
    is taken as it is (most of Twilio's fields), which is most of parse_qsl's time saved."""
    form = {}
    for field in body.decode("latin-1").split("&"):
        if field:
            name, _, value = field.partition("=")
            form[_unquoted(name)] = _unquoted(value)
    return form


def _unquoted(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


def _signed_url(scope: Scope, settings: Settings) -> str:
    """`public_url` of the request in `scope`, without building Starlette's URL when
    PUBLIC_BASE_URL says what it is (its path and query as `URL` gives them)."""
    if not settings.public_base_url:
        return str(URL(scope=scope))
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    url = settings.public_base_url.rstrip("/") + path
    query = scope.get("query_string", b"").decode()
    return f"{url}?{query}" if query else url


def _refused(status: int, detail: str) -> tuple[int, bytes, bytes]:
    body = json.dumps(
        {"detail": detail}, ensure_ascii=False, separators=(",", ":")
    )  # as JSONResponse
    return status, body.encode(), b"application/json"


def _to_number(raw: str | None) -> str | None:
    """The number the patient wrote to, as clinics store theirs (E.164); None if it is not one."""
    return _e164(raw[: limits.PHONE]) if raw else None


@functools.lru_cache(maxsize=8192)
def _e164(raw: str) -> str | None:
    """`normalize_phone` for a webhook's From and To, or None: remembered, since a clinic's
    numbers and its patients' phones come back again and again (phonenumbers takes ~35 us)."""
    try:
        return normalize_phone(raw)
    except InvalidPhone:
        return None


@router.post("/webhooks/twilio/status", status_code=204, response_class=Response)
async def delivery_status(request: Request, form: dict = Depends(verified_form)) -> Response:
    try:
        sid, status, error_code = parse_status(form)
    except limits.LimitExceeded as exc:
        raise HTTPException(400, str(exc)) from exc
    outbox_id = request.query_params.get("outbox_id")
    if outbox_id is not None and not outbox_id.isdigit():
        raise HTTPException(400, "outbox_id must be a message id")
    await asyncio.to_thread(_record_status, request.app.state, sid, status, error_code, outbox_id)
    return Response(status_code=204)


def parse_status(form: dict[str, str]) -> tuple[str, str, str | None]:
    """A signed status callback -> (MessageSid, status, ErrorCode), or LimitExceeded."""
    sid = limits.provider_id("MessageSid", form.get("MessageSid") or form.get("SmsSid"))
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if status not in KNOWN_STATUSES:
        raise limits.LimitExceeded("MessageStatus", "must be one of Twilio's message statuses")
    error_code = form.get("ErrorCode") or None
    if error_code is not None and (len(error_code) > 8 or not error_code.isdigit()):
        raise limits.LimitExceeded("ErrorCode", "must be a Twilio error code (digits)")
    return sid, status, error_code


def _record_status(state, sid: str, status: str, error_code: str | None, outbox_id) -> None:
    with state.db.session() as session:
        if not receipts.record(session, "twilio_status", f"{sid}:{status}"):
            return
        message = message_queries.by_provider_id(session, sid)
        if message is None and outbox_id is not None:
            message = _accepted_unrecorded(session, int(outbox_id), sid)
        if message is None:
            log.warning("status for unknown message", extra={"provider_id": sid})
            return
        settings = state.runtime.engine.profiles.get(session, message.clinic_id).settings
        apply_status(session, message, status, error_code, settings)


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
    settings=None,
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
