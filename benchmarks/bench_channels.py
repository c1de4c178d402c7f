"""Channels benchmark: inbound SMS webhook throughput and outbox dispatcher throughput.

1. Inbound SMS (`POST /webhooks/twilio/sms`): signed requests, each from a different verified
   patient (seeded through events, with a verified SMS conversation), asking where their
   prescription is: signature check, receipt, engine turn, answer from the snapshot, reply row in
   the outbox, empty TwiML. Compared with a bare FastAPI app whose one route parses the same form
   (`await request.form()`) and answers the same TwiML, served the same way: one uvicorn process
   per app on 127.0.0.1 (uvloop + httptools when installed, as `patient-status serve`), the
   product's JSON logging at INFO to a file, and the app's dispatcher and scheduler left out
   (`run_workers=False`, as `serve --no-workers`) so nothing else competes. Load: an async httpx
   client in this process, pre-signed requests, fixed concurrency (8 and 32). Afterwards the
   outbox must hold exactly one reply per request.
2. Dispatcher: N queued SMS sent to the local fake Twilio through the real twilio client, by one
   in-process `Runtime(...).dispatcher.drain()` and by one and two `patient-status worker`
   processes; messages/s, and each sent exactly once.

    python benchmarks/bench_channels.py [--backend sqlite|postgres|both] [--requests N] [--quick]

PostgreSQL runs in throwaway databases (`bench_<random>`) on the local server, dropped at the
end; SQLite in temporary files. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from status.clinics import DEFAULT_ID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from bench_status import (  # noqa: E402
    PG_SERVER,
    database,
    log,
    machine,
    percentile,
    postgres_problem,
)
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import PlainTextResponse, Response  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "channels.json"
WEBHOOK = "/webhooks/twilio/sms"
PUBLIC_BASE_URL = "https://clinic.example"
TWILIO_NUMBER = "+15550109000"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
QUESTIONS = [
    "where is my prescription",
    "Where is my prescription?",
    "wheres my rx",
    "when will my meds arrive",
]
PATIENT_PHONE_BASE = 2_000_000  # patient i texts from +1555 200 0000 + i


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency_ms(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


# --- servers: one uvicorn process each, started from this file --------------------------------


def bare_app(signed: bool = False) -> Any:
    """The baseline: FastAPI, one route parsing the same form, answering the same TwiML
    (`signed`: also checking the X-Twilio-Signature with twilio's RequestValidator)."""
    app = FastAPI()
    validator = RequestValidator(AUTH_TOKEN)

    @app.post(WEBHOOK)
    async def sms(request: Request) -> Response:
        form = await request.form()
        params = {key: str(value) for key, value in form.multi_items()}
        if not params.get("MessageSid"):
            return Response("MessageSid is required", status_code=400)
        signature = request.headers.get("x-twilio-signature", "")
        if signed and not validator.validate(PUBLIC_BASE_URL + WEBHOOK, params, signature):
            return Response("bad signature", status_code=403)
        return Response(EMPTY_TWIML, media_type="application/xml")

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app


def serve_child(kind: str, port: int, run_workers: bool) -> None:
    """Child process entry: serve `kind` ("app" or "bare") on 127.0.0.1:`port`.

    The uvicorn options are `patient-status serve`'s (one process, proxy headers, no access log,
    the product's logging); settings come from the environment the parent set.
    """
    import uvicorn

    from status.logs import configure
    from status.settings import Settings

    settings = Settings(_env_file=None)
    configure(settings.log_format, settings.log_level)
    if kind == "app":
        import os

        from channels.app import create_app
        from status.db import Database

        os.environ["PATIENT_STATUS_FREEZE_GC"] = "1"  # as `serve` sets it

        app = create_app(settings, Database(settings.database_url), run_workers=run_workers)
    else:
        app = bare_app(signed=kind == "bare_signed")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        proxy_headers=True,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


class Server:
    """A child uvicorn process serving on a free loopback port."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path, run_workers: bool = False):
        self.kind = kind
        self.env = env
        self.log_path = log_path
        self.run_workers = run_workers
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Server:
        # A port, not an inherited socket: uvicorn takes a passed fd for a Unix socket and would
        # leave TCP_NODELAY off (40 ms delayed-ACK stalls). The port was free a moment ago.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-child", self.kind]
        command += ["--port", str(self.port)] + (["--run-workers"] if self.run_workers else [])
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=self._log, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.log_path}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not answer /healthz; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def base_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a server or worker process: settings only, from scratch."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        DATABASE_URL=url,
        API_KEY="bench-api-key",
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=TWILIO_NUMBER,
        TWILIO_MESSAGES_PER_SECOND="0",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- seeding ---------------------------------------------------------------------------------


def phone(index: int) -> str:
    return f"+1555{PATIENT_PHONE_BASE + index:07d}"


def seed_verified_patients(url: str, count: int) -> dict[str, Any]:
    """`count` patients with a shipped prescription, each with a verified SMS conversation."""
    from bot.conversations import Conversation
    from status.db import Database, utcnow
    from status.events.apply import apply_events
    from status.events.schemas import parse_events
    from status.patients import Patient

    started = time.perf_counter()
    now = utcnow()
    earlier = (now - timedelta(days=2)).isoformat()
    later = (now - timedelta(days=1)).isoformat()
    db = Database(url)
    for first in range(0, count, 500):
        events: list[dict[str, Any]] = []
        for i in range(first, min(count, first + 500)):
            pid, rx = f"cp-{i:06d}", f"crx-{i:06d}"
            events += [
                {"id": f"c-p-{i}", "type": "patient.updated", "occurred_at": earlier, "data": {
                    "patient_id": pid, "first_name": "Maria", "last_name": f"Bench{i}",
                    "date_of_birth": "1985-03-14", "phone": phone(i), "language": "en",
                    "timezone": "America/New_York", "sms_consent": True}},
                {"id": f"c-rx-{i}", "type": "prescription.updated", "occurred_at": earlier,
                 "data": {"prescription_id": rx, "patient_id": pid,
                          "medication": "Semaglutide 0.5 mg", "status": "shipped",
                          "pharmacy": {"name": "Harbor Mail Pharmacy"}, "refills_remaining": 2}},
                {"id": f"c-sh-{i}", "type": "shipment.updated", "occurred_at": later, "data": {
                    "shipment_id": f"csh-{i:06d}", "patient_id": pid, "prescription_id": rx,
                    "carrier": "UPS", "tracking_number": f"1Z999AA1{i:010d}",
                    "tracking_url": f"https://www.ups.com/track?tracknum=1Z999AA1{i:010d}",
                    "status": "in_transit",
                    "estimated_delivery": (now + timedelta(days=2)).date().isoformat()}},
            ]  # fmt: skip
        with db.session() as session:
            apply_events(session, parse_events(events))
    with db.session() as session:
        patients = session.execute(select(Patient.id, Patient.phone)).all()
        session.add_all(
            Conversation(
                clinic_id=DEFAULT_ID,
                channel="sms",
                address=number,
                patient_id=patient_id,
                verified_patient_id=patient_id,
                verified_until=now + timedelta(days=30),
                failed_verifications=0,
                unknown_streak=0,
                language="en",
                opted_out=False,
                bad_address=False,
                awaiting_data={},
                created_at=now,
                updated_at=now,
            )  # fmt: skip
            for patient_id, number in patients
        )
    db.dispose()
    return {"patients": len(patients), "seconds": round(time.perf_counter() - started, 1)}


# --- inbound webhook load --------------------------------------------------------------------


@dataclass
class Prepared:
    sid: str
    content: bytes
    headers: dict[str, str]


def prepare_requests(count: int, offset: int, patients: int) -> list[Prepared]:
    """Signed inbound SMS as Twilio posts them, request i from patient (offset + i) % patients."""
    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + WEBHOOK
    prepared = []
    for i in range(count):
        index = (offset + i) % patients
        sid = "SM" + uuid.uuid4().hex
        params = {
            "ToCountry": "US", "ToState": "NY", "SmsMessageSid": sid, "NumMedia": "0",
            "ToCity": "NEW YORK", "FromZip": "10001", "SmsSid": sid, "FromState": "NY",
            "SmsStatus": "received", "FromCity": "NEW YORK",
            "Body": QUESTIONS[(offset + i) % len(QUESTIONS)], "FromCountry": "US",
            "To": TWILIO_NUMBER, "ToZip": "10001", "NumSegments": "1", "MessageSid": sid,
            "AccountSid": ACCOUNT_SID, "From": phone(index), "ApiVersion": "2010-04-01",
        }  # fmt: skip
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        prepared.append(Prepared(sid, urlencode(params).encode(), headers))
    return prepared


async def drive(base_url: str, requests: list[Prepared], concurrency: int) -> dict[str, Any]:
    """Send the requests with `concurrency` in flight; throughput and client-side latency."""
    latencies: list[float] = []
    failures: Counter = Counter()
    position = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal position
            while position < len(requests):
                item = requests[position]
                position += 1
                started = time.perf_counter()
                response = await client.post(WEBHOOK, content=item.content, headers=item.headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or response.text != EMPTY_TWIML:
                    failures[str(response.status_code)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "requests": len(requests),
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "req_per_s": round(len(requests) / wall, 1),
        **latency_ms(latencies),
        "failures": dict(failures),
    }


def check_outbox(url: str, sids: list[str]) -> dict[str, Any]:
    """Every inbound request recorded once and answered by exactly one reply in the outbox."""
    from bot.messages import Direction, Message
    from status.db import Database

    db = Database(url)
    with db.session() as session:
        inbound = dict(
            session.execute(
                select(Message.conversation_id, func.count())
                .where(Message.direction == Direction.IN)
                .group_by(Message.conversation_id)
            ).all()
        )
        outbound = dict(
            session.execute(
                select(Message.conversation_id, func.count())
                .where(Message.direction == Direction.OUT)
                .group_by(Message.conversation_id)
            ).all()
        )
        recorded = set(
            session.scalars(select(Message.provider_id).where(Message.direction == Direction.IN))
        )
        templates = Counter(
            session.scalars(select(Message.template).where(Message.direction == Direction.OUT))
        )
        statuses = Counter(
            session.scalars(select(Message.status).where(Message.direction == Direction.OUT))
        )
    db.dispose()
    mismatched = sum(1 for conv, n in inbound.items() if outbound.get(conv, 0) != n)
    mismatched += sum(1 for conv in outbound if conv not in inbound)
    result = {
        "requests": len(sids),
        "inbound_rows": sum(inbound.values()),
        "replies": sum(outbound.values()),
        "missing_inbound": len(set(sids) - recorded),
        "conversations_mismatched": mismatched,
        "reply_templates": dict(templates.most_common()),
        "reply_statuses": dict(statuses),
    }
    result["ok"] = (
        result["inbound_rows"] == len(sids) == result["replies"]
        and result["missing_inbound"] == 0
        and mismatched == 0
        and not any(t.startswith(("ask_dob", "unknown", "verify")) for t in templates)
    )
    return result


def run_webhooks(backend: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from status.migrate import upgrade

    upgrade(url)
    seed = seed_verified_patients(url, args.patients)
    log(f"{backend}: seeded {seed['patients']} verified patients in {seed['seconds']} s")
    env = base_env(url)
    runs: list[dict[str, Any]] = []
    sids: list[str] = []
    offset = 0
    with (
        Server("bare", env, workdir / f"bare-{backend}.log") as bare,
        Server("app", env, workdir / f"app-{backend}.log") as app,
    ):
        # warm up both (imports, catalogue, connection pools, first queries)
        for name, server in (("bare", bare), ("app", app)):
            warm = prepare_requests(args.warmup, offset, args.patients)
            offset += args.warmup
            asyncio.run(drive(server.base_url, warm, 8))
            if name == "app":
                sids += [r.sid for r in warm]
        for concurrency in args.concurrency:
            pair = {"concurrency": concurrency, "load_before": load_avg()}
            for name, server in (("bare", bare), ("app", app)):
                batch = prepare_requests(args.requests, offset, args.patients)
                offset += args.requests
                log(f"{backend}: {name} x{args.requests} at concurrency {concurrency}")
                cpu = cpu_seconds(server.proc.pid)
                pair[name] = asyncio.run(drive(server.base_url, batch, concurrency))
                used = cpu_seconds(server.proc.pid) - cpu
                pair[name]["server_cpu_ms_per_req"] = round(used * 1000 / len(batch), 2)
                if name == "app":
                    sids += [r.sid for r in batch]
            pair["ratio_app_over_bare"] = round(
                pair["app"]["req_per_s"] / pair["bare"]["req_per_s"], 4
            )
            pair["load_after"] = load_avg()
            runs.append(pair)
            log(
                f"{backend}: c={concurrency} bare {pair['bare']['req_per_s']} req/s, "
                f"app {pair['app']['req_per_s']} req/s"
            )
    check = check_outbox(url, sids)
    log(f"{backend}: outbox check {'ok' if check['ok'] else 'FAILED'}: {check}")
    return {"seed": seed, "runs": runs, "outbox_check": check}


# --- dispatcher ------------------------------------------------------------------------------


class TimedFakeTwilio(FakeTwilio):
    """The test fake, also noting when (time.monotonic) each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []  # index-aligned with `requests`

    async def _create_message(self, request):
        response = await super()._create_message(request)
        # No await between the parent's append and this one: the lists stay aligned.
        with self._lock:
            self.arrivals.append(time.monotonic())
        return response

    def timed_messages(self, start: int = 0) -> list[tuple[float, Any]]:
        with self._lock:
            pairs = list(zip(self.arrivals[start:], self._requests[start:], strict=True))
        return [(t, r) for t, r in pairs if r.status_code == 201]

    def count(self) -> int:
        with self._lock:
            return len(self._requests)


def write_history(url: str, patients: int, days: int) -> None:
    """The past `days` of the first `patients` patients (the benchmarks' `--history`): each
    wrote once a day and was answered, with that day's status-page link, as those days' turns
    left them (the inbox row done, both messages, the reply delivered, the link expired)."""
    from bot import inbox
    from bot.inbox import InboxMessage
    from bot.messages import Direction, Kind, Lane, Message
    from status.db import Database, utcnow
    from status.links import StatusLink, token_hash

    now = utcnow()
    db = Database(url)
    with db.session() as session:
        people = session.execute(
            text("SELECT id, phone FROM patients ORDER BY id LIMIT :n"), {"n": patients}
        ).all()
        for day in range(days, 0, -1):
            at = now - timedelta(days=day)
            exchange = {"clinic_id": DEFAULT_ID, "channel": "sms", "created_at": at}
            session.execute(
                StatusLink.__table__.insert(),
                [
                    {
                        "clinic_id": DEFAULT_ID,
                        "patient_id": patient_id,
                        "token_hash": token_hash(uuid.uuid4().hex),
                        "created_at": at,
                        "expires_at": at + timedelta(days=1),
                        "created_by": "bot",
                        "failed_tries": 0,
                    }
                    for patient_id, _ in people
                ],
            )
            session.execute(
                Message.__table__.insert(),
                [
                    {
                        **exchange,
                        "patient_id": patient_id,
                        "address": address,
                        "direction": direction,
                        "kind": Kind.REPLY,
                        "body": body,
                        "status": status,
                        "priority": Lane.REPLY,
                        "provider_id": f"SM{uuid.uuid4().hex}",
                    }
                    for patient_id, address in people
                    for direction, body, status in (
                        (Direction.IN, "where is my prescription", None),
                        (Direction.OUT, "Your prescription has shipped.", "delivered"),
                    )
                ],
            )
            session.execute(
                InboxMessage.__table__.insert(),
                [
                    {
                        "clinic_id": DEFAULT_ID,
                        "source": "twilio_sms",
                        "provider_id": f"SM{uuid.uuid4().hex}",
                        "action": inbox.Action.SMS,
                        "channel": "sms",
                        "address": address,
                        "received_at": at,
                        "state": "done",
                        "outcome": "answered",
                        "attempts": 1,
                        "finished_at": at,
                    }
                    for _, address in people
                ],
            )
    if not db.is_sqlite:
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
    db.dispose()


def enqueue_outbox(url: str, tag: str, count: int) -> float:
    """`count` pending SMS in one transaction; the monotonic time of the commit."""
    from bot import outbox
    from status.db import Database

    db = Database(url)
    with db.session() as session:
        for n in range(count):
            outbox.enqueue(
                session, clinic_id=DEFAULT_ID,
                channel="sms", address=f"+1555{6000000 + n:07d}", body=f"{tag} {n}"
            )
    committed = time.monotonic()
    db.dispose()
    return committed


def check_sent(url: str, fake: TimedFakeTwilio, start: int, tag: str, count: int) -> dict:
    from bot.messages import Message
    from status.db import Database

    bodies = Counter(r.body for _, r in fake.timed_messages(start) if r.body.startswith(tag + " "))
    db = Database(url)
    with db.session() as session:
        rows = session.execute(
            select(Message.status, Message.provider_id).where(Message.body.like(f"{tag} %"))
        ).all()
    db.dispose()
    result = {
        "received": sum(bodies.values()),
        "distinct": len(bodies),
        "duplicates": sum(n - 1 for n in bodies.values() if n > 1),
        "rows_sent": sum(1 for status, _ in rows if status == "sent"),
        "distinct_provider_ids": len({pid for _, pid in rows if pid}),
    }
    result["exactly_once"] = (
        result["received"] == result["distinct"] == count == result["rows_sent"]
        and result["distinct_provider_ids"] == count
    )
    return result


def dispatch_in_process(url: str, fake: TimedFakeTwilio, count: int) -> dict[str, Any]:
    from channels.runtime import Runtime
    from status.db import Database
    from status.settings import Settings

    settings = Settings(
        _env_file=None, database_url=url, public_base_url=PUBLIC_BASE_URL,
        twilio_from_number=TWILIO_NUMBER, twilio_messages_per_second=0,
        **fake.settings_overrides(),
    )  # fmt: skip
    tag = f"drain-{uuid.uuid4().hex[:8]}"
    start = fake.count()
    enqueue_outbox(url, tag, count)
    db = Database(url)
    runtime = Runtime(settings, db)

    async def run() -> float:
        began = time.monotonic()
        await runtime.dispatcher.drain(timeout=600)
        for sender in runtime.senders.values():
            await sender.close()
        return began

    began = asyncio.run(run())
    ended = time.monotonic()
    db.dispose()
    arrivals = [t for t, _ in fake.timed_messages(start)]
    return {
        "dispatchers": "1 in-process drain()",
        "messages": count,
        "seconds": round(ended - began, 3),
        "msg_per_s": round(count / (ended - began), 1),
        "first_to_last_msg_per_s": _first_to_last(arrivals),
        "check": check_sent(url, fake, start, tag, count),
    }


def _first_to_last(arrivals: list[float]) -> float | None:
    if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
        return None
    return round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 1)


def dispatch_processes(
    url: str, fake: TimedFakeTwilio, count: int, processes: int, workdir: Path
) -> dict[str, Any]:
    """`processes` x `patient-status worker`, started and idle before the rows are committed."""
    env = base_env(url, TWILIO_API_BASE=fake.base_url)
    exe = Path(sys.executable).with_name("patient-status")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "channels.cli"]
    workers = []
    logs = []
    for n in range(processes):
        logs.append((workdir / f"worker-{uuid.uuid4().hex[:6]}-{n}.log").open("wb"))
        workers.append(
            subprocess.Popen(
                [*command, "worker"], env=env, stdout=subprocess.PIPE, stderr=logs[-1], cwd=ROOT
            )
        )
    tag = f"procs{processes}-{uuid.uuid4().hex[:8]}"
    try:
        for worker in workers:  # "worker <id> running" once its loops are up
            line = worker.stdout.readline().decode()
            if "running" not in line:
                raise RuntimeError(f"worker did not start: {line!r}")
        start = fake.count()
        cpu = sum(cpu_seconds(worker.pid) for worker in workers)
        committed = enqueue_outbox(url, tag, count)
        deadline = time.monotonic() + 600
        while len(fake.timed_messages(start)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu = sum(cpu_seconds(worker.pid) for worker in workers) - cpu
        time.sleep(1.5)  # room for a duplicate to arrive, if there were one
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
            worker.stdout.close()
        for handle in logs:
            handle.close()
    arrivals = [t for t, _ in fake.timed_messages(start)]
    last = arrivals[min(count, len(arrivals)) - 1] if arrivals else committed
    return {
        "dispatchers": f"{processes} worker process{'es' if processes > 1 else ''}",
        "messages": count,
        "seconds": round(last - committed, 3),
        "msg_per_s": round(count / (last - committed), 1),
        "first_to_last_msg_per_s": _first_to_last(arrivals[:count]),
        "worker_cpu_ms_per_msg": round(cpu * 1000 / count, 2),
        "check": check_sent(url, fake, start, tag, count),
    }


def run_dispatcher(backend: str, url: str, args: argparse.Namespace, workdir: Path) -> list:
    from status.migrate import upgrade

    upgrade(url)
    fake = TimedFakeTwilio().start()
    results = []
    try:
        for label, run in (
            ("drain", lambda: dispatch_in_process(url, fake, args.messages)),
            ("1 proc", lambda: dispatch_processes(url, fake, args.messages, 1, workdir)),
            ("2 procs", lambda: dispatch_processes(url, fake, args.messages, 2, workdir)),
        ):
            load_before = load_avg()
            result = run()
            result["load_before"] = load_before
            results.append(result)
            log(
                f"{backend}: dispatcher {label}: {result['msg_per_s']} msg/s, "
                f"exactly once: {result['check']['exactly_once']}"
            )
    finally:
        fake.stop()
    return results


# --- report ----------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    lines = [
        f"Machine: {m['nproc']} CPU ({m['cpu']}); Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgres'] or 'n/a'}. Load average at start "
        f"{' / '.join(map(str, results['load_start']))}, at end "
        f"{' / '.join(map(str, results.get('load_end', [])))}.",
        f"Run: {cfg['requests']:,} requests per point after {cfg['warmup']} warm-up, "
        f"{cfg['patients']:,} verified patients; dispatcher: {cfg['messages']:,} messages; "
        f"{cfg['started']}; {results.get('total_s', 0):.0f} s in all.",
        "",
        "Inbound SMS webhook (one uvicorn process each; client in another process):",
        "",
        "| backend | concurrency | bare req/s | app req/s | app/bare | bare p50 / p99 ms "
        "| app p50 / p99 ms | server CPU ms/req bare / app | load before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, r in results["backends"].items():
        if "skipped" in r:
            lines.append(f"| {backend} | skipped: {r['skipped']} | | | | | | | |")
            continue
        for pair in r["webhooks"]["runs"]:
            b, a = pair["bare"], pair["app"]
            lines.append(
                f"| {backend} | {pair['concurrency']} | {b['req_per_s']:,.0f} | "
                f"{a['req_per_s']:,.1f} | {pair['ratio_app_over_bare']:.3f} | "
                f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} | "
                f"{b['server_cpu_ms_per_req']:.2f} / {a['server_cpu_ms_per_req']:.2f} | "
                f"{pair['load_before'][0]} |"
            )
    lines += [""]
    for backend, r in results["backends"].items():
        if "skipped" in r:
            continue
        c = r["webhooks"]["outbox_check"]
        failures = sum(
            sum(p[k]["failures"].values()) for p in r["webhooks"]["runs"] for k in ("bare", "app")
        )
        lines.append(
            f"- {backend} outbox check: {c['requests']:,} requests -> {c['inbound_rows']:,} "
            f"inbound rows, {c['replies']:,} replies, {c['conversations_mismatched']} "
            f"conversations with in != out, non-200 answers {failures}: "
            f"{'OK' if c['ok'] else 'FAILED'} (reply templates: "
            + ", ".join(f"{t} {n}" for t, n in c["reply_templates"].items())
            + ")."
        )
    lines += [
        "",
        "Dispatcher to the local fake Twilio (real twilio client, no pacing):",
        "",
        "| backend | dispatchers | messages | msg/s (commit -> last) | msg/s (first -> last) "
        "| worker CPU ms/msg | exactly once | load before |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for backend, r in results["backends"].items():
        if "skipped" in r:
            continue
        for d in r["dispatcher"]:
            ck = d["check"]
            lines.append(
                f"| {backend} | {d['dispatchers']} | {d['messages']:,} | {d['msg_per_s']:,.0f} | "
                f"{d['first_to_last_msg_per_s'] or 0:,.0f} | "
                f"{d.get('worker_cpu_ms_per_msg', '-')} | "
                f"{'yes' if ck['exactly_once'] else 'NO'} ({ck['received']:,} received, "
                f"{ck['duplicates']} duplicates) | {d['load_before'][0]} |"
            )
    return "\n".join(lines)


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-channels-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2000, help="per measured point")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000, help="dispatcher outbox rows")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="300 requests, 300 messages")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS} (full runs)")
    parser.add_argument(
        "--serve-child", choices=["app", "bare", "bare_signed"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-workers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child, args.port, args.run_workers)
        return 0
    if args.quick:
        args.requests, args.messages, args.patients, args.warmup = 300, 300, 300, 50
    if args.requests < 10 or args.patients < 10 or args.messages < 10:
        parser.error("--requests, --patients and --messages must be at least 10")

    results: dict[str, Any] = {
        "machine": machine(),
        "load_start": load_avg(),
        "config": {
            "requests": args.requests,
            "patients": args.patients,
            "messages": args.messages,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "quick": args.quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "server": "uvicorn, 1 process, uvloop/httptools auto, JSON logs at INFO to a file; "
            "app with run_workers=False",
        },
        "backends": {},
    }
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    with workspace() as workdir:
        for backend in backends:
            if backend == "postgres" and (problem := postgres_problem()):
                if args.backend == "postgres":
                    raise SystemExit(f"PostgreSQL not reachable at {PG_SERVER}: {problem}")
                log(f"skipping PostgreSQL: {problem}")
                results["backends"][backend] = {"skipped": problem}
                continue
            entry: dict[str, Any] = {}
            with database(backend) as url:
                entry["webhooks"] = run_webhooks(backend, url, args, workdir)
            with database(backend) as url:
                entry["dispatcher"] = run_dispatcher(backend, url, args, workdir)
            results["backends"][backend] = entry
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["load_end"] = load_avg()

    print(markdown(results))
    target = args.json or (None if args.quick else RESULTS)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nRaw results: {target}")
    ok = all(
        "skipped" in r
        or (
            r["webhooks"]["outbox_check"]["ok"]
            and all(d["check"]["exactly_once"] for d in r["dispatcher"])
        )
        for r in results["backends"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
