"""Apply validated events to the live state: idempotent, ordered per entity, nothing half-done.

The caller owns the transaction: `apply_events` only adds to the session, and the request scope
(or `ingest`) commits, so a failure part-way leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from status import metrics, patients, timeline
from status.appointments import Appointment
from status.db import Base, insert_ignore, utcnow
from status.events import store
from status.events.schemas import _Envelope
from status.patients import Patient
from status.payments import Payment, PaymentStatus
from status.prescriptions import Prescription
from status.refills import Refill
from status.shipments import Shipment
from status.subscriptions import Subscription
from status.tasks import Task


@dataclass(frozen=True)
class ItemSpec:
    entity: str  # "prescription"
    model: type[Base]
    id_field: str  # "prescription_id"
    columns: Callable[[Any], dict[str, Any]]  # validated data -> column values


def _copy(*names: str, **renamed: str) -> Callable[[Any], dict[str, Any]]:
    """Columns taken from `data` as they are (`names`) or under another name (column=attr)."""

    def columns(data) -> dict[str, Any]:  # noqa: ANN001
        values = {name: getattr(data, name) for name in names}
        values.update({column: getattr(data, attr) for column, attr in renamed.items()})
        return values

    return columns


def _prescription(data) -> dict:  # noqa: ANN001
    pharmacy = data.pharmacy
    return {
        **_copy("medication", "status", "blocked_reason", "refills_remaining", "next_refill_date")(
            data
        ),
        "pharmacy_name": pharmacy.name if pharmacy else None,
        "pharmacy_phone": pharmacy.phone if pharmacy else None,
    }


SPECS: dict[str, ItemSpec] = {
    "prescription.updated": ItemSpec(
        "prescription", Prescription, "prescription_id", _prescription
    ),
    "shipment.updated": ItemSpec(
        "shipment", Shipment, "shipment_id",
        _copy("carrier", "tracking_number", "tracking_url", "status", "estimated_delivery",
              prescription_source_id="prescription_id"),
    ),
    "refill.updated": ItemSpec(
        "refill", Refill, "refill_id",
        _copy("status", "due_date", prescription_source_id="prescription_id"),
    ),
    "payment.updated": ItemSpec(
        "payment", Payment, "payment_id",
        _copy("amount_cents", "currency", "status", "description", "failure_reason",
              "next_retry_at"),
    ),
    "subscription.updated": ItemSpec(
        "subscription", Subscription, "subscription_id",
        _copy("plan", "amount_cents", "currency", "status", "renews_at", "auto_renew"),
    ),
    "appointment.updated": ItemSpec(
        "appointment", Appointment, "appointment_id",
        _copy("starts_at", "visit_type", "provider_name", "status", "join_url"),
    ),
    "task.updated": ItemSpec(
        "task", Task, "task_id", _copy("kind", "title", "status", "url", "due_at")
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One applied change, for whatever reacts to state changes (proactive rules, hand-offs)."""

    entity: str  # "patient", "prescription", ...
    source_id: str
    patient_id: int
    old_status: str | None  # None: the item is new
    new_status: str | None
    changed: dict[str, list[Any]]
    occurred_at: datetime
    event_id: str


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    pending: int = 0
    changes: list[Change] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "stale": self.stale,
            "pending": self.pending,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _diff(obj: Any, columns: dict[str, Any]) -> dict[str, list[Any]]:
    changed = {}
    for name, new in columns.items():
        old = getattr(obj, name, None) if obj is not None else None
        if old != new:
            changed[name] = [_jsonable(old), _jsonable(new)]
    return changed


def _summary(entity: str, source_id: str, changed: dict[str, list[Any]], new: bool) -> str:
    if "status" in changed:
        old, current = changed["status"]
        return (
            f"{entity} {source_id}: {old} -> {current}"
            if old
            else f"{entity} {source_id}: {current}"
        )
    if new:
        return f"{entity} {source_id} added"
    if not changed:
        return f"{entity} {source_id}: no change"
    return f"{entity} {source_id}: {', '.join(sorted(changed))} updated"


class EventApplier:
    def __init__(self, session: Session, now: datetime | None = None) -> None:
        self.session = session
        self.now = now or utcnow()
        self.result = ApplyResult()

    def apply(self, events: Iterable[_Envelope]) -> ApplyResult:
        result = self._apply(list(events))
        for outcome, count in result.counts().items():
            if count:
                metrics.EVENTS.labels(outcome).inc(count)
        return result

    def _apply(self, events: list[_Envelope]) -> ApplyResult:
        seen = store.known_ids(self.session, [event.id for event in events])
        # Within one batch, apply in time order so every transition is kept, not marked stale.
        for event in sorted(events, key=lambda e: e.occurred_at):
            if event.id in seen:
                self.result.duplicates += 1
                continue
            seen.add(event.id)
            self._apply_one(event)
        return self.result

    def _record(
        self, event: _Envelope, patient_source_id: str, entity_id: str, outcome: str
    ) -> bool:
        inserted = insert_ignore(
            self.session,
            store.StoredEvent.__table__,
            {
                "event_id": event.id,
                "type": event.type,
                "occurred_at": event.occurred_at,
                "received_at": self.now,
                "patient_source_id": patient_source_id,
                "entity_source_id": entity_id,
                "payload": event.model_dump(mode="json"),
                "outcome": outcome,
                "applied_at": self.now if outcome != store.Outcome.PENDING else None,
            },
        )
        if not inserted:  # a concurrent delivery of the same id won the race
            self.result.duplicates += 1
        return inserted

    def _apply_one(self, event: _Envelope) -> None:
        data = event.data
        if event.type == "patient.updated":
            self._apply_patient(event)
            return
        spec = SPECS[event.type]
        entity_id = getattr(data, spec.id_field)
        patient = patients.by_source_id(self.session, data.patient_id)
        if patient is None:
            if self._record(event, data.patient_id, entity_id, store.Outcome.PENDING):
                self.result.pending += 1
            return
        outcome = self._apply_item(spec, event, patient)
        self._record(event, data.patient_id, entity_id, outcome)

    def _apply_item(self, spec: ItemSpec, event: _Envelope, patient: Patient) -> str:
        data = event.data
        source_id = getattr(data, spec.id_field)
        item = self.session.scalars(
            select(spec.model).where(spec.model.source_id == source_id)
        ).one_or_none()
        if item is not None and event.occurred_at < item.last_event_at:
            self.result.stale += 1
            timeline.record(
                self.session,
                patient.id,
                kind=timeline.EntryKind.STALE_EVENT,
                occurred_at=event.occurred_at,
                summary=f"{spec.entity} {source_id}: older event ignored "
                f"(status {_jsonable(data.status)}, current {_jsonable(item.status)})",
                entity_type=spec.entity,
                entity_source_id=source_id,
                event_id=event.id,
            )
            return store.Outcome.STALE
        columns = spec.columns(data)
        changed = _diff(item, columns)
        old_status = None if item is None else item.status
        old_renewal = getattr(item, "renews_at", None)
        if item is None:
            item = spec.model(
                source_id=source_id, patient_id=patient.id, status_since=event.occurred_at
            )
            self.session.add(item)
        elif item.status != columns["status"]:
            item.status_since = event.occurred_at
        if item.patient_id != patient.id:
            item.patient_id = patient.id
        for name, value in columns.items():
            setattr(item, name, value)
        item.last_event_at = event.occurred_at
        if isinstance(item, Payment) and item.status == PaymentStatus.FAILED:
            item.ever_failed = True
        renewed = old_renewal and item.renews_at and item.renews_at > old_renewal
        if isinstance(item, Subscription) and renewed:  # the renewal date moved on
            item.renewals_seen += 1
        self.session.flush()
        self.result.applied += 1
        timeline.record(
            self.session,
            patient.id,
            kind=timeline.EntryKind.STATE_CHANGE,
            occurred_at=event.occurred_at,
            summary=_summary(spec.entity, source_id, changed, old_status is None),
            entity_type=spec.entity,
            entity_source_id=source_id,
            event_id=event.id,
            changes=changed,
        )
        self.result.changes.append(
            Change(
                entity=spec.entity,
                source_id=source_id,
                patient_id=patient.id,
                old_status=_jsonable(old_status),
                new_status=_jsonable(item.status),
                changed=changed,
                occurred_at=event.occurred_at,
                event_id=event.id,
            )
        )
        return store.Outcome.APPLIED

    def _apply_patient(self, event: _Envelope) -> None:
        data = event.data
        patient = patients.by_source_id(self.session, data.patient_id)
        if patient is not None and event.occurred_at < patient.last_event_at:
            self.result.stale += 1
            timeline.record(
                self.session,
                patient.id,
                kind=timeline.EntryKind.STALE_EVENT,
                occurred_at=event.occurred_at,
                summary="patient details: older event ignored",
                entity_type="patient",
                entity_source_id=data.patient_id,
                event_id=event.id,
            )
            self._record(event, data.patient_id, data.patient_id, store.Outcome.STALE)
            return
        columns = {
            "first_name": data.first_name,
            "last_name": data.last_name,
            "date_of_birth": data.date_of_birth,
            "phone": data.phone,
            "email": data.email,
            "language": data.language,
            "timezone": data.timezone,
            "sms_consent": data.sms_consent,
        }
        is_new = patient is None
        changed = _diff(patient, columns)
        if is_new:
            patient = Patient(source_id=data.patient_id, last_event_at=event.occurred_at, **columns)
            self.session.add(patient)
        else:
            for name, value in columns.items():
                setattr(patient, name, value)
            patient.last_event_at = event.occurred_at
        self.session.flush()
        self.result.applied += 1
        # The timeline says which fields changed, never their values: they are identifying.
        timeline.record(
            self.session,
            patient.id,
            kind=timeline.EntryKind.STATE_CHANGE,
            occurred_at=event.occurred_at,
            summary="patient added"
            if is_new
            else f"patient details updated: {', '.join(sorted(changed)) or 'no change'}",
            entity_type="patient",
            entity_source_id=data.patient_id,
            event_id=event.id,
            changes={name: ["…", "…"] for name in changed},
        )
        self.result.changes.append(
            Change(
                entity="patient",
                source_id=data.patient_id,
                patient_id=patient.id,
                old_status=None if is_new else "known",
                new_status="known",
                changed={name: [] for name in changed},
                occurred_at=event.occurred_at,
                event_id=event.id,
            )
        )
        self._record(event, data.patient_id, data.patient_id, store.Outcome.APPLIED)
        if is_new:
            self._apply_pending(patient)

    def _apply_pending(self, patient: Patient) -> None:
        """Events that arrived before their patient take effect now, in time order."""
        from status.events.schemas import _event_adapter

        for stored in store.pending_for(self.session, patient.source_id):
            event = _event_adapter.validate_python(stored.payload)
            spec = SPECS[event.type]
            stored.outcome = self._apply_item(spec, event, patient)
            stored.applied_at = self.now


def apply_events(
    session: Session, events: Iterable[_Envelope], now: datetime | None = None
) -> ApplyResult:
    return EventApplier(session, now).apply(events)
