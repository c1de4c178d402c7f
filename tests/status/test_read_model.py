"""The read model: after any events, the one-row snapshot is the snapshot the tables give."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from alembic import command
from click.testing import CliRunner
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, text, update

from bot.context import last_told
from bot.messages import Direction, Kind, Message
from channels import cli
from channels.app import create_app
from status import clock, patients, read_model, snapshot
from status.appointments import AppointmentStatus
from status.clinics import DEFAULT_ID
from status.db import Base, Database
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.migrate import alembic_config, upgrade
from status.payments import PaymentStatus
from status.prescriptions import Prescription, PrescriptionStatus
from status.read_model import PatientSnapshot
from status.refills import RefillStatus
from status.settings import get_settings
from status.shipments import ShipmentStatus
from status.subscriptions import SubscriptionStatus
from tests.builders import T0, at, event, patient_event, prescription_event, shipment_event
from tests.conftest import API_KEY, on_both_databases

DAY = 60 * 24  # minutes
# Few distinct times, so ties, stale and out-of-order events are common; some far enough back
# that finished items drop out of the snapshot (30 days) at some of the reading times.
MINUTES = [-40 * DAY, -31 * DAY, -3 * DAY, -50 * 60, -60, 0, 1, 2 * DAY]
READ_AT = [T0 - timedelta(days=2), T0, T0 + timedelta(days=3), T0 + timedelta(days=45)]
PATIENTS = ["p-1", "p-2", "p-late"]  # all three may get item events before their patient.updated


def _when() -> st.SearchStrategy[str]:
    return st.sampled_from(MINUTES).map(at)


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


def _item_data(kind: str) -> st.SearchStrategy[dict]:
    pid = st.sampled_from(PATIENTS)
    rx_id = st.sampled_from(["rx-1", "rx-2"])
    day = st.sampled_from(MINUTES).map(lambda m: at(m)[:10])
    url = st.sampled_from(["https://portal.example/t/1", "https://portal.example/t/2"])
    shapes = {
        "prescription": st.fixed_dictionaries(
            {
                "prescription_id": rx_id,
                "patient_id": pid,
                "medication": st.sampled_from(["Semaglutide 0.5 mg", "Metformin 500 mg"]),
                "status": st.sampled_from([s.value for s in PrescriptionStatus]),
                "pharmacy": _maybe(st.just({"name": "Harbor Mail Pharmacy", "phone": "+1555"})),
                "blocked_reason": _maybe(st.sampled_from(["upload id", "intake"])),
                "refills_remaining": _maybe(st.integers(0, 3)),
                "next_refill_date": _maybe(day),
            }
        ),
        "shipment": st.fixed_dictionaries(
            {
                "shipment_id": st.sampled_from(["ship-1", "ship-2"]),
                "patient_id": pid,
                "prescription_id": _maybe(rx_id),
                "carrier": st.just("UPS"),
                "tracking_number": st.just("1Z999"),
                "status": st.sampled_from([s.value for s in ShipmentStatus]),
                "estimated_delivery": _maybe(day),
            }
        ),
        "refill": st.fixed_dictionaries(
            {
                "refill_id": st.sampled_from(["ref-1", "ref-2"]),
                "patient_id": pid,
                "prescription_id": rx_id,
                "status": st.sampled_from([s.value for s in RefillStatus]),
                "due_date": _maybe(day),
            }
        ),
        "payment": st.fixed_dictionaries(
            {
                "payment_id": st.sampled_from(["pay-1", "pay-2"]),
                "patient_id": pid,
                "amount_cents": st.sampled_from([0, 29900]),
                "currency": st.just("USD"),
                "status": st.sampled_from([s.value for s in PaymentStatus]),
                "description": st.just("Monthly care plan"),
                "failure_reason": _maybe(st.just("card expired")),
                "next_retry_at": _maybe(_when()),
            }
        ),
        "subscription": st.fixed_dictionaries(
            {
                "subscription_id": st.sampled_from(["sub-1", "sub-2"]),
                "patient_id": pid,
                "plan": st.just("Monthly care plan"),
                "amount_cents": st.just(29900),
                "currency": st.just("USD"),
                "status": st.sampled_from([s.value for s in SubscriptionStatus]),
                "renews_at": _maybe(_when()),
                "auto_renew": st.booleans(),
            }
        ),
        "appointment": st.fixed_dictionaries(
            {
                "appointment_id": st.sampled_from(["appt-1", "appt-2"]),
                "patient_id": pid,
                "starts_at": _when(),
                "visit_type": st.just("Video follow-up"),
                "status": st.sampled_from([s.value for s in AppointmentStatus]),
                "join_url": _maybe(url),
            }
        ),
        "task": st.fixed_dictionaries(
            {
                "task_id": st.sampled_from(["task-1", "task-2"]),
                "patient_id": pid,
                "kind": st.sampled_from(["upload_id", "intake"]),
                "title": st.just("Upload your ID"),
                "status": st.sampled_from(["open", "done"]),
                "url": _maybe(url),
                "due_at": _maybe(_when()),
            }
        ),
    }
    return shapes[kind]


@st.composite
def new_event(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["patient", "prescription", "shipment", "refill", "payment",
                                 "subscription", "appointment", "task"]))  # fmt: skip
    if kind == "patient":
        return patient_event(
            draw(st.sampled_from(PATIENTS)),
            occurred_at=draw(_when()),
            language=draw(st.sampled_from(["en", "es"])),
            timezone=draw(st.sampled_from(["America/New_York", "Pacific/Kiritimati"])),
        )
    return event(f"{kind}.updated", draw(_when()), **draw(_item_data(kind)))


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[dict]]:
    """Batches as a clinic system would send them: new events, and redeliveries of earlier
    ones (the same id, maybe with other content, which must change nothing)."""
    batches: list[list[dict]] = []
    sent: list[dict] = []
    if draw(st.booleans()):  # p-1 and p-2 known from the start: items can move between them
        first = [patient_event(pid, occurred_at=at(MINUTES[0])) for pid in PATIENTS[:2]]
        sent += first
        batches.append(first)
    for _ in range(draw(st.integers(1, 4))):
        batch: list[dict] = []
        for _ in range(draw(st.integers(1, 6))):
            if sent and draw(st.integers(0, 4)) == 0:
                earlier = draw(st.sampled_from(sent))
                batch.append({**draw(new_event()), "id": earlier["id"]})
            else:
                batch.append(draw(new_event()))
        batch = list({e["id"]: e for e in batch}.values())  # one delivery of an id per batch
        sent += batch
        batches.append(batch)
    return batches


def _wipe(database) -> None:
    """An empty database for the next example (DELETE: on these few rows, far quicker than
    PostgreSQL's TRUNCATE of every table)."""
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "clinics":  # the default clinic stays, as in a fresh database
                session.execute(delete(table))


def _assert_read_model_agrees(database, read_at: list = READ_AT) -> int:
    checked = 0
    with database.read_session() as session:
        for patient in session.scalars(select(patients.Patient)):
            for now in read_at:
                assert snapshot.drift(session, patient, now) == [], (patient.source_id, now)
                checked += 1
    return checked


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Cases the search finds only now and then, always tried: an item moving to another patient
# (the old one's row must lose it); events before their patient, then a stale redelivery.
MOVED = [
    [patient_event("p-1", occurred_at=at(-60)), patient_event("p-2", occurred_at=at(-60))],
    [prescription_event("approved", patient_id="p-1", occurred_at=at(0))],
    [prescription_event("shipped", patient_id="p-2", occurred_at=at(1))],
]
EARLY = [
    [shipment_event(patient_id="p-late", occurred_at=at(5), event_id="s1")],
    [patient_event("p-late", occurred_at=at(9)), prescription_event(patient_id="p-late")],
    [shipment_event("delivered", patient_id="p-late", occurred_at=at(-5), event_id="s1")],
]


@on_both_databases
@PROPERTY
@given(batches=deliveries())
@example(batches=MOVED)
@example(batches=EARLY)
def test_materialised_snapshot_equals_a_fresh_build_after_any_events(database, batches):
    _wipe(database)
    for batch in batches:  # checked after each batch: a later one could mend a missed refresh
        with database.session() as session:
            apply_events(session, parse_events(batch), now=T0)
        _assert_read_model_agrees(database, [T0])
    _assert_read_model_agrees(database)
    with database.read_session() as session:  # every patient has their row, nothing else does
        rows = session.scalar(select(func.count()).select_from(PatientSnapshot))
        assert rows == session.scalar(select(func.count()).select_from(patients.Patient))


@on_both_databases
def test_batch_refreshes_each_patient_once_and_moves_items_between_patients(database):
    with database.session() as session:
        apply_events(
            session,
            parse_events(
                [
                    patient_event("p-1", occurred_at=at(-10)),
                    patient_event("p-2", occurred_at=at(-10)),
                ]
                + [prescription_event("approved", occurred_at=at(i)) for i in range(5)]
            ),
            now=T0,
        )
    with database.read_session() as session:
        versions = dict(
            session.execute(select(PatientSnapshot.patient_id, PatientSnapshot.version)).all()
        )
    assert sorted(versions.values()) == [1, 1]  # one refresh for the batch, not one per event
    with database.session() as session:  # rx-1 now belongs to p-2: p-1's row must lose it
        apply_events(
            session,
            parse_events([prescription_event("shipped", patient_id="p-2", occurred_at=at(9))]),
        )
    with database.read_session() as session:
        p1, p2 = (patients.by_source_id(session, DEFAULT_ID, pid) for pid in ("p-1", "p-2"))
        assert snapshot.build(session, p1, T0).prescriptions == []
        assert [rx.status for rx in snapshot.build(session, p2, T0).prescriptions] == ["shipped"]
    _assert_read_model_agrees(database)


@on_both_databases
def test_status_api_answers_from_the_row_and_as_a_fresh_build(database, settings):
    with database.session() as session:
        apply_events(
            session,
            parse_events(
                [
                    patient_event(occurred_at=at(-100)),
                    prescription_event("shipped", occurred_at=at(-90)),
                    shipment_event(occurred_at=at(-80)),
                ]  # fmt: skip
            ),
        )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings, database)) as client:
        answer = client.get("/api/patients/p-1/status", headers=auth).json()
        with database.session() as session:  # a row of another layout: answered from the tables
            session.execute(update(PatientSnapshot).values(state='{"layout": 0}'))
        again = client.get("/api/patients/p-1/status", headers=auth).json()
    assert answer["prescriptions"][0]["shipment_id"] == "ship-1"
    assert answer["shipments"][0]["tracking_number"] == "1Z999AA10123456784"
    for body in (answer, again):
        body.pop("generated_at")
        for item in [*body["prescriptions"], *body["shipments"]]:
            item.pop("seconds_in_status")  # the clock moved between the two requests
    assert again == answer


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_status_api_answers_after_the_database_dropped_its_connections(database, settings):
    with database.session() as session:
        apply_events(session, parse_events([patient_event(), prescription_event("shipped")]))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings, database)) as client:
        assert client.get("/api/patients/p-1/status", headers=auth).status_code == 200
        with database.engine.connect() as conn:  # a restart or failover, as the API sees it
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            conn.commit()
        answer = client.get("/api/patients/p-1/status", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["prescriptions"][0]["status"] == "shipped"


def _invoke(database, *args: str):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli.main, list(args), env={"DATABASE_URL": database.url})
    finally:
        get_settings.cache_clear()


def _rebuild(database, *args: str) -> dict:
    result = _invoke(database, "snapshot", "rebuild", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@on_both_databases
def test_rebuild_command_restores_rows_from_the_stored_state(database):
    with database.session() as session:
        apply_events(
            session,
            parse_events(
                [
                    patient_event("p-1"),
                    patient_event("p-2"),
                    patient_event("p-3"),
                    prescription_event("approved", patient_id="p-1"),
                    prescription_event("processing", prescription_id="rx-2", patient_id="p-2"),
                ]
            ),  # fmt: skip
        )
    assert _rebuild(database) == {"patients": 3, "created": 0, "updated": 0, "unchanged": 3}
    with database.session() as session:
        # Drift as a buggy writer would leave it: p-1's row lost, p-2's table row changed behind
        # the read model's back.
        p1 = patients.by_source_id(session, DEFAULT_ID, "p-1")
        session.execute(delete(PatientSnapshot).where(PatientSnapshot.patient_id == p1.id))
        session.execute(
            update(Prescription).where(Prescription.source_id == "rx-2").values(status="blocked")
        )
    assert _rebuild(database, "--patient-id", "p-2") == {
        "patients": 1, "created": 0, "updated": 1, "unchanged": 0,
    }  # fmt: skip
    assert _rebuild(database) == {"patients": 3, "created": 1, "updated": 0, "unchanged": 2}
    _assert_read_model_agrees(database)
    with database.read_session() as session:
        p2 = patients.by_source_id(session, DEFAULT_ID, "p-2")
        assert snapshot.materialised(session, p2, T0).next_step.kind == "blocked"


def test_rebuild_command_names_an_unknown_patient(database):
    result = _invoke(database, "snapshot", "rebuild", "--patient-id", "nobody")
    assert result.exit_code == 1
    assert "no patient with patient_id 'nobody'" in result.output


def test_migration_backfills_patients_already_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    database = Database(url)
    with database.engine.begin() as conn:  # what a database at 0001 holds: no read model yet
        conn.exec_driver_sql(
            "INSERT INTO patients (source_id, first_name, last_name, date_of_birth, phone,"
            " language, timezone, sms_consent, preferred_channel, last_event_at, created_at,"
            " updated_at) VALUES ('p-1', 'Maria', 'Lopez', '1985-03-14', '+15550100001', 'en',"
            " 'America/New_York', 1, 'sms', '2026-11-20 14:00:00.000000',"
            " '2026-11-20 14:00:00.000000', '2026-11-20 14:00:00.000000')"
        )
        conn.exec_driver_sql(
            "INSERT INTO prescriptions (source_id, patient_id, medication, status,"
            " status_since, last_event_at, created_at, updated_at)"
            " VALUES ('rx-1', 1, 'Semaglutide', 'processing', '2026-11-20 14:00:00.000000',"
            " '2026-11-20 14:00:00.000000', '2026-11-20 14:00:00.000000',"
            " '2026-11-20 14:00:00.000000')"
        )
    upgrade(url)
    with database.read_session() as session:
        patient = patients.by_source_id(session, DEFAULT_ID, "p-1")
        stored = snapshot.materialised(session, patient, T0)
        assert [rx.source_id for rx in stored.prescriptions] == ["rx-1"]
        assert stored.next_step.kind == "await_pharmacy"
    assert _assert_read_model_agrees(database) == len(READ_AT)
    database.dispose()


def test_the_last_migration_rewrites_rows_of_an_older_layout(tmp_path):
    """A database at 0005_clinics holds layout-1 rows (no payment links); 0006 rewrites them."""
    url = f"sqlite:///{tmp_path / 'clinics.db'}"
    upgrade(url, "0005_clinics")
    database = Database(url)
    stamp = "'2026-11-20 14:00:00.000000'"
    with database.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO patients (clinic_id, source_id, first_name, last_name, date_of_birth,"
            " phone, language, timezone, sms_consent, preferred_channel, last_event_at,"
            " created_at, updated_at) VALUES (1, 'p-1', 'Maria', 'Lopez', '1985-03-14',"
            f" '+15550100001', 'en', 'America/New_York', 1, 'sms', {stamp}, {stamp}, {stamp})"
        )
        conn.exec_driver_sql(
            "INSERT INTO payments (clinic_id, source_id, patient_id, amount_cents, currency,"
            " status, description, ever_failed, status_since, last_event_at, created_at,"
            f" updated_at) VALUES (1, 'pay-1', 1, 29900, 'usd', 'failed', 'Monthly plan', 1,"
            f" {stamp}, {stamp}, {stamp}, {stamp})"
        )
        conn.exec_driver_sql(
            "INSERT INTO patient_snapshots (patient_id, state, version, updated_at)"
            f" VALUES (1, '{{\"layout\": 1}}', 1, {stamp})"
        )
    upgrade(url)
    with database.read_session() as session:
        state = read_model.stored_state(session, 1)  # None: a row of another layout
        assert state is not None
        patient = patients.by_source_id(session, DEFAULT_ID, "p-1")
        [payment] = snapshot.materialised(session, patient, T0).failed_payments
        assert (payment.source_id, payment.payment_url) == ("pay-1", None)
    database.dispose()


@pytest.mark.postgres
def test_migration_backfills_on_postgres(postgres_url):
    """The session's PostgreSQL database was migrated through 0002 on an empty schema; going
    down and up again backfills what is stored."""
    database = Database(postgres_url, pool_size=2, max_overflow=0)
    _wipe(database)
    with database.session() as session:
        apply_events(session, parse_events([patient_event(), prescription_event("processing")]))
    database.dispose()
    command.downgrade(alembic_config(postgres_url), "0001")
    upgrade(postgres_url)
    database = Database(postgres_url, pool_size=2, max_overflow=0)
    assert _assert_read_model_agrees(database) == len(READ_AT)
    with database.read_session() as session:
        assert session.scalar(select(func.count()).select_from(PatientSnapshot)) == 1
    database.dispose()


@on_both_databases
def test_status_api_sends_the_bytes_of_the_snapshot_and_what_the_patient_was_told(
    database, settings
):
    # JSON byte for byte as `JSONResponse` renders a fresh build (non-ASCII, quotes, control
    # characters in values), and `last_told` as the ORM reads it: newest first, a message not
    # yet sent dated by its creation, microseconds kept, one not told (pending) left out.
    named = patient_event(first_name='Zoë "Z"\t\u00e9\u4e2d', last_name="O'Brien\x01\u2028")
    with database.session() as session:
        apply_events(session, parse_events([named, prescription_event("shipped")]))
        patient = patients.by_source_id(session, DEFAULT_ID, "p-1")
        told = [  # (status, sent_at, minutes after T0 it was written)
            ("sent", T0 + timedelta(minutes=5, microseconds=123_450), 4),
            ("failed", None, 6),
            ("pending", None, 7),
            ("delivered", T0 + timedelta(minutes=9), 8),
        ]
        for status, sent_at, minutes in told:
            session.add(
                Message(
                    clinic_id=DEFAULT_ID, patient_id=patient.id, direction=Direction.OUT,
                    kind=Kind.PROACTIVE, channel="sms", address=patient.phone,
                    body=f"Your order \u2014 {status} \u00e9", template=f"notify_{status}",
                    coalesce_key=f"rx:rx-1:{status}", status=status, sent_at=sent_at,
                    created_at=T0 + timedelta(minutes=minutes, microseconds=7),
                )
            )  # fmt: skip
    now = T0 + timedelta(hours=1)
    with clock.use(lambda: now), TestClient(create_app(settings, database)) as client:
        answer = client.get(
            "/api/patients/p-1/status", headers={"Authorization": f"Bearer {API_KEY}"}
        )
    with database.read_session() as session:
        patient = patients.by_source_id(session, DEFAULT_ID, "p-1")
        fresh = snapshot.build_fresh(session, patient, now)
        fresh.extra["last_told"] = last_told(session, patient.id)
    assert answer.content == JSONResponse(fresh.to_dict()).body
    assert [(m["status"], m["sent_at"]) for m in answer.json()["last_told"]] == [
        ("delivered", "2026-11-20T14:09:00+00:00"),
        ("failed", "2026-11-20T14:06:00.000007+00:00"),
        ("sent", "2026-11-20T14:05:00.123450+00:00"),
    ]
