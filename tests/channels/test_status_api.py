"""`GET /api/patients/{id}/status` as plain ASGI ahead of the app (`api.StatusApi`): the answers,
headers, metric and access-log line the routed path gives, and what it leaves to the app."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import text

from channels.app import create_app
from status.events.apply import apply_events
from status.events.schemas import parse_events
from tests.builders import patient_event, prescription_event
from tests.channels.test_observability import captured, metric
from tests.conftest import API_KEY, on_both_databases

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ROUTE = "/api/patients/{patient_id}/status"


def _logged(action) -> list[dict]:
    return [json.loads(line) for line in captured(action).splitlines() if line.strip()]


@on_both_databases
def test_answers_headers_metric_and_log_line(database, settings):
    with database.session() as session:
        apply_events(session, parse_events([patient_event(), prescription_event("shipped")]))
    with TestClient(create_app(settings, database)) as client:
        before = client.get("/metrics").text
        answers = {}

        def ask() -> None:
            answers["ok"] = client.get("/api/patients/p-1/status", headers=AUTH)
            answers["unknown"] = client.get("/api/patients/nobody/status", headers=AUTH)
            answers["no key"] = client.get("/api/patients/p-1/status")
            answers["wrong key"] = client.get(
                "/api/patients/p-1/status", headers={"Authorization": "Bearer nope"}
            )

        lines = _logged(ask)
        after = client.get("/metrics").text
        head = client.head("/api/patients/p-1/status", headers=AUTH)  # left to the app's route
        slashed = client.get("/api/patients/p%2F1/status", headers=AUTH)  # no route matches

    ok = answers["ok"]
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert int(ok.headers["content-length"]) == len(ok.content)
    body = ok.json()
    assert (
        body["patient"]["patient_id"] == "p-1" and body["prescriptions"][0]["status"] == "shipped"
    )
    assert answers["unknown"].status_code == 404
    assert answers["unknown"].json() == {"detail": "no patient with patient_id 'nobody'"}
    for refused in (answers["no key"], answers["wrong key"]):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["content-type"] == "application/json"
    assert "missing bearer token" in answers["no key"].json()["detail"]
    assert answers["wrong key"].json() == {"detail": "wrong API key"}

    assert (
        metric(after, "ps_webhook_seconds_count", route=ROUTE)
        - metric(before, "ps_webhook_seconds_count", route=ROUTE)
        == 4
    )
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(line["route"], line["method"], line["status"]) for line in requests] == [
        (ROUTE, "GET", 200), (ROUTE, "GET", 404), (ROUTE, "GET", 401), (ROUTE, "GET", 401),
    ]  # fmt: skip
    assert "p-1" not in json.dumps(lines) and "nobody" not in json.dumps(lines)

    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == ok.headers["content-length"]
    assert slashed.status_code == 404 and slashed.json() == {"detail": "Not Found"}


@on_both_databases
def test_a_fault_in_the_read_is_a_plain_500_and_reaches_the_servers_log(database, settings):
    with database.session() as session:
        apply_events(session, parse_events([patient_event(), prescription_event("shipped")]))
    app = create_app(settings, database)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/patients/p-1/status", headers=AUTH).status_code == 200
        with database.session() as session:  # the read model's table gone under the server
            session.execute(text("ALTER TABLE patient_snapshots RENAME TO snapshots_gone"))
        try:
            lines = _logged(lambda: client.get("/api/patients/p-1/status", headers=AUTH))
            answer = client.get("/api/patients/p-1/status", headers=AUTH)
        finally:
            with database.session() as session:
                session.execute(text("ALTER TABLE snapshots_gone RENAME TO patient_snapshots"))
        again = client.get("/api/patients/p-1/status", headers=AUTH)
    assert answer.status_code == 500
    assert answer.text == "Internal Server Error"
    assert answer.headers["content-type"].startswith("text/plain")
    assert [
        (line["route"], line["status"]) for line in lines if line.get("event") == "request"
    ] == [(ROUTE, 500)]
    assert again.status_code == 200
