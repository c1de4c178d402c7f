"""What an on-call person sees: /metrics moving during a conversation, and logs without PHI."""

from __future__ import annotations

import io
import logging
import re

from status.clinics import DEFAULT_SLUG
from status.logs import configure
from tests.harness import API_KEY

# The demo patient's identifying and health details, and what she wrote.
PHI = [
    "Maria", "Lopez", "1985-03-14", "03/14/1985", "3/14/85", "14/03/1985", "Semaglutide",
    "where is my prescription", "what do i owe", "maria@example.com", "1Z999AA10123456784",
    "+15550100001", "5550100001",
]  # fmt: skip


def assert_no_phi(logs: str) -> None:
    found = [needle for needle in PHI if needle.lower() in logs.lower()]
    assert not found, f"PHI in logs: {found}"


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_during_a_conversation(app, fake_twilio):
    before = app.client.get("/metrics").text
    app.sms("where is my prescription")
    app.sms("03/14/1985")
    app.drain()
    app.client.post(
        "/events", json={"id": "x", "type": "nope"}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    after = app.client.get("/metrics").text
    assert app.client.get("/metrics").headers["content-type"].startswith("text/plain")
    moved = lambda name, **labels: metric(after, name, **labels) - metric(before, name, **labels)  # noqa: E731
    assert moved("ps_inbound_messages_total", channel="sms", intent="prescription_status") == 1
    assert moved("ps_replies_total", channel="sms", kind="reply") == 2
    assert moved("ps_sends_total", channel="sms", outcome="sent", clinic=DEFAULT_SLUG) == 2
    assert moved("ps_webhook_seconds_count", route="/webhooks/twilio/sms") == 2
    assert moved("ps_webhook_seconds_count", route="/events") == 1
    assert metric(after, "ps_outbox_depth") == 0
    assert "ps_outbox_oldest_age_seconds" in after


def test_a_whole_conversation_logs_no_phi(app, fake_twilio):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("json", "DEBUG", stream=stream)
    try:
        app.sms("where is my prescription")
        app.sms("03/14/1985")
        app.sms("what do i owe")
        app.sms("my card 4111 1111 1111 1111 expired")
        app.sms("can I talk to a nurse about Semaglutide side effects")
        app.drain()
        app.client.get(
            "/api/patients/demo-maria/status", headers={"Authorization": f"Bearer {API_KEY}"}
        )
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
    logs = stream.getvalue()
    assert re.search(r'"event": "turn"', logs) and re.search(r'"event": "send"', logs)
    assert_no_phi(logs)
    assert "4111" not in logs


def captured(action) -> str:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("json", "DEBUG", stream=stream)
    try:
        action()
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
    return stream.getvalue()


def test_logged_values_are_capped_and_scrubbed():
    huge = "America/" + "X" * 1_000_000 + "\x00\x1b[31m"

    def log_them() -> None:
        log = logging.getLogger("patient_status.test")
        log.warning("refused", extra={"timezone": huge})
        try:
            raise ValueError(huge)
        except ValueError:
            log.exception("failed")

    logs = captured(log_them)
    assert len(logs) < 5000
    assert "\\u0000" not in logs and "\\u001b" not in logs
    assert "more]" in logs


def test_a_megabyte_time_zone_never_reaches_the_log(app):
    event = {
        "id": "evt-tz", "type": "patient.updated", "occurred_at": "2026-11-20T14:00:00Z",
        "data": {"patient_id": "p-9", "first_name": "A", "last_name": "B",
                 "date_of_birth": "1980-01-01", "phone": "+15550100009", "language": "en",
                 "timezone": "Z" * 1_000_000, "sms_consent": True},
    }  # fmt: skip

    def post() -> None:
        response = app.client.post(
            "/events", json=event, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 422

    logs = captured(post)
    assert "ZZZZZZZZZZ" not in logs
    assert len(logs) < 5000
