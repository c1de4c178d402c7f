"""`patient-status`: the command line (names fixed by DESIGN.md)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy import make_url

from status.settings import Settings, get_settings


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise click.ClickException(f"bad setting: {problems}") from None


def _logging(settings: Settings, fmt: str | None = None) -> None:
    from status.logs import configure

    configure(fmt or settings.log_format, settings.log_level)


def _database(settings: Settings, migrate: bool, must_exist: bool = False):  # noqa: ANN202
    """The database, reachable, or a one-line reason why not (never a traceback)."""
    from status.db import Database, DatabaseUnavailable, cause_of
    from status.migrate import upgrade

    url = settings.database_url
    if must_exist and url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        if not path.is_file():
            raise click.ClickException(
                f"no database at {path.resolve()}: run this from the folder where you ran "
                "`make demo` (or `patient-status demo`), or set DATABASE_URL"
            )
    database = Database(url)
    try:
        database.check()
        if migrate:
            upgrade(url)
    except DatabaseUnavailable as exc:
        database.dispose()
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a migration that can't run: say why, in one line
        database.dispose()
        raise click.ClickException(str(DatabaseUnavailable(url, cause_of(exc)))) from None
    return database


def _port_free(host: str, port: int, how_to_change: str) -> None:
    """Refuse to start, before printing anything, when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # as uvicorn binds: connections of a process that just died (TIME_WAIT) don't count,
        # a server still listening does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"port {port} on {host} is in use ({exc.strerror}); another copy may be running. "
                f"Pick another port: {how_to_change}"
            ) from None


@click.group(help="Patient Status Assistant: SMS and Telegram answers from live care state.")
def main() -> None:
    pass


@main.command(help="Serve the HTTP app (with the dispatcher and scheduler unless --no-workers).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--no-workers", is_flag=True, help="Leave the turn runner, dispatcher and scheduler out."
)
@click.option("--workers", "processes", default=1, show_default=True, help="uvicorn processes.")
def serve(host: str, port: int, no_workers: bool, processes: int) -> None:
    import os

    import uvicorn

    settings = _settings()
    _logging(settings)
    # Refuse to start on a database we can't reach: a server that answers 500 to every
    # webhook loses patients' messages.
    _database(settings, migrate=settings.database_url.startswith("sqlite")).dispose()
    _port_free(host, port, f"patient-status serve --port {port + 10}")
    os.environ["PATIENT_STATUS_RUN_WORKERS"] = "0" if no_workers else "1"
    os.environ["PATIENT_STATUS_CONFIGURE_LOGGING"] = "1"  # each uvicorn worker process too
    uvicorn.run(
        "channels.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        proxy_headers=True,
        log_config=None,
        access_log=False,
        # a worker process imports the whole app before it answers: give a busy host time
        timeout_worker_healthcheck=60,
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
    from bot.proactive.notifier import Notifier
    from status.events.apply import apply_in_transaction
    from status.events.schemas import InvalidEvents, parse_events
    from status.limits import MAX_EVENTS_BODY, LimitExceeded, load_json

    stream = sys.stdin if file == "-" else Path(file).open(encoding="utf-8")  # noqa: SIM115
    raw, problems = [], []
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                raw.append((number, load_json(line.encode(), max_bytes=MAX_EVENTS_BODY)))
            except LimitExceeded as exc:
                problems.append(f"line {number}: {exc.rule}")
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
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
    # the same reactions as POST /events: proactive updates to the patients concerned
    result = apply_in_transaction(database, events, [Notifier(settings).on_changes])
    click.echo(json.dumps({"accepted": len(events), **result.counts()}))


def _since(value: str | None):  # noqa: ANN202 - datetime | None
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.group("import", help="First load from the systems the clinic runs (FHIR, Stripe).")
def import_group() -> None:
    pass


def _run_import(load) -> None:  # noqa: ANN001 - (database, config, hooks) -> ImportTotals
    from bot.proactive.notifier import Notifier
    from channels.importers import ImportFailed
    from status.integrations.config import integration_settings
    from status.integrations.fhir import MalformedFhir
    from status.integrations.stripe_events import MalformedStripeEvent

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    try:
        totals = load(database, integration_settings(settings), [Notifier(settings).on_changes])
    except (ImportFailed, MalformedFhir, MalformedStripeEvent) as exc:
        raise click.ClickException(f"{exc} (pages before this one were applied)") from None
    finally:
        database.dispose()
    click.echo(json.dumps(totals.body()))


@import_group.command("fhir", help="Page a FHIR server's searches (Patient first) and apply them.")
@click.option(
    "--base", required=True, help="The FHIR base URL, e.g. https://api.medplum.com/fhir/R4"
)
@click.option("--since", default=None, help="Only resources changed since (ISO date or time).")
@click.option("--token", envvar="FHIR_IMPORT_TOKEN", default=None,
              help="Bearer token for the FHIR server (or FHIR_IMPORT_TOKEN).")  # fmt: skip
def import_fhir(base: str, since: str | None, token: str | None) -> None:
    from channels import importers

    start = _since(since)
    _run_import(
        lambda db, config, hooks: importers.import_fhir(db, config, base, start, hooks, token)
    )


@import_group.command("stripe", help="Read Stripe's events list (STRIPE_API_KEY) and apply it.")
@click.option("--since", default=None, help="Only events created since (ISO date or time).")
def import_stripe(since: str | None) -> None:
    from channels import importers

    start = _since(since)
    _run_import(lambda db, config, hooks: importers.import_stripe(db, config, start, hooks))


@main.group(help="The materialised patient snapshots (the read model).")
def snapshot() -> None:
    pass


@snapshot.command("rebuild", help="Rebuild the materialised snapshots from the stored state.")
@click.option("--patient-id", default=None, help="Only this patient (the clinic's patient_id).")
def snapshot_rebuild(patient_id: str | None) -> None:
    from status import patients, read_model
    from status.db import utcnow

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    total = read_model.RefreshCounts()
    if patient_id is not None:
        with database.session() as session:
            patient = patients.by_source_id(session, patient_id)
            if patient is None:
                raise click.ClickException(f"no patient with patient_id {patient_id!r}")
            total = read_model.refresh(session, [patient.id], utcnow(), skip_unchanged=True)
    else:
        after: int | None = 0
        while after is not None:  # a transaction per slice of 500 patients
            with database.session() as session:
                counts, after = read_model.rebuild(session, utcnow(), after_id=after)
            total.add(counts)
    done = total.created + total.updated + total.unchanged
    click.echo(json.dumps({"patients": done, **vars(total)}))


@main.command(help="Classify messages from stdin, one per line, as JSON lines.")
def classify() -> None:
    from bot.understanding.evaluate import run_classify

    run_classify(sys.stdin, sys.stdout)


@main.command("eval-nlu", help="Evaluate the classifier on a labelled TSV or JSON-lines file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--mode",
    type=click.Choice(["combined", "rules", "model"]),
    default="combined",
    show_default=True,
    help="rules alone, the learned model alone, or both as the app runs them.",
)
@click.option("--figures-only", is_flag=True, help="Leave every message out of the report.")
def eval_nlu(file: str, mode: str, figures_only: bool) -> None:
    from bot.understanding.evaluate import BadEvalFile, run_eval
    from bot.understanding.pipeline import classifier_for

    try:
        sys.exit(run_eval(file, sys.stdout, classifier_for(mode), figures_only))
    except BadEvalFile as exc:
        raise click.ClickException(str(exc)) from exc


@main.group(help="The learned classifier.")
def nlu() -> None:
    pass


@nlu.command("train", help="Train the learned classifier from the corpus in the repository.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Artifact path.")
def nlu_train(out: str | None) -> None:
    from bot.understanding import model

    path = model.train_and_save(Path(out) if out else None)
    click.echo(f"wrote {path}")


@main.command(help="Talk to the assistant in the terminal as the patient with that phone.")
@click.option("--phone", required=True, help="The patient's phone, E.164 (e.g. +15550100001).")
def chat(phone: str) -> None:
    from channels.terminal import main_chat
    from status import patients
    from status.db import safe_url
    from status.patients import InvalidPhone

    settings = _settings()
    database = _database(
        settings, migrate=settings.database_url.startswith("sqlite"), must_exist=True
    )
    with database.read_session() as session:
        if not patients.any_patient(session):
            raise click.ClickException(
                f"the database at {safe_url(settings.database_url)} has no patients yet: seed "
                "the demo (`patient-status demo --no-serve`) or feed it events (`ingest FILE`)"
            )
    try:
        sys.exit(main_chat(settings, database, phone))
    except InvalidPhone as exc:
        raise click.ClickException(str(exc)) from exc


@main.command(help="Run the turn runner, dispatcher and scheduler (beside `serve --no-workers`).")
def worker() -> None:
    import asyncio
    import signal

    from channels.runtime import Runtime

    settings = _settings()
    _logging(settings)
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    runtime = Runtime(settings, database)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start(workers=True)
        click.echo(f"worker {runtime.dispatcher.worker_id} running; Ctrl-C to stop")
        await stop.wait()
        await runtime.stop()

    asyncio.run(run())


@main.command(help="Seed the demo clinic into the default SQLite database and serve it.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Seed and print the logins, then exit.")
def demo(host: str, port: int, no_serve: bool) -> None:
    from channels.staff.auth import add_staff
    from status import demo as demo_data

    configured = _settings()
    settings = configured.model_copy(
        update={
            "demo_mode": True,
            "api_key": configured.api_key or "demo-api-key",
            "public_base_url": configured.public_base_url or f"http://{host}:{port}",
        }
    )
    _logging(settings, "text")
    if not no_serve:
        _port_free(host, port, f"make demo PORT={port + 10} (or patient-status demo --port "
                               f"{port + 10})")  # fmt: skip
    database = _database(settings, migrate=True)
    with database.session() as session:
        result = demo_data.seed(session)
        add_staff(session, "nurse@demo.clinic", "Demo Nurse", "admin", "demo-password")
    base = f"http://{host}:{port}"
    lines = [
        f"{settings.clinic_name} demo: {result.applied} new events seeded "
        f"into {settings.database_url}",
        "",
        f"  Patient simulator   {base}/simulator",
        f"  Staff console       {base}/staff   (nurse@demo.clinic / demo-password)",
        f"  Patient status API  {base}/api/patients/demo-maria/status",
        f"                      (Authorization: Bearer {settings.api_key})",
        f"  Events API          POST {base}/events",
        f"  Health              {base}/healthz",
        "",
        "  Demo patients (phone, date of birth):",
    ]
    for _, name, dob, phone, case in demo_data.DEMO_PATIENTS:
        lines.append(f"    {name:<16} {phone}  {dob}  {case}")
    lines += ["", "  Outbound SMS is in log mode: nothing leaves this machine.", ""]
    click.echo("\n".join(lines))
    if no_serve:
        return
    import uvicorn

    from channels.app import create_app

    app = create_app(settings, database, run_workers=True)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


@main.group(help="Staff logins for the console.")
def staff() -> None:
    pass


@staff.command("add", help="Create (or reset) a staff login; the password is read from stdin.")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["agent", "admin"]), default="agent", show_default=True)
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from stdin.")
def staff_add(email: str, name: str, role: str, password_stdin: bool) -> None:
    from channels.staff.auth import StaffError, add_staff

    password = sys.stdin.readline().rstrip("\n")
    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    try:
        with database.session() as session:
            user = add_staff(session, email, name, role, password)
            click.echo(f"staff {user.email} ({user.role}) ready")
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc


@staff.command("unlock", help="Lift a login lock (too many wrong passwords) for this email.")
@click.option("--email", required=True)
def staff_unlock(email: str) -> None:
    from channels.staff.throttle import unlock

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.session() as session:
        lifted = unlock(session, email)
    what = "unlocked" if lifted else "was not locked"
    click.echo(f"{email.strip().lower()} {what}; the next wrong password starts a new count")


@main.group(help="Telegram bot commands.")
def telegram() -> None:
    pass


@telegram.command("set-webhook", help="Register PUBLIC_BASE_URL/webhooks/telegram with the secret.")
def telegram_set_webhook() -> None:
    import asyncio

    from channels.senders.telegram import set_webhook

    settings = _settings()
    try:
        url = asyncio.run(set_webhook(settings))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Telegram will call {url}")


@telegram.command("poll", help="Long-poll Telegram instead of a webhook (local development).")
def telegram_poll() -> None:
    import asyncio

    from channels.runtime import Runtime
    from channels.telegram import poll

    settings = _settings()
    if not settings.telegram_enabled:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set")
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    runtime = Runtime(settings, database)

    async def run() -> None:
        stop = asyncio.Event()
        await runtime.start(workers=True)
        try:
            await poll(runtime, stop)
        finally:
            await runtime.stop()

    asyncio.run(run())


@telegram.command("link", help="Make a single-use deep link that connects a patient's Telegram.")
@click.option("--patient-id", required=True, help="The clinic's patient_id.")
def telegram_link(patient_id: str) -> None:
    from channels import telegram_links
    from status import patients
    from status.db import utcnow

    settings = _settings()
    if not settings.telegram_enabled:
        raise click.ClickException(
            "TELEGRAM_BOT_TOKEN is not set: a link would point at a bot that isn't connected. "
            "Set TELEGRAM_BOT_TOKEN and TELEGRAM_BOT_USERNAME first (README: Connecting Telegram)"
        )
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.session() as session:
        patient = patients.by_source_id(session, patient_id)
        if patient is None:
            raise click.ClickException(f"no patient with patient_id {patient_id!r}")
        token = telegram_links.create_token(session, settings.secret_key, patient, utcnow())
    click.echo(telegram_links.deep_link(settings.telegram_bot_username, token))


@main.group(help="Inspect and replay outbound messages.")
def outbox() -> None:
    pass


@outbox.command("list", help="Outbound messages by status (ids, channel, codes; no bodies).")
@click.option("--status", default="failed", show_default=True)
@click.option("--limit", default=50, show_default=True)
def outbox_list(status: str, limit: int) -> None:
    from sqlalchemy import select

    from bot.messages import Direction, Message

    settings = _settings()
    database = _database(settings, migrate=False)
    with database.session() as session:
        query = (
            select(Message)
            .where(Message.direction == Direction.OUT, Message.status == status)
            .order_by(Message.id.desc())
            .limit(limit)
        )
        for m in session.scalars(query):
            click.echo(
                f"{m.id}\t{m.channel}\t{m.kind}\t{m.status}\tcode={m.error_code or '-'}"
                f"\tattempts={m.attempts}\t{m.created_at:%Y-%m-%d %H:%M}"
            )


@outbox.command("retry", help="Put a failed or undelivered message back in the queue.")
@click.argument("message_id", type=int)
def outbox_retry(message_id: int) -> None:
    from bot.messages import Message
    from bot.outbox import RetryRefused, requeue

    settings = _settings()
    database = _database(settings, migrate=False)
    with database.session() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise click.ClickException(f"no outbound message {message_id}")
        try:
            requeue(session, message)
        except RetryRefused as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"message {message_id} queued again")


if __name__ == "__main__":
    main()
