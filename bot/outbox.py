"""Writing outbound messages: a row in the same transaction as the change that caused it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.messages import Direction, Kind, Message, OutStatus
from status import metrics
from status.db import utcnow


def enqueue(
    session: Session,
    *,
    channel: str,
    address: str,
    body: str,
    kind: Kind = Kind.REPLY,
    conversation_id: int | None = None,
    patient_id: int | None = None,
    template: str | None = None,
    language: str | None = None,
    urgent: bool = False,
    buttons: list | None = None,
    coalesce_key: str | None = None,
    not_before: datetime | None = None,
    handoff_id: int | None = None,
    staff_id: int | None = None,
    data: dict | None = None,
    now: datetime | None = None,
) -> Message:
    now = now or utcnow()
    message = Message(
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
    )
    session.add(message)
    session.flush()
    metrics.REPLIES.labels(channel, str(kind)).inc()
    return message
