"""What an operator sees when something around the app is wrong: one line that says what and
what to do, never a traceback, and a server that refuses to start rather than answer 500."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from channels.app import create_app
from channels.cli import main
from status.db import Database
from status.settings import Settings, get_settings

UNREACHABLE = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder with no database and no .env, and no settings from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(*args: str, **env: str):
    get_settings.cache_clear()  # each invocation reads its own environment, as a new process
    try:
        return CliRunner().invoke(main, list(args), env=env or None, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_unreachable_database_is_one_line_and_serve_refuses_to_start(elsewhere):
    line = one_line_error(run("serve", "--port", "1", DATABASE_URL=UNREACHABLE))
    assert line.startswith("Error: cannot use the database at postgresql+psycopg://postgres:***@")
    assert "refused" in line.lower()
    assert "s3cret" not in line


def test_postgres_scheme_from_hosting_providers_is_accepted():
    for url in ("postgres://u:p@db.example:5432/app", "postgresql://u:p@db.example:5432/app"):
        assert Settings(_env_file=None, database_url=url).database_url == (
            "postgresql+psycopg://u:p@db.example:5432/app"
        )


def test_unsupported_database_scheme_says_what_to_use(elsewhere):
    line = one_line_error(run("chat", "--phone", "+15550100001", DATABASE_URL="mysql://x/y"))
    assert "DATABASE_URL" in line and "postgresql+psycopg://" in line


def test_healthz_is_a_json_503_naming_the_database():
    settings = Settings(_env_file=None, database_url=UNREACHABLE, api_key="k")
    database = Database(UNREACHABLE)
    with TestClient(create_app(settings, database, run_workers=False)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body["down"] == ["database"]
    assert "refused" in body["checks"]["database"].lower()


def test_demo_on_a_busy_port_says_which_and_how_to_pick_another(elsewhere):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("demo", "--port", str(port))
    line = one_line_error(result)
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert f"make demo PORT={port + 10}" in line
    assert "simulator" not in result.output  # nothing printed as if it had started
    assert not (elsewhere / "patient-status.db").exists()


def test_chat_from_another_folder_says_where_it_looked(elsewhere):
    line = one_line_error(run("chat", "--phone", "+15550100001"))
    assert f"no database at {elsewhere / 'patient-status.db'}" in line
    assert "make demo" in line
    assert not (elsewhere / "patient-status.db").exists()  # nothing created behind our back


def test_chat_on_an_empty_database_says_it_has_no_patients(elsewhere):
    assert run("db", "upgrade").exit_code == 0
    line = one_line_error(run("chat", "--phone", "+15550100001"))
    assert "has no patients yet" in line


def test_telegram_link_without_a_bot_token_refuses(elsewhere):
    line = one_line_error(run("telegram", "link", "--patient-id", "demo-maria"))
    assert "TELEGRAM_BOT_TOKEN is not set" in line
