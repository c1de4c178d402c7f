"""Time-driven work: reminders and stuck detection, safe with several workers.

Each job is keyed (`refill_due:rx-1:2026-12-10`) and claimed once in the same transaction that
writes its message, so any number of workers can run the scheduler and every reminder goes out
exactly once. Tests drive `run_once(now)` with their own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot import context, handoffs
from bot.conversations import Awaiting, Conversation
from bot.handoffs import Reason
from bot.jobs import claim_once
from bot.messages import Message
from bot.proactive.policy import ENTITY_MODELS, Policy
from bot.proactive.rules import Notice
from status import (
    appointments,
    clinics,
    items,
    payments,
    prescriptions,
    refills,
    subscriptions,
    timeline,
)
from status.appointments import Appointment
from status.classification import StatusClass
from status.db import Database, utcnow
from status.patients import Patient
from status.payments import Payment
from status.prescriptions import Prescription
from status.refills import CLASSES as REFILL_CLASSES
from status.settings import Settings
from status.subscriptions import Subscription

log = logging.getLogger("patient_status.scheduler")
_C = TypeVar("_C")  # a job's candidate: an item id, or (entity, id, hours) when stuck

# What the patient is told is late, per kind of item (no message for billing states: the
# failure notices already said what to do).
STUCK_LABELS = {
    "prescription": ("prescription", "receta"),
    "shipment": ("delivery", "envío"),
    "refill": ("refill", "resurtido"),
}


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.policy = policy or Policy(settings)
        self.clock = clock

    # --- the loop --------------------------------------------------------------------------------
    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("scheduler round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=self.settings.scheduler_interval_seconds
                )

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        now = now or self.clock()
        with self.db.session() as session:
            clinic_ids = clinics.ids(session)
        done: dict[str, int] = {}
        for clinic_id in clinic_ids:
            jobs = {
                "refill_due": self._each(self._refills_due(clinic_id, now), self._refill_due, now),
                "renewal": self._each(self._renewals(clinic_id, now), self._renewal, now),
                "appointment": self._each(
                    self._appointments(clinic_id, now), self._appointment, now
                ),
                "payment_retry": self._each(
                    self._retries(clinic_id, now), self._payment_retry, now
                ),
                "stuck": self._each(self._stuck(clinic_id, now), self._stuck_item, now),
            }
            for job, count in jobs.items():
                done[job] = done.get(job, 0) + count
        return {job: count for job, count in done.items() if count}

    def _each(
        self, candidates: list[_C], handle: Callable[[Session, _C, datetime], bool], now: datetime
    ) -> int:
        count = 0
        for candidate in candidates:
            try:
                with self.db.session() as session:
                    count += bool(handle(session, candidate, now))
            except Exception:
                log.exception("scheduled job failed", extra={"job": handle.__name__})
        return count

    def _notify(self, session: Session, notice: Notice, now: datetime) -> Message | None:
        return self.policy.notify(session, notice, now)

    def _expect(
        self,
        session: Session,
        message: Message | None,
        what: Awaiting,
        until: datetime,
        **data: Any,
    ) -> None:
        if message is None or message.conversation_id is None:
            return
        conv = session.get_one(Conversation, message.conversation_id)
        now = message.created_at
        conv.expect(what, now, ttl=max(until - now, timedelta(minutes=5)), **data)

    # --- refill due --------------------------------------------------------------------------
    def _refills_due(self, clinic_id: int, now: datetime) -> list[int]:
        horizon = (now + timedelta(days=self.settings.refill_reminder_days + 1)).date()
        with self.db.read_session() as session:
            since = (now - timedelta(days=1)).date()
            return prescriptions.refills_due(session, clinic_id, since, horizon)

    def _refill_due(self, session: Session, rx_id: int, now: datetime) -> bool:
        rx = session.get_one(Prescription, rx_id)
        patient = session.get_one(Patient, rx.patient_id)
        assert rx.next_refill_date is not None  # `refills_due` chose it by that date
        today = now.astimezone(ZoneInfo(patient.timezone)).date()
        days = (rx.next_refill_date - today).days
        if not 0 <= days <= self.settings.refill_reminder_days or rx.refills_remaining == 0:
            return False
        in_progress = refills.for_prescription(session, rx.clinic_id, rx.patient_id, rx.source_id)
        if any(REFILL_CLASSES[r.status] != StatusClass.TERMINAL for r in in_progress):
            return False
        key = f"refill_due:{rx.source_id}:{rx.next_refill_date}"
        if not claim_once(session, rx.clinic_id, key):
            return False
        notice = Notice(patient.id, f"remind:refill:{rx.source_id}", "remind_refill_due",
                        "prescription", rx.source_id)  # fmt: skip
        message = self._notify(session, notice, now)
        self._expect(session, message, Awaiting.REFILL_CONFIRM, now + timedelta(days=3))
        return message is not None

    # --- renewal ahead -----------------------------------------------------------------------
    def _renewals(self, clinic_id: int, now: datetime) -> list[int]:
        until = now + timedelta(days=self.settings.renewal_reminder_days)
        with self.db.read_session() as session:
            return subscriptions.renewing(session, clinic_id, now, until)

    def _renewal(self, session: Session, sub_id: int, now: datetime) -> bool:
        sub = session.get_one(Subscription, sub_id)
        assert sub.renews_at is not None  # `renewing` chose it by that date
        key = f"renewal:{sub.source_id}:{sub.renews_at.date()}"
        if not claim_once(session, sub.clinic_id, key):
            return False
        notice = Notice(sub.patient_id, f"remind:renewal:{sub.source_id}", "remind_renewal",
                        "subscription", sub.source_id)  # fmt: skip
        return self._notify(session, notice, now) is not None

    # --- appointment reminders ---------------------------------------------------------------
    def _appointments(self, clinic_id: int, now: datetime) -> list[int]:
        with self.db.read_session() as session:
            return appointments.starting(session, clinic_id, now, now + timedelta(hours=24))

    def _appointment(self, session: Session, appt_id: int, now: datetime) -> bool:
        appt = session.get_one(Appointment, appt_id)
        window = "1h" if appt.starts_at - now <= timedelta(hours=1) else "24h"
        key = f"appt:{appt.source_id}:{appt.starts_at.isoformat()}"
        if not claim_once(session, appt.clinic_id, f"{key}:{window}"):
            return False
        if window == "1h":  # a 24 h reminder not sent yet is pointless now
            claim_once(session, appt.clinic_id, f"{key}:24h")
        notice = Notice(
            appt.patient_id, f"remind:appt:{appt.source_id}:{window}", "remind_appointment",
            "appointment", appt.source_id, urgent=window == "1h", extra={"window": window},
            expires_at=appt.starts_at,
        )  # fmt: skip
        message = self._notify(session, notice, now)
        self._expect(session, message, Awaiting.APPOINTMENT_REPLY, appt.starts_at,
                     appointment_id=appt.source_id)  # fmt: skip
        return message is not None

    # --- failed payment retry coming up ------------------------------------------------------
    def _retries(self, clinic_id: int, now: datetime) -> list[int]:
        with self.db.read_session() as session:
            return payments.retrying(session, clinic_id, now, now + timedelta(hours=24))

    def _payment_retry(self, session: Session, payment_id: int, now: datetime) -> bool:
        payment = session.get_one(Payment, payment_id)
        assert payment.next_retry_at is not None  # `retrying` chose it by that time
        if not claim_once(
            session,
            payment.clinic_id,
            f"retry:{payment.source_id}:{payment.next_retry_at.isoformat()}",
        ):
            return False
        notice = Notice(payment.patient_id, f"remind:retry:{payment.source_id}",
                        "remind_payment_retry", "payment", payment.source_id)  # fmt: skip
        return self._notify(session, notice, now) is not None

    # --- stuck detection ---------------------------------------------------------------------
    def _stuck(self, clinic_id: int, now: datetime) -> list[tuple[str, int, float]]:
        found: list[tuple[str, int, float]] = []
        with self.db.read_session() as session:
            for state, hours in self.settings.stuck_hours.items():
                entity, _, status = state.partition(".")
                model = ENTITY_MODELS.get(entity)
                if model is None:
                    continue
                ids = items.stuck(session, clinic_id, model, status, hours, now)
                found += [(entity, item_id, hours) for item_id in ids]
        return found

    def _stuck_item(
        self, session: Session, candidate: tuple[str, int, float], now: datetime
    ) -> bool:
        entity, item_id, hours = candidate
        item: Any = session.get_one(ENTITY_MODELS[entity], item_id)  # a TrackedItem model
        key = f"stuck:{entity}:{item.source_id}:{item.status}:{item.status_since.isoformat()}"
        if not claim_once(session, item.clinic_id, key):
            return False
        waited = (now - item.status_since).total_seconds() / 3600
        summary = (
            f"{entity} {item.source_id} has been {item.status.value} for {waited:.0f} h "
            f"(expected at most {hours:.0f} h)"
        )
        patient = session.get(Patient, item.patient_id)
        handoffs.open_or_add(
            session, clinic_id=item.clinic_id, reason=Reason.STUCK, now=now,
            patient_id=item.patient_id, conversation_id=None, summary=summary,
            settings=self.policy.profiles.get(session, item.clinic_id).settings,
            context=lambda: context.build(session, patient, None, now),
        )  # fmt: skip
        timeline.record(
            session, item.patient_id, kind=timeline.EntryKind.STUCK, occurred_at=now,
            summary=summary, entity_type=entity, entity_source_id=item.source_id,
        )  # fmt: skip
        # The patient hears it honestly, once per item, whatever else gets stuck later.
        told = f"stuck_told:{entity}:{item.source_id}"
        if entity in STUCK_LABELS and claim_once(session, item.clinic_id, told):
            label, label_es = STUCK_LABELS[entity]
            notice = Notice(
                item.patient_id, f"stuck:{entity}:{item.source_id}", "notify_stuck", entity,
                item.source_id, extra={"entity_label": label, "entity_label_es": label_es},
            )  # fmt: skip
            self._notify(session, notice, now)
        return True
