"""Ids no row can have (beyond PostgreSQL's INTEGER, NUL in a path): 404, never a 500."""

from __future__ import annotations

from tests.conftest import on_both_databases
from tests.staff.conftest import API_HEADERS, log_in

HUGE = [2**31, 2**63, 10**30]


@on_both_databases
def test_api_hand_off_ids_beyond_integer_are_not_found(app):
    for handoff_id in HUGE:
        assert app.client.get(f"/api/handoffs/{handoff_id}", headers=API_HEADERS).status_code == 404
        reply = app.client.post(
            f"/api/handoffs/{handoff_id}/reply", json={"text": "hi"}, headers=API_HEADERS
        )
        assert reply.status_code == 404


@on_both_databases
def test_console_hand_off_pages_with_huge_ids_are_not_found(app):
    csrf = log_in(app.client)
    for handoff_id in HUGE:
        page = app.client.get(f"/staff/handoffs/{handoff_id}")
        assert page.status_code == 404
        assert "There is no hand-off" in page.text
        live = app.client.get(f"/staff/handoffs/{handoff_id}/live")
        assert live.status_code == 404
        took = app.client.post(
            f"/staff/handoffs/{handoff_id}/take", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert took.status_code == 404


@on_both_databases
def test_nul_in_path_ids_is_not_a_500(app):
    assert app.client.get("/api/patients/a%00b/status", headers=API_HEADERS).status_code == 404
    link = app.client.post("/api/patients/a%00b/telegram-link", headers=API_HEADERS)
    assert link.status_code == 404
