"""`patient-status`: the command line (names fixed by DESIGN.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from status.settings import Settings, get_settings


def _settings() -> Settings:
    return get_settings()


def _database(settings: Settings, migrate: bool):  # noqa: ANN202
    from status.db import Database
    from status.migrate import upgrade

    if migrate:
        upgrade(settings.database_url)
    return Database(settings.database_url)


@click.group(help="Patient Status Assistant: SMS and Telegram answers from live care state.")
def main() -> None:
    pass


@main.command(help="Serve the HTTP app (with the dispatcher and scheduler unless --no-workers).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-workers", is_flag=True, help="Leave the dispatcher and scheduler out.")
@click.option("--workers", "processes", default=1, show_default=True, help="uvicorn processes.")
def serve(host: str, port: int, no_workers: bool, processes: int) -> None:
    import os

    import uvicorn

    settings = _settings()
    if settings.database_url.startswith("sqlite"):
        _database(settings, migrate=True).dispose()
    os.environ["PATIENT_STATUS_RUN_WORKERS"] = "0" if no_workers else "1"
    uvicorn.run(
        "channels.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
    )


@main.group(help="Database commands.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply migrations (Alembic) to DATABASE_URL.")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    from status.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@main.command(help="Apply events from a JSON-lines file (same rules as POST /events).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def ingest(file: str) -> None:
    from status.events.apply import apply_events
    from status.events.schemas import InvalidEvents, parse_events

    stream = sys.stdin if file == "-" else Path(file).open(encoding="utf-8")
    raw, problems = [], []
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                raw.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not valid JSON ({exc.msg})")
    if problems:
        raise click.ClickException("; ".join(problems[:20]) + "\nnothing was applied")
    try:
        events = parse_events([event for _, event in raw])
    except InvalidEvents as exc:
        lines = [number for number, _ in raw]
        detail = "\n".join(
            f"line {lines[p.index]}: {p.field}: {p.message}" for p in exc.problems[:50]
        )
        raise click.ClickException(f"{detail}\nnothing was applied") from exc
    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.session() as session:
        result = apply_events(session, events)
        _run_change_hooks(settings, session, result.changes)
    click.echo(json.dumps({"accepted": len(events), **result.counts()}))


def _run_change_hooks(settings: Settings, session, changes) -> None:  # noqa: ANN001
    """The same reactions to state changes as POST /events (proactive rules)."""
    from channels.app import change_hooks

    for hook in change_hooks(settings):
        hook(session, changes)


@main.command(help="Classify messages from stdin, one per line, as JSON lines.")
def classify() -> None:
    from bot.understanding.evaluate import run_classify

    run_classify(sys.stdin, sys.stdout)


@main.command("eval-nlu", help="Evaluate the classifier on a labelled JSON-lines file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def eval_nlu(file: str) -> None:
    from bot.understanding.evaluate import run_eval

    sys.exit(run_eval(file, sys.stdout))


if __name__ == "__main__":
    main()
