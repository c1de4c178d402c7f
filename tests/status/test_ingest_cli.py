"""`patient-status ingest FILE` applies JSON lines with the same rules as POST /events."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import func, select

from channels.cli import main
from status.events.store import StoredEvent
from status.settings import get_settings
from tests.builders import patient_event, prescription_event


def run(database, *args):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args, env={"DATABASE_URL": database.url})
    finally:
        get_settings.cache_clear()


def test_ingest_applies_a_file_and_is_idempotent(database, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [patient_event(), prescription_event("shipped")]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    first = run(database, "ingest", str(path))
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["applied"] == 2
    second = run(database, "ingest", str(path))
    assert json.loads(second.output)["duplicates"] == 2


def test_ingest_refuses_the_whole_file_naming_the_line(database, tmp_path):
    path = tmp_path / "events.jsonl"
    bad = prescription_event(status="lost")
    path.write_text(json.dumps(patient_event()) + "\n\n" + json.dumps(bad) + "\n")
    result = run(database, "ingest", str(path))
    assert result.exit_code != 0
    assert "line 3: data.status" in result.output
    assert "nothing was applied" in result.output
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(StoredEvent)) == 0


def test_ingest_names_a_line_that_is_not_json(database, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(patient_event()) + "\n{oops\n")
    result = run(database, "ingest", str(path))
    assert result.exit_code != 0
    assert "line 2: not valid JSON" in result.output
