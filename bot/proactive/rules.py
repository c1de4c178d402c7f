"""Which transitions notify the patient, with which template. One table, read top to bottom.

A transition not listed here is noise to a patient (received_by_pharmacy -> processing) and
sends nothing. Templates live in `templates/messages/<lang>/notify_<name>.j2`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from status.events.apply import Change


@dataclass(frozen=True)
class Notice:
    """A message worth sending about one item, before policy decides when and where."""

    patient_id: int
    key: str  # coalescing key: changes to the same thing within the window make one message
    template: str  # notify_<name>
    entity: str
    source_id: str
    urgent: bool = False
    staff_first: bool = False  # staff are told (hand-off) before the patient
    delay_seconds: int | None = None  # None: NOTIFY_DELAY_SECONDS
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # template values beyond the item (reminders)
    expires_at: datetime | None = None  # not sent by then: cancelled (a reminder of a visit)


# (entity, new status) -> template; `None` old status means the item is new.
STATUS_RULES: dict[tuple[str, str | None], str] = {
    ("prescription", "approved"): "notify_rx_approved",
    ("prescription", "sent_to_pharmacy"): "notify_rx_approved",
    ("prescription", "ready_for_pickup"): "notify_rx_ready",
    ("prescription", "blocked"): "notify_rx_blocked",
    ("prescription", "denied"): "notify_rx_denied",
    ("prescription", "shipped"): "notify_shipped",
    ("shipment", "in_transit"): "notify_shipped",
    ("shipment", "out_for_delivery"): "notify_out_for_delivery",
    ("shipment", "delivered"): "notify_delivered",
    ("shipment", "exception"): "notify_shipment_exception",
    ("refill", "approved"): "notify_refill_approved",
    ("refill", "shipped"): "notify_refill_shipped",
    ("refill", "ready_for_pickup"): "notify_refill_ready",
    ("refill", "waiting_on_patient"): "notify_refill_waiting",
    ("payment", "failed"): "notify_payment_failed",
    ("subscription", "past_due"): "notify_subscription_past_due",
    ("appointment", "cancelled"): "notify_appointment_cancelled",
}
# Statuses that make a pending message about the item pointless (nothing new to say).
SILENCING = {
    ("prescription", "cancelled"),
    ("prescription", "delivered"),
    ("shipment", "returned"),
    ("refill", "denied"),
    ("payment", "refunded"),
    ("subscription", "cancelled"),
    ("appointment", "completed"),
    ("appointment", "no_show"),
    ("task", "done"),
}
# Within one item's life these would repeat what the patient was just told.
NO_REPEAT_FROM: dict[tuple[str, str | None], set[str]] = {
    ("shipment", "in_transit"): {"out_for_delivery", "delivered", "in_transit", "exception"},
    ("prescription", "sent_to_pharmacy"): {"approved"},
    ("prescription", "shipped"): {"shipped"},
}


def item_key(entity: str, source_id: str, prescription_source_id: str | None = None) -> str:
    """Prescriptions, their shipments and refills share one key: one thread of news per rx."""
    if entity == "prescription":
        return f"rx:{source_id}"
    if entity in ("shipment", "refill") and prescription_source_id:
        return f"rx:{prescription_source_id}"
    return f"{entity}:{source_id}"


def notice_for(change: Change, prescription_source_id: str | None = None) -> Notice | None:
    """The notice a change deserves, or None."""
    entity, old, new = change.entity, change.old_status, change.new_status
    if entity == "patient":
        return None
    if (entity, new) in NO_REPEAT_FROM and old in NO_REPEAT_FROM[(entity, new)]:
        return None
    key = item_key(entity, change.source_id, prescription_source_id)
    base: dict[str, Any] = {"patient_id": change.patient_id, "key": key, "entity": entity,
            "source_id": change.source_id}  # fmt: skip
    if entity == "payment" and new == "succeeded" and old == "failed":
        return Notice(template="notify_payment_recovered", **base)
    if entity == "appointment":
        if old is None and new in ("scheduled", "confirmed"):
            return Notice(template="notify_appointment_booked", **base)
        moved = "starts_at" in change.changed and old is not None
        if moved and new in ("scheduled", "confirmed"):
            return Notice(template="notify_appointment_changed", **base)
    if entity == "task" and new == "open" and old is None:
        return Notice(template="notify_task_new", **base)
    if entity == "shipment" and new == "in_transit" and old not in (None, "label_created"):
        return None  # back in transit after an exception: the exception message covered it
    template = STATUS_RULES.get((entity, new))
    if template is None or old == new:
        return None
    if template == "notify_rx_denied":  # staff call first; the patient hears gently, later
        return Notice(template=template, staff_first=True, delay_seconds=1800, **base)
    return Notice(template=template, **base)


def silences(change: Change) -> bool:
    return (change.entity, change.new_status) in SILENCING
