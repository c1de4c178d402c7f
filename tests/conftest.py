"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL), settings, the app."""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from status import clinics
from status.db import Base, Database
from status.migrate import upgrade
from status.settings import Settings

pytest_plugins = ["tests.fakes.fixtures"]

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# The browser tests drive Debian's Chromium (a browser download does not work here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
API_KEY = "test-api-key"
# Generated requests per database and status class ("postgresql 2xx"), printed after the run.
FUZZ_COUNTS: Counter[str] = Counter()


def count_fuzzed(database: Database, status_code: int) -> None:
    FUZZ_COUNTS[f"{database.engine.dialect.name} {status_code // 100}xx"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if FUZZ_COUNTS:
        total = sum(FUZZ_COUNTS.values())
        counts = ", ".join(f"{key}: {FUZZ_COUNTS[key]}" for key in sorted(FUZZ_COUNTS))
        terminalreporter.write_line(f"fuzzed requests: {total} ({counts})")


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server for this test session, migrated."""
    problem = _postgres_reachable()
    if problem:
        message = f"PostgreSQL not reachable at {PG_SERVER}: {problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"ps_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(db: Database) -> None:
    """Every table emptied, but for the default clinic the migration made (as a fresh database)."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    with db.session() as session:
        clinics.ensure_default(session)
        session.execute(text("SELECT setval(pg_get_serial_sequence('clinics', 'id'), 1)"))


@pytest.fixture(params=["sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database. Parametrize with `on_both_databases` to add PostgreSQL."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        db = Database(url, pool_size=5, max_overflow=5)
        _truncate_all(db)
    else:
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copy(template, path)
        db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


on_both_databases = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database.url,
        api_key=API_KEY,
        public_base_url="https://clinic.example",
        secret_key="test-secret",
        notify_delay_seconds=0,
        quiet_hours="off",
    )


@pytest.fixture
def session(database: Database):
    with database.session() as session:
        yield session


# Debian's Chromium for the browser tests (staff console, status page); CI must run them.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's chromium to run the browser tests"
        if IN_CI:
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()
