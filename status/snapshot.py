"""The per-patient snapshot: everything the bot and staff need about a patient, in one read.

`build` makes a handful of indexed queries (one per item kind) and derives the rest in Python.
`Snapshot.to_dict()` is the JSON of `GET /api/patients/{id}/status`: every item keeps its source
id and `status` field names from the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from status import (
    appointments,
    payments,
    prescriptions,
    read_model,
    refills,
    shipments,
    subscriptions,
    tasks,
)
from status.appointments import Appointment
from status.classification import StatusClass
from status.db import utcnow
from status.patients import Patient
from status.payments import Payment, PaymentStatus
from status.prescriptions import Prescription, PrescriptionStatus
from status.refills import Refill, RefillStatus
from status.shipments import Shipment, ShipmentStatus
from status.subscriptions import Subscription, SubscriptionStatus
from status.tasks import Task

_Item = TypeVar("_Item", Prescription, Shipment, Refill, Payment)  # the kinds `_current` trims

RECENT_TERMINAL = timedelta(days=30)
REFILL_SOON = timedelta(days=7)
APPOINTMENT_SOON = timedelta(hours=48)
PAID_NOT_SENT = timedelta(hours=48)


@dataclass(frozen=True)
class NextStep:
    kind: str
    owner: str  # "patient", "clinic", "pharmacy", "carrier" or "nobody"
    summary: str  # plain English, for staff and the API; the bot words it per language
    entity: str | None = None
    source_id: str | None = None
    url: str | None = None
    due: datetime | date | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "owner": self.owner,
            "summary": self.summary,
            "entity": self.entity,
            "source_id": self.source_id,
            "url": self.url,
            "due": self.due.isoformat() if self.due else None,
        }


@dataclass
class Snapshot:
    patient: Patient
    now: datetime
    prescriptions: list[Prescription]
    shipments: list[Shipment]
    refills: list[Refill]
    payments: list[Payment]
    subscription: Subscription | None
    appointments: list[Appointment]
    tasks: list[Task]
    next_step: NextStep
    alerts: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # added by the bot: what was told

    # --- derived answers ---------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.patient.timezone)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def shipment_for(self, prescription: Prescription) -> Shipment | None:
        for shipment in self.shipments:
            if shipment.prescription_source_id == prescription.source_id:
                return shipment
        return None

    def task_for(self, prescription: Prescription) -> Task | None:
        return blocking_task(prescription, self.tasks)

    @property
    def failed_payments(self) -> list[Payment]:
        return [p for p in self.payments if p.status == PaymentStatus.FAILED]

    @property
    def balance_due_cents(self) -> int:
        return sum(p.amount_cents for p in self.failed_payments)

    @property
    def currency(self) -> str:
        for item in [*self.failed_payments, self.subscription, *self.payments]:
            if item is not None:
                return item.currency
        return "USD"

    @property
    def refills_in_progress(self) -> list[Refill]:
        return [r for r in self.refills if r.status_class != StatusClass.TERMINAL]

    @property
    def next_refill_date(self) -> date | None:
        dates = [p.next_refill_date for p in self.prescriptions if p.next_refill_date]
        dates += [r.due_date for r in self.refills_in_progress if r.due_date]
        return min(dates) if dates else None

    @property
    def next_refill_prescription(self) -> Prescription | None:
        candidates = [p for p in self.prescriptions if p.next_refill_date]
        return min(candidates, key=lambda p: p.next_refill_date or date.max) if candidates else None

    @property
    def refill_request_for(self) -> Prescription | None:
        """The prescription a patient's own refill request is for: the next one due, else
        the first current one."""
        first = self.prescriptions[0] if self.prescriptions else None
        return self.next_refill_prescription or first

    @property
    def next_appointment(self) -> Appointment | None:
        return self.appointments[0] if self.appointments else None

    def to_dict(self) -> dict[str, Any]:
        now = self.now
        patient = self.patient
        sub = self.subscription
        return {
            "patient": {
                "patient_id": patient.source_id,
                "first_name": patient.first_name,
                "last_name": patient.last_name,
                "phone": patient.phone,
                "email": patient.email,
                "language": patient.language,
                "timezone": patient.timezone,
                "sms_consent": patient.sms_consent,
                "telegram_linked": bool(patient.telegram_chat_id),
            },
            "generated_at": now.isoformat(),
            "prescriptions": [
                {
                    **_item(p, "prescription_id", now),
                    "medication": p.medication,
                    "pharmacy": {"name": p.pharmacy_name, "phone": p.pharmacy_phone}
                    if p.pharmacy_name
                    else None,
                    "blocked_reason": p.blocked_reason,
                    "refills_remaining": p.refills_remaining,
                    "next_refill_date": _iso(p.next_refill_date),
                    "shipment_id": s.source_id if (s := self.shipment_for(p)) else None,
                    "task_id": t.source_id if (t := self.task_for(p)) else None,
                }
                for p in self.prescriptions
            ],
            "shipments": [
                {
                    **_item(s, "shipment_id", now),
                    "prescription_id": s.prescription_source_id,
                    "carrier": s.carrier,
                    "tracking_number": s.tracking_number,
                    "tracking_url": s.tracking_url,
                    "estimated_delivery": _iso(s.estimated_delivery),
                }
                for s in self.shipments
            ],
            "refills": {
                "next_due_date": _iso(self.next_refill_date),
                "items": [
                    {
                        **_item(r, "refill_id", now),
                        "prescription_id": r.prescription_source_id,
                        "due_date": _iso(r.due_date),
                        "origin": r.origin,
                    }
                    for r in self.refills
                ],
            },
            "billing": {
                "balance_due_cents": self.balance_due_cents,
                "currency": self.currency,
                "failed_payments": [_payment(p, now) for p in self.failed_payments],
                "payments": [_payment(p, now) for p in self.payments],
                "subscription": None
                if sub is None
                else {
                    **_item(sub, "subscription_id", now),
                    "plan": sub.plan,
                    "amount_cents": sub.amount_cents,
                    "currency": sub.currency,
                    "renews_at": _iso(sub.renews_at),
                    "auto_renew": sub.auto_renew,
                },
                "next_renewal": None
                if sub is None
                or sub.renews_at is None
                or sub.status == SubscriptionStatus.CANCELLED
                else {
                    "date": _iso(sub.renews_at),
                    "amount_cents": sub.amount_cents,
                    "currency": sub.currency,
                    "auto_renew": sub.auto_renew,
                },
            },
            "appointments": [
                {
                    **_item(a, "appointment_id", now),
                    "starts_at": _iso(a.starts_at),
                    "visit_type": a.visit_type,
                    "provider_name": a.provider_name,
                    "join_url": a.join_url,
                }
                for a in self.appointments
            ],
            "tasks": [
                {
                    **_item(t, "task_id", now),
                    "kind": t.kind,
                    "title": t.title,
                    "url": t.url,
                    "due_at": _iso(t.due_at),
                }
                for t in self.tasks
            ],
            "next_step": self.next_step.to_dict(),
            "alerts": self.alerts,
            **self.extra,
        }


def blocking_task(prescription: Prescription, open_tasks: list[Task]) -> Task | None:
    """The open task a blocked prescription waits on (best match on kind, else the oldest)."""
    if prescription.status != PrescriptionStatus.BLOCKED or not open_tasks:
        return None
    reason = (prescription.blocked_reason or "").lower().replace("_", " ")
    for task in open_tasks:
        if task.kind.lower().replace("_", " ") in reason:
            return task
    return open_tasks[0]


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value else None


def _item(item: Any, id_name: str, now: datetime) -> dict[str, Any]:
    return {
        id_name: item.source_id,
        "status": item.status.value,
        "status_class": item.status_class.value,
        "status_since": item.status_since.isoformat(),
        "seconds_in_status": int(item.time_in_status(now)),
    }


def _payment(payment: Payment, now: datetime) -> dict[str, Any]:
    return {
        **_item(payment, "payment_id", now),
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
        "description": payment.description,
        "failure_reason": payment.failure_reason,
        "next_retry_at": _iso(payment.next_retry_at),
        "payment_url": payment.payment_url,
    }


def _current(items: list[_Item], now: datetime) -> list[_Item]:
    """Everything still moving, plus what finished recently (a patient still asks about it)."""
    return [
        item
        for item in items
        if item.status_class != StatusClass.TERMINAL or now - item.status_since <= RECENT_TERMINAL
    ]


def build(
    session: Session, patient: Patient, now: datetime | None = None, *, stored: str | None = None
) -> Snapshot:
    """The patient's snapshot at `now`, from their read-model row (one query; none when the
    caller read the row's text already: `stored`).

    A patient without a row (one written before the read model, or by a writer that forgot
    `read_model.refresh`) gets a fresh build from the tables, which is the same snapshot."""
    if stored is not None:
        state = read_model.decode(stored)
    else:
        state = read_model.stored_state(session, patient.id)
    if state is None:
        return build_fresh(session, patient, now)
    return assemble(patient, state, now or utcnow())


def build_fresh(session: Session, patient: Patient, now: datetime | None = None) -> Snapshot:
    """The snapshot from the item tables (a query per kind), as the read model must equal."""
    now = now or utcnow()
    state = read_model.State(
        prescriptions=prescriptions.for_patient(session, patient.id),
        shipments=shipments.for_patient(session, patient.id),
        refills=refills.for_patient(session, patient.id),
        payments=payments.for_patient(session, patient.id),
        subscriptions=subscriptions.for_patient(session, patient.id),
        appointments=appointments.upcoming_for(session, patient.id, now),
        tasks=tasks.open_for(session, patient.id),
    )
    return assemble(patient, state, now)


def assemble(patient: Patient, state: read_model.State, now: datetime) -> Snapshot:
    """Everything that depends on the clock, derived from the stored items at `now`."""
    all_rx = state.prescriptions
    current_rx = _current(all_rx, now) or all_rx[:1]
    all_subs = state.subscriptions
    live_subs = [s for s in all_subs if s.status != SubscriptionStatus.CANCELLED]
    snap = Snapshot(
        patient=patient,
        now=now,
        prescriptions=current_rx,
        shipments=_current(state.shipments, now),
        refills=_current(state.refills, now),
        payments=_current(state.payments, now),
        subscription=next(iter(live_subs or all_subs), None),
        appointments=[a for a in state.appointments if a.starts_at >= now],
        tasks=state.tasks,
        next_step=NextStep("none", "nobody", "Nothing is waiting."),
    )
    snap.next_step = next_step(snap)
    snap.alerts = misalignments(snap)
    return snap


def materialised(session: Session, patient: Patient, now: datetime) -> Snapshot | None:
    """The snapshot from the read-model row only (None: the patient has no usable row)."""
    state = read_model.stored_state(session, patient.id)
    return None if state is None else assemble(patient, state, now)


def drift(session: Session, patient: Patient, now: datetime) -> list[str]:
    """Where the materialised snapshot differs from a fresh build at `now` (empty: they agree).

    Compared: the API's JSON and every column of every item each snapshot holds."""
    fresh = build_fresh(session, patient, now)
    stored = materialised(session, patient, now)
    if stored is None:
        return ["no read-model row"]
    problems = []
    fresh_json, stored_json = fresh.to_dict(), stored.to_dict()
    for key in sorted(fresh_json.keys() | stored_json.keys()):
        if fresh_json.get(key) != stored_json.get(key):
            problems.append(
                f"{key}: fresh {fresh_json.get(key)!r} != stored {stored_json.get(key)!r}"
            )
    for name in ("prescriptions", "shipments", "refills", "payments", "appointments", "tasks"):
        fresh_rows = [_columns(item) for item in getattr(fresh, name)]
        stored_rows = [_columns(item) for item in getattr(stored, name)]
        if fresh_rows != stored_rows:
            problems.append(f"{name} columns: fresh {fresh_rows!r} != stored {stored_rows!r}")
    fresh_sub, stored_sub = fresh.subscription, stored.subscription
    if (fresh_sub and _columns(fresh_sub)) != (stored_sub and _columns(stored_sub)):
        problems.append("subscription columns differ")
    return problems


def _columns(item: Any) -> dict[str, Any]:
    return {column.key: getattr(item, column.key) for column in item.__table__.columns}


def next_step(snap: Snapshot) -> NextStep:
    """The single most important thing: what the patient must do, else what we are waiting on."""
    from status.settings import get_settings

    now = snap.now
    for rx in snap.prescriptions:
        if rx.status == PrescriptionStatus.BLOCKED:
            task = snap.task_for(rx)
            if task is not None:
                return NextStep(
                    "complete_task", "patient", f"Patient must: {task.title}",
                    "task", task.source_id, task.url, task.due_at,
                )  # fmt: skip
            return NextStep(
                "blocked", "clinic", f"Prescription blocked: {rx.blocked_reason or 'no reason'}",
                "prescription", rx.source_id,
            )  # fmt: skip
    if snap.failed_payments:
        payment = snap.failed_payments[0]
        return NextStep(
            "update_payment", "patient", "Patient must update their payment method",
            "payment", payment.source_id, payment.payment_url or get_settings().payment_update_url,
            payment.next_retry_at,
        )  # fmt: skip
    if snap.subscription is not None and snap.subscription.status == SubscriptionStatus.PAST_DUE:
        sub = snap.subscription
        return NextStep(
            "update_payment", "patient", "Subscription past due: patient must update payment",
            "subscription", sub.source_id, get_settings().payment_update_url,
        )  # fmt: skip
    if snap.tasks:
        task = snap.tasks[0]
        return NextStep(
            "complete_task", "patient", f"Patient must: {task.title}",
            "task", task.source_id, task.url, task.due_at,
        )  # fmt: skip
    for refill in snap.refills:
        if refill.status == RefillStatus.WAITING_ON_PATIENT:
            return NextStep(
                "refill_waiting", "patient", "Refill waiting on the patient",
                "refill", refill.source_id,
            )  # fmt: skip
    ready: list[Prescription | Refill] = [*snap.prescriptions, *snap.refills]
    for item in ready:
        if item.status in (PrescriptionStatus.READY_FOR_PICKUP, RefillStatus.READY_FOR_PICKUP):
            entity = "prescription" if isinstance(item, Prescription) else "refill"
            return NextStep("pick_up", "patient", "Ready for pickup", entity, item.source_id)
    appointment = snap.next_appointment
    if appointment is not None and appointment.starts_at - now <= APPOINTMENT_SOON:
        return NextStep(
            "attend_appointment", "patient", f"Visit at {appointment.starts_at.isoformat()}",
            "appointment", appointment.source_id, appointment.join_url, appointment.starts_at,
        )  # fmt: skip
    for shipment in snap.shipments:
        if shipment.status == ShipmentStatus.EXCEPTION:
            return NextStep(
                "shipment_exception", "carrier", "Delivery problem reported by the carrier",
                "shipment", shipment.source_id, shipment.tracking_url,
            )  # fmt: skip
    for rx in snap.prescriptions:
        owner = {
            PrescriptionStatus.AWAITING_PROVIDER: "clinic",
            PrescriptionStatus.APPROVED: "pharmacy",
            PrescriptionStatus.SENT_TO_PHARMACY: "pharmacy",
            PrescriptionStatus.RECEIVED_BY_PHARMACY: "pharmacy",
            PrescriptionStatus.PROCESSING: "pharmacy",
        }.get(rx.status)
        if owner:
            kind = "await_provider" if owner == "clinic" else "await_pharmacy"
            summary = f"Waiting on the {'provider' if owner == 'clinic' else 'pharmacy'}"
            return NextStep(kind, owner, summary, "prescription", rx.source_id)
    for shipment in snap.shipments:
        if shipment.status_class == StatusClass.ACTIVE:
            return NextStep(
                "await_delivery", "carrier", "On its way", "shipment", shipment.source_id,
                shipment.tracking_url, shipment.estimated_delivery,
            )  # fmt: skip
    due = snap.next_refill_date
    if due is not None and not snap.refills_in_progress and due - snap.today <= REFILL_SOON:
        next_rx = snap.next_refill_prescription
        return NextStep(
            "request_refill", "patient", f"Refill due {due.isoformat()}",
            "prescription", next_rx.source_id if next_rx else None, None, due,
        )  # fmt: skip
    if appointment is not None:
        return NextStep(
            "attend_appointment", "patient", f"Visit at {appointment.starts_at.isoformat()}",
            "appointment", appointment.source_id, appointment.join_url, appointment.starts_at,
        )  # fmt: skip
    return NextStep("none", "nobody", "Nothing is waiting on the patient or the clinic.")


def misalignments(snap: Snapshot) -> list[str]:
    """States that disagree with each other: what a staff member should look at first."""
    alerts = []
    paid = any(p.status == PaymentStatus.SUCCEEDED for p in snap.payments)
    for rx in snap.prescriptions:
        waiting = rx.status in (PrescriptionStatus.AWAITING_PROVIDER, PrescriptionStatus.APPROVED)
        if paid and waiting and snap.now - rx.status_since > PAID_NOT_SENT:
            alerts.append(
                f"Paid, but prescription {rx.source_id} not sent to the pharmacy after 48 h"
            )
    shipped = any(s.status_class == StatusClass.ACTIVE for s in snap.shipments)
    if shipped and snap.failed_payments:
        alerts.append("Shipped while a payment has failed")
    sub = snap.subscription
    due = snap.next_refill_date
    past_due = sub is not None and sub.status == SubscriptionStatus.PAST_DUE
    if past_due and due is not None and due - snap.today <= REFILL_SOON:
        alerts.append("Refill due while the subscription is past due")
    return alerts
