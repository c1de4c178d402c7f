"""A demo clinic: patients whose states cover the cases the assistant must handle.

Seeded through the same event code as `POST /events`, with ids that make re-seeding a no-op.
Times are relative to now so the demo always reads naturally ("arrives tomorrow").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from status.db import utcnow
from status.events.apply import ApplyResult, apply_events
from status.events.schemas import parse_events

# (patient_id, first name, date of birth, phone): the logins the demo prints.
DEMO_PATIENTS = [
    ("demo-maria", "Maria Lopez", "1985-03-14", "+15550100001", "shipped with tracking"),
    ("demo-james", "James Carter", "1979-11-02", "+15550100002", "blocked on a patient task"),
    ("demo-aisha", "Aisha Khan", "1991-07-23", "+15550100003", "failed payment with retry"),
    ("demo-luis", "Luis Hernández", "1968-05-30", "+15550100004", "refill due soon (Spanish)"),
    ("demo-emily", "Emily Chen", "1995-01-09", "+15550100005", "appointment tomorrow"),
    ("demo-sofia", "Sofia Ramirez", "1982-09-17", "+15550100006", "shared family phone"),
    ("demo-diego", "Diego Ramirez", "2004-12-01", "+15550100006", "shared family phone"),
]


def _event(event_type: str, eid: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {"id": f"demo-{eid}", "type": event_type, "occurred_at": at.isoformat(), "data": data}


def _patient(pid: str, first: str, last: str, dob: str, phone: str, at: datetime, **extra) -> dict:
    return _event(
        "patient.updated",
        f"{pid.removeprefix('demo-')}-profile",
        at,
        patient_id=pid,
        first_name=first,
        last_name=last,
        date_of_birth=dob,
        phone=phone,
        email=f"{first.lower()}@example.com",
        language=extra.get("language", "en"),
        timezone=extra.get("timezone", "America/New_York"),
        sms_consent=True,
    )


def demo_events(now: datetime) -> list[dict[str, Any]]:
    d, h = timedelta(days=1), timedelta(hours=1)
    start = now - 30 * d
    plan = {"plan": "Monthly care plan", "amount_cents": 29900, "currency": "USD"}
    pharmacy = {"name": "Harbor Mail Pharmacy", "phone": "+15550109999"}
    events = [
        # Maria: her prescription shipped two days ago with UPS and arrives tomorrow.
        _patient("demo-maria", "Maria", "Lopez", "1985-03-14", "+1 (555) 010-0001", start),
        _event("subscription.updated", "maria-sub", start, subscription_id="sub-maria",
               patient_id="demo-maria", status="active", renews_at=(now + 11 * d).isoformat(),
               auto_renew=True, **plan),
        _event("payment.updated", "maria-pay", now - 19 * d, payment_id="pay-maria-1",
               patient_id="demo-maria", amount_cents=29900, currency="USD", status="succeeded",
               description="Monthly care plan"),
        _event("prescription.updated", "maria-rx-1", now - 6 * d, prescription_id="rx-maria-1",
               patient_id="demo-maria", medication="Semaglutide 0.5 mg", status="approved",
               pharmacy=pharmacy, refills_remaining=2),
        _event("prescription.updated", "maria-rx-2", now - 2 * d, prescription_id="rx-maria-1",
               patient_id="demo-maria", medication="Semaglutide 0.5 mg", status="shipped",
               pharmacy=pharmacy, refills_remaining=2,
               next_refill_date=(now + 26 * d).date().isoformat()),
        _event("shipment.updated", "maria-ship", now - 2 * d, shipment_id="ship-maria-1",
               patient_id="demo-maria", prescription_id="rx-maria-1", carrier="UPS",
               tracking_number="1Z999AA10123456784",
               tracking_url="https://www.ups.com/track?tracknum=1Z999AA10123456784",
               status="in_transit", estimated_delivery=(now + d).date().isoformat()),
        # James: his prescription is blocked until he uploads a photo ID.
        _patient("demo-james", "James", "Carter", "1979-11-02", "555-010-0002", start),
        _event("prescription.updated", "james-rx", now - 3 * d, prescription_id="rx-james-1",
               patient_id="demo-james", medication="Tretinoin 0.05% cream", status="blocked",
               blocked_reason="identity verification: photo ID needed"),
        _event("task.updated", "james-task", now - 3 * d, task_id="task-james-id",
               patient_id="demo-james", kind="identity", title="Upload a photo ID",
               status="open", url="https://portal.example/tasks/upload-id",
               due_at=(now + 2 * d).isoformat()),
        # Aisha: her card expired; the charge failed and is retried in 3 days.
        _patient("demo-aisha", "Aisha", "Khan", "1991-07-23", "+15550100003", start),
        _event("subscription.updated", "aisha-sub", now - d, subscription_id="sub-aisha",
               patient_id="demo-aisha", status="past_due", renews_at=(now - d).isoformat(),
               auto_renew=True, **plan),
        _event("payment.updated", "aisha-pay", now - d, payment_id="pay-aisha-2",
               patient_id="demo-aisha", amount_cents=29900, currency="USD", status="failed",
               description="Monthly care plan", failure_reason="card expired",
               next_retry_at=(now + 3 * d).isoformat()),
        _event("prescription.updated", "aisha-rx", now - 15 * d, prescription_id="rx-aisha-1",
               patient_id="demo-aisha", medication="Metformin ER 500 mg", status="delivered",
               pharmacy=pharmacy, refills_remaining=3,
               next_refill_date=(now + 14 * d).date().isoformat()),
        # Luis (Spanish): his refill is due in 4 days, two refills left.
        _patient("demo-luis", "Luis", "Hernández", "1968-05-30", "+15550100004", start,
                 language="es", timezone="America/Chicago"),
        _event("prescription.updated", "luis-rx", now - 26 * d, prescription_id="rx-luis-1",
               patient_id="demo-luis", medication="Lisinopril 10 mg", status="delivered",
               pharmacy=pharmacy, refills_remaining=2,
               next_refill_date=(now + 4 * d).date().isoformat()),
        _event("subscription.updated", "luis-sub", start, subscription_id="sub-luis",
               patient_id="demo-luis", status="active", renews_at=(now + 2 * d).isoformat(),
               auto_renew=True, **plan),
        # Emily: a video visit tomorrow and an intake form to finish before it.
        _patient("demo-emily", "Emily", "Chen", "1995-01-09", "+15550100005", start,
                 timezone="America/Los_Angeles"),
        _event("appointment.updated", "emily-appt", now - 5 * d, appointment_id="appt-emily-1",
               patient_id="demo-emily", starts_at=(now + d + 2 * h).isoformat(),
               visit_type="Video follow-up", provider_name="Dr. Ana Patel", status="scheduled",
               join_url="https://visit.example/j/emily"),
        _event("task.updated", "emily-task", now - 5 * d, task_id="task-emily-intake",
               patient_id="demo-emily", kind="intake", title="Finish the intake form",
               status="open", url="https://portal.example/tasks/intake"),
        # Sofia and her son Diego share a family phone.
        _patient("demo-sofia", "Sofia", "Ramirez", "1982-09-17", "+15550100006", start),
        _patient("demo-diego", "Diego", "Ramirez", "2004-12-01", "+15550100006", start),
        _event("prescription.updated", "sofia-rx", now - 10 * h, prescription_id="rx-sofia-1",
               patient_id="demo-sofia", medication="Levothyroxine 50 mcg",
               status="awaiting_provider"),
        _event("prescription.updated", "diego-rx", now - 5 * h, prescription_id="rx-diego-1",
               patient_id="demo-diego", medication="Albuterol inhaler", status="ready_for_pickup",
               pharmacy={"name": "Walgreens, 12 Main St", "phone": "+15550107777"}),
    ]  # fmt: skip
    return events


def seed(session: Session, now: datetime | None = None) -> ApplyResult:
    """Apply the demo events (again: already-seen ids are skipped)."""
    return apply_events(session, parse_events(demo_events(now or utcnow())))


# A second brand on the same deployment, so a newcomer sees what a clinic changes: its name,
# number, zone and hours, colours, one reworded message, and patients of its own (Maria's phone
# is also the phone of Glow's Marisol: each clinic's number reaches its own patient).
SECOND_BRAND = {
    "slug": "glow",
    "name": "Glow Skin",
    "twilio_from_numbers": ["+15550109100"],
    "timezone": "America/Los_Angeles",
    "hours": "Mon-Sat 09:00-17:00",
    "support_phone": "+1 555 010 9101",
    "payment_update_url": "https://pay.example/glow",
    "display_name": "Glow Skin Dermatology",
    "brand_color": "#7a2e8e",
    "accent_color": "#f6b8d1",
    "templates": {
        "en/greeting": "Hi{% if first_name %} {{ first_name }}{% endif %}! Glow Skin here. "
        "Ask about your order, refills, billing or your next visit.",
    },
}
SECOND_BRAND_PATIENTS = [
    ("glow-marisol", "Marisol Vega", "1990-06-01", "+15550100001", "same phone as Maria"),
    ("glow-noah", "Noah Park", "1987-02-11", "+15550100021", "prescription processing"),
]


def second_brand_events(now: datetime) -> list[dict[str, Any]]:
    d = timedelta(days=1)
    la = {"timezone": "America/Los_Angeles"}
    return [
        _patient("glow-marisol", "Marisol", "Vega", "1990-06-01", "+15550100001", now - 9 * d,
                 **la),
        _event("prescription.updated", "marisol-rx", now - 1 * d, prescription_id="rx-1",
               patient_id="glow-marisol", medication="Tretinoin 0.05% cream", status="shipped"),
        _event("shipment.updated", "marisol-ship", now - 1 * d, shipment_id="ship-1",
               patient_id="glow-marisol", prescription_id="rx-1", carrier="USPS",
               tracking_number="9400100000000000000000", status="in_transit",
               estimated_delivery=(now + 2 * d).date().isoformat()),
        _patient("glow-noah", "Noah", "Park", "1987-02-11", "+15550100021", now - 4 * d, **la),
        _event("prescription.updated", "noah-rx", now - 2 * d, prescription_id="rx-2",
               patient_id="glow-noah", medication="Doxycycline 100 mg", status="processing"),
    ]  # fmt: skip


def seed_second_brand(session: Session, now: datetime | None = None) -> ApplyResult:
    """The `glow` clinic (created once) and its demo patients."""
    from status import clinics

    clinic = clinics.by_slug(session, SECOND_BRAND["slug"])
    if clinic is None:
        values = {k: v for k, v in SECOND_BRAND.items() if k not in ("slug", "name")}
        clinic = clinics.add(session, SECOND_BRAND["slug"], SECOND_BRAND["name"], **values)
    events = parse_events(second_brand_events(now or utcnow()))
    return apply_events(session, events, clinic_id=clinic.id)
