"""Hostile and careless event input: a 4xx naming the field and the limit, never a 5xx, never
half a batch, never the submitted value echoed back; a redelivery race ends in duplicates."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from channels.app import create_app
from status import clock, limits
from status.events.apply import apply_in_transaction
from status.events.schemas import InvalidEvents, parse_body
from status.events.store import StoredEvent
from status.patients import Patient
from status.prescriptions import Prescription
from status.timeline import TimelineEntry
from tests.builders import (
    appointment_event,
    at,
    patient_event,
    payment_event,
    prescription_event,
    shipment_event,
    subscription_event,
)
from tests.conftest import API_KEY, count_fuzzed, on_both_databases

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+1 555 010 0001"


@pytest.fixture
def client(settings, database):
    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        yield client


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def post(client, body):
    return client.post("/events", json=body, headers=AUTH)


def refused(response, field: str) -> str:
    """The 422's message for `field` (and that the field is named)."""
    assert response.status_code == 422, response.text
    messages = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in messages, messages
    return messages[field]


# (event builder, field path in the error, how to set the value, the limit)
LENGTHS = [
    (patient_event, "data.first_name", "first_name", limits.NAME),
    (patient_event, "data.last_name", "last_name", limits.NAME),
    (patient_event, "data.email", "email", limits.EMAIL),
    (prescription_event, "data.medication", "medication", limits.MEDICATION),
    (shipment_event, "data.carrier", "carrier", limits.CARRIER),
    (subscription_event, "data.plan", "plan", limits.PLAN),
    (appointment_event, "data.provider_name", "provider_name", limits.PROVIDER_NAME),
    (payment_event, "data.description", "description", limits.DESCRIPTION),
]


@on_both_databases
@pytest.mark.parametrize(("build", "field", "name", "limit"), LENGTHS, ids=lambda v: str(v))
def test_string_at_its_column_length_is_stored_and_one_more_is_refused(
    client, database, build, field, name, limit
):
    at_limit = post(client, {"events": [patient_event(), build(**{name: "x" * limit})]})
    assert at_limit.status_code == 202, at_limit.text
    over = post(client, build(**{name: "x" * (limit + 1)}))
    assert str(limit) in refused(over, field)


@on_both_databases
def test_pharmacy_phone_longer_than_its_column_is_refused(client):
    pharmacy = {"name": "Harbor Mail Pharmacy", "phone": "5" * (limits.PHONE + 1)}
    response = post(client, prescription_event(pharmacy=pharmacy))
    assert str(limits.PHONE) in refused(response, "data.pharmacy.phone")


@on_both_databases
def test_nul_byte_is_refused_naming_the_field_and_nothing_of_the_batch_is_applied(client, database):
    batch = {"events": [patient_event(), prescription_event(medication="Sema\x00glutide")]}
    response = post(client, batch)
    assert "NUL" in refused(response, "data.medication")
    assert "Sema" not in response.text
    assert count(database, Patient) == 0
    assert count(database, StoredEvent) == 0


def test_a_patient_id_the_api_could_not_address_and_a_blank_event_id_are_refused(client, database):
    """A patient id is a segment of /api/patients/{patient_id}/...: one with '/' would be stored
    and never found again. An event id of spaces alone makes no idempotency key."""
    slashed = post(client, patient_event(patient_id="a/b"))
    assert "'/'" in refused(slashed, "data.patient_id")
    blank = patient_event()
    blank["id"] = "   "
    assert "blank" in refused(post(client, blank), "id")
    assert count(database, Patient) == 0 and count(database, StoredEvent) == 0


@on_both_databases
def test_integers_outside_the_columns_are_refused(client):
    assert "2147483647" in refused(
        post(client, payment_event(amount_cents=2**31)), "data.amount_cents"
    )
    too_many = post(client, prescription_event(refills_remaining=2**40))
    assert str(limits.MAX_REFILLS) in refused(too_many, "data.refills_remaining")


@on_both_databases
@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_timestamps_far_outside_the_years_we_store_are_refused(client, stamp):
    response = post(client, patient_event(occurred_at=stamp))
    assert "1900 to 2200" in refused(response, "occurred_at")
    response = post(client, payment_event(next_retry_at=stamp))
    assert "1900 to 2200" in refused(response, "data.next_retry_at")


def test_an_event_stamped_years_ahead_is_refused_so_it_cannot_make_real_updates_stale(
    client, database
):
    # Under a clock of its own, so the suite passes on any date.
    now = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    with clock.use(lambda: now):
        ahead = post(client, patient_event(occurred_at="2199-01-01T00:00:00+00:00"))
        assert "ahead of this server's clock" in refused(ahead, "occurred_at")
        assert count(database, StoredEvent) == 0
        # a source's clock skew, or an example dated a few days out, is fine
        skewed = (now + timedelta(days=3)).isoformat()
        assert post(client, patient_event(occurred_at=skewed)).status_code == 202
        a_year_off = (now + timedelta(days=365)).isoformat()  # 2027 typed for 2026
        assert "30 days ahead" in refused(
            post(client, patient_event(occurred_at=a_year_off)), "occurred_at"
        )


def test_a_date_of_birth_in_the_future_is_refused_without_echoing_it(client):
    now = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    with clock.use(lambda: now):
        response = post(client, patient_event(date_of_birth="2099-02-03", occurred_at=at()))
        assert "future" in refused(response, "data.date_of_birth")
        assert "2099" not in response.text
        born_today = post(client, patient_event(date_of_birth="2026-11-20", occurred_at=at()))
        assert born_today.status_code == 202  # a newborn's record


@on_both_databases
def test_a_huge_time_zone_is_refused_and_not_written_to_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    zone = "America/" + "X" * 1_000_000
    response = post(client, patient_event(timezone=zone))
    assert str(limits.TIMEZONE) in refused(response, "data.timezone")
    assert len(response.content) < 2000
    assert "XXXXXXXX" not in caplog.text
    unknown = post(client, patient_event(timezone="../../etc/passwd"))
    assert "IANA" in refused(unknown, "data.timezone")


@on_both_databases
def test_error_body_never_echoes_a_patients_phone_or_birth_date(client):
    response = post(client, patient_event(phone="+1 555 777 00019999", date_of_birth="0001-03-14"))
    assert response.status_code == 422
    assert "777" not in response.text
    assert "03-14" not in response.text
    refused(response, "data.phone")
    refused(response, "data.date_of_birth")


def test_validation_errors_of_the_framework_do_not_echo_input(client):
    response = client.post("/api/handoffs/abc/reply", json={"text": "hi"}, headers=AUTH)
    assert response.status_code == 422
    assert "input" not in response.json()["errors"][0]
    assert "abc" not in response.text


@on_both_databases
def test_json_nested_thousands_deep_is_refused_before_parsing(client):
    body = b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post("/events", content=body, headers=AUTH)
    assert f"{limits.MAX_JSON_DEPTH} levels" in refused(response, "(body)")


@on_both_databases
def test_number_with_thousands_of_digits_is_refused(client):
    body = json.dumps(payment_event()).replace("29900", "9" * 5000).encode()
    response = client.post("/events", content=body, headers=AUTH)
    assert f"{limits.MAX_NUMBER_DIGITS} digits" in refused(response, "(body)")


def test_body_over_the_size_limit_is_refused_with_413(client):
    body = b'{"events": [' + b" " * limits.MAX_EVENTS_BODY + b"]}"
    response = client.post("/events", content=body, headers=AUTH)
    assert response.status_code == 413
    assert str(limits.MAX_EVENTS_BODY) in response.json()["detail"]


@on_both_databases
def test_nul_in_a_path_id_is_a_404_not_a_500(client):
    response = client.get("/api/patients/a%00b/status", headers=AUTH)
    assert response.status_code == 404
    long_id = client.get("/api/patients/" + "p" * 5000 + "/status", headers=AUTH)
    assert long_id.status_code == 404


def _race(database, body: dict, deliveries: int = 16) -> list:
    events = parse_body(body)
    start = threading.Barrier(deliveries)
    results, errors = [], []

    def deliver() -> None:
        start.wait()
        try:
            results.append(apply_in_transaction(database, events).counts())
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=deliver) for _ in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@on_both_databases
def test_sixteen_simultaneous_deliveries_of_new_rows_apply_once(database):
    body = {"events": [patient_event(event_id="p-evt"), prescription_event(event_id="rx-evt")]}
    results = _race(database, body)
    assert sorted(r["applied"] for r in results) == [0] * 15 + [2]
    assert sum(r["duplicates"] for r in results) == 15 * 2
    assert count(database, Patient) == 1
    assert count(database, Prescription) == 1
    assert count(database, TimelineEntry) == 2


@on_both_databases
def test_sixteen_simultaneous_deliveries_of_an_update_apply_once(database):
    apply_in_transaction(database, parse_body({"events": [patient_event(), prescription_event()]}))
    results = _race(database, prescription_event("shipped", event_id="rx-shipped"))
    assert sorted(r["applied"] for r in results) == [0] * 15 + [1]
    assert count(database, TimelineEntry) == 3  # two from the set-up, one for "shipped"


# --- the event parser under hypothesis: any body is events that fit, or a 422 naming fields ----

VALID = [
    patient_event(),
    prescription_event(),
    shipment_event(),
    payment_event(),
    subscription_event(),
    appointment_event(),
]
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("\x00\ud800a ./"), max_size=10),
    st.integers(min_value=300, max_value=1200).map(lambda n: "x" * n),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-02-30",
                     "Mars/Olympus", "../../etc/passwd", "+1 555 010 0001", "-0", "1e309"]),
)  # fmt: skip
NASTY = st.one_of(
    NASTY_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _mutated(draw_from, base: dict, data) -> dict:
    event = json.loads(json.dumps(base))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        inner = event.get("data")
        where = data.draw(st.sampled_from(["top", "data"] if isinstance(inner, dict) else ["top"]))
        target = event if where == "top" else inner
        key = data.draw(st.sampled_from(sorted(target) or ["id"]) | st.text(max_size=8))
        target[key] = data.draw(draw_from)
    return event


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_event_parser_accepts_only_what_the_columns_hold(data):
    event = _mutated(NASTY, data.draw(st.sampled_from(VALID)), data)
    try:
        [parsed] = parse_body(event)
    except InvalidEvents as exc:
        assert exc.problems and all(p.field and p.message for p in exc.problems)
        assert all("\x00" not in p.message for p in exc.problems)
        return
    dumped = parsed.model_dump(mode="json")
    assert not any(limits.unstorable(text) for text in _strings(dumped))
    assert len(parsed.id) <= limits.EVENT_ID
    assert limits.MIN_YEAR <= parsed.occurred_at.year <= limits.MAX_YEAR


@pytest.mark.fuzz
@on_both_databases
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_mutated_event_batches_never_give_a_5xx_nor_apply_half(client, database, data):
    size = data.draw(st.integers(min_value=1, max_value=4))
    batch = [_mutated(NASTY, data.draw(st.sampled_from(VALID)), data) for _ in range(size)]
    before = count(database, StoredEvent)
    body = json.dumps({"events": batch}).encode()  # lone surrogates escaped, inf as Infinity
    response = client.post("/events", content=body, headers=AUTH)
    count_fuzzed(database, response.status_code)
    assert response.status_code in {202, 422}, response.text[:300]
    if response.status_code == 422:
        assert count(database, StoredEvent) == before
