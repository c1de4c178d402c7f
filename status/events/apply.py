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

from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from status import clinics, metrics, read_model, timeline
from status.appointments import Appointment
from status.clinics import DEFAULT_ID
from status.db import Base, Database, utcnow
from status.events import store
from status.events.schemas import _Envelope, _event_adapter
from status.patients import Patient
from status.payments import Payment, PaymentStatus
from status.prescriptions import Prescription
from status.refills import Refill
from status.shipments import Shipment
from status.subscriptions import Subscription
from status.tasks import Task

_CHUNK = 500  # ids per IN query
_RETURNING_UP_TO = 50  # `events` rows inserted with RETURNING at once on PostgreSQL
ATTEMPTS = 5  # transactions tried when concurrent deliveries of the same events collide


class ConcurrentDelivery(Exception):
    """Another transaction stored some of this batch's event ids first: start again."""


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
              "next_retry_at", "payment_url"),
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
    clinic_id: int
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
    """Applies a batch with a handful of statements, however many events it holds.

    Everything the batch reads is loaded first, with one `IN` query per table and 500 ids (event
    ids, patients, items of each kind, the pending events of patients arriving now); the events
    are applied in memory in time order; then the rows are written, one statement per table:
    new patients (INSERT ... RETURNING, for their ids), changed rows (one flush), new items,
    timeline entries, the `events` rows (INSERT ... ON CONFLICT DO NOTHING), and the read-model
    rows of the patients the batch changed (`read_model.refresh`).
    """

    def __init__(
        self, session: Session, now: datetime | None = None, *, clinic_id: int = DEFAULT_ID
    ) -> None:
        self.session = session
        self.clinic_id = clinic_id  # every id in the batch is this clinic's
        self.now = now or utcnow()
        self.result = ApplyResult()
        self._reset()

    def _reset(self) -> None:
        self._patients: dict[str, Patient] = {}  # source_id -> patient, new ones included
        self._items: dict[type[Base], dict[str, Any]] = {}  # model -> source_id -> item
        # patient source_id -> events waiting for that patient: (sort key, event, their row)
        self._pending: dict[str, list[tuple[tuple, _Envelope, Any]]] = {}
        self._new_patients: list[Patient] = []  # in creation order, not in the session
        self._new_items: list[Any] = []  # in creation order, not in the session
        self._owners: dict[Any, Patient] = {}  # item -> its patient after this batch
        self._timeline: list[tuple[Patient, dict[str, Any]]] = []
        self._changes: list[tuple[Patient, dict[str, Any]]] = []
        self._records: list[dict[str, Any]] = []  # the `events` rows, in the order recorded
        self._counts_pending: set[str] = set()  # event ids counted pending once their row is in

    def apply(self, events: Iterable[_Envelope]) -> ApplyResult:
        result = self._apply(list(events))
        slug = clinics.slug_of(self.session, self.clinic_id)
        for outcome, count in result.counts().items():
            if count:
                metrics.EVENTS.labels(outcome, slug).inc(count)
        return result

    def _apply(self, events: list[_Envelope]) -> ApplyResult:
        self._reset()
        seen = store.known_ids(self.session, self.clinic_id, [event.id for event in events])
        fresh = []
        # Within one batch, apply in time order so every transition is kept, not marked stale.
        for event in sorted(events, key=lambda e: e.occurred_at):
            if event.id in seen:
                self.result.duplicates += 1
                continue
            seen.add(event.id)
            fresh.append(event)
        if not fresh:
            return self.result
        self._load(fresh)
        for event in fresh:
            self._apply_one(event)
        self._write()
        return self.result

    def _load(self, events: list[_Envelope]) -> None:
        """Everything the batch reads, with one query per table and 500 ids."""
        session = self.session
        clinic_id = self.clinic_id
        self._patients = _by_source_id(
            session, clinic_id, Patient, {e.data.patient_id for e in events}
        )
        arriving = {e.data.patient_id for e in events if e.type == "patient.updated"}
        arriving -= self._patients.keys()
        waiting = []
        for stored in store.pending_for_many(session, clinic_id, sorted(arriving)):
            event = _event_adapter.validate_python(stored.payload)
            key = (stored.occurred_at, 0, stored.id)  # pending_for's order: occurred_at, id
            self._pending.setdefault(stored.patient_source_id, []).append((key, event, stored))
            waiting.append(event)
        wanted: dict[type[Base], set[str]] = {}
        for event in [*events, *waiting]:
            if event.type != "patient.updated":
                spec = SPECS[event.type]
                wanted.setdefault(spec.model, set()).add(getattr(event.data, spec.id_field))
        self._items = {
            model: _by_source_id(session, clinic_id, model, ids) for model, ids in wanted.items()
        }

    def _write(self) -> None:
        """The batch's rows: patients first, as items and timeline entries need their ids.

        New rows go in with one executemany per table (the ORM would insert them one row per
        statement on SQLite); changed rows already in the session are flushed.
        """
        session = self.session
        if self._new_patients:
            # Ids in creation order, as before: PostgreSQL is told to keep it (SQLite does).
            in_order = session.get_bind().dialect.name == "postgresql"
            statement = insert(Patient).returning(
                Patient.id, Patient.source_id, sort_by_parameter_order=in_order
            )
            rows = _rows(self._new_patients)
            written = session.execute(statement, rows, execution_options=_RENDER_NULLS)
            ids = {source_id: key for key, source_id in written}
            for patient in self._new_patients:
                patient.id = ids[patient.source_id]
        touched = {patient.id for patient, _values in self._changes}
        for item, patient in self._owners.items():
            if item.patient_id != patient.id:
                if item.patient_id is not None:  # the item moved: its old patient loses it
                    touched.add(item.patient_id)
                item.patient_id = patient.id
        _same_columns([*self._patients.values(), *self._owners])
        session.flush()
        new_items: dict[type[Base], list[Any]] = {}
        for item in self._new_items:
            new_items.setdefault(type(item), []).append(item)
        for model, items in new_items.items():
            session.execute(insert(model), _rows(items), execution_options=_RENDER_NULLS)
        if self._timeline:
            rows = [{"patient_id": patient.id, **row} for patient, row in self._timeline]
            session.execute(insert(timeline.TimelineEntry), rows)
        written = _insert_new(session, store.StoredEvent.__table__, "event_id", self._records)
        if len(written) < len(self._records):
            # A concurrent delivery of the same id committed first, after our `known_ids`: this
            # transaction already applied the event too, so it must not commit.
            raise ConcurrentDelivery()
        self.result.pending += sum(
            1 for r in self._records if r["event_id"] in self._counts_pending
        )
        self.result.changes.extend(
            Change(patient_id=patient.id, clinic_id=patient.clinic_id, **values)
            for patient, values in self._changes
        )
        # The read model, once per patient the batch changed, in the batch's transaction.
        read_model.refresh(session, touched, self.now)

    def _record(
        self, event: _Envelope, patient_source_id: str, entity_id: str, outcome: str
    ) -> dict[str, Any]:
        record = {
            "clinic_id": self.clinic_id,
            "event_id": event.id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "received_at": self.now,
            "patient_source_id": patient_source_id,
            "entity_source_id": entity_id,
            "payload": event.model_dump(mode="json"),
            "outcome": outcome,
            "applied_at": self.now if outcome != store.Outcome.PENDING else None,
        }
        self._records.append(record)
        return record

    def _timeline_entry(
        self, patient: Patient, kind: timeline.EntryKind, event: _Envelope, **values: Any
    ) -> None:
        values["changes"] = values.get("changes") or {}
        self._timeline.append(
            (
                patient,
                {"kind": kind, "occurred_at": event.occurred_at, "event_id": event.id, **values},
            )
        )

    def _apply_one(self, event: _Envelope) -> None:
        data = event.data
        if event.type == "patient.updated":
            self._apply_patient(event)
            return
        spec = SPECS[event.type]
        entity_id = getattr(data, spec.id_field)
        patient = self._patients.get(data.patient_id)
        if patient is None:
            record = self._record(event, data.patient_id, entity_id, store.Outcome.PENDING)
            self._counts_pending.add(event.id)
            key = (event.occurred_at, 1, len(self._records))  # after the rows already stored
            self._pending.setdefault(data.patient_id, []).append((key, event, record))
            return
        outcome = self._apply_item(spec, event, patient)
        self._record(event, data.patient_id, entity_id, outcome)

    def _apply_item(self, spec: ItemSpec, event: _Envelope, patient: Patient) -> str:
        data = event.data
        source_id = getattr(data, spec.id_field)
        items = self._items.setdefault(spec.model, {})
        item = items.get(source_id)
        if item is not None and event.occurred_at < item.last_event_at:
            self.result.stale += 1
            self._timeline_entry(
                patient,
                timeline.EntryKind.STALE_EVENT,
                event,
                summary=f"{spec.entity} {source_id}: older event ignored "
                f"(status {_jsonable(data.status)}, current {_jsonable(item.status)})",
                entity_type=spec.entity,
                entity_source_id=source_id,
            )
            return store.Outcome.STALE
        columns = spec.columns(data)
        changed = _diff(item, columns)
        old_status = None if item is None else item.status
        old_renewal = getattr(item, "renews_at", None)
        if item is None:
            item = _new_item(
                spec.model,
                clinic_id=self.clinic_id,
                source_id=source_id,
                status_since=event.occurred_at,
            )
            items[source_id] = item
            self._new_items.append(item)
        elif item.status != columns["status"]:
            item.status_since = event.occurred_at
        self._owners[item] = patient  # its patient_id is set once new patients have ids
        for name, value in columns.items():
            setattr(item, name, value)
        item.last_event_at = event.occurred_at
        if isinstance(item, Payment) and item.status == PaymentStatus.FAILED:
            item.ever_failed = True
        renewed = old_renewal and item.renews_at and item.renews_at > old_renewal
        if isinstance(item, Subscription) and renewed:  # the renewal date moved on
            item.renewals_seen += 1
        self.result.applied += 1
        self._timeline_entry(
            patient,
            timeline.EntryKind.STATE_CHANGE,
            event,
            summary=_summary(spec.entity, source_id, changed, old_status is None),
            entity_type=spec.entity,
            entity_source_id=source_id,
            changes=changed,
        )
        self._changes.append(
            (
                patient,
                {
                    "entity": spec.entity,
                    "source_id": source_id,
                    "old_status": _jsonable(old_status),
                    "new_status": _jsonable(item.status),
                    "changed": changed,
                    "occurred_at": event.occurred_at,
                    "event_id": event.id,
                },
            )
        )
        return store.Outcome.APPLIED

    def _apply_patient(self, event: _Envelope) -> None:
        data = event.data
        patient = self._patients.get(data.patient_id)
        if patient is not None and event.occurred_at < patient.last_event_at:
            self.result.stale += 1
            self._timeline_entry(
                patient,
                timeline.EntryKind.STALE_EVENT,
                event,
                summary="patient details: older event ignored",
                entity_type="patient",
                entity_source_id=data.patient_id,
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
            patient = Patient(
                clinic_id=self.clinic_id,
                source_id=data.patient_id,
                last_event_at=event.occurred_at,
                **columns,
            )
            self._patients[data.patient_id] = patient
            self._new_patients.append(patient)
        else:
            for name, value in columns.items():
                setattr(patient, name, value)
            patient.last_event_at = event.occurred_at
        self.result.applied += 1
        # The timeline says which fields changed, never their values: they are identifying.
        self._timeline_entry(
            patient,
            timeline.EntryKind.STATE_CHANGE,
            event,
            summary="patient added"
            if is_new
            else f"patient details updated: {', '.join(sorted(changed)) or 'no change'}",
            entity_type="patient",
            entity_source_id=data.patient_id,
            changes={name: ["…", "…"] for name in changed},
        )
        self._changes.append(
            (
                patient,
                {
                    "entity": "patient",
                    "source_id": data.patient_id,
                    "old_status": None if is_new else "known",
                    "new_status": "known",
                    "changed": {name: [] for name in changed},
                    "occurred_at": event.occurred_at,
                    "event_id": event.id,
                },
            )
        )
        self._record(event, data.patient_id, data.patient_id, store.Outcome.APPLIED)
        if is_new:
            self._apply_pending(patient)

    def _apply_pending(self, patient: Patient) -> None:
        """Events that arrived before their patient take effect now, in time order."""
        waiting = self._pending.pop(patient.source_id, [])
        for _key, event, row in sorted(waiting, key=lambda w: w[0]):
            outcome = self._apply_item(SPECS[event.type], event, patient)
            if isinstance(row, dict):  # recorded earlier in this batch, not written yet
                row["outcome"] = outcome
                row["applied_at"] = self.now
            else:
                row.outcome = outcome
                row.applied_at = self.now


def _by_source_id(
    session: Session, clinic_id: int, model: Any, source_ids: set[str]
) -> dict[str, Any]:
    """source_id -> the clinic's row of `model`, with one `IN` query per 500 ids."""
    ids = sorted(source_ids)
    found: dict[str, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        query = select(model).where(
            model.clinic_id == clinic_id, model.source_id.in_(ids[start : start + _CHUNK])
        )
        found.update((row.source_id, row) for row in session.scalars(query))
    return found


# A None is sent as NULL rather than left out, which would split an executemany wherever the
# rows' None columns differ. (No column is given None here where it has a default.)
_RENDER_NULLS = {"render_nulls": True}


def _rows(objects: list[Any]) -> list[dict[str, Any]]:
    """The attributes set on new (transient) ORM objects, as rows for an INSERT."""
    return [
        {key: value for key, value in vars(obj).items() if key != "_sa_instance_state"}
        for obj in objects
    ]


def _same_columns(objects: list[Any]) -> None:
    """Have the flush set the same columns in every changed row of a table.

    The flush groups consecutive rows by the columns they change, so rows changing different
    columns (a new status or not) meant many small UPDATEs. Marking the columns any row of the
    table changed as modified in all of them makes one executemany per table; the extra
    columns are written with the values they already have.
    """
    changed: dict[Any, list[str]] = {}
    columns: dict[type, set[str]] = {}
    for obj in objects:
        state = inspect(obj)
        if not state.persistent or not state.committed_state:
            continue
        keys = [key for key in state.committed_state if state.attrs[key].history.has_changes()]
        if keys:  # rows that change nothing are not written at all, as before
            changed[obj] = keys
            columns.setdefault(type(obj), set()).update(keys)
    for obj in changed:
        for key in columns[type(obj)]:
            flag_modified(obj, key)


def _new_item(model: type[Base], **values: Any) -> Any:
    """A new row with its scalar column defaults set now (`renewals_seen` 0, `ever_failed`
    False), as a flush would have set them, since a later event in the batch may read them."""
    for column in model.__table__.columns:
        default = column.default
        if default is not None and default.is_scalar and column.key not in values:
            values[column.key] = default.arg
    return model(**values)


def _insert_new(session: Session, table: Any, key: str, rows: list[dict[str, Any]]) -> set[Any]:
    """INSERT ... ON CONFLICT DO NOTHING of many rows; the `key` values of the rows written.

    RETURNING names the rows written (rowcount is -1 on psycopg unless preserved, and cannot
    say which rows anyway). On PostgreSQL a large batch first tries a plain executemany in a
    savepoint, as psycopg parses every placeholder of the multi-row RETURNING statement in
    Python (about 95 ms per 500 events, against 35 ms): when every row went in, the usual case
    as `known_ids` left out the ids already stored, that is the answer; otherwise a concurrent
    delivery wrote some of the ids meanwhile, and the rows go in again with RETURNING.
    """
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert

        large = len(rows) > _RETURNING_UP_TO
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert

        large = False
    statement = dialect_insert(table).on_conflict_do_nothing()
    if large:
        savepoint = session.begin_nested()
        result = session.execute(statement, rows, execution_options={"preserve_rowcount": True})
        if result.rowcount == len(rows):
            savepoint.commit()
            return {row[key] for row in rows}
        savepoint.rollback()
    return set(session.execute(statement.returning(table.c[key]), rows).scalars())


def apply_events(
    session: Session,
    events: Iterable[_Envelope],
    now: datetime | None = None,
    *,
    clinic_id: int = DEFAULT_ID,
) -> ApplyResult:
    """Apply a batch for one clinic (the API key's; `default` for `ingest` and the demo)."""
    return EventApplier(session, now, clinic_id=clinic_id).apply(events)


def apply_in_transaction(
    db: Database,
    events: list[_Envelope],
    on_changes: Iterable[Callable[[Session, list[Change]], None]] = (),
    now: datetime | None = None,
    *,
    clinic_id: int = DEFAULT_ID,
) -> ApplyResult:
    """Apply a batch in its own transaction, with the hooks that react to its changes.

    Deliveries of the same event ids racing each other collide on a unique key (the event id,
    a new patient or item): the loser's transaction is rolled back and run again, when it finds
    the winner's rows and counts the events as duplicates. Nothing is applied twice.
    """
    hooks = list(on_changes)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.session() as session:
                result = apply_events(session, events, now, clinic_id=clinic_id)
                for hook in hooks:
                    hook(session, result.changes)
            return result
        except (ConcurrentDelivery, IntegrityError):
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")
