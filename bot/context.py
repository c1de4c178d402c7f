"""The context packet a person needs to take over without asking the patient to start over."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot import messages
from bot.conversations import Conversation
from bot.messages import Direction, Kind, Message
from status import snapshot, timeline
from status.db import Prepared, RawCursor
from status.patients import Patient

# Built once: the status API runs it on every request.
_LAST_TOLD = (
    select(
        Message.template, Message.coalesce_key, Message.channel, Message.sent_at,
        Message.created_at, Message.status, Message.body,
    )
    .where(
        Message.patient_id == bindparam("patient_id"),
        Message.direction == Direction.OUT,
        Message.kind == Kind.PROACTIVE,
        # not `not_in`: an expanding IN can't be compiled once (`Prepared`)
        *(Message.status != status for status in ("cancelled", "pending", "sending")),
    )
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)  # fmt: skip


_LAST_TOLD_RAW = Prepared(_LAST_TOLD)


def last_told(session: Session, patient_id: int, limit: int = 10) -> list[dict]:
    """What the patient was told proactively, newest first (and whether it reached them)."""
    rows = session.execute(_LAST_TOLD, {"patient_id": patient_id, "limit": limit})
    return [_told(*row) for row in rows]


def read_last_told(reader: RawCursor, patient_id: int, limit: int = 10) -> list[dict]:
    """`last_told` through `Database.raw_autocommit` (the status API's hot path)."""
    return [_told(*row) for row in reader.rows(_LAST_TOLD_RAW, patient_id=patient_id, limit=limit)]


def _told(template, coalesce_key, channel, sent_at, created_at, status, body) -> dict:  # noqa: ANN001
    return {
        "about": template,
        "coalesce_key": coalesce_key,
        "channel": channel,
        "sent_at": (sent_at or created_at).isoformat(),
        "status": status,
        "body": body,
    }


def _message_dict(m: Message) -> dict:
    return {
        "id": m.id,
        "direction": m.direction,
        "kind": m.kind,
        "channel": m.channel,
        "body": m.body,
        "intent": m.intent,
        "confidence": m.confidence,
        "status": m.status,
        "media": m.media,
        "at": m.created_at.isoformat(),
    }


def build(
    session: Session,
    patient: Patient | None,
    conversation: Conversation | None,
    now: datetime,
) -> dict:
    """Patient summary, snapshot, misalignments, timeline, what they were told, transcript."""
    packet: dict = {"built_at": now.isoformat()}
    if conversation is not None:
        packet["conversation"] = {
            "channel": conversation.channel,
            "address": conversation.address,
            "verified": conversation.is_verified(patient.id if patient else None, now),
            "locked": conversation.locked_at is not None,
            "opted_out": conversation.opted_out,
        }
        transcript = messages.transcript(session, conversation.id, limit=50)
        packet["transcript"] = [_message_dict(m) for m in transcript]
        intents = [
            {"intent": m.intent, "intents": m.intents, "confidence": m.confidence}
            for m in transcript
            if m.direction == Direction.IN and m.intent
        ]
        packet["last_intents"] = intents[-5:]
    if patient is not None:
        snap = snapshot.build(session, patient, now)
        packet["patient"] = {
            "patient_id": patient.source_id,
            "name": patient.display_name,
            "language": patient.language,
            "timezone": patient.timezone,
            "phone": patient.phone,
            "telegram_linked": bool(patient.telegram_chat_id),
        }
        packet["snapshot"] = snap.to_dict()
        packet["alerts"] = snap.alerts
        packet["timeline"] = [
            {
                "at": entry.occurred_at.isoformat(),
                "kind": entry.kind,
                "summary": entry.summary,
            }
            for entry in timeline.for_patient(session, patient.id, limit=25)
        ]
        packet["told"] = last_told(session, patient.id)
    return packet
