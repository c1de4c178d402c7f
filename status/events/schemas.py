"""The event contract (DESIGN.md, "Events"): pydantic models, validation errors, JSON Schema."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeAlias

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
    field_validator,
)

from status import clock, limits
from status.appointments import AppointmentStatus
from status.patients import InvalidPhone, normalize_phone
from status.payments import PaymentStatus
from status.prescriptions import PrescriptionStatus
from status.refills import RefillStatus
from status.shipments import ShipmentStatus
from status.subscriptions import SubscriptionStatus
from status.tasks import TaskStatus

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


_YEARS = f"years {limits.MIN_YEAR} to {limits.MAX_YEAR}"
# How far ahead of our clock an event may say it happened: a source's clock skew and examples
# dated a few days out pass; a year typed wrong ("2062", "2199") does not.
FUTURE_SLACK = timedelta(days=30)
# Error messages name the rule, never the value: it may be a patient's phone or birth date.


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    else:
        try:
            parsed = date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("must be a real calendar date written YYYY-MM-DD") from exc
    if not limits.MIN_YEAR <= parsed.year <= limits.MAX_YEAR:
        raise ValueError(f"must be a date in the {_YEARS}")
    return parsed


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        parsed = value
    elif not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an RFC 3339 timestamp string, e.g. 2026-11-20T14:02:00-05:00")
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(
                "is not an RFC 3339 timestamp (e.g. 2026-11-20T14:02:00-05:00)"
            ) from exc
    if parsed.tzinfo is None:
        raise ValueError("has no UTC offset; add one, e.g. Z or -05:00")
    if not limits.in_year_range(parsed):
        raise ValueError(f"must be a timestamp in the {_YEARS}")
    return parsed


def _timezone(value: str) -> str:
    if not limits.is_timezone(value):
        raise ValueError(
            f"must be an IANA time zone of at most {limits.TIMEZONE} characters, "
            "e.g. America/New_York"
        )
    return value


def _phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhone as exc:
        raise ValueError("is not a valid phone number, e.g. +15550101234") from exc


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError("must be a 3-letter ISO 4217 code, e.g. USD")
    return value.upper()


def _text(limit: int) -> Any:
    """A required string that fits its column: `Annotated[str, _text(limit)]`."""
    return Field(min_length=1, max_length=limit)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank (only spaces)")
    return value


def _optional(limit: int) -> Any:
    return Field(max_length=limit)


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
SourceId = Annotated[str, _text(limits.SOURCE_ID)]


def _addressable(value: str) -> str:
    if "/" in value:
        raise ValueError(
            "must not contain '/': a patient id is a segment of the API's paths "
            "(/api/patients/{patient_id}/status)"
        )
    return value


PatientId = Annotated[str, _text(limits.SOURCE_ID), AfterValidator(_addressable)]
Url = Annotated[str, Field(pattern=r"^https?://\S+$", max_length=limits.URL)]
Cents = Annotated[StrictInt, Field(ge=0, le=limits.MAX_CENTS)]
Currency = Annotated[str, AfterValidator(_currency)]
Phone = Annotated[str, Field(max_length=limits.PHONE), AfterValidator(_phone)]
TimeZone = Annotated[str, Field(max_length=limits.TIMEZONE), AfterValidator(_timezone)]


def _refuse_unstorable(value: Any) -> Any:
    if isinstance(value, str) and limits.unstorable(value):
        raise ValueError("must not contain NUL (\\u0000) or unpaired surrogate characters")
    return value


class _Data(BaseModel):
    # Unknown fields are ignored so a source system can send more than we use.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    _storable = field_validator("*", mode="before")(_refuse_unstorable)


class PatientData(_Data):
    patient_id: PatientId
    first_name: Annotated[str, _text(limits.NAME)]
    last_name: Annotated[str, _text(limits.NAME)]
    date_of_birth: IsoDate
    phone: Phone
    email: Annotated[str, _optional(limits.EMAIL)] | None = None
    language: Literal["en", "es"]
    timezone: TimeZone
    sms_consent: StrictBool

    @field_validator("date_of_birth")
    @classmethod
    def _born(cls, value: date) -> date:
        # a day of slack for the time zones; verification would ask a patient for this date
        if value > clock.now().date() + timedelta(days=1):
            raise ValueError("must not be in the future")
        return value


class Pharmacy(_Data):
    name: Annotated[str, _text(limits.PHARMACY_NAME)]
    phone: Annotated[str, _optional(limits.PHONE)] | None = None


class PrescriptionData(_Data):
    prescription_id: SourceId
    patient_id: PatientId
    medication: Annotated[str, _text(limits.MEDICATION)]
    status: PrescriptionStatus
    pharmacy: Pharmacy | None = None
    blocked_reason: Annotated[str, _optional(limits.REASON)] | None = None
    refills_remaining: Annotated[StrictInt, Field(ge=0, le=limits.MAX_REFILLS)] | None = None
    next_refill_date: IsoDate | None = None


class ShipmentData(_Data):
    shipment_id: SourceId
    patient_id: PatientId
    prescription_id: SourceId | None = None
    carrier: Annotated[str, _text(limits.CARRIER)]
    tracking_number: Annotated[str, _text(limits.TRACKING_NUMBER)]
    tracking_url: Url | None = None
    status: ShipmentStatus
    estimated_delivery: IsoDate | None = None


class RefillData(_Data):
    refill_id: SourceId
    patient_id: PatientId
    prescription_id: SourceId
    status: RefillStatus
    due_date: IsoDate | None = None


class PaymentData(_Data):
    payment_id: SourceId
    patient_id: PatientId
    amount_cents: Cents
    currency: Currency
    status: PaymentStatus
    description: Annotated[str, _text(limits.DESCRIPTION)]
    failure_reason: Annotated[str, _optional(limits.REASON)] | None = None
    next_retry_at: Timestamp | None = None
    payment_url: Url | None = None


class SubscriptionData(_Data):
    subscription_id: SourceId
    patient_id: PatientId
    plan: Annotated[str, _text(limits.PLAN)]
    amount_cents: Cents
    currency: Currency
    status: SubscriptionStatus
    renews_at: Timestamp | None = None
    auto_renew: StrictBool


class AppointmentData(_Data):
    appointment_id: SourceId
    patient_id: PatientId
    starts_at: Timestamp
    visit_type: Annotated[str, _text(limits.VISIT_TYPE)]
    provider_name: Annotated[str, _optional(limits.PROVIDER_NAME)] | None = None
    status: AppointmentStatus
    join_url: Url | None = None


class TaskData(_Data):
    task_id: SourceId
    patient_id: PatientId
    kind: Annotated[str, _text(limits.TASK_KIND)]
    title: Annotated[str, _text(limits.TASK_TITLE)]
    status: TaskStatus
    url: Url | None = None
    due_at: Timestamp | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, _text(limits.EVENT_ID), AfterValidator(_not_blank)]
    occurred_at: Timestamp

    _storable = field_validator("id", "occurred_at", mode="before")(_refuse_unstorable)

    @field_validator("occurred_at")
    @classmethod
    def _not_ahead(cls, value: datetime) -> datetime:
        # `occurred_at` orders an entity's events: one stamped years ahead (a typo, a broken
        # clock) would make every real update after it stale.
        if value > clock.now() + FUTURE_SLACK:
            raise ValueError(
                f"is more than {FUTURE_SLACK.days} days ahead of this server's clock; "
                "send when the change happened"
            )
        return value


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

# Every event but `patient.updated`: one about an item, which may wait for its patient.
ItemEvent: TypeAlias = (
    PrescriptionUpdated
    | ShipmentUpdated
    | RefillUpdated
    | PaymentUpdated
    | SubscriptionUpdated
    | AppointmentUpdated
    | TaskUpdated
)
Event = Annotated[PatientUpdated | ItemEvent, Field(discriminator="type")]
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
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

    def as_body(self) -> dict[str, Any]:
        return {
            "detail": self.summary,
            "errors": [problem.model_dump(exclude_none=True) for problem in self.problems],
        }


def _problems(index: int, raw: Any, error: ValidationError) -> list[EventProblem]:
    event_id = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(event_id, str) or len(event_id) > limits.EVENT_ID:
        event_id = None  # echoed only when it is a usable id
    elif limits.unstorable(event_id):
        event_id = limits.scrub(event_id)
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


def parse_body(body: Any) -> list[Event]:
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


def parse_events(raw_events: list[Any]) -> list[Event]:
    events: list[Event] = []
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


def json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    schema = _event_adapter.json_schema(ref_template=ref_template)
    schema["title"] = "Patient Status Assistant event"
    schema["description"] = (
        'POST /events takes one of these objects, or {"events": [...]} with up to '
        f"{MAX_BATCH}. `id` makes delivery idempotent; `occurred_at` orders events per entity."
    )
    return schema
