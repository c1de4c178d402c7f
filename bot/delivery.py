"""What a failed delivery means for the conversation, whichever way we learn of it
(the provider refusing the send, or a delivery callback later)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot import context, conversations, handoffs
from bot.handoffs import Reason
from bot.messages import Kind, Message
from status.patients import Patient

OPTED_OUT = "opted_out"
INVALID_ADDRESS = "invalid_address"
BLOCKED = "blocked"
CHAT_NOT_FOUND = "chat_not_found"


def delivery_failed(
    session: Session,
    message: Message,
    reason: str | None,
    code: str | None,
    now: datetime,
    settings=None,  # noqa: ANN001 - for the SLA and staff alerts
) -> None:
    conv = conversations.get_or_create(
        session, message.clinic_id, message.channel, message.address
    )
    if reason == OPTED_OUT:  # the carrier says the person texted STOP: honour it everywhere
        conv.opted_out = True
        conv.opted_out_at = now
        return
    if reason in (INVALID_ADDRESS, BLOCKED, CHAT_NOT_FOUND):
        conv.bad_address = True
        conv.bad_address_reason = f"{reason} ({code})"
    if message.kind == Kind.STAFF_ALERT or reason in (BLOCKED, CHAT_NOT_FOUND):
        return  # a blocked Telegram chat falls back to SMS where it can (proactive rules)
    what = "not a valid mobile number" if reason == INVALID_ADDRESS else "a permanent error"
    patient = session.get(Patient, message.patient_id) if message.patient_id else None
    handoffs.open_or_add(
        session,
        clinic_id=message.clinic_id,
        reason=Reason.DELIVERY_FAILED,
        now=now,
        patient_id=message.patient_id,
        conversation_id=conv.id,
        summary=f"{message.channel.upper()} to this patient failed: {what} (code {code})",
        context=lambda: context.build(session, patient, conv, now),
        settings=settings,
    )
