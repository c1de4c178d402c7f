"""Staff login against guessing: throttling with growing locks the staff member is told about,
failed logins audited, server-side sessions that logout, a new password and idleness end.
Time moves with the app's injectable clock; nothing sleeps."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from channels.app import create_app
from channels.cli import main
from channels.staff.auth import add_staff
from channels.staff.models import AuditEntry
from status.settings import get_settings
from tests.conftest import on_both_databases
from tests.harness import NOW, frozen
from tests.staff.conftest import AGENT, NURSE, csrf_of, log_in, make_staff


@pytest.fixture
def clock():
    with frozen(NOW) as clock:
        yield clock


@pytest.fixture
def client(staff_settings, database, clock):
    with database.session() as session:
        make_staff(session, NURSE)
        make_staff(session, AGENT)
    app = create_app(staff_settings, database, run_workers=False)
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def attempt(client: TestClient, email: str, password: str):
    token = csrf_of(client.get("/staff/login").text)
    return client.post(
        "/staff/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


@on_both_databases
def test_five_wrong_passwords_lock_the_login_and_the_page_says_until_when(client, clock):
    for _ in range(4):
        assert attempt(client, NURSE[0], "guess-guess").status_code == 401
    locked = attempt(client, NURSE[0], "guess-guess")
    assert locked.status_code == 429
    assert "locked until" in locked.text
    assert locked.headers["Retry-After"] == "60"
    # the right password does not get through a lock
    assert attempt(client, NURSE[0], NURSE[3]).status_code == 429
    clock.advance(seconds=61)
    assert attempt(client, NURSE[0], NURSE[3]).status_code == 303


def test_each_failure_after_the_lock_doubles_it(client, clock):
    for _ in range(5):
        attempt(client, NURSE[0], "guess-guess")
    waits = []
    for _ in range(3):
        clock.advance(minutes=100)  # past any lock so far
        response = attempt(client, NURSE[0], "guess-guess")
        waits.append(int(response.headers["Retry-After"]))
    assert waits == [120, 240, 480]
    for _ in range(10):
        clock.advance(minutes=100)
        response = attempt(client, NURSE[0], "guess-guess")
    assert response.headers["Retry-After"] == "3600"  # STAFF_LOCK_MAX_MINUTES


def test_one_address_guessing_many_accounts_is_locked_out(client):
    for number in range(19):
        assert attempt(client, f"guess{number}@demo.clinic", "guess-guess").status_code == 401
    assert attempt(client, "guess19@demo.clinic", "guess-guess").status_code == 429
    assert attempt(client, AGENT[0], AGENT[3]).status_code == 429


@on_both_databases
def test_failed_logins_are_audited_without_the_password(client, database):
    attempt(client, NURSE[0], "secret-guess-1")
    attempt(client, "stranger@demo.clinic", "secret-guess-2")
    with database.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "login_failed"))
        details = [(row.staff_id is not None, row.detail) for row in rows]
    assert [known for known, _ in details] == [True, False]
    assert "nurse@demo.clinic" in details[0][1] and "stranger@demo.clinic" in details[1][1]
    assert not any("secret-guess" in detail for _, detail in details)


def test_admin_command_unlocks_an_account(client, database):
    for _ in range(5):
        attempt(client, NURSE[0], "guess-guess")
    assert attempt(client, NURSE[0], NURSE[3]).status_code == 429
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main, ["staff", "unlock", "--email", NURSE[0]], env={"DATABASE_URL": database.url}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    assert attempt(client, NURSE[0], NURSE[3]).status_code == 303


@on_both_databases
def test_logout_ends_the_session_even_for_a_copied_cookie(client):
    csrf = log_in(client)
    stolen = dict(client.cookies)
    client.post("/staff/logout", data={"csrf_token": csrf}, follow_redirects=False)
    client.cookies.clear()
    for name, value in stolen.items():
        client.cookies.set(name, value, path="/staff")
    response = client.get("/staff", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/staff/login")


def test_a_new_password_ends_every_open_session(client, database):
    log_in(client)
    assert client.get("/staff", follow_redirects=False).status_code == 200
    with database.session() as session:
        add_staff(session, NURSE[0], NURSE[1], NURSE[2], "a-brand-new-password")
    assert client.get("/staff", follow_redirects=False).status_code == 303


@on_both_databases
def test_an_idle_session_ends_and_a_used_one_does_not(client, clock):
    log_in(client)
    for _ in range(3):  # an hour of work, a page every 20 minutes
        clock.advance(minutes=20)
        assert client.get("/staff", follow_redirects=False).status_code == 200
    clock.advance(minutes=31)
    response = client.get("/staff", follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "ended after a while without use" in page.text
