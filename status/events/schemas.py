"""The event contract (DESIGN.md, "Events"): pydantic models, validation errors, JSON Schema."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from status.appointments import AppointmentStatus
from status.patients import InvalidPhone, normalize_phone
from status.payments import PaymentStatus
from status.prescriptions import PrescriptionStatus
from status.refills import RefillStatus
from status.shipments import ShipmentStatus
from status.subscriptions import SubscriptionStatus
from status.tasks import TaskStatus

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string, e.g. 2026-11-20T14:02:00-05:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an RFC 3339 timestamp (e.g. 2026-11-20T14:02:00-05:00)"
        ) from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; add one, e.g. Z or -05:00")
    return parsed


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/New_York)") from exc
    return value


def _phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhone as exc:
        raise ValueError(str(exc)) from exc


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError("must be a 3-letter ISO 4217 code, e.g. USD")
    return value.upper()


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
SourceId = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(min_length=1, max_length=300)]
Url = Annotated[str, Field(pattern=r"^https?://\S+$", max_length=500)]
Cents = Annotated[StrictInt, Field(ge=0)]
Currency = Annotated[str, AfterValidator(_currency)]


class _Data(BaseModel):
    # Unknown fields are ignored so a source system can send more than we use.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PatientData(_Data):
    patient_id: SourceId
    first_name: Text
    last_name: Text
    date_of_birth: IsoDate
    phone: Annotated[str, AfterValidator(_phone)]
    email: str | None = None
    language: Literal["en", "es"]
    timezone: Annotated[str, AfterValidator(_timezone)]
    sms_consent: StrictBool


class Pharmacy(_Data):
    name: Text
    phone: str | None = None


class PrescriptionData(_Data):
    prescription_id: SourceId
    patient_id: SourceId
    medication: Text
    status: PrescriptionStatus
    pharmacy: Pharmacy | None = None
    blocked_reason: str | None = None
    refills_remaining: Annotated[StrictInt, Field(ge=0)] | None = None
    next_refill_date: IsoDate | None = None


class ShipmentData(_Data):
    shipment_id: SourceId
    patient_id: SourceId
    prescription_id: SourceId | None = None
    carrier: Text
    tracking_number: Text
    tracking_url: Url | None = None
    status: ShipmentStatus
    estimated_delivery: IsoDate | None = None


class RefillData(_Data):
    refill_id: SourceId
    patient_id: SourceId
    prescription_id: SourceId
    status: RefillStatus
    due_date: IsoDate | None = None


class PaymentData(_Data):
    payment_id: SourceId
    patient_id: SourceId
    amount_cents: Cents
    currency: Currency
    status: PaymentStatus
    description: Text
    failure_reason: str | None = None
    next_retry_at: Timestamp | None = None


class SubscriptionData(_Data):
    subscription_id: SourceId
    patient_id: SourceId
    plan: Text
    amount_cents: Cents
    currency: Currency
    status: SubscriptionStatus
    renews_at: Timestamp | None = None
    auto_renew: StrictBool


class AppointmentData(_Data):
    appointment_id: SourceId
    patient_id: SourceId
    starts_at: Timestamp
    visit_type: Text
    provider_name: str | None = None
    status: AppointmentStatus
    join_url: Url | None = None


class TaskData(_Data):
    task_id: SourceId
    patient_id: SourceId
    kind: Annotated[str, Field(min_length=1, max_length=64)]
    title: Text
    status: TaskStatus
    url: Url | None = None
    due_at: Timestamp | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=200)]
    occurred_at: Timestamp


class PatientUpdated(_Envelope):
    type: Literal["patient.updated"]
    data: PatientData


class PrescriptionUpdated(_Envelope):
    type: Literal["prescription.updated"]
    data: PrescriptionData


class ShipmentUpdated(_Envelope):
    type: Literal["shipment.updated"]
    data: ShipmentData


class RefillUpdated(_Envelope):
    type: Literal["refill.updated"]
    data: RefillData


class PaymentUpdated(_Envelope):
    type: Literal["payment.updated"]
    data: PaymentData


class SubscriptionUpdated(_Envelope):
    type: Literal["subscription.updated"]
    data: SubscriptionData


class AppointmentUpdated(_Envelope):
    type: Literal["appointment.updated"]
    data: AppointmentData


class TaskUpdated(_Envelope):
    type: Literal["task.updated"]
    data: TaskData


EVENT_MODELS: dict[str, type[_Envelope]] = {
    "patient.updated": PatientUpdated,
    "prescription.updated": PrescriptionUpdated,
    "shipment.updated": ShipmentUpdated,
    "refill.updated": RefillUpdated,
    "payment.updated": PaymentUpdated,
    "subscription.updated": SubscriptionUpdated,
    "appointment.updated": AppointmentUpdated,
    "task.updated": TaskUpdated,
}

Event = Annotated[
    PatientUpdated
    | PrescriptionUpdated
    | ShipmentUpdated
    | RefillUpdated
    | PaymentUpdated
    | SubscriptionUpdated
    | AppointmentUpdated
    | TaskUpdated,
    Field(discriminator="type"),
]
_event_adapter: TypeAdapter = TypeAdapter(Event)
MAX_BATCH = 5000


class EventProblem(BaseModel):
    index: int
    id: str | None = None
    field: str
    message: str


class InvalidEvents(ValueError):
    """A body or batch refused whole; `problems` names each bad event by index and field."""

    def __init__(self, problems: list[EventProblem], summary: str | None = None) -> None:
        self.problems = problems
        self.summary = summary or f"{len(problems)} problem(s) in the events; nothing was applied"
        super().__init__(self.summary)

    def as_body(self) -> dict:
        return {
            "detail": self.summary,
            "errors": [problem.model_dump(exclude_none=True) for problem in self.problems],
        }


def _problems(index: int, raw: Any, error: ValidationError) -> list[EventProblem]:
    event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    problems = []
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        # The discriminated union puts the event type first: drop it, it is not a field.
        if loc and loc[0] in EVENT_MODELS:
            loc = loc[1:]
        field = ".".join(loc) or "(event)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid":
            field = "type"
            message = f"unknown event type; expected one of: {', '.join(EVENT_MODELS)}"
        elif item["type"] == "union_tag_not_found":
            field = "type"
            message = "missing; every event needs a type"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "extra_forbidden":
            message = "unexpected field at the top level; put source fields inside data"
        problems.append(EventProblem(index=index, id=event_id, field=field, message=message))
    return problems


def parse_body(body: Any) -> list[_Envelope]:
    """A request body (one event, or `{"events": [...]}`) -> validated events, or InvalidEvents.

    The batch is validated whole: if any event is bad, none is returned.
    """
    if isinstance(body, dict) and "events" in body and "type" not in body:
        raw_events = body["events"]
        if not isinstance(raw_events, list):
            problem = EventProblem(index=0, field="events", message="must be a list of events")
            raise InvalidEvents([problem], "events must be a list")
    elif isinstance(body, dict):
        raw_events = [body]
    else:
        problem = EventProblem(
            index=0, field="(body)", message='expected an event object or {"events": [...]}'
        )
        raise InvalidEvents([problem], "the body must be a JSON object")
    if not raw_events:
        problem = EventProblem(index=0, field="events", message="the batch is empty")
        raise InvalidEvents([problem], "no events given")
    if len(raw_events) > MAX_BATCH:
        message = f"at most {MAX_BATCH} events per batch; split it"
        raise InvalidEvents([EventProblem(index=0, field="events", message=message)], message)
    return parse_events(raw_events)


def parse_events(raw_events: list[Any]) -> list[_Envelope]:
    events: list[_Envelope] = []
    problems: list[EventProblem] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            problems.append(EventProblem(index=index, field="(event)", message="must be an object"))
            continue
        try:
            events.append(_event_adapter.validate_python(raw))
        except ValidationError as error:
            problems.extend(_problems(index, raw, error))
    if problems:
        raise InvalidEvents(problems)
    return events


def json_schema() -> dict:
    schema = _event_adapter.json_schema(ref_template="#/$defs/{model}")
    schema["title"] = "Patient Status Assistant event"
    schema["description"] = (
        'POST /events takes one of these objects, or {"events": [...]} with up to '
        f"{MAX_BATCH}. `id` makes delivery idempotent; `occurred_at` orders events per entity."
    )
    return schema
