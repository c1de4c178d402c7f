"""The context packet a person needs to take over without asking the patient to start over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, ScalarSelect, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from bot import messages
from bot.conversations import Conversation
from bot.messages import Direction, Kind, Message
from status import snapshot, timeline
from status.db import Prepared, RawCursor
from status.patients import Patient

# Built once: the status API runs it on every request.
_TOLD = (  # which of the patient's messages count as told
    Message.direction == Direction.OUT,
    Message.kind == Kind.PROACTIVE,
    # not `not_in`: an expanding IN can't be compiled once (`Prepared`)
    *(Message.status != status for status in ("cancelled", "pending", "sending")),
)
_LAST_TOLD = (
    select(
        Message.template, Message.coalesce_key, Message.channel, Message.sent_at,
        Message.created_at, Message.status, Message.body,
    )
    .where(Message.patient_id == bindparam("patient_id"), *_TOLD)
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)  # fmt: skip


_LAST_TOLD_RAW = Prepared(_LAST_TOLD)
_TOLD_COLUMNS = _LAST_TOLD.selected_columns
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def last_told_json(patient_id: ColumnElement[int], limit: int = 10) -> ScalarSelect[Any]:
    """`last_told`'s rows as one JSON array, a column of the statement that reads the patient
    (PostgreSQL; the status API's one statement): `[[template, coalesce_key, channel,
    sent_at or created_at in microseconds since 1970, status, body], ...]`, newest first;
    `told_from_json` makes them `last_told`'s dicts."""
    template, coalesce_key, channel, sent_at, created_at, status, body = _TOLD_COLUMNS
    micros = cast(func.extract("epoch", func.coalesce(sent_at, created_at)) * 1_000_000, BigInteger)
    rows = (
        select(template, coalesce_key, channel, micros.label("at"), status, body, Message.id)
        .where(Message.patient_id == patient_id, *_TOLD)
        .order_by(Message.id.desc())
        .limit(limit)
        .correlate_except(Message)
        .subquery("told")
    )
    row = func.json_build_array(*(c for c in rows.c if c.key != "id"))
    return select(func.json_agg(aggregate_order_by(row, rows.c.id.desc()))).scalar_subquery()


def told_from_json(rows: list[list[Any]] | None) -> list[dict[str, Any]]:
    """`last_told`'s dicts from `last_told_json`'s array (None: nothing told)."""
    return [
        {
            "about": template,
            "coalesce_key": coalesce_key,
            "channel": channel,
            "sent_at": (_EPOCH + timedelta(microseconds=micros)).isoformat(),
            "status": status,
            "body": body,
        }
        for template, coalesce_key, channel, micros, status, body in rows or ()
    ]


def last_told(session: Session, patient_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """What the patient was told proactively, newest first (and whether it reached them)."""
    rows = session.execute(_LAST_TOLD, {"patient_id": patient_id, "limit": limit})
    return [_told(*row) for row in rows]


def read_last_told(reader: RawCursor, patient_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """`last_told` through `Database.raw_autocommit` (the status API's hot path)."""
    return [_told(*row) for row in reader.rows(_LAST_TOLD_RAW, patient_id=patient_id, limit=limit)]


def _told(
    template: str | None,
    coalesce_key: str | None,
    channel: str,
    sent_at: datetime | None,
    created_at: datetime,
    status: str | None,
    body: str,
) -> dict[str, Any]:
    return {
        "about": template,
        "coalesce_key": coalesce_key,
        "channel": channel,
        "sent_at": (sent_at or created_at).isoformat(),
        "status": status,
        "body": body,
    }


def _message_dict(m: Message) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """Patient summary, snapshot, misalignments, timeline, what they were told, transcript."""
    packet: dict[str, Any] = {"built_at": now.isoformat()}
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
