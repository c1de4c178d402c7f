"""Several dispatcher processes share one PostgreSQL outbox and send each message exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from bot import outbox
from bot.messages import Message
from status.clinics import DEFAULT_ID
from tests.channels.conftest import TWILIO_NUMBER

on_postgres = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def worker_env(database, fake_twilio) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_"))}
    env.update(
        DATABASE_URL=database.url,
        TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        TWILIO_API_BASE=fake_twilio.base_url,
        TWILIO_FROM_NUMBER=TWILIO_NUMBER,
        TWILIO_MESSAGES_PER_SECOND="0",
        PUBLIC_BASE_URL="https://clinic.example",
        LOG_LEVEL="WARNING",
    )
    return env


@on_postgres
def test_two_dispatcher_processes_send_1000_messages_exactly_once(database, fake_twilio):
    with database.session() as session:
        for n in range(1000):
            outbox.enqueue(
                session,
                clinic_id=DEFAULT_ID,
                channel="sms",
                address=f"+1555020{n:04d}",
                body=f"message {n}",
            )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "channels.cli", "worker"],
            env=worker_env(database, fake_twilio),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        fake_twilio.wait_for(1000, timeout=120)
        time.sleep(1.0)  # give a duplicate, if any, the chance to arrive
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        errors = [worker.communicate(timeout=30)[1].decode() for worker in workers]
    bodies = Counter(request.body for request in fake_twilio.messages)
    assert len(bodies) == 1000, errors
    assert max(bodies.values()) == 1
    with database.session() as session:
        rows = session.query(Message).all()
        assert {row.status for row in rows} == {"sent"}
        assert len({row.provider_id for row in rows}) == 1000


@on_postgres
def test_two_worker_processes_send_each_scheduled_reminder_once(database, fake_twilio):
    from datetime import timedelta

    from status.db import utcnow
    from status.events.apply import apply_events
    from status.events.schemas import parse_events
    from tests.builders import event, patient_event, prescription_event

    now = utcnow()
    events = []
    for n in range(20):  # twenty patients whose refills fall due, two workers racing
        pid = f"p-{n}"
        events += [
            patient_event(
                pid, phone=f"+1555030{n:04d}", occurred_at=(now - timedelta(days=9)).isoformat()
            ),
            prescription_event(
                "delivered", prescription_id=f"rx-{n}", patient_id=pid,
                next_refill_date=(now + timedelta(days=3)).date().isoformat(),
                occurred_at=(now - timedelta(days=8)).isoformat(),
            ),
        ]  # fmt: skip
    events.append(
        event(
            "appointment.updated",
            (now - timedelta(days=1)).isoformat(),
            appointment_id="a-1",
            patient_id="p-0",
            starts_at=(now + timedelta(hours=5)).isoformat(),
            visit_type="Video visit",
            status="scheduled",
        )  # fmt: skip
    )
    with database.session() as session:
        apply_events(session, parse_events(events))
    env = {
        **worker_env(database, fake_twilio),
        "SCHEDULER_INTERVAL_SECONDS": "1",
        "NOTIFY_DELAY_SECONDS": "0",
        "QUIET_HOURS": "off",
        "DAILY_MESSAGE_CAP": "10",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "channels.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        fake_twilio.wait_for(21, timeout=60)
        time.sleep(3.0)  # several more scheduler rounds in both workers
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        errors = [worker.communicate(timeout=30)[1].decode() for worker in workers]
    recipients = Counter(request.to for request in fake_twilio.messages)
    assert len(fake_twilio.messages) == 21, errors
    assert recipients["+15550300000"] == 2  # refill reminder + appointment reminder
    assert max(recipients.values()) == 2


@pytest.mark.parametrize("turns", [True, False])
def test_a_serving_process_loads_the_model_before_its_first_turn_and_freezes_start_up(turns):
    # In a process of its own: gc.freeze() here would keep every test's garbage for good.
    probe = (
        "import gc\n"
        "from bot.understanding import classifier, model\n"
        "from channels.runtime import freeze_start_up\n"
        f"freeze_start_up(turns={turns})\n"
        "print(gc.get_freeze_count() > 10_000, model.models.cache_info().currsize,\n"
        "      classifier.catalogue.cache_info().currsize)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = "1 1" if turns else "0 0"
    assert done.stdout.split() == ["True", *loaded.split()]
