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
                session, channel="sms", address=f"+1555020{n:04d}", body=f"message {n}"
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
