"""The operations view: where every item stands across all patients, who owns each step, what is
stuck, churn (involuntary apart from voluntary), and the assistant's own figures."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from bot.handoffs import Handoff, HandoffEntry
from bot.messages import Direction, Kind, Message, OutStatus
from bot.understanding.redact import DOB_REDACTED
from status import appointments, payments, prescriptions, refills, shipments, subscriptions, tasks
from status.patients import Patient
from status.settings import Settings

# --- what the view covers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ItemKind:
    name: str
    title: str
    model: type
    statuses: type[StrEnum]
    classes: dict


KINDS: list[ItemKind] = [
    ItemKind("prescription", "Prescriptions", prescriptions.Prescription,
             prescriptions.PrescriptionStatus, prescriptions.CLASSES),
    ItemKind("shipment", "Shipments", shipments.Shipment, shipments.ShipmentStatus,
             shipments.CLASSES),
    ItemKind("refill", "Refills", refills.Refill, refills.RefillStatus, refills.CLASSES),
    ItemKind("payment", "Payments", payments.Payment, payments.PaymentStatus, payments.CLASSES),
    ItemKind("subscription", "Subscriptions", subscriptions.Subscription,
             subscriptions.SubscriptionStatus, subscriptions.CLASSES),
    ItemKind("appointment", "Appointments", appointments.Appointment,
             appointments.AppointmentStatus, appointments.CLASSES),
    ItemKind("task", "Patient tasks", tasks.Task, tasks.TaskStatus, tasks.CLASSES),
]  # fmt: skip

CLINIC, PHARMACY, CARRIER, PATIENT, NOBODY = "clinic", "pharmacy", "carrier", "patient", "—"

# Who must act for an item to move on from each status ("—": finished, or a steady state).
OWNERS: dict[str, dict[str, str]] = {
    "prescription": {
        "awaiting_provider": CLINIC, "approved": PHARMACY, "sent_to_pharmacy": PHARMACY,
        "received_by_pharmacy": PHARMACY, "processing": PHARMACY, "shipped": CARRIER,
        "ready_for_pickup": PATIENT, "delivered": NOBODY, "blocked": PATIENT,
        "denied": NOBODY, "cancelled": NOBODY,
    },
    "shipment": {
        "label_created": PHARMACY, "in_transit": CARRIER, "out_for_delivery": CARRIER,
        "delivered": NOBODY, "exception": CARRIER, "returned": NOBODY,
    },
    "refill": {
        "requested": CLINIC, "provider_review": CLINIC, "approved": CLINIC,
        "sent_to_pharmacy": PHARMACY, "shipped": NOBODY, "ready_for_pickup": PATIENT,
        "waiting_on_patient": PATIENT, "denied": NOBODY,
    },
    "payment": {"pending": CLINIC, "succeeded": NOBODY, "failed": PATIENT, "refunded": NOBODY},
    "subscription": {
        "active": NOBODY, "past_due": PATIENT, "paused": NOBODY, "cancelled": NOBODY,
    },
    "appointment": {
        "scheduled": PATIENT, "confirmed": CLINIC, "cancelled": NOBODY, "completed": NOBODY,
        "no_show": NOBODY,
    },
    "task": {"open": PATIENT, "done": NOBODY},
}  # fmt: skip


def stuck_thresholds(settings: Settings) -> dict[str, timedelta]:
    """`STUCK_HOURS` ("kind.status" -> hours): the same thresholds the scheduler's stuck
    detection opens hand-offs with, so this view and the queue agree."""
    return {key: timedelta(hours=float(hours)) for key, hours in settings.stuck_hours.items()}


# --- counts and ages per state ----------------------------------------------------------------


@dataclass(frozen=True)
class StateRow:
    kind: str
    status: str
    status_class: str
    owner: str
    count: int
    oldest_seconds: float
    median_seconds: float
    stuck: int
    stuck_after: timedelta | None


@dataclass(frozen=True)
class StuckItem:
    kind: str
    status: str
    owner: str
    source_id: str
    patient_source_id: str
    patient_name: str
    seconds: float
    stuck_after: timedelta


@dataclass
class States:
    rows: dict[str, list[StateRow]]  # kind -> one row per status present, in the enum's order
    stuck: list[StuckItem]  # longest over its threshold first


def states(
    session: Session, clinic_id: int, now: datetime, thresholds: dict[str, timedelta]
) -> States:
    """The clinic's items by kind and status, and what is stuck."""
    rows: dict[str, list[StateRow]] = {}
    stuck: list[StuckItem] = []
    mine = Patient.clinic_id == clinic_id
    people = dict(session.execute(select(Patient.id, Patient.source_id).where(mine)).all())
    names = {
        pid: f"{first} {last}"
        for pid, first, last in session.execute(
            select(Patient.id, Patient.first_name, Patient.last_name).where(mine)
        )
    }
    for kind in KINDS:
        model = kind.model
        query = select(
            model.status, model.status_since, model.source_id, model.patient_id
        ).where(model.clinic_id == clinic_id)
        ages: dict[str, list[float]] = defaultdict(list)
        for status, since, source_id, patient_id in session.execute(query):
            status = status.value if isinstance(status, StrEnum) else str(status)
            seconds = max(0.0, (now - since).total_seconds())
            ages[status].append(seconds)
            limit = thresholds.get(f"{kind.name}.{status}")
            if limit is not None and seconds > limit.total_seconds():
                stuck.append(
                    StuckItem(kind.name, status, OWNERS[kind.name][status], source_id,
                              people.get(patient_id, "?"), names.get(patient_id, "?"),
                              seconds, limit)
                )  # fmt: skip
        kind_rows = []
        for status in kind.statuses:
            found = ages.get(status.value)
            if not found:
                continue
            limit = thresholds.get(f"{kind.name}.{status.value}")
            over = sum(1 for s in found if limit is not None and s > limit.total_seconds())
            kind_rows.append(
                StateRow(kind.name, status.value, kind.classes[status].value,
                         OWNERS[kind.name][status.value], len(found), max(found),
                         statistics.median(found), over, limit)
            )  # fmt: skip
        rows[kind.name] = kind_rows
    stuck.sort(key=lambda s: s.seconds / s.stuck_after.total_seconds(), reverse=True)
    return States(rows, stuck)


# --- churn: failed payments apart from cancellations ------------------------------------------


@dataclass(frozen=True)
class ChurnItem:
    patient_source_id: str
    patient_name: str
    source_id: str
    what: str
    since: datetime


@dataclass
class Churn:
    past_due: list[ChurnItem]
    failed_payments: list[ChurnItem]
    failed_amounts: dict[str, int]  # currency -> cents
    recovered: int  # payments that failed once and later succeeded
    cancelled: list[ChurnItem]
    cancelled_recently: int
    active: int


def churn(session: Session, clinic_id: int, now: datetime, days: int) -> Churn:
    Sub, Pay = subscriptions.Subscription, payments.Payment
    SubStatus, PayStatus = subscriptions.SubscriptionStatus, payments.PaymentStatus

    def people(model, status):
        query = (
            select(model, Patient.source_id, Patient.first_name, Patient.last_name)
            .join(Patient, Patient.id == model.patient_id)
            .where(model.clinic_id == clinic_id, model.status == status)
            .order_by(model.status_since)
        )
        return list(session.execute(query))

    past_due = [
        ChurnItem(pid, f"{first} {last}", s.source_id, s.plan, s.status_since)
        for s, pid, first, last in people(Sub, SubStatus.PAST_DUE)
    ]
    failed, amounts = [], Counter()
    for p, pid, first, last in people(Pay, PayStatus.FAILED):
        why = f" ({p.failure_reason})" if p.failure_reason else ""
        failed.append(ChurnItem(pid, f"{first} {last}", p.source_id, f"{p.description}{why}",
                                p.status_since))  # fmt: skip
        amounts[p.currency] += p.amount_cents
    cancelled = [
        ChurnItem(pid, f"{first} {last}", s.source_id, s.plan, s.status_since)
        for s, pid, first, last in people(Sub, SubStatus.CANCELLED)
    ]
    since = now - timedelta(days=days)
    recovered = session.scalar(
        select(func.count())
        .select_from(Pay)
        .where(
            Pay.clinic_id == clinic_id,
            Pay.ever_failed.is_(True),
            Pay.status == PayStatus.SUCCEEDED,
        )
    )
    active = session.scalar(
        select(func.count())
        .select_from(Sub)
        .where(Sub.clinic_id == clinic_id, Sub.status == SubStatus.ACTIVE)
    )
    return Churn(
        past_due=past_due,
        failed_payments=failed,
        failed_amounts=dict(amounts),
        recovered=recovered or 0,
        cancelled=sorted(cancelled, key=lambda c: c.since, reverse=True),
        cancelled_recently=sum(1 for c in cancelled if c.since >= since),
        active=active or 0,
    )


# --- the assistant's own figures --------------------------------------------------------------


@dataclass
class Assistant:
    days: int
    conversations: int
    without_staff: int
    handoffs: int
    by_reason: list[tuple[str, int]]
    first_replies: int
    median_first_reply_seconds: float | None
    waiting_for_first_reply: int

    @property
    def share_without_staff(self) -> float | None:
        return self.without_staff / self.conversations if self.conversations else None


def assistant(session: Session, clinic_id: int, now: datetime, days: int) -> Assistant:
    since = now - timedelta(days=days)
    talked = set(
        session.scalars(
            select(Message.conversation_id)
            .where(Message.clinic_id == clinic_id)
            .where(Message.direction == Direction.IN, Message.created_at >= since)
            .where(Message.conversation_id.is_not(None))
            .distinct()
        )
    )
    recent = list(
        session.scalars(
            select(Handoff).where(Handoff.clinic_id == clinic_id, Handoff.created_at >= since)
        )
    )
    staffed = {h.conversation_id for h in recent if h.owns_conversation and h.conversation_id}
    reasons = Counter(h.reason for h in recent)
    waits = [
        (h.first_response_at - h.created_at).total_seconds()
        for h in recent
        if h.first_response_at is not None
    ]
    waiting = session.scalar(
        select(func.count())
        .select_from(Handoff)
        .where(
            Handoff.clinic_id == clinic_id,
            Handoff.status == "open",
            Handoff.first_response_at.is_(None),
        )
    )
    return Assistant(
        days=days,
        conversations=len(talked),
        without_staff=len(talked - staffed),
        handoffs=len(recent),
        by_reason=reasons.most_common(),
        first_replies=len(waits),
        median_first_reply_seconds=statistics.median(waits) if waits else None,
        waiting_for_first_reply=waiting or 0,
    )


FAILED_STATUSES = (OutStatus.FAILED, OutStatus.UNDELIVERED)


def failed_messages(
    session: Session, clinic_id: int, limit: int = 50
) -> list[tuple[Message, str | None]]:
    """Outbound messages that did not reach the patient, newest first, with the patient's id."""
    query = (
        select(Message, Patient.source_id)
        .outerjoin(Patient, Patient.id == Message.patient_id)
        .where(Message.clinic_id == clinic_id)
        .where(Message.direction == Direction.OUT, Message.status.in_(FAILED_STATUSES))
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return [(m, pid) for m, pid in session.execute(query)]


def failure_codes(session: Session, clinic_id: int) -> list[tuple[str, int]]:
    query = (
        select(Message.error_code, func.count())
        .where(Message.clinic_id == clinic_id)
        .where(Message.direction == Direction.OUT, Message.status.in_(FAILED_STATUSES))
        .group_by(Message.error_code)
        .order_by(func.count().desc())
    )
    return [(code or "none", n) for code, n in session.execute(query)]


# The bot's replies that say it did not understand (a reply's template names every part it
# joined, "unknown+help"): what came before them is a real miss. A message that was instead
# taken as the answer to the bot's own question (a date of birth, "2" for which patient, "si" to
# a refill offer, "C" to a reminder) was understood, though it carries no intent of its own.
NOT_UNDERSTOOD_REPLIES = ("unknown", "unknown_handoff", "unknown_number", "verify_format")


def unknown_messages(
    session: Session, clinic_id: int, limit: int = 50
) -> list[tuple[Message, str | None]]:
    """What patients wrote that the assistant did not understand, newest first: catalogue input.

    A message with the intent `unknown` counts when the bot's reply to it (the first reply in the
    conversation before the patient wrote again) said it did not understand, or when it was
    filed into a hand-off staff own (the bot did not answer it, staff read it)."""
    first, reply, later = aliased(Message), aliased(Message), aliased(Message)
    first_reply = (
        select(func.min(first.id))
        .where(
            first.conversation_id == Message.conversation_id,
            first.direction == Direction.OUT,
            first.kind.in_([Kind.REPLY, Kind.SYSTEM]),
            first.id > Message.id,
        )
        .correlate(Message)
        .scalar_subquery()
    )
    said_not_understood = (
        exists()
        .where(
            reply.id == first_reply,
            or_(
                reply.template.in_(NOT_UNDERSTOOD_REPLIES),
                *(reply.template.startswith(f"{t}+") for t in NOT_UNDERSTOOD_REPLIES),
            ),
            ~exists()
            .where(
                later.conversation_id == Message.conversation_id,
                later.direction == Direction.IN,
                later.id > Message.id,
                later.id < reply.id,
            )
            .correlate(Message, reply),
        )
        .correlate(Message)
    )
    filed = (
        exists()
        .where(
            HandoffEntry.handoff_id == Message.handoff_id,
            HandoffEntry.message_id == Message.id,
            HandoffEntry.kind == "message",
        )
        .correlate(Message)
    )
    query = (
        select(Message, Patient.source_id)
        .outerjoin(Patient, Patient.id == Message.patient_id)
        .where(
            Message.clinic_id == clinic_id,
            Message.direction == Direction.IN,
            Message.intent == "unknown",
            Message.body != "",
            # A date of birth (stored redacted) is never a miss, whatever the turn did with it.
            ~Message.body.contains(DOB_REDACTED, autoescape=True),
            or_(said_not_understood, filed),
        )
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return [(m, pid) for m, pid in session.execute(query)]
