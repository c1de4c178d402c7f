"""FHIR R4 resources onto our events (the mapping tables are in docs/integrations.md).

Parsed and validated with `fhir.resources` (its R4B models: R4B changed none of the resources we
read from R4). A body that is not FHIR, or breaks the resource's own rules, is `MalformedFhir`
(400). A valid resource we have no use for, or one missing what our events need, becomes an
unmapped notification with the reason (answered 200, so the server does not retry it forever,
and shown to staff). Each resource version maps to events whose ids come from
`Type/id/_history/versionId` (else `meta.lastUpdated`), at `meta.lastUpdated`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from status.integrations.config import IntegrationSettings
from status.integrations.ingest import Notification
from status.integrations.lookup import Lookup
from status.integrations.receipts import Source

MAPPED_TYPES = (
    "Patient",
    "MedicationRequest",
    "MedicationDispense",
    "Task",
    "Appointment",
    "Invoice",
    "PaymentReconciliation",
)
# Bundle entries that describe the notification itself rather than a change.
_ENVELOPES = {"SubscriptionStatus", "Parameters", "OperationOutcome"}
# Prescription statuses past "approved": a MedicationRequest that is merely still active does not
# move a prescription the pharmacy already has back.
_UNDER_WAY = {
    "sent_to_pharmacy", "received_by_pharmacy", "processing", "shipped", "ready_for_pickup",
    "delivered",
}  # fmt: skip
CARRIERS = ("UPS", "USPS", "FedEx", "DHL", "OnTrac", "Amazon")
_CARRIER = re.compile(r"\b(" + "|".join(CARRIERS) + r")\b", re.IGNORECASE)
_TRACKING = re.compile(
    r"\btracking(?:\s*(?:number|no\.?|#))?\s*(?:is|:|#)?\s*([A-Z0-9]{8,40})\b", re.IGNORECASE
)
_URL = re.compile(r"https?://\S+[^\s.,;)]")
# Where a telehealth visit's join link may be carried (R5's virtualService, back-ported).
JOIN_URL_EXTENSIONS = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService",
    "http://hl7.org/fhir/StructureDefinition/appointment-virtualService",
    "https://patient-status.dev/fhir/StructureDefinition/join-url",
)


class MalformedFhir(ValueError):
    """Not a FHIR R4 resource or Bundle, or one that breaks its own rules: nothing is applied."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


# --- parsing ---------------------------------------------------------------------------------


def _model(resource_type: Any, where: str) -> Any:
    if not isinstance(resource_type, str) or not resource_type:
        raise MalformedFhir(where, "resourceType is missing")
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError) as exc:
        raise MalformedFhir(where, f"{resource_type!r} is not a FHIR R4 resource type") from exc


def _problem(error: ValidationError) -> str:
    """The first rule broken, by path: never the value (it may be a name or a birth date)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:3]:
        path = ".".join(str(p) for p in item["loc"]) or "(resource)"
        parts.append(f"{path}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _validate(raw: dict[str, Any], where: str) -> Any:
    model = _model(raw.get("resourceType"), where)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise MalformedFhir(where, _problem(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:  # a contained resource of no known type
        raise MalformedFhir(where, "a resource inside it is not a FHIR R4 resource") from exc


def parse(body: Any) -> tuple[list[tuple[Any, str]], datetime | None]:
    """A body -> [(validated resource, its local id)], and the Bundle's timestamp if any.

    A Bundle is validated whole; its entries are the resources (a history Bundle's deletions,
    which carry no resource, and a notification's own status entries are left out).
    """
    if not isinstance(body, dict):
        raise MalformedFhir("(body)", "expected a FHIR resource or Bundle as a JSON object")
    if body.get("resourceType") != "Bundle":
        resource = _validate(body, body.get("resourceType") or "(body)")
        return [(resource, _local_id(resource, None, "(body)"))], None
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise MalformedFhir("Bundle.entry", "must be a list")
    for index, entry in enumerate(entries):  # name a bad entry's type before pydantic does
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            _model(resource.get("resourceType"), f"Bundle.entry[{index}].resource")
    bundle = _validate(body, "Bundle")
    if bundle.type not in {"transaction", "batch", "history", "collection", "searchset",
                           "subscription-notification", "message"}:  # fmt: skip
        raise MalformedFhir("Bundle.type", f"{bundle.type!r} bundles carry no changes to apply")
    found = []
    for index, entry in enumerate(bundle.entry or []):
        resource = entry.resource
        if resource is None or resource.get_resource_type() in _ENVELOPES:
            continue
        where = f"Bundle.entry[{index}]"
        found.append((resource, _local_id(resource, entry.fullUrl, where)))
    return found, bundle.timestamp


def _local_id(resource: Any, full_url: str | None, where: str) -> str:
    """The resource's id; in a client's transaction Bundle, the `urn:uuid:` of its fullUrl."""
    if resource.id:
        return resource.id
    if full_url and full_url.startswith("urn:uuid:"):
        return full_url.removeprefix("urn:uuid:")
    raise MalformedFhir(where, f"{resource.get_resource_type()} has no id (we key on it)")


# --- small readers ----------------------------------------------------------------------------


def _ref_id(reference: Any, resource_type: str) -> str | None:
    """`Patient/123` (relative, absolute or versioned) -> "123"; another type -> None."""
    text = getattr(reference, "reference", None) if reference is not None else None
    if not text:
        return None
    if text.startswith("urn:uuid:"):
        return text.removeprefix("urn:uuid:") if resource_type == "Patient" else None
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def _ref_type(reference: Any) -> str | None:
    text = getattr(reference, "reference", None) or ""
    parts = text.split("/_history/")[0].split("/")
    return parts[-2] if len(parts) >= 2 else getattr(reference, "type", None)


def _concept_text(concept: Any) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return concept.text
    for coding in concept.coding or []:
        if coding.display:
            return coding.display
    return None


def _first_code(concept: Any) -> str | None:
    for coding in getattr(concept, "coding", None) or []:
        if coding.code:
            return coding.code
    return None


def _cents(money: Any) -> int | None:
    if money is None or money.value is None:
        return None
    return int(round(float(money.value) * 100))


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat()


# --- the mapper -------------------------------------------------------------------------------


class FhirMapper:
    def __init__(self, config: IntegrationSettings, lookup: Lookup) -> None:
        self.config = config
        self.lookup = lookup

    def map(
        self, parsed: list[tuple[Any, str]], fallback_time: datetime | None
    ) -> list[Notification]:
        """Notifications in `meta.lastUpdated` order; later ones see earlier ones' changes."""
        notifications = [self._notification(r, rid, fallback_time) for r, rid in parsed]
        system = self.config.fhir_patient_id_system
        for resource, local_id in parsed:  # the batch's own Patients name its other resources
            if system and resource.get_resource_type() == "Patient":
                for identifier in resource.identifier or []:
                    if identifier.system == system and identifier.value:
                        self.lookup.learn(f"Patient/{local_id}", identifier.value)
                        break
        order = sorted(
            range(len(parsed)),
            key=lambda i: (
                notifications[i].occurred_at,
                parsed[i][0].get_resource_type() != "Patient",
            ),
        )
        for index in order:
            resource, local_id = parsed[index]
            notification = notifications[index]
            handler = getattr(self, f"_{resource.get_resource_type()}", None)
            if handler is None:
                notification.refuse(
                    f"{resource.get_resource_type()} is not a resource we map (we map "
                    f"{', '.join(MAPPED_TYPES)})"
                )
                continue
            reason = handler(resource, local_id, notification)
            if reason:
                notification.refuse(reason)
            for event in notification.events:
                self.lookup.remember(event)
            for external_id, patient_id in notification.links.items():
                self.lookup.learn(external_id, patient_id)
        return [notifications[i] for i in order]

    def _notification(
        self, resource: Any, local_id: str, fallback: datetime | None
    ) -> Notification:
        kind = resource.get_resource_type()
        meta = resource.meta
        updated = meta.lastUpdated if meta is not None else None
        occurred = updated or fallback
        if occurred is None:
            raise MalformedFhir(
                f"{kind}/{local_id}", "meta.lastUpdated is missing (we order changes by it)"
            )
        version = meta.versionId if meta is not None else None
        key = f"{kind}/{local_id}/" + (f"_history/{version}" if version else f"@{_iso(occurred)}")
        return Notification(Source.FHIR, key, kind, f"{kind}/{local_id}", occurred)

    # --- patients ------------------------------------------------------------------------------

    def _patient_id(self, reference: Any) -> str | None:
        """Our patient_id for a reference to a FHIR Patient (None: not a patient we can name)."""
        system = self.config.fhir_patient_id_system
        identifier = getattr(reference, "identifier", None) if reference is not None else None
        if system and identifier is not None and identifier.system == system and identifier.value:
            return identifier.value
        fhir_id = _ref_id(reference, "Patient")
        if fhir_id is None:
            return None
        if not system:
            return fhir_id
        return self.lookup.link(f"Patient/{fhir_id}")

    def _no_patient(self, reference: Any, field: str) -> str:
        fhir_id = _ref_id(reference, "Patient")
        if fhir_id is None:
            return f"{field} does not point at a Patient"
        return (
            f"{field} points at Patient/{fhir_id}, which has no identifier of system "
            f"{self.config.fhir_patient_id_system} on record yet: send that Patient first"
        )

    def _Patient(self, patient: Any, local_id: str, n: Notification) -> str | None:
        system = self.config.fhir_patient_id_system
        patient_id = local_id
        if system:
            found = [i.value for i in patient.identifier or [] if i.system == system and i.value]
            if not found:
                return f"Patient has no identifier of system {system} (FHIR_PATIENT_ID_SYSTEM)"
            patient_id = found[0]
        if patient.active is False:
            return "Patient is inactive: we keep the patient as last known"
        names = patient.name or []
        name = next((x for x in names if x.use == "official"), names[0] if names else None)
        given = (name.given or [None])[0] if name is not None else None
        family = name.family if name is not None else None
        if not given or not family:
            return "Patient has no name with a given and a family part"
        if patient.birthDate is None:
            return "Patient has no birthDate (we verify patients by it)"
        if not isinstance(patient.birthDate, date):  # FHIR allows "1980" and "1980-05"
            return (
                f"Patient's birthDate {str(patient.birthDate)[:10]!r} is not a whole date "
                "(we verify patients by it)"
            )
        telecom = [t for t in patient.telecom or [] if not (t.period and t.period.end)]
        phones = sorted(
            (t for t in telecom if t.system in ("phone", "sms") and t.value),
            key=lambda t: (t.use != "mobile", t.rank or 99),
        )
        if not phones:
            return "Patient has no phone number (we reach patients by text)"
        email = next((t.value for t in telecom if t.system == "email" and t.value), None)
        existing = self.lookup.patient(patient_id)
        n.add(
            "patient",
            {
                "patient_id": patient_id,
                "first_name": given,
                "last_name": family,
                "date_of_birth": patient.birthDate.isoformat(),
                "phone": phones[0].value,
                "email": email,
                "language": self._language(patient),
                "timezone": existing.timezone if existing else self.config.default_timezone,
                "sms_consent": existing.sms_consent if existing else self.config.fhir_sms_consent,
            },
        )
        n.links[f"Patient/{local_id}"] = patient_id
        return None

    @staticmethod
    def _language(patient: Any) -> str:
        communications = sorted(patient.communication or [], key=lambda c: not c.preferred)
        for communication in communications:
            for coding in communication.language.coding or []:
                code = (coding.code or "").lower()
                if code.startswith("es"):
                    return "es"
                if code.startswith("en"):
                    return "en"
        return "en"

    # --- prescriptions -------------------------------------------------------------------------

    def _prescription(self, rx_id: str, patient_id: str) -> dict[str, Any]:
        current = self.lookup.item("prescription", rx_id)
        if current is None or current["patient_id"] != patient_id:
            return {"prescription_id": rx_id, "patient_id": patient_id}
        return current

    def _MedicationRequest(self, mr: Any, local_id: str, n: Notification) -> str | None:
        if mr.intent in ("proposal", "plan", "option"):
            return f"MedicationRequest intent {mr.intent!r} is not a prescription yet"
        patient_id = self._patient_id(mr.subject)
        if patient_id is None:
            return self._no_patient(mr.subject, "MedicationRequest.subject")
        data = self._prescription(local_id, patient_id)
        current = data.get("status")
        status = {
            "draft": "awaiting_provider",
            "on-hold": "blocked",
            "cancelled": "cancelled",
            "stopped": "cancelled",
            "entered-in-error": "cancelled",
        }.get(mr.status)
        if mr.status == "active":
            status = current if current in _UNDER_WAY else "approved"
        elif mr.status == "completed":
            status = current if current in _UNDER_WAY else "delivered"
        elif status is None:
            return f"MedicationRequest status {mr.status!r} tells the patient nothing"
        data["status"] = status
        data["blocked_reason"] = _concept_text(mr.statusReason) if status == "blocked" else None
        data["medication"] = (
            _concept_text(mr.medicationCodeableConcept)
            or getattr(mr.medicationReference, "display", None)
            or data.get("medication")
            or "Prescription"
        )
        dispense = mr.dispenseRequest
        if dispense is not None:
            if dispense.numberOfRepeatsAllowed is not None:
                data["refills_remaining"] = int(dispense.numberOfRepeatsAllowed)
            validity = dispense.validityPeriod
            ended = validity is not None and validity.end is not None
            assert n.occurred_at is not None  # `_notification` refuses a resource without one
            if ended and _as_datetime(validity.end) <= n.occurred_at:
                data["refills_remaining"] = 0  # past its validity nothing more is dispensed
            pharmacy = getattr(dispense.performer, "display", None)
            if pharmacy:
                data["pharmacy"] = {"name": pharmacy}
        n.add("prescription", data)
        return None

    def _MedicationDispense(self, md: Any, local_id: str, n: Notification) -> str | None:
        patient_id = self._patient_id(md.subject)
        if patient_id is None:
            return self._no_patient(md.subject, "MedicationDispense.subject")
        rx_id = next(
            (
                rid
                for ref in md.authorizingPrescription or []
                if (rid := _ref_id(ref, "MedicationRequest"))
            ),
            None,
        )
        if rx_id is None:
            return "MedicationDispense has no authorizingPrescription: no prescription to update"
        notes = " ".join(note.text for note in md.note or [] if note.text)
        tracking = _TRACKING.search(notes)
        carrier = _CARRIER.search(notes)
        data = self._prescription(rx_id, patient_id)
        data["medication"] = (
            data.get("medication")
            or _concept_text(md.medicationCodeableConcept)
            or getattr(md.medicationReference, "display", None)
            or "Prescription"
        )
        pharmacy = next(
            (p.actor.display for p in md.performer or [] if p.actor and p.actor.display), None
        ) or getattr(md.location, "display", None)
        if pharmacy:
            data["pharmacy"] = {**(data.get("pharmacy") or {}), "name": pharmacy}
        data["blocked_reason"] = None
        shipment = None
        if md.status == "preparation":
            data["status"] = "processing"
        elif md.status in ("in-progress", "completed") and tracking:
            data["status"] = "shipped"
            shipment = "label_created" if md.status == "in-progress" else "in_transit"
        elif md.status == "in-progress":
            data["status"] = "processing"
        elif md.status == "completed":
            data["status"] = "delivered" if md.whenHandedOver else "ready_for_pickup"
        elif md.status in ("on-hold", "declined"):
            data["status"] = "blocked"
            data["blocked_reason"] = (
                _concept_text(md.statusReasonCodeableConcept)
                or ("the pharmacy declined to dispense" if md.status == "declined" else None)
                or "on hold at the pharmacy"
            )
        else:
            return (
                f"MedicationDispense status {md.status!r} does not change the prescription "
                "(a cancelled or mistaken dispense): staff may follow up"
            )
        n.add("prescription", data)
        if shipment is not None and tracking is not None:  # a shipment only with a tracking no.
            url = _URL.search(notes)
            n.add(
                "shipment",
                {
                    "shipment_id": local_id,
                    "patient_id": patient_id,
                    "prescription_id": rx_id,
                    "carrier": carrier.group(1) if carrier else "the carrier",
                    "tracking_number": tracking.group(1),
                    "tracking_url": url.group(0) if url else None,
                    "status": shipment,
                },
            )
        return None

    # --- tasks ---------------------------------------------------------------------------------

    _OPEN = {"requested", "received", "accepted", "ready", "in-progress", "on-hold"}
    _DONE = {"completed", "cancelled", "rejected", "failed", "entered-in-error"}

    def _Task(self, task: Any, local_id: str, n: Notification) -> str | None:
        if task.status == "draft":
            return "Task is a draft: not yet asked of the patient"
        patient_id = self._patient_id(task.for_fhir)
        if patient_id is None:
            return self._no_patient(task.for_fhir, "Task.for")
        owner = _ref_type(task.owner) if task.owner is not None else None
        known = self.lookup.item("task", local_id) is not None
        for_patient = owner in (None, "Patient", "RelatedPerson")
        if not for_patient and task.status != "on-hold" and not known:
            return f"Task is owned by a {owner}: work for staff, not for the patient"
        title = task.description or _concept_text(task.code)
        if not title:
            return "Task has no description or code text to tell the patient what to do"
        status = "open" if task.status in self._OPEN else "done"
        kind = (_first_code(task.code) or "task")[:64]
        url = next(
            (
                value
                for item in task.input or []
                if isinstance(value := (item.valueUrl or item.valueUri or item.valueString), str)
                and value.startswith(("https://", "http://"))
            ),
            None,
        )
        due = task.restriction.period.end if task.restriction and task.restriction.period else None
        n.add(
            "task",
            {
                "task_id": local_id,
                "patient_id": patient_id,
                "kind": kind,
                "title": title,
                "status": status,
                "url": url,
                "due_at": _iso(_as_datetime(due)) if due else None,
            },
        )
        rx_id = _ref_id(task.focus, "MedicationRequest")
        if task.status == "on-hold" and rx_id is not None:
            data = self.lookup.item("prescription", rx_id)
            if data is not None and data["patient_id"] == patient_id:
                data["status"] = "blocked"
                data["blocked_reason"] = (
                    _concept_text(task.statusReason)
                    or _concept_text(task.businessStatus)
                    or f"waiting on the patient: {kind}"
                )
                n.add("prescription", data)
        return None

    # --- appointments --------------------------------------------------------------------------

    _APPOINTMENT = {
        "proposed": "scheduled", "pending": "scheduled", "waitlist": "scheduled",
        "booked": "confirmed", "arrived": "confirmed", "checked-in": "confirmed",
        "fulfilled": "completed", "cancelled": "cancelled", "entered-in-error": "cancelled",
        "noshow": "no_show",
    }  # fmt: skip

    def _Appointment(self, appt: Any, local_id: str, n: Notification) -> str | None:
        patient_ref = next(
            (p.actor for p in appt.participant or [] if _ref_id(p.actor, "Patient")), None
        )
        if patient_ref is None:
            return "Appointment has no Patient participant"
        patient_id = self._patient_id(patient_ref)
        if patient_id is None:
            return self._no_patient(patient_ref, "Appointment.participant.actor")
        if appt.start is None:
            return "Appointment has no start time"
        status = self._APPOINTMENT.get(appt.status)
        if status is None:
            return f"Appointment status {appt.status!r} is not one we map"
        provider = next(
            (
                p.actor.display
                for p in appt.participant or []
                if p.actor is not None
                and _ref_type(p.actor) in ("Practitioner", "PractitionerRole")
                and p.actor.display
            ),
            None,
        )
        visit_type = (
            next((t for c in appt.serviceType or [] if (t := _concept_text(c))), None)
            or _concept_text(appt.appointmentType)
            or appt.description
            or "Visit"
        )
        n.add(
            "appointment",
            {
                "appointment_id": local_id,
                "patient_id": patient_id,
                "starts_at": _iso(appt.start),
                "visit_type": visit_type[:100],
                "provider_name": provider,
                "status": status,
                "join_url": _join_url(appt),
            },
        )
        return None

    # --- billing -------------------------------------------------------------------------------

    _INVOICE = {"issued": "pending", "balanced": "succeeded", "cancelled": "refunded",
                "entered-in-error": "refunded"}  # fmt: skip

    def _Invoice(self, invoice: Any, local_id: str, n: Notification) -> str | None:
        status = self._INVOICE.get(invoice.status)
        if status is None:
            return f"Invoice status {invoice.status!r} is not owed yet"
        reference = invoice.subject or invoice.recipient
        patient_id = self._patient_id(reference)
        if patient_id is None:
            return self._no_patient(reference, "Invoice.subject")
        total = invoice.totalGross or invoice.totalNet
        cents = _cents(total)
        if cents is None:
            return "Invoice has no totalGross or totalNet"
        description = (
            _concept_text(invoice.type)
            or next(
                (t for item in invoice.lineItem or []
                 if (t := _concept_text(item.chargeItemCodeableConcept))),
                None,
            )
            or "Invoice"
        )  # fmt: skip
        current = self.lookup.item("payment", local_id) or {}
        n.add(
            "payment",
            {
                **current,
                "payment_id": local_id,
                "patient_id": patient_id,
                "amount_cents": cents,
                "currency": total.currency or current.get("currency") or "USD",
                "status": status,
                "description": description[:300],
                "failure_reason": None,
                "next_retry_at": None,
            },
        )
        return None

    def _PaymentReconciliation(self, rec: Any, local_id: str, n: Notification) -> str | None:
        if rec.status in ("cancelled", "entered-in-error", "draft"):
            return f"PaymentReconciliation status {rec.status!r} settles nothing"
        status = {"complete": "succeeded", "error": "failed"}.get(rec.outcome, "pending")
        settled = [
            (invoice_id, detail)
            for detail in rec.detail or []
            if (invoice_id := _ref_id(detail.request, "Invoice"))
        ]
        if not settled:
            return "PaymentReconciliation names no Invoice (detail.request) we could settle"
        unknown = []
        for invoice_id, detail in settled:
            current = self.lookup.item("payment", invoice_id)
            if current is None:
                unknown.append(f"Invoice/{invoice_id}")
                continue
            cents = _cents(detail.amount)
            n.add(
                f"payment:{invoice_id}",
                {
                    **current,
                    "amount_cents": cents if cents is not None else current["amount_cents"],
                    "status": status,
                    "failure_reason": rec.disposition if status == "failed" else None,
                    "next_retry_at": None,
                },
            )
        if not n.events:
            return f"PaymentReconciliation settles {', '.join(unknown)}, not known here yet"
        return None


def _as_datetime(value: Any) -> datetime:
    """A FHIR date or dateTime as an aware datetime (a bare date: its start, UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    # a partial date ("2026", "2026-05", which FHIR allows): its first day
    year, _, month = str(value).partition("-")
    return datetime(int(year), int(month or 1), 1, tzinfo=UTC)


def _join_url(appt: Any) -> str | None:
    for extension in appt.extension or []:
        if extension.url not in JOIN_URL_EXTENSIONS and "virtual" not in extension.url.lower():
            continue
        values = [extension.valueUrl, extension.valueUri, extension.valueString]
        values += [
            v
            for inner in extension.extension or []
            for v in (inner.valueUrl, inner.valueUri, inner.valueString)
        ]
        for value in values:
            if isinstance(value, str) and value.startswith(("https://", "http://")):
                return value
    return None


def map_body(body: Any, config: IntegrationSettings, lookup: Lookup) -> list[Notification]:
    """A request body (a resource or a Bundle) -> notifications, or MalformedFhir."""
    parsed, timestamp = parse(body)
    return FhirMapper(config, lookup).map(parsed, timestamp)
