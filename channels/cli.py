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


def _database(settings: Settings, migrate: bool, must_exist: bool = False):
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
    except Exception as exc:
        database.dispose()
        raise click.ClickException(str(DatabaseUnavailable(url, cause_of(exc)))) from None
    return database


def _clinic(session, slug: str):
    """The clinic with this slug, or a one-line reason naming the clinics there are."""
    from status import clinics

    clinic = clinics.by_slug(session, slug)
    if clinic is None:
        known = ", ".join(c.slug for c in clinics.all_clinics(session))
        raise click.ClickException(f"no clinic {slug!r} (clinics: {known})")
    return clinic


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
    os.environ["PATIENT_STATUS_FREEZE_GC"] = "1"
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
@click.option("--clinic", "clinic_slug", default="default", show_default=True,
              help="The clinic whose events these are.")  # fmt: skip
def ingest(file: str, clinic_slug: str) -> None:
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
    with database.read_session() as session:
        clinic_id = _clinic(session, clinic_slug).id
    result = apply_in_transaction(
        database, events, [Notifier(settings).on_changes], clinic_id=clinic_id
    )
    click.echo(json.dumps({"accepted": len(events), **result.counts()}))


def _since(value: str | None):
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


def _run_import(load, clinic_slug: str) -> None:
    from bot.proactive.notifier import Notifier
    from channels.importers import ImportFailed
    from status.integrations.config import integration_settings
    from status.integrations.fhir import MalformedFhir
    from status.integrations.stripe_events import MalformedStripeEvent

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    try:
        with database.read_session() as session:
            config = integration_settings(session, settings, _clinic(session, clinic_slug).slug)
        totals = load(database, config, [Notifier(settings).on_changes])
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
@click.option("--clinic", "clinic_slug", default="default", show_default=True,
              help="The clinic whose FHIR server this is (its patient id system).")  # fmt: skip
def import_fhir(base: str, since: str | None, token: str | None, clinic_slug: str) -> None:
    from channels import importers

    start = _since(since)
    _run_import(
        lambda db, config, hooks: importers.import_fhir(db, config, base, start, hooks, token),
        clinic_slug,
    )


@import_group.command(
    "stripe", help="Read Stripe's events list (the clinic's Stripe API key) and apply it."
)
@click.option("--since", default=None, help="Only events created since (ISO date or time).")
@click.option("--clinic", "clinic_slug", default="default", show_default=True,
              help="The clinic whose Stripe account this is (its --stripe-api-key).")  # fmt: skip
def import_stripe(since: str | None, clinic_slug: str) -> None:
    from channels import importers

    start = _since(since)
    _run_import(
        lambda db, config, hooks: importers.import_stripe(db, config, start, hooks), clinic_slug
    )


@main.group(help="The materialised patient snapshots (the read model).")
def snapshot() -> None:
    pass


@snapshot.command("rebuild", help="Rebuild the materialised snapshots from the stored state.")
@click.option("--patient-id", default=None, help="Only this patient (the clinic's patient_id).")
@click.option("--clinic", "clinic_slug", default="default", show_default=True)
def snapshot_rebuild(patient_id: str | None, clinic_slug: str) -> None:
    from status import patients, read_model
    from status.db import utcnow

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    total = read_model.RefreshCounts()
    if patient_id is not None:
        with database.session() as session:
            clinic = _clinic(session, clinic_slug)
            patient = patients.by_source_id(session, clinic.id, patient_id)
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


@nlu.command("tune", help="Choose the rules/model combination thresholds, out of fold.")
@click.option(
    "--score-on",
    "score_on",
    multiple=True,
    help="Corpus file names (e.g. retired_eval_j.tsv) to measure and choose on: files the rules "
    "were never changed after, so the rules are held out as the model is. Default: every "
    "blind-written file.",
)
def nlu_tune(score_on: tuple[str, ...]) -> None:
    from bot.understanding import tune

    tune.run(log=click.echo, score_on=score_on)


@main.command(help="Talk to the assistant in the terminal as the patient with that phone.")
@click.option("--phone", required=True, help="The patient's phone, E.164 (e.g. +15550100001).")
def chat(phone: str) -> None:
    from channels.terminal import main_chat
    from status import patients
    from status.clinics import DEFAULT_ID
    from status.db import safe_url
    from status.patients import InvalidPhone

    settings = _settings()
    database = _database(
        settings, migrate=settings.database_url.startswith("sqlite"), must_exist=True
    )
    with database.read_session() as session:
        if not patients.any_patient(session, DEFAULT_ID):
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

    from channels.runtime import Runtime, freeze_start_up

    settings = _settings()
    _logging(settings)
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    runtime = Runtime(settings, database)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        freeze_start_up()  # before the first turn
        await runtime.start(workers=True)
        click.echo(f"worker {runtime.dispatcher.worker_id} running; Ctrl-C to stop")
        await stop.wait()
        await runtime.stop()

    asyncio.run(run())


def demo_settings(configured: Settings, host: str, port: int) -> Settings:
    """The demo's settings: demo mode, a key and a base URL if none is set, and outbound in
    log mode whatever the environment holds, so a `.env` with a clinic's real Twilio or
    Telegram credentials never texts real people from the demo."""
    return configured.model_copy(
        update={
            "demo_mode": True,
            "api_key": configured.api_key or "demo-api-key",
            "public_base_url": configured.public_base_url or f"http://{host}:{port}",
            "twilio_account_sid": None,
            "twilio_auth_token": None,
            "telegram_bot_token": None,
        }
    )


@main.command(help="Seed the demo clinic into the default SQLite database and serve it.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Seed and print the logins, then exit.")
def demo(host: str, port: int, no_serve: bool) -> None:
    from channels.staff.auth import add_staff
    from status import demo as demo_data

    settings = demo_settings(_settings(), host, port)
    _logging(settings, "text")
    if not no_serve:
        _port_free(host, port, f"make demo PORT={port + 10} (or patient-status demo --port "
                               f"{port + 10})")  # fmt: skip
    database = _database(settings, migrate=True)
    with database.session() as session:
        result = demo_data.seed(session)
        demo_data.seed_second_brand(session)
        # the demo nurse sees both clinics and switches between them in the console's header
        add_staff(session, "nurse@demo.clinic", "Demo Nurse", "admin", "demo-password",
                  platform_admin=True)  # fmt: skip
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
    brand = demo_data.SECOND_BRAND
    lines += [
        "",
        f"  A second clinic on the same deployment: {brand['name']} (slug {brand['slug']}, "
        f"SMS {brand['twilio_from_numbers'][0]}, {brand['timezone']}):",
    ]
    for _, name, dob, phone, case in demo_data.SECOND_BRAND_PATIENTS:
        lines.append(f"    {name:<16} {phone}  {dob}  {case}")
    lines += [
        "  Switch clinic in the console's header; `patient-status clinic list` shows both.",
        "",
        "  Outbound SMS is in log mode: nothing leaves this machine.",
        "",
    ]
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
@click.option(
    "--clinic", "clinic_slug", default="default", show_default=True,
    help="The clinic they work for, with this role (run again to add another clinic).",
)  # fmt: skip
@click.option("--platform-admin", is_flag=True, help="Sees and administers every clinic.")
def staff_add(
    email: str, name: str, role: str, password_stdin: bool, clinic_slug: str, platform_admin: bool
) -> None:
    from channels.staff.auth import StaffError, add_staff
    from channels.staff.models import memberships

    password = sys.stdin.readline().rstrip("\n")
    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    try:
        with database.session() as session:
            clinic = _clinic(session, clinic_slug)
            user = add_staff(
                session, email, name, role, password, clinic=clinic,
                platform_admin=True if platform_admin else None,
            )  # fmt: skip
            where = ", ".join(f"{c.slug} ({r})" for c, r in memberships(session, user))
            admin = "; platform admin" if user.platform_admin else ""
            click.echo(f"staff {user.email} ({user.role}) ready: {where}{admin}")
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
@click.option(
    "--clinic", "clinic_slug", default=None,
    help="A clinic's own bot: /webhooks/telegram/SLUG with that clinic's token and secret.",
)  # fmt: skip
def telegram_set_webhook(clinic_slug: str | None) -> None:
    import asyncio

    from channels.senders.telegram import WEBHOOK_PATH, set_webhook
    from status import clinics

    settings = _settings()
    path = WEBHOOK_PATH
    if clinic_slug is not None:
        database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
        with database.read_session() as session:
            clinic = _clinic(session, clinic_slug)
            settings = clinics.settings_for(settings, clinic)
        database.dispose()
        path = f"{WEBHOOK_PATH}/{clinic_slug}"
    try:
        url = asyncio.run(set_webhook(settings, path))
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
@click.option("--clinic", "clinic_slug", default="default", show_default=True)
def telegram_link(patient_id: str, clinic_slug: str) -> None:
    from channels import telegram_links
    from status import clinics, patients
    from status.db import utcnow

    settings = _settings()
    if not settings.telegram_enabled:
        raise click.ClickException(
            "TELEGRAM_BOT_TOKEN is not set: a link would point at a bot that isn't connected. "
            "Set TELEGRAM_BOT_TOKEN and TELEGRAM_BOT_USERNAME first (README: Connecting Telegram)"
        )
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.session() as session:
        clinic = _clinic(session, clinic_slug)
        patient = patients.by_source_id(session, clinic.id, patient_id)
        if patient is None:
            raise click.ClickException(f"no patient with patient_id {patient_id!r}")
        settings = clinics.settings_for(settings, clinic)
        if not settings.telegram_bot_token or not settings.telegram_bot_username:
            raise click.ClickException(
                f"clinic {clinic_slug!r} has no Telegram bot: a link would lead nowhere. Give it "
                "one first (clinic update --telegram-token, --telegram-secret, --telegram-username)"
            )
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


# --- clinics ----------------------------------------------------------------------------------


def _clinic_options(command):
    """The options `clinic add` and `clinic update` share (DESIGN.md: Command line)."""
    options = [
        click.option("--name", default=None, help="What patients read: 'Hi, it's NAME'."),
        click.option("--twilio-from", "twilio_from", multiple=True,
                     help="An SMS number of the clinic, E.164 (repeat for several; the first "
                          "sends). Inbound SMS to it is this clinic's."),
        click.option("--twilio-messaging-service", "twilio_messaging_service", default=None,
                     help="A Twilio Messaging Service SID (MG...): sends and routes inbound."),
        click.option("--timezone", default=None, help="IANA zone, e.g. America/Chicago."),
        click.option("--hours", default=None, help="e.g. 'Mon-Fri 08:00-18:00'."),
        click.option("--support-phone", default=None),
        click.option("--payment-url", default=None, help="Where patients update their card."),
        click.option("--quiet-hours", default=None, help="e.g. 21:00-08:00, or off."),
        click.option("--language", type=click.Choice(["en", "es"]), default=None),
        click.option("--telegram-token", default=None, help="The clinic's own bot token."),
        click.option("--telegram-secret", default=None, help="Its webhook secret token."),
        click.option("--telegram-username", default=None, help="Its @username, without @."),
        click.option("--staff-chat", default=None, help="Telegram chat id for staff alerts."),
        click.option("--display-name", default=None, help="Branding: the name on pages."),
        click.option("--brand-color", default=None, help="Branding: e.g. #0b5cad."),
        click.option("--accent-color", default=None),
        click.option("--logo-url", default=None),
        click.option("--stripe-webhook-secret", default=None,
                     help="Its Stripe endpoint's signing secret (whsec_...): "
                          "/integrations/stripe/SLUG."),
        click.option("--stripe-api-key", default=None,
                     help="Its Stripe API key (customer look-ups, `import stripe`)."),
        click.option("--stripe-patient-match", default=None,
                     help="How a Stripe customer is matched, e.g. metadata,email,phone."),
        click.option("--fhir-webhook-secret", default=None,
                     help="Its FHIR subscription's HMAC secret (X-Signature): "
                          "/integrations/fhir/SLUG."),
        click.option("--fhir-bearer-token", default=None,
                     help="Or a bearer token its FHIR server sends."),
        click.option("--fhir-patient-id-system", default=None,
                     help="The FHIR identifier system whose value is its patient_id."),
        click.option("--template", "templates", multiple=True, type=(str, click.Path(
            exists=True, dir_okay=False)), help="Reword a message: LANG/NAME FILE, e.g. "
            "en/help_keyword help.j2 (repeat; a template not given stays ours)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _clinic_values(options: dict) -> dict:
    if (options["telegram_token"] is None) != (options["telegram_secret"] is None):
        existing = options.get("_updating")
        if not existing:
            raise click.UsageError("--telegram-token and --telegram-secret go together")
    templates = {key: Path(path).read_text(encoding="utf-8") for key, path in options["templates"]}
    return {
        "name": options["name"],
        "twilio_from_numbers": list(options["twilio_from"]) or None,
        "twilio_messaging_service_sid": options["twilio_messaging_service"],
        "timezone": options["timezone"],
        "hours": options["hours"],
        "support_phone": options["support_phone"],
        "payment_update_url": options["payment_url"],
        "quiet_hours": options["quiet_hours"],
        "language": options["language"],
        "telegram_bot_token": options["telegram_token"],
        "telegram_webhook_secret": options["telegram_secret"],
        "telegram_bot_username": options["telegram_username"],
        "telegram_staff_chat_id": options["staff_chat"],
        "display_name": options["display_name"],
        "brand_color": options["brand_color"],
        "accent_color": options["accent_color"],
        "logo_url": options["logo_url"],
        "stripe_webhook_secret": options["stripe_webhook_secret"],
        "stripe_api_key": options["stripe_api_key"],
        "stripe_patient_match": options["stripe_patient_match"],
        "fhir_webhook_secret": options["fhir_webhook_secret"],
        "fhir_bearer_token": options["fhir_bearer_token"],
        "fhir_patient_id_system": options["fhir_patient_id_system"],
        "templates": templates or None,
    }


def _clinic_line(clinic, settings: Settings) -> str:
    from status import clinics

    own = clinics.settings_for(settings, clinic)
    sms = own.twilio_messaging_service_sid or ", ".join(clinic.twilio_from_numbers or []) or (
        own.twilio_from_number or "no SMS sender"
    )
    telegram = "own bot" if clinic.telegram_bot_token else (
        "environment's bot" if clinic.is_default and own.telegram_bot_token else "no bot"
    )  # fmt: skip
    key = "key set" if clinic.api_key_hash or (clinic.is_default and own.api_key) else "no key"
    return (
        f"{clinic.slug:<16} {own.clinic_name:<24} {own.clinic_timezone:<20} {sms} · {telegram}"
        f" · {key}"
    )


@main.group(help="Clinics served by this deployment (the environment configures `default`).")
def clinic() -> None:
    pass


def _clinic_change(action):
    from status import clinics

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    try:
        with database.session() as session:
            found = action(session)
            line = _clinic_line(found, settings)
    except (clinics.InvalidClinic, clinics.ClinicExists, clinics.NumberTaken) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        database.dispose()
    click.echo(line)


@clinic.command("add", help="Create a clinic: its name, numbers, bot, zone.")
@click.argument("slug")
@_clinic_options
def clinic_add(slug: str, **options) -> None:
    from status import clinics

    if not options["name"]:
        raise click.UsageError("--name is required for a new clinic")
    values = _clinic_values(options)
    name = values.pop("name")
    _clinic_change(lambda session: clinics.add(session, slug, name, **values))


@clinic.command("update", help="Change a clinic's settings (options not given stay as they are).")
@click.argument("slug")
@_clinic_options
def clinic_update(slug: str, **options) -> None:
    from status import clinics

    values = _clinic_values({**options, "_updating": True})
    _clinic_change(lambda session: clinics.update(session, _clinic(session, slug), **values))


@clinic.command("list", help="Every clinic: slug, name, zone, SMS sender, bot, API key.")
def clinic_list() -> None:
    from status import clinics

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.read_session() as session:
        for found in clinics.all_clinics(session):
            click.echo(_clinic_line(found, settings))
    database.dispose()


@clinic.command("key", help="Create or rotate the clinic's API key; the key is the last line.")
@click.argument("slug")
def clinic_key(slug: str) -> None:
    from status import clinics

    settings = _settings()
    database = _database(settings, migrate=settings.database_url.startswith("sqlite"))
    with database.session() as session:
        found = _clinic(session, slug)
        rotated = found.api_key_hash is not None
        key = clinics.rotate_key(session, found)
    database.dispose()
    click.echo(
        f"{'Rotated' if rotated else 'Created'} the API key of clinic {slug!r}"
        f"{': the old key no longer works' if rotated else ''}. It is shown once and stored "
        "hashed; send it as 'Authorization: Bearer <key>'."
    )
    click.echo(key)
