"""Writing outbound messages: a row in the same transaction as the change that caused it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.messages import INBOUND_DEFAULTS, Buttons, Direction, Kind, Message, OutStatus, lane_of
from status import clinics, metrics
from status.db import utcnow


def enqueue(
    session: Session,
    *,
    clinic_id: int,
    channel: str,
    address: str,
    body: str,
    kind: Kind = Kind.REPLY,
    conversation_id: int | None = None,
    patient_id: int | None = None,
    template: str | None = None,
    language: str | None = None,
    urgent: bool = False,
    buttons: Buttons | None = None,
    coalesce_key: str | None = None,
    not_before: datetime | None = None,
    handoff_id: int | None = None,
    staff_id: int | None = None,
    data: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    flush: bool = True,
) -> Message:
    """The message, added to the session; `flush=False` leaves it to the transaction's next
    flush (its id is unknown until then)."""
    now = now or utcnow()
    message = Message(
        clinic_id=clinic_id,
        conversation_id=conversation_id,
        patient_id=patient_id,
        direction=Direction.OUT,
        kind=kind,
        channel=channel,
        address=address,
        body=body,
        template=template,
        language=language,
        urgent=urgent,
        priority=lane_of(kind, urgent, template),
        expires_at=expires_at,
        buttons=buttons or [],
        coalesce_key=coalesce_key,
        not_before=not_before,
        next_attempt_at=not_before or now,
        handoff_id=handoff_id,
        staff_id=staff_id,
        data=data or {},
        status=OutStatus.PENDING,
        attempts=0,
        created_at=now,
        **INBOUND_DEFAULTS,
    )
    session.add(message)
    if flush:
        session.flush()
    metrics.count_on_commit(
        session, metrics.REPLIES.labels(channel, str(kind), clinics.slug_of(session, clinic_id))
    )
    return message


class RetryRefused(ValueError):
    pass


def requeue(session: Session, message: Message, now: datetime | None = None) -> Message:
    """Replay a failed outbound message: consent is checked again when it is sent."""
    from bot import conversations
    from bot.messages import Direction

    now = now or utcnow()
    if message.direction != Direction.OUT:
        raise RetryRefused(f"message {message.id} is inbound")
    if message.status not in (OutStatus.FAILED, OutStatus.UNDELIVERED):
        raise RetryRefused(f"message {message.id} is {message.status}, not failed")
    conv = conversations.find(session, message.clinic_id, message.channel, message.address)
    if conv is not None and conv.bad_address:
        raise RetryRefused(
            f"the {message.channel} address is marked bad ({conv.bad_address_reason}); "
            "correct it with a patient.updated event first"
        )
    message.status = OutStatus.PENDING
    message.attempts = 0
    message.error_code = message.error_message = None
    message.next_attempt_at = now
    message.claimed_by = message.claimed_until = None
    message.status_updated_at = now
    return message
