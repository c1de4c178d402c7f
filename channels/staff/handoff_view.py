"""One hand-off as staff (and the JSON API) see it: the frozen packet beside the live one, and the
conversation with every message, delivery status, staff reply and internal note in order."""

from __future__ import annotations

import html
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot import context, conversations, handoffs
from bot.conversations import Conversation
from bot.handoffs import Handoff, HandoffEntry
from bot.messages import Direction, Kind, Message
from bot.render import money
from channels.staff import models
from channels.staff.words import intent_words, reasons_words
from status.patients import Patient

THREAD_LIMIT = 200
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
REPLY_CHANNELS = ("sms", "telegram", "simulator", "terminal")


# --- the conversation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    url: str
    is_link: bool  # http(s) only: anything else is shown as text, never as an href


@dataclass(frozen=True)
class ThreadItem:
    side: str  # "in" (patient), "out" (bot or staff), "note", "event"
    at: datetime
    body: str
    who: str  # "Patient", "Assistant", "Demo Nurse (staff)", ...
    message: Message | None = None
    entry: HandoffEntry | None = None
    media: tuple[Media, ...] = ()

    @property
    def meaning(self) -> str:
        """What the bot took a patient's message to mean: `prescription status 92%`."""
        m = self.message
        if m is None or self.side != "in" or not m.intent:
            return ""
        words = " + ".join(intent_words(i) for i in (m.intents or [m.intent]) if i)
        if m.intent == "unknown" or m.confidence is None:
            return words
        return f"{words} {round(m.confidence * 100)}%"

    @property
    def sort_key(self) -> tuple:
        rank = {"in": 0, "event": 1, "note": 1, "out": 2}[self.side]
        return (self.at, rank, self.message.id if self.message else self.entry.id)


def _media(urls: list) -> tuple[Media, ...]:
    return tuple(
        Media(str(u), str(u).startswith(("https://", "http://"))) for u in (urls or []) if u
    )


def messages_for(session: Session, handoff: Handoff) -> list[Message]:
    """The hand-off's conversation (or the patient's messages) plus every message it sent."""
    if handoff.conversation_id is not None:
        where = or_(
            Message.conversation_id == handoff.conversation_id, Message.handoff_id == handoff.id
        )
    elif handoff.patient_id is not None:
        where = or_(Message.patient_id == handoff.patient_id, Message.handoff_id == handoff.id)
    else:
        where = Message.handoff_id == handoff.id
    query = (
        select(Message)
        .where(where, Message.kind != Kind.STAFF_ALERT)
        .order_by(Message.id.desc())
        .limit(THREAD_LIMIT)
    )
    return list(reversed(list(session.scalars(query))))


def as_text(telegram_html: str) -> str:
    """What the patient saw of a Telegram HTML message: tags dropped, entities decoded (the
    page escapes it again, so nothing in it can become markup)."""
    return html.unescape(_TAG.sub("", telegram_html))


def _entry_text(entry: HandoffEntry, staff: dict[int, str]) -> str:
    who = staff.get(entry.staff_id, "the API") if entry.staff_id else "the API"
    if entry.kind == "trigger":
        reason, sep, summary = entry.body.partition(": ")
        return f"Handed to staff: {reasons_words([reason])[0]}{sep}{summary}"
    if entry.kind == "assign":
        return f"{staff.get(entry.staff_id, 'Someone')} took this hand-off"
    if entry.kind == "resolve":
        note = f": {entry.body}" if entry.body else ""
        return f"Resolved by {who} and returned to the bot{note}"
    return entry.body


def thread(
    messages: list[Message], entries: list[HandoffEntry], staff: dict[int, str]
) -> list[ThreadItem]:
    items: list[ThreadItem] = []
    for m in messages:
        if m.direction == Direction.IN:
            items.append(
                ThreadItem("in", m.created_at, m.body, "Patient", m, media=_media(m.media))
            )
        else:
            if m.kind == Kind.STAFF:
                who = f"{staff.get(m.staff_id, 'API')} (staff)" if m.staff_id else "Staff (API)"
            elif m.kind == Kind.PROACTIVE:
                who = "Assistant (proactive)"
            else:
                who = "Assistant"
            body = as_text(m.body) if m.channel == "telegram" else m.body
            items.append(ThreadItem("out", m.created_at, body, who, m, media=_media(m.media)))
    for e in entries:
        if e.kind in ("reply", "message"):
            continue  # the message itself is in the thread
        side = "note" if e.kind == "note" else "event"
        who = staff.get(e.staff_id, "API") if e.staff_id else "System"
        items.append(ThreadItem(side, e.created_at, _entry_text(e, staff), who, entry=e))
    return sorted(items, key=lambda i: i.sort_key)


# --- what the bot understood ------------------------------------------------------------------


@dataclass(frozen=True)
class Understood:
    """One message from the patient beside what the bot took it to mean."""

    body: str  # as stored: card numbers and dates of birth already redacted
    at: datetime
    meanings: list[str]  # each intent in plain words
    confidence: int | None  # percent; None when nothing was understood

    @property
    def said(self) -> str:
        return self.body.strip() or "(no text)"


def understood(messages: list[Message], limit: int = 5) -> list[Understood]:
    """The patient's last `limit` messages and their intents, newest first."""
    inbound = [m for m in messages if m.direction == Direction.IN and m.intent]
    rows = []
    for m in reversed(inbound[-limit:]):
        intents = [i for i in (m.intents or [m.intent]) if i]
        missed = intents == ["unknown"]
        pct = None if missed or m.confidence is None else round(m.confidence * 100)
        rows.append(Understood(m.body, m.created_at, [intent_words(i) for i in intents], pct))
    return rows


# --- the context packet, then and now ---------------------------------------------------------


@dataclass(frozen=True)
class When:
    """The date an item's label mentions ("ETA", "due", "renews", "at"), shown in words."""

    label: str
    value: str  # ISO date or date-time, as the snapshot holds it
    date_only: bool = False


@dataclass(frozen=True)
class ItemRow:
    kind: str
    source_id: str
    label: str
    now_status: str | None  # None: no longer in the live snapshot
    now_class: str | None
    now_seconds: int | None
    then_status: str | None  # None: not in the frozen packet
    then_seconds: int | None
    link: str | None = None
    when: When | None = None

    @property
    def changed(self) -> bool:
        return self.now_status != self.then_status


def _items(snapshot: dict) -> list[dict]:
    """Every tracked item of a snapshot dict, flattened to kind, id, label, status and date."""
    rows: list[dict] = []

    def add(
        kind: str,
        item: dict | None,
        id_name: str,
        label: str,
        link: str | None = None,
        when: When | None = None,
    ):
        if item:
            rows.append(
                {
                    "kind": kind,
                    "source_id": item[id_name],
                    "label": label,
                    "link": link,
                    "when": when,
                    "status": item["status"],
                    "class": item.get("status_class"),
                    "seconds": item.get("seconds_in_status"),
                }
            )

    def when(label: str, value: str | None, date_only: bool = False) -> When | None:
        return When(label, value, date_only) if value else None

    for p in snapshot.get("prescriptions", []):
        add("prescription", p, "prescription_id", p.get("medication") or "")
    for s in snapshot.get("shipments", []):
        add(
            "shipment",
            s,
            "shipment_id",
            f"{s['carrier']} {s['tracking_number']}",
            s.get("tracking_url"),
            when("ETA", s.get("estimated_delivery"), True),
        )
    for r in (snapshot.get("refills") or {}).get("items", []):
        label = f"refill of {r.get('prescription_id') or '?'}"
        add("refill", r, "refill_id", label, when=when("due", r.get("due_date"), True))
    billing = snapshot.get("billing") or {}
    for p in billing.get("payments", []):
        why = f" ({p['failure_reason']})" if p.get("failure_reason") else ""
        amount = money(p.get("amount_cents"), p.get("currency") or "USD")
        add("payment", p, "payment_id", f"{p.get('description', '')} {amount}{why}")
    sub = billing.get("subscription")
    if sub:
        label = f"{sub['plan']} {money(sub['amount_cents'], sub['currency'])}"
        add("subscription", sub, "subscription_id", label,
            when=when("renews", sub.get("renews_at"), True))  # fmt: skip
    for a in snapshot.get("appointments", []):
        add("appointment", a, "appointment_id", a["visit_type"], when=when("at", a["starts_at"]))
    for t in snapshot.get("tasks", []):
        add("task", t, "task_id", t.get("title") or "", t.get("url"),
            when("due", t.get("due_at")))  # fmt: skip
    return rows


def compare_items(frozen: dict, live: dict) -> list[ItemRow]:
    then = {(r["kind"], r["source_id"]): r for r in _items(frozen)}
    now = {(r["kind"], r["source_id"]): r for r in _items(live)}
    rows = []
    for key in [*now, *(k for k in then if k not in now)]:
        n, t = now.get(key), then.get(key)
        base = n or t
        rows.append(
            ItemRow(
                kind=base["kind"],
                source_id=base["source_id"],
                label=base["label"],
                now_status=n["status"] if n else None,
                now_class=n["class"] if n else None,
                now_seconds=n["seconds"] if n else None,
                then_status=t["status"] if t else None,
                then_seconds=t["seconds"] if t else None,
                link=base["link"],
                when=base["when"],
            )
        )
    return rows


@dataclass(frozen=True)
class AlertRow:
    text: str
    state: str  # "new" (since the hand-off), "still", "cleared"


def compare_alerts(frozen: list, live: list) -> list[AlertRow]:
    rows = [AlertRow(a, "still" if a in frozen else "new") for a in live]
    return rows + [AlertRow(a, "cleared") for a in frozen if a not in live]


# --- the whole page ---------------------------------------------------------------------------


@dataclass
class Detail:
    handoff: Handoff
    patient: Patient | None
    conversation: Conversation | None
    entries: list[HandoffEntry]
    messages: list[Message]
    live: dict
    staff: dict[int, str]
    items: list[ItemRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)

    @property
    def frozen(self) -> dict:
        return self.handoff.context or {}

    @property
    def thread(self) -> list[ThreadItem]:
        return thread(self.messages, self.entries, self.staff)

    @property
    def understood(self) -> list[Understood]:
        return understood(self.messages)

    @property
    def reasons(self) -> list[str]:
        return reasons_words(self.handoff.reasons, self.handoff.reason)

    @property
    def assignee(self) -> str | None:
        return self.staff.get(self.handoff.assignee_id) if self.handoff.assignee_id else None

    @property
    def reply_route(self) -> str:
        """Where a reply will go, in words (the same choice `handoffs.conversation_of` makes)."""
        conv = self.conversation
        if conv is not None and conv.channel in REPLY_CHANNELS and self.handoff.conversation_id:
            return (
                f"{conv.channel.upper() if conv.channel == 'sms' else conv.channel} {conv.address}"
            )
        p = self.patient
        if p is None:
            return "nowhere: no channel is known for this sender"
        if p.preferred_channel == "telegram" and p.telegram_chat_id:
            return f"telegram {p.telegram_chat_id}"
        return f"SMS {p.phone}"

    @property
    def since_handoff(self) -> set[str]:
        """Timeline entries (by their `at`) that happened after the hand-off opened."""
        opened = self.handoff.created_at
        entries = self.live.get("timeline", [])
        return {e["at"] for e in entries if datetime.fromisoformat(e["at"]) > opened}


def load(
    session: Session, clinic_ids: Collection[int], handoff_id: int, now: datetime
) -> Detail | None:
    """The hand-off and its context, if it belongs to one of these clinics."""
    handoff = handoffs.by_id(session, clinic_ids, handoff_id)
    if handoff is None:
        return None
    patient = session.get(Patient, handoff.patient_id) if handoff.patient_id else None
    conv = session.get(Conversation, handoff.conversation_id) if handoff.conversation_id else None
    if conv is None and patient is not None:
        conv = next(iter(conversations.for_patient(session, patient.id)), None)
    entries = handoffs.entries(session, handoff.id)
    msgs = messages_for(session, handoff)
    ids = {handoff.assignee_id, handoff.resolved_by}
    ids |= {e.staff_id for e in entries} | {m.staff_id for m in msgs}
    live = context.build(session, patient, conv, now)
    detail = Detail(handoff, patient, conv, entries, msgs, live, models.names(session, ids))
    frozen = handoff.context or {}
    detail.items = compare_items(frozen.get("snapshot") or {}, live.get("snapshot") or {})
    detail.alerts = compare_alerts(frozen.get("alerts") or [], live.get("alerts") or [])
    return detail


# --- JSON (the hand-off API and the page's poller) --------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "direction": m.direction,
        "kind": m.kind,
        "channel": m.channel,
        "address": m.address,
        "body": m.body,
        "media": m.media or [],
        "intent": m.intent,
        "intents": m.intents or [],
        "confidence": m.confidence,
        "staff_id": m.staff_id,
        "status": m.status,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "created_at": _iso(m.created_at),
        "sent_at": _iso(m.sent_at),
        "delivered_at": _iso(m.delivered_at),
    }


def entry_dict(e: HandoffEntry, staff: dict[int, str]) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "body": e.body,
        "staff_id": e.staff_id,
        "staff_name": staff.get(e.staff_id) if e.staff_id else None,
        "message_id": e.message_id,
        "created_at": _iso(e.created_at),
    }


def summary_dict(
    h: Handoff, patient_source_id: str | None = None, staff: dict | None = None
) -> dict[str, Any]:
    staff = staff or {}
    return {
        "id": h.id,
        "status": h.status,
        "reason": h.reason,
        "reasons": h.reasons or [h.reason],
        "priority": h.priority,
        "queue": h.queue,
        "summary": h.summary,
        "patient_id": patient_source_id,
        "owns_conversation": h.owns_conversation,
        "assignee": {"id": h.assignee_id, "name": staff.get(h.assignee_id)}
        if h.assignee_id
        else None,
        "created_at": _iso(h.created_at),
        "first_response_due": _iso(h.first_response_due),
        "first_response_at": _iso(h.first_response_at),
        "last_patient_message_at": _iso(h.last_patient_message_at),
        "resolved_at": _iso(h.resolved_at),
        "resolved_by": h.resolved_by,
        "resolution_note": h.resolution_note,
    }


def detail_dict(d: Detail) -> dict[str, Any]:
    return {
        **summary_dict(d.handoff, d.patient.source_id if d.patient else None, d.staff),
        "reply_channel": d.reply_route,
        "context": d.frozen,
        "live_context": d.live,
        "entries": [entry_dict(e, d.staff) for e in d.entries],
        "transcript": [message_dict(m) for m in d.messages],
    }
