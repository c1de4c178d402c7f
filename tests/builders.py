"""Small, explicit builders for test data (events as a clinic's system would send them)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from status.db import utcnow

_ids = itertools.count(1)
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=utcnow().tzinfo)


def at(minutes: float = 0, base: datetime = T0) -> str:
    return (base + timedelta(minutes=minutes)).isoformat()


def event(
    event_type: str, occurred_at: str | None = None, event_id: str | None = None, **data
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt-{next(_ids)}",
        "type": event_type,
        "occurred_at": occurred_at or at(),
        "data": data,
    }


def patient_event(patient_id: str = "p-1", **overrides) -> dict[str, Any]:
    data = {
        "patient_id": patient_id,
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": "1985-03-14",
        "phone": "+1 555 010 0001",
        "email": "maria@example.com",
        "language": "en",
        "timezone": "America/New_York",
        "sms_consent": True,
    }
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("patient.updated", occurred_at, event_id, **data)


def prescription_event(
    status: str = "approved", prescription_id: str = "rx-1", patient_id: str = "p-1", **overrides
) -> dict[str, Any]:
    data = {
        "prescription_id": prescription_id,
        "patient_id": patient_id,
        "medication": "Semaglutide 0.5 mg",
        "status": status,
        "pharmacy": {"name": "Harbor Mail Pharmacy", "phone": "+15550109999"},
        "refills_remaining": 2,
    }
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("prescription.updated", occurred_at, event_id, **data)


def shipment_event(
    status: str = "in_transit", shipment_id: str = "ship-1", patient_id: str = "p-1", **overrides
) -> dict[str, Any]:
    data = {
        "shipment_id": shipment_id,
        "patient_id": patient_id,
        "prescription_id": "rx-1",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
        "status": status,
        "estimated_delivery": "2026-11-22",
    }
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("shipment.updated", occurred_at, event_id, **data)


def payment_event(
    status: str = "failed", payment_id: str = "pay-1", patient_id: str = "p-1", **overrides
) -> dict[str, Any]:
    data = {
        "payment_id": payment_id,
        "patient_id": patient_id,
        "amount_cents": 29900,
        "currency": "USD",
        "status": status,
        "description": "Monthly care plan",
    }
    if status == "failed":
        data["failure_reason"] = "card expired"
        data["next_retry_at"] = at(60 * 24 * 3)
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("payment.updated", occurred_at, event_id, **data)


def subscription_event(
    status: str = "active", subscription_id: str = "sub-1", patient_id: str = "p-1", **overrides
) -> dict[str, Any]:
    data = {
        "subscription_id": subscription_id,
        "patient_id": patient_id,
        "plan": "Weight care monthly",
        "amount_cents": 29900,
        "currency": "USD",
        "status": status,
        "renews_at": at(60 * 24 * 13),
        "auto_renew": True,
    }
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("subscription.updated", occurred_at, event_id, **data)


def appointment_event(
    status: str = "scheduled", appointment_id: str = "appt-1", patient_id: str = "p-1", **overrides
) -> dict[str, Any]:
    data = {
        "appointment_id": appointment_id,
        "patient_id": patient_id,
        "starts_at": at(60 * 24 * 5),
        "visit_type": "Follow-up",
        "provider_name": "Dr. Chen",
        "status": status,
    }
    occurred_at = overrides.pop("occurred_at", None)
    event_id = overrides.pop("event_id", None)
    data.update(overrides)
    return event("appointment.updated", occurred_at, event_id, **data)
