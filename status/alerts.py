"""Alerts by topic: which kinds of proactive news a patient wants, short of STOP.

A patient mutes topics ("no more shipping texts") or asks for urgent news only; everything
else keeps coming. What is never muted here: carrier STOP (stops everything, elsewhere),
emergency instructions and answers to the patient's own questions (those are not alerts).
Every proactive template belongs to one topic (`TOPIC_OF`, held to the templates by a test),
and some are `ESSENTIAL`: the patient must act on them, so "only urgent" still sends them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base


class Topic(StrEnum):
    SHIPPING = "shipping"  # shipping and pharmacy
    BILLING = "billing"
    APPOINTMENTS = "appointments"
    REFILLS = "refills"  # refill reminders
    DELAYS = "delays"  # "taking longer than usual"


TOPICS: tuple[Topic, ...] = tuple(Topic)

# Every proactive template -> its topic (None: not an alert topic, e.g. a new task to do).
TOPIC_OF: dict[str, Topic | None] = {
    "notify_rx_approved": Topic.SHIPPING,
    "notify_rx_ready": Topic.SHIPPING,
    "notify_rx_blocked": Topic.SHIPPING,
    "notify_rx_denied": Topic.SHIPPING,
    "notify_shipped": Topic.SHIPPING,
    "notify_out_for_delivery": Topic.SHIPPING,
    "notify_delivered": Topic.SHIPPING,
    "notify_shipment_exception": Topic.SHIPPING,
    "notify_refill_approved": Topic.SHIPPING,
    "notify_refill_shipped": Topic.SHIPPING,
    "notify_refill_ready": Topic.SHIPPING,
    "notify_refill_waiting": Topic.SHIPPING,
    "notify_payment_failed": Topic.BILLING,
    "notify_payment_recovered": Topic.BILLING,
    "notify_subscription_past_due": Topic.BILLING,
    "remind_renewal": Topic.BILLING,
    "remind_payment_retry": Topic.BILLING,
    "notify_appointment_booked": Topic.APPOINTMENTS,
    "notify_appointment_changed": Topic.APPOINTMENTS,
    "notify_appointment_cancelled": Topic.APPOINTMENTS,
    "remind_appointment": Topic.APPOINTMENTS,
    "remind_refill_due": Topic.REFILLS,
    "notify_stuck": Topic.DELAYS,
    "notify_task_new": None,
}
# The patient has to do something: sent even with "only urgent" (not when the topic is muted).
ESSENTIAL = {
    "notify_rx_blocked", "notify_rx_denied", "notify_shipment_exception",
    "notify_refill_waiting", "notify_payment_failed", "notify_subscription_past_due",
    "notify_appointment_cancelled", "notify_task_new",
}  # fmt: skip


class AlertPreference(Base):
    __tablename__ = "alert_preferences"

    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True
    )
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))  # the patient's clinic
    muted: Mapped[list[str]] = mapped_column(JSON, default=list)  # topic values
    only_urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


def topic_of(template: str) -> Topic | None:
    return TOPIC_OF.get(template)


def get(session: Session, clinic_id: int, patient_id: int) -> AlertPreference | None:
    pref = session.get(AlertPreference, patient_id)
    return pref if pref is not None and pref.clinic_id == clinic_id else None


def muted_topics(session: Session, clinic_id: int, patient_id: int) -> tuple[set[Topic], bool]:
    """(muted topics, only urgent) for a patient; nothing muted when they never said."""
    pref = get(session, clinic_id, patient_id)
    if pref is None:
        return set(), False
    return {Topic(t) for t in pref.muted if t in Topic.__members__.values()}, pref.only_urgent


def allows(muted: set[Topic], only_urgent: bool, template: str, urgent: bool = False) -> bool:
    """Whether a proactive message from `template` goes out under these choices."""
    topic = topic_of(template)
    if topic is not None and topic in muted:
        return False
    return not only_urgent or urgent or template in ESSENTIAL


def suppressed(
    session: Session, clinic_id: int, patient_id: int, template: str, urgent: bool = False
) -> bool:
    muted, only_urgent = muted_topics(session, clinic_id, patient_id)
    return not allows(muted, only_urgent, template, urgent)


def update(
    session: Session,
    clinic_id: int,
    patient_id: int,
    *,
    now: datetime,
    mute: set[Topic] = frozenset(),  # type: ignore[assignment]
    unmute: set[Topic] = frozenset(),  # type: ignore[assignment]
    only_urgent: bool | None = None,
) -> AlertPreference:
    """Mute and unmute topics; `only_urgent` True/False sets the urgent-only choice."""
    pref = get(session, clinic_id, patient_id)
    if pref is None:
        pref = AlertPreference(
            clinic_id=clinic_id, patient_id=patient_id, muted=[], only_urgent=False, updated_at=now
        )
        session.add(pref)
    current = {Topic(t) for t in pref.muted if t in Topic.__members__.values()}
    current = (current | set(mute)) - set(unmute)
    pref.muted = [t.value for t in TOPICS if t in current]  # a new list: JSON change tracked
    if only_urgent is not None:
        pref.only_urgent = only_urgent
    pref.updated_at = now
    return pref


def replace(
    session: Session,
    clinic_id: int,
    patient_id: int,
    *,
    wanted: set[Topic],
    only_urgent: bool,
    now: datetime,
) -> AlertPreference:
    """Set the whole choice at once (the status page's form): `wanted` topics on, others off."""
    return update(
        session, clinic_id, patient_id, now=now, mute=set(TOPICS) - wanted, unmute=wanted,
        only_urgent=only_urgent,
    )  # fmt: skip
