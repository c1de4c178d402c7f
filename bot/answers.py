"""What each answer says, as template name + context, from the patient's snapshot.

Pure functions of the snapshot: no writes here. The engine decides what to do (verify, hand
off, remember a question) and renders what these return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from status.classification import StatusClass
from status.payments import Payment
from status.prescriptions import PrescriptionStatus
from status.snapshot import REFILL_SOON, Snapshot

# Answers that disclose health or billing facts: the patient verifies first.
FACT_INTENTS = {
    "prescription_status",
    "shipment_tracking",
    "refill",
    "billing",
    "appointment",
    "next_steps",
}


@dataclass
class Answer:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    offer_refill: bool = False  # the answer asked "Reply YES": remember it


def _base(snap: Snapshot) -> dict[str, Any]:
    return {"snap": snap, "tz": snap.patient.timezone, "first_name": snap.patient.first_name}


def prescription_status(snap: Snapshot) -> Answer:
    # Most urgent first: blocked, then in motion, then done.
    order = {StatusClass.NEEDS_PATIENT: 0, StatusClass.ACTIVE: 1, StatusClass.TERMINAL: 2}
    rxs = sorted(snap.prescriptions, key=lambda rx: order[rx.status_class])[:3]
    return Answer("prescription_status", {**_base(snap), "rxs": rxs})


def shipment_tracking(snap: Snapshot) -> Answer:
    active = [s for s in snap.shipments if s.status_class != StatusClass.TERMINAL]
    shipments = active or snap.shipments[:1]
    rxs = [
        rx
        for rx in snap.prescriptions
        if rx.status_class != StatusClass.TERMINAL and rx.status != PrescriptionStatus.SHIPPED
    ]
    return Answer("shipment_tracking", {**_base(snap), "shipments": shipments[:2], "rxs": rxs})


def refill(snap: Snapshot) -> Answer:
    in_progress = snap.refills_in_progress[0] if snap.refills_in_progress else None
    rx = snap.next_refill_prescription
    due = snap.next_refill_date
    refills_left = rx.refills_remaining if rx else None
    no_refills_left = any(p.refills_remaining == 0 for p in snap.prescriptions)
    due_soon = due is not None and due - snap.today <= REFILL_SOON
    offer = in_progress is None and (due_soon or no_refills_left) and bool(snap.prescriptions)
    return Answer(
        "refill",
        {
            **_base(snap),
            "in_progress": in_progress,
            "due": due,
            "refills_left": refills_left,
            "no_refills_left": no_refills_left and due is None,
            "offer": offer,
            "task": snap.tasks[0] if snap.tasks else None,
        },
        offer_refill=offer,
    )


def billing(snap: Snapshot) -> Answer:
    failed = snap.failed_payments
    retries = [p.next_retry_at for p in failed if p.next_retry_at]
    pending = next((p for p in snap.payments if p.status == "pending"), None)
    return Answer(
        "billing",
        {
            **_base(snap),
            "failed": failed,
            "retry": min(retries) if retries else None,
            "pay_link": _pay_link(failed),
            "pending": pending,
            "sub": snap.subscription,
        },
    )


def _pay_link(failed: list[Payment]) -> str | None:
    """The failed payment's own secure link (a hosted invoice page), if its source gave one."""
    return next((p.payment_url for p in failed if p.payment_url), None)


def update_payment_method(snap: Snapshot | None) -> Answer:
    retry = pay_link = None
    if snap is not None:
        retries = [p.next_retry_at for p in snap.failed_payments if p.next_retry_at]
        retry = min(retries) if retries else None
        pay_link = _pay_link(snap.failed_payments)
    tz = snap.patient.timezone if snap else None
    return Answer("update_payment_method", {"retry": retry, "pay_link": pay_link, "tz": tz})


def appointment(snap: Snapshot) -> Answer:
    appt = snap.next_appointment
    prep = [
        t
        for t in snap.tasks
        if appt is not None and (t.due_at is None or t.due_at <= appt.starts_at)
    ]
    return Answer("appointment", {**_base(snap), "appt": appt, "prep": prep[:2]})


def next_steps(snap: Snapshot) -> Answer:
    step = snap.next_step
    context = {**_base(snap), "step": step, "task": None, "rx": None, "appt": None}
    context["blocked_rx"] = any(p.status == PrescriptionStatus.BLOCKED for p in snap.prescriptions)
    if step.entity == "task":
        context["task"] = next(t for t in snap.tasks if t.source_id == step.source_id)
    if step.entity == "prescription":
        context["rx"] = next((p for p in snap.prescriptions if p.source_id == step.source_id), None)
    if step.entity == "appointment":
        context["appt"] = snap.next_appointment
    offer = step.kind == "request_refill"
    if step.kind in ("await_provider", "await_pharmacy") and context["rx"] is None:
        step_kind = "none"
        context["step"] = type(step)(step_kind, step.owner, step.summary)
    return Answer("next_steps", context, offer_refill=offer)


def is_blocked(snap: Snapshot) -> bool:
    return any(p.status == PrescriptionStatus.BLOCKED for p in snap.prescriptions)


FACT_ANSWERS = {
    "prescription_status": prescription_status,
    "shipment_tracking": shipment_tracking,
    "refill": refill,
    "billing": billing,
    "appointment": appointment,
    "next_steps": next_steps,
}
