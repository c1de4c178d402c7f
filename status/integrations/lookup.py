"""What the adapters need to know of the current state to write complete events.

Our events carry an item's whole state, but one FHIR resource or Stripe event tells only part of
it (a MedicationDispense knows the dispense, not the refills left; a PaymentReconciliation names
the invoice it settles, not the patient). The adapters start from the item as it stands, stored
or as an earlier resource of the same batch left it, and change what the new one says.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from status import patients
from status.integrations import receipts
from status.patients import Patient
from status.payments import Payment
from status.prescriptions import Prescription
from status.subscriptions import Subscription
from status.tasks import Task

_COLUMNS = {
    "prescription": ("medication", "status", "blocked_reason", "refills_remaining",
                     "next_refill_date"),
    "payment": ("amount_cents", "currency", "status", "description", "failure_reason",
                "next_retry_at", "payment_url"),
    "subscription": ("plan", "amount_cents", "currency", "status", "renews_at", "auto_renew"),
    "task": ("kind", "title", "status", "url", "due_at"),
}  # fmt: skip
_MODELS = {
    "prescription": Prescription,
    "payment": Payment,
    "subscription": Subscription,
    "task": Task,
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class Lookup:
    """One clinic's current items as event `data`, read once each, with the batch's own events
    laid over; its patients and the links its sources taught (never another clinic's)."""

    def __init__(self, session: Session, clinic_id: int, source: str) -> None:
        self.session = session
        self.clinic_id = clinic_id
        self.source = source
        self._items: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._links: dict[str, str | None] = {}

    def item(self, entity: str, source_id: str) -> dict[str, Any] | None:
        """`data` for the item as it stands (`prescription_id`, `patient_id`, ...), or None."""
        key = (entity, source_id)
        if key not in self._items:
            self._items[key] = self._stored(entity, source_id)
        found = self._items[key]
        return dict(found) if found is not None else None

    def _stored(self, entity: str, source_id: str) -> dict[str, Any] | None:
        model = _MODELS[entity]
        query = (
            select(model, Patient.source_id)
            .join(Patient, Patient.id == model.patient_id)
            .where(model.clinic_id == self.clinic_id, model.source_id == source_id)
        )
        row = self.session.execute(query).first()
        if row is None:
            return None
        item, patient_id = row
        data = {f"{entity}_id": source_id, "patient_id": patient_id}
        data.update({name: _jsonable(getattr(item, name)) for name in _COLUMNS[entity]})
        if entity == "prescription" and item.pharmacy_name:
            data["pharmacy"] = {"name": item.pharmacy_name, "phone": item.pharmacy_phone}
        return data

    def remember(self, event: dict[str, Any]) -> None:
        """A later resource of the same batch starts from what this event says."""
        entity = event["type"].removesuffix(".updated")
        if entity in _MODELS:
            data = event["data"]
            self._items[(entity, data[f"{entity}_id"])] = dict(data)

    # --- patients --------------------------------------------------------------------------------

    def patient(self, source_id: str) -> Patient | None:
        return patients.by_source_id(self.session, self.clinic_id, source_id)

    def link(self, external_id: str) -> str | None:
        """Our patient_id for an outside identity ("Patient/123", "cus_..."), if learned."""
        if external_id not in self._links:
            self._links[external_id] = receipts.linked_patient(
                self.session, self.clinic_id, self.source, external_id
            )
        return self._links[external_id]

    def learn(self, external_id: str, patient_id: str) -> None:
        self._links[external_id] = patient_id

    def patients_with_email(self, email: str) -> list[str]:
        return [p.source_id for p in patients.by_email(self.session, self.clinic_id, email)]

    def patients_with_phone(self, phone: str) -> list[str]:
        return [p.source_id for p in patients.by_phone(self.session, self.clinic_id, phone)]
