"""The snapshot's read model: one `patient_snapshots` row per patient.

The row holds what the snapshot reads from the item tables and what does not depend on the clock:
each kind of item, every column, in the snapshot's order. It is written by `refresh` in the
transaction that changes those tables (the event applier, once per touched patient per batch;
`refills.request_by_patient` when the bot records a refill request), and read as one row by
`snapshot.build` and `GET /api/patients/{id}/status`. What depends on the clock (time in status,
which finished items are still recent, which visits are still ahead, the next step, alerts) is
derived on read from the stored timestamps, by `snapshot.assemble`, the same code a fresh build
runs.

A new writer of an item table must call `refresh` for the patients it touched in its own
transaction; `snapshot.drift` (and the property tests) say whether the row still agrees with a
fresh build from the tables, and `patient-status snapshot rebuild` rewrites rows from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    ColumnExpressionArgument,
    Date,
    Enum,
    ForeignKey,
    Integer,
    Row,
    Select,
    Text,
    bindparam,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, class_mapper, mapped_column

from status import (
    appointments,
    clinics,
    limits,
    payments,
    prescriptions,
    refills,
    shipments,
    subscriptions,
    tasks,
)
from status.appointments import Appointment
from status.db import AsyncRawCursor, Base, Prepared, RawCursor, UTCDateTime
from status.patients import Patient
from status.payments import Payment
from status.prescriptions import Prescription
from status.refills import Refill
from status.shipments import Shipment
from status.subscriptions import Subscription
from status.tasks import Task

LAYOUT = 2  # bump when the stored JSON changes shape; rows of another layout are rebuilt
_CHUNK = 500  # patients per IN query


class PatientSnapshot(Base):
    __tablename__ = "patient_snapshots"

    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True
    )
    # JSON text (not a JSON column): written and read whole, parsed once, by this module only.
    state: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)  # 1, then +1 per refresh
    updated_at: Mapped[datetime]


@dataclass(frozen=True)
class Kind:
    """One kind of item the snapshot shows: its table, which rows, in which order."""

    name: str  # the key in the stored JSON and the attribute of `State`
    model: type[Base]
    order: tuple[ColumnExpressionArgument[Any], ...]
    where: tuple[ColumnExpressionArgument[bool], ...] = ()


KINDS = (
    Kind("prescriptions", Prescription, prescriptions.SNAPSHOT_ORDER),
    Kind("shipments", Shipment, shipments.SNAPSHOT_ORDER),
    Kind("refills", Refill, refills.SNAPSHOT_ORDER),
    Kind("payments", Payment, payments.SNAPSHOT_ORDER),
    Kind("subscriptions", Subscription, subscriptions.SNAPSHOT_ORDER),
    Kind(
        "appointments",
        Appointment,
        appointments.SNAPSHOT_ORDER,
        (appointments.SNAPSHOT_FILTER,),
    ),
    Kind("tasks", Task, tasks.SNAPSHOT_ORDER, (tasks.SNAPSHOT_FILTER,)),
)


@dataclass
class State:
    """The clock-independent parts of a patient's snapshot: items as the tables hold them.

    Items read from the row are detached copies for reading (not in any session).
    """

    prescriptions: list[Prescription] = field(default_factory=list)  # all, newest status first
    shipments: list[Shipment] = field(default_factory=list)  # all, newest status first
    refills: list[Refill] = field(default_factory=list)  # all, newest status first
    payments: list[Payment] = field(default_factory=list)  # all, newest status first
    subscriptions: list[Subscription] = field(default_factory=list)  # all, newest status first
    appointments: list[Appointment] = field(default_factory=list)  # scheduled/confirmed, by start
    tasks: list[Task] = field(default_factory=list)  # open, oldest first


# --- encoding: one converter pair per column, worked out once ---------------------------------


def _identity(value: Any) -> Any:
    return value


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _parse_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _enum_value(value: Any) -> Any:
    return None if value is None else getattr(value, "value", value)  # a member, or its value


def _converters(column: Any) -> tuple[Any, Any]:
    """(to JSON, from JSON) for one column's values."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return _iso, _parse_datetime
    if isinstance(kind, Date):
        return _iso, _parse_date
    if isinstance(kind, Enum) and kind.enum_class is not None:
        members = kind.enum_class._value2member_map_  # the member by value, without a call
        return _enum_value, lambda value: None if value is None else members[value]
    return _identity, _identity


@dataclass(frozen=True)
class _Codec:
    kind: Kind
    columns: list[str]
    encoders: list[Any]
    decoders: list[Any]
    new_instance: Any

    @classmethod
    def of(cls, kind: Kind) -> _Codec:
        columns = list(kind.model.__table__.columns)
        pairs = [_converters(column) for column in columns]
        return cls(
            kind,
            [column.key for column in columns],
            [encode for encode, _ in pairs],
            [decode for _, decode in pairs],
            class_mapper(kind.model).class_manager.new_instance,
        )

    def encode(self, row: Row[Any] | list[Any]) -> list[Any]:
        return [encode(value) for encode, value in zip(self.encoders, row, strict=True)]

    def decode(self, values: list[Any]) -> Any:
        # As the ORM's own loader does: an instance without __init__, its attributes set in
        # place (a constructor call costs ~20x more, and this runs per item per read).
        item = self.new_instance()
        item.__dict__.update(
            zip(
                self.columns,
                [decode(value) for decode, value in zip(self.decoders, values, strict=True)],
                strict=True,
            )
        )
        return item


_CODECS = [_Codec.of(kind) for kind in KINDS]


def encode(state: dict[str, list[list[Any]]]) -> str:
    return json.dumps({"layout": LAYOUT, **state}, separators=(",", ":"))


def decode(text: str) -> State | None:
    """The stored state, or None when the row is of another layout (it needs a rebuild)."""
    stored = orjson.loads(text)
    if stored.get("layout") != LAYOUT:
        return None
    state = State()
    for codec in _CODECS:
        setattr(
            state, codec.kind.name, [codec.decode(values) for values in stored[codec.kind.name]]
        )
    return state


def encode_items(items: dict[str, list[dict[str, Any]]]) -> str:
    """The stored JSON for items given as column dicts, each kind in the snapshot's order: for
    tools that write rows directly (the benchmarks' generators), instead of reading them back."""
    return encode(
        {
            codec.kind.name: [
                codec.encode([row.get(column) for column in codec.columns])
                for row in items.get(codec.kind.name, [])
            ]
            for codec in _CODECS
        }
    )


# --- from the tables -------------------------------------------------------------------------


def _encoded_from_tables(
    session: Session, patient_ids: list[int]
) -> dict[int, dict[str, list[Any]]]:
    """patient id -> each kind's rows as stored, read with one query per kind and 500 patients."""
    states: dict[int, dict[str, list[Any]]] = {
        patient_id: {codec.kind.name: [] for codec in _CODECS} for patient_id in patient_ids
    }
    for codec in _CODECS:
        kind = codec.kind
        table = kind.model.__table__
        for start in range(0, len(patient_ids), _CHUNK):
            chunk = patient_ids[start : start + _CHUNK]
            query = (
                select(table)
                .where(table.c.patient_id.in_(chunk), *kind.where)
                .order_by(table.c.patient_id, *kind.order)
            )
            for row in session.execute(query):
                states[row.patient_id][kind.name].append(codec.encode(row))
    return states


@dataclass
class RefreshCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: RefreshCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged


def refresh(
    session: Session, patient_ids: Iterable[int], now: datetime, *, skip_unchanged: bool = False
) -> RefreshCounts:
    """Rewrite these patients' rows from the tables, in the caller's transaction.

    On PostgreSQL the rows are locked first (in id order), so two transactions touching one
    patient take turns: the second reads the tables after the first committed, and its row is
    not computed from a state that misses the first one's change. (SQLite has one writer.)
    `skip_unchanged` compares with the stored rows and leaves equal ones alone (a rebuild).
    """
    ids = sorted(set(patient_ids))
    counts = RefreshCounts()
    if not ids:
        return counts
    session.flush()  # the caller's ORM changes must be in the tables this reads
    refreshed_in(session).update(ids)
    dialect = session.get_bind().dialect.name
    existing: dict[int, str | None] = {}
    table = PatientSnapshot.__table__
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        columns = [table.c.patient_id, table.c.state if skip_unchanged else table.c.version]
        query = select(*columns).where(table.c.patient_id.in_(chunk)).order_by(table.c.patient_id)
        if dialect == "postgresql":
            query = query.with_for_update()
        for patient_id, value in session.execute(query):
            existing[patient_id] = value if skip_unchanged else None
    rows = []
    for patient_id, state in _encoded_from_tables(session, ids).items():
        text = encode(state)
        if patient_id not in existing:
            counts.created += 1
        elif skip_unchanged and existing[patient_id] == text:
            counts.unchanged += 1
            continue
        else:
            counts.updated += 1
        rows.append({"patient_id": patient_id, "state": text, "version": 1, "updated_at": now})
    if rows:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(PatientSnapshot).on_conflict_do_update(
            index_elements=[table.c.patient_id],
            set_={
                "state": insert(PatientSnapshot).excluded.state,
                "version": table.c.version + 1,
                "updated_at": insert(PatientSnapshot).excluded.updated_at,
            },
        )
        session.execute(statement, rows)
    return counts


def rebuild(
    session: Session, now: datetime, *, after_id: int = 0, limit: int = _CHUNK
) -> tuple[RefreshCounts, int | None]:
    """One slice of a rebuild: up to `limit` patients with ids above `after_id`, rewritten from
    the tables where they differ. Returns the counts and the last id done (None: no more)."""
    query = select(Patient.id).where(Patient.id > after_id).order_by(Patient.id).limit(limit)
    ids = list(session.scalars(query))
    if not ids:
        return RefreshCounts(), None
    return refresh(session, ids, now, skip_unchanged=True), ids[-1]


# --- reading ---------------------------------------------------------------------------------

_STATE = select(PatientSnapshot.__table__.c.state).where(
    PatientSnapshot.__table__.c.patient_id == bindparam("patient_id")
)


def stored_state(session: Session, patient_id: int) -> State | None:
    """The patient's stored state, or None when there is no row (or one to rebuild).

    Read without an autoflush: rows are written only by `refresh`, which flushes first."""
    with session.no_autoflush:
        text = session.execute(_STATE, {"patient_id": patient_id}).scalar()
    return None if text is None else decode(text)


def refreshed_in(session: Session) -> set[int]:
    """The patients whose rows this session's transaction has rewritten (`refresh`): a row
    read before then is out of date."""
    refreshed: set[int] = session.info.setdefault("read_model.refreshed", set())
    return refreshed


_PATIENTS = Patient.__table__
_SNAPSHOTS = PatientSnapshot.__table__
_PATIENT_COLUMNS = [column.key for column in _PATIENTS.columns]
PATIENT_ID = _PATIENTS.c.id  # what a `keyed_read` column refers to for the patient read
_new_patient = class_mapper(Patient).class_manager.new_instance


def _patient_and_state_in(clinic_id: Any, *extra: ColumnElement[Any]) -> Select[Any]:
    return (
        select(*_PATIENTS.columns, _SNAPSHOTS.c.state, *extra)
        .select_from(_PATIENTS.outerjoin(_SNAPSHOTS, _SNAPSHOTS.c.patient_id == _PATIENTS.c.id))
        .where(_PATIENTS.c.clinic_id == clinic_id, _PATIENTS.c.source_id == bindparam("source_id"))
    )


# Built once: the status API runs it per request, and building a statement costs more than
# running it. Core rows, not ORM entities, for the same reason.
_PATIENT_AND_STATE = _patient_and_state_in(bindparam("clinic_id"))
# The hot path's: the clinic is the API key's (`clinics.KeyedClinic`), resolved in the same
# statement, so a clinic key costs no read of its own.
_PATIENT_AND_STATE_RAW = Prepared(_patient_and_state_in(clinics.KEYED_CLINIC_ID))


def patient_and_state(
    session: Session, clinic_id: int, source_id: str
) -> tuple[Patient, State | None] | None:
    """The clinic's patient by their `patient_id` with the stored state, in one query (None:
    unknown here, whatever another clinic has).

    The patient is a detached copy for reading, like the items (not in the session)."""
    if len(source_id) > limits.SOURCE_ID or limits.unstorable(source_id):
        return None  # no stored id can look like that (and PostgreSQL refuses a NUL)
    found = session.execute(
        _PATIENT_AND_STATE, {"clinic_id": clinic_id, "source_id": source_id}
    ).first()
    return None if found is None else _patient_and_state(found)


def read_patient_and_state(
    reader: RawCursor, keyed: clinics.KeyedClinic, source_id: str
) -> tuple[Patient, State | None] | None:
    """`patient_and_state` through `Database.raw_autocommit` (the status API's hot path), for
    the clinic an API key names (None also when no clinic has that key)."""
    if len(source_id) > limits.SOURCE_ID or limits.unstorable(source_id):
        return None
    found = reader.rows(
        _PATIENT_AND_STATE_RAW,
        clinic_id=keyed.clinic_id,
        key_hash=keyed.key_hash,
        source_id=source_id,
    )
    return _patient_and_state(found[0]) if found else None


def keyed_read(*extra: ColumnElement[Any]) -> Prepared:
    """The hot path's statement with more columns after the patient's and the state (each may
    refer to `patients.id`): `read_keyed` runs it."""
    return Prepared(_patient_and_state_in(clinics.KEYED_CLINIC_ID, *extra))


async def read_keyed(
    reader: AsyncRawCursor, statement: Prepared, keyed: clinics.KeyedClinic, source_id: str
) -> tuple[Patient, State | None, tuple[Any, ...]] | None:
    """`read_patient_and_state` on the event loop (`AsyncReads`), with `statement` from
    `keyed_read`: the patient, their stored state and the extra columns' values."""
    if len(source_id) > limits.SOURCE_ID or limits.unstorable(source_id):
        return None
    found = await reader.rows(
        statement, clinic_id=keyed.clinic_id, key_hash=keyed.key_hash, source_id=source_id
    )
    if not found:
        return None
    row = found[0]
    patient, state = _patient_and_state(row[: _STATE_AT + 1])
    return patient, state, row[_STATE_AT + 1 :]


_STATE_AT = len(_PATIENT_COLUMNS)  # the state's place in a row of the statements above


def _patient_and_state(found: Row[Any] | tuple[Any, ...]) -> tuple[Patient, State | None]:
    patient = _new_patient()
    patient.__dict__.update(zip(_PATIENT_COLUMNS, found[:-1], strict=True))
    text = found[-1]
    return patient, None if text is None else decode(text)
