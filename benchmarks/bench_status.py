"""Status store benchmark: event ingest rate and snapshot read latency, SQLite and PostgreSQL.

Loads N patients (default 100,000) with their items through the real code path
(`parse_events` + `apply_events` inside `Database.session()`), and reports:

- events ingested per second, batched (one transaction per batch of --batch-size events);
- events ingested per second, single (one transaction per event, as `POST /events` with one
  event), directly and through the HTTP app in-process (httpx ASGITransport);
- snapshot read latency (p50/p99/mean) at 1,000 patients and at N patients, directly
  (`snapshot.build(...).to_dict()`) and via `GET /api/patients/{id}/status`.

    python benchmarks/bench_status.py [--backend sqlite|postgres|both] [--patients 100000]
                                      [--quick] [--json PATH]

PostgreSQL runs in a throwaway database (`bench_<random>`) created on the local server and
dropped at the end; SQLite runs in a temporary file. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy  # noqa: E402
from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from channels.app import create_app  # noqa: E402
from status import patients, snapshot  # noqa: E402
from status.clinics import DEFAULT_ID  # noqa: E402
from status.db import Database  # noqa: E402
from status.events.apply import apply_events  # noqa: E402
from status.events.schemas import parse_events  # noqa: E402
from status.migrate import upgrade  # noqa: E402
from status.settings import Settings  # noqa: E402

PG_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
API_KEY = "bench-api-key"
SEED = 20261120
NOW = datetime.now(UTC).replace(microsecond=0)
READ_INTERVAL = 0.02  # reads under ingest: one due every 20 ms (50/s)
RESULTS = Path(__file__).resolve().parent / "results" / "status.json"


# --- realistic events ----------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    "Maria James Ana Wei Fatima John Lucia Omar Grace Diego Aisha Robert Sofia Daniel Mei "
    "Carlos Emily Jose Priya Luis"
)
LAST = _words(
    "Lopez Smith Garcia Chen Khan Johnson Martinez Nguyen Brown Rodriguez Patel Williams "
    "Hernandez Kim Davis Gonzalez Miller"
)
ZONES = _words(
    "America/New_York America/Chicago America/Denver America/Los_Angeles America/Phoenix "
    "America/Puerto_Rico"
)
MEDS = [
    "Semaglutide 0.5 mg",
    "Tirzepatide 5 mg",
    "Metformin 500 mg",
    "Finasteride 1 mg",
    "Sertraline 50 mg",
    "Levothyroxine 75 mcg",
    "Tretinoin 0.025% cream",
]
PHARMACIES = ["Harbor Mail Pharmacy", "CVS #4411", "Walgreens #0932", "Capsule NYC"]
RX_STATUS = {
    "awaiting_provider": 8,
    "approved": 10,
    "sent_to_pharmacy": 12,
    "received_by_pharmacy": 8,
    "processing": 10,
    "shipped": 14,
    "ready_for_pickup": 5,
    "delivered": 22,
    "blocked": 6,
    "denied": 2,
    "cancelled": 3,
}
SHIP_STATUS = {
    "label_created": 15,
    "in_transit": 40,
    "out_for_delivery": 10,
    "delivered": 30,
    "exception": 4,
    "returned": 1,
}
PAY_STATUS = {"succeeded": 80, "failed": 12, "pending": 6, "refunded": 2}
SUB_STATUS = {"active": 80, "past_due": 8, "paused": 5, "cancelled": 7}
REFILL_STATUS = {
    "requested": 30,
    "provider_review": 20,
    "approved": 15,
    "sent_to_pharmacy": 15,
    "waiting_on_patient": 10,
    "shipped": 10,
}
TASKS = [
    ("upload_id", "Upload a photo ID"),
    ("intake_form", "Finish your intake form"),
    ("update_card", "Update your payment card"),
    ("answer_provider", "Answer your provider"),
]
CARRIERS = [
    ("UPS", "https://www.ups.com/track?tracknum="),
    ("USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels="),
    ("FedEx", "https://www.fedex.com/fedextrack/?trknbr="),
]


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _ts(moment: datetime) -> str:
    return moment.isoformat()


def patient_events(index: int) -> list[dict[str, Any]]:
    """One patient's events, as a clinic's system would send them (deterministic per index).

    patient.updated, a prescription (a second status update for about half), a shipment for
    about half, a payment, a subscription, and for some an appointment, a task and a refill:
    about 6 events per patient. Times increase per patient, so the patient always comes first.
    """
    rng = random.Random(SEED * 1_000_003 + index)
    pid = f"bp-{index:07d}"
    t = NOW - timedelta(days=rng.uniform(5, 60))  # ~10 events x <= 10 h: all in the past
    seq = 0

    def ev(event_type: str, /, **data: Any) -> dict[str, Any]:
        nonlocal seq, t
        seq += 1
        t += timedelta(minutes=rng.uniform(1, 600))
        event_id = f"bench-{index}-{seq}"
        return {"id": event_id, "type": event_type, "occurred_at": _ts(t), "data": data}

    spanish = rng.random() < 0.2
    out = [
        ev(
            "patient.updated",
            patient_id=pid,
            first_name=rng.choice(FIRST),
            last_name=rng.choice(LAST),
            date_of_birth=f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}",
            phone=f"+1 555 {rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}",
            email=f"{pid}@example.com" if rng.random() < 0.8 else None,
            language="es" if spanish else "en",
            timezone=rng.choice(ZONES),
            sms_consent=rng.random() < 0.9,
        )
    ]
    rx_id = f"rx-{index}"
    rx_status = _pick(rng, RX_STATUS)
    task = rng.choice(TASKS) if (rx_status == "blocked" or rng.random() < 0.25) else None
    rx = {
        "prescription_id": rx_id,
        "patient_id": pid,
        "medication": rng.choice(MEDS),
        "pharmacy": {"name": rng.choice(PHARMACIES), "phone": "+15550109999"},
        "refills_remaining": rng.randint(0, 5),
        "next_refill_date": (NOW.date() + timedelta(days=rng.randint(-3, 40))).isoformat(),
    }
    if rng.random() < 0.5:  # an earlier status first, so the second event updates the row
        out.append(ev("prescription.updated", **rx, status="approved"))
    blocked = {"blocked_reason": f"waiting on {task[0]}"} if rx_status == "blocked" and task else {}
    out.append(ev("prescription.updated", **rx, status=rx_status, **blocked))
    if rng.random() < 0.5:
        carrier, track_url = rng.choice(CARRIERS)
        tracking = f"1Z{rng.randint(10**15, 10**16 - 1)}"
        out.append(
            ev(
                "shipment.updated",
                shipment_id=f"ship-{index}",
                patient_id=pid,
                prescription_id=rx_id,
                carrier=carrier,
                tracking_number=tracking,
                tracking_url=track_url + tracking,
                status=_pick(rng, SHIP_STATUS),
                estimated_delivery=(NOW.date() + timedelta(days=rng.randint(-2, 6))).isoformat(),
            )
        )
    amount = rng.choice([4900, 9900, 14900, 29900])
    pay_status = _pick(rng, PAY_STATUS)
    failure = (
        {"failure_reason": "card expired", "next_retry_at": _ts(NOW + timedelta(days=3))}
        if pay_status == "failed"
        else {}
    )
    out.append(
        ev(
            "payment.updated",
            payment_id=f"pay-{index}",
            patient_id=pid,
            amount_cents=amount,
            currency="USD",
            status=pay_status,
            description="Monthly care plan",
            **failure,
        )
    )
    sub_status = _pick(rng, SUB_STATUS)
    out.append(
        ev(
            "subscription.updated",
            subscription_id=f"sub-{index}",
            patient_id=pid,
            plan=rng.choice(["Weight care monthly", "Hair care quarterly", "Skin care monthly"]),
            amount_cents=amount,
            currency="USD",
            status=sub_status,
            renews_at=_ts(NOW + timedelta(days=rng.randint(1, 30))),
            auto_renew=sub_status != "cancelled",
        )
    )
    if rng.random() < 0.3:
        out.append(
            ev(
                "appointment.updated",
                appointment_id=f"appt-{index}",
                patient_id=pid,
                starts_at=_ts(NOW + timedelta(hours=rng.uniform(1, 24 * 14))),
                visit_type=rng.choice(["follow-up", "initial consult", "check-in"]),
                provider_name=rng.choice(["Dr. Rivera", "Dr. Okafor", "NP Chen"]),
                status=rng.choice(["scheduled", "confirmed"]),
                join_url=f"https://visit.example/{index}",
            )
        )
    if task is not None:
        out.append(
            ev(
                "task.updated",
                task_id=f"task-{index}",
                patient_id=pid,
                kind=task[0],
                title=task[1],
                status="open" if rng.random() < 0.85 else "done",
                url=f"https://portal.example/tasks/{index}",
                due_at=_ts(NOW + timedelta(days=rng.randint(1, 7))),
            )
        )
    if rng.random() < 0.3:
        out.append(
            ev(
                "refill.updated",
                refill_id=f"refill-{index}",
                patient_id=pid,
                prescription_id=rx_id,
                status=_pick(rng, REFILL_STATUS),
                due_date=(NOW.date() + timedelta(days=rng.randint(0, 14))).isoformat(),
            )
        )
    return out


def source_id(index: int) -> str:
    return f"bp-{index:07d}"


# --- measurement helpers -----------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `pct`% of them at or below."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def latency(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
    }


class StatementCounter:
    def __init__(self, engine: sqlalchemy.engine.Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._hit)

    def _hit(self, *_args: Any) -> None:
        self.count += 1


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Batched:
    events: int = 0
    patients: int = 0
    parse_s: float = 0.0
    apply_s: float = 0.0
    commit_s: float = 0.0
    statements: int = 0
    # (patients loaded after the batch, events in it, seconds) for the rate along the load
    curve: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.parse_s + self.apply_s + self.commit_s


# --- the benchmark proper ------------------------------------------------------------------


@dataclass
class Sizes:
    snapshot_reads: int
    http_reads: int
    single_events: int
    http_events: int


class Bench:
    def __init__(self, backend: str, url: str, batch_size: int, sizes: Sizes) -> None:
        self.backend = backend
        self.url = url
        self.batch_size = batch_size
        self.sizes = sizes
        self.db = Database(url)
        self.counter = StatementCounter(self.db.engine)
        settings = Settings(_env_file=None, database_url=url, api_key=API_KEY)
        self.app = create_app(settings, self.db)
        self.batched = Batched()
        self.loaded = 0  # patients whose events have all been ingested
        self.load_avg: list[float] = []  # 1-min load average, sampled along the run
        self.rng = random.Random(SEED)

    # ingest ----------------------------------------------------------------------------------
    def load_batched(self, upto: int) -> None:
        """Ingest patients [self.loaded, upto) in batches of self.batch_size events."""
        pending: list[dict[str, Any]] = []
        start = self.loaded
        next_report = start
        step = max(1000, (upto - start) // 10)
        index = start
        while index < upto or pending:
            while index < upto and len(pending) < self.batch_size:
                pending.extend(patient_events(index))
                index += 1
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            # the last patient of a batch may straddle it and the next one
            done_patients = upto if index >= upto and not pending else index - 1
            statements = self.counter.count
            t0 = time.perf_counter()
            with self.db.session() as session:
                events = parse_events(batch)
                t1 = time.perf_counter()
                result = apply_events(session, events)
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            assert result.applied == len(batch), result.counts()
            b = self.batched
            b.events += len(batch)
            b.parse_s += t1 - t0
            b.apply_s += t2 - t1
            b.commit_s += t3 - t2
            b.statements += self.counter.count - statements
            b.curve.append((done_patients, len(batch), t3 - t0))
            if done_patients >= next_report:
                self.load_avg.append(os.getloadavg()[0])
                rate = b.events / b.seconds
                log(
                    f"{self.backend}: {done_patients:,} patients, {b.events:,} events, {rate:.0f}/s"
                )
                next_report = done_patients + step
        self.batched.patients += upto - start
        self.loaded = upto

    def ingest_single(self, first: int, last: int) -> dict[str, Any]:
        """Patients [first, last), one transaction per event (as POST /events with one event)."""
        raw = [e for i in range(first, last) for e in patient_events(i)]
        times = []
        statements = self.counter.count
        for item in raw:
            t0 = time.perf_counter()
            with self.db.session() as session:
                result = apply_events(session, parse_events([item]))
            times.append(time.perf_counter() - t0)
            assert result.applied == 1, result.counts()
        self.loaded = last
        total = sum(times)
        return {
            "events": len(raw),
            "seconds": round(total, 3),
            "events_per_s": round(len(raw) / total, 1),
            "statements_per_event": round((self.counter.count - statements) / len(raw), 2),
            "latency": latency(times),
        }

    def ingest_http(self, first: int, last: int) -> dict[str, Any]:
        """Patients [first, last), one `POST /events` per event through the app in-process."""
        raw = [e for i in range(first, last) for e in patient_events(i)]
        times: list[float] = []

        async def run() -> None:
            transport = httpx.ASGITransport(app=self.app)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers
            ) as client:
                for item in raw:
                    t0 = time.perf_counter()
                    response = await client.post("/events", json=item)
                    times.append(time.perf_counter() - t0)
                    if response.status_code != 202 or response.json()["applied"] != 1:
                        raise RuntimeError(f"POST /events: {response.status_code} {response.text}")

        asyncio.run(run())
        self.loaded = last
        total = sum(times)
        return {
            "events": len(raw),
            "seconds": round(total, 3),
            "events_per_s": round(len(raw) / total, 1),
            "latency": latency(times),
        }

    # reads -----------------------------------------------------------------------------------
    def snapshot_reads(self, count: int) -> dict[str, Any]:
        """Whole read transactions: find the patient, build the snapshot, to_dict()."""
        ids = [source_id(self.rng.randrange(self.loaded)) for _ in range(count + 20)]
        whole, build = [], []
        statements = self.counter.count
        for n, pid in enumerate(ids):
            t0 = time.perf_counter()
            with self.db.session() as session:
                patient = patients.by_source_id(session, DEFAULT_ID, pid)
                t1 = time.perf_counter()
                body = snapshot.build(session, patient).to_dict()
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            assert body["patient"]["patient_id"] == pid
            if n >= 20:  # the first 20 warm up the connection and caches
                whole.append(t3 - t0)
                build.append(t2 - t1)
        return {
            "transaction": latency(whole),
            "build_to_dict": latency(build),
            "statements_per_read": round((self.counter.count - statements) / len(ids), 2),
        }

    def http_reads(self, count: int) -> dict[str, Any]:
        ids = [source_id(self.rng.randrange(self.loaded)) for _ in range(count + 10)]
        times: list[float] = []

        async def run() -> None:
            transport = httpx.ASGITransport(app=self.app)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers
            ) as client:
                for n, pid in enumerate(ids):
                    t0 = time.perf_counter()
                    response = await client.get(f"/api/patients/{pid}/status")
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200:
                        raise RuntimeError(f"GET status: {response.status_code} {response.text}")
                    if n >= 10:
                        times.append(elapsed)

        asyncio.run(run())
        return latency(times)

    def reads_under_ingest(self, batches: int) -> dict[str, Any]:
        """Snapshot reads in the main thread while another thread ingests batches of updates.

        As in the served app, where uvicorn runs requests on a thread pool in one process.
        The updates move existing prescriptions on (new event ids, later times): no new patient.
        """
        updates = []
        moment = datetime.now(UTC)
        run = uuid.uuid4().hex[:8]
        for n in range(batches * self.batch_size):
            index = self.rng.randrange(self.loaded)
            rx = [e for e in patient_events(index) if e["type"] == "prescription.updated"][-1]
            moment += timedelta(milliseconds=1)
            data = {**rx["data"], "status": self.rng.choice(["processing", "shipped", "delivered"])}
            data.pop("blocked_reason", None)
            updates.append(
                {
                    "id": f"bench-update-{run}-{n}",
                    "type": rx["type"],
                    "occurred_at": _ts(moment),
                    "data": data,
                }
            )
        writer_times: list[float] = []
        errors: list[BaseException] = []
        finished: list[float] = []  # when the writer thread ended

        def writer() -> None:
            try:
                for start in range(0, len(updates), self.batch_size):
                    t0 = time.perf_counter()
                    with self.db.session() as session:
                        apply_events(
                            session, parse_events(updates[start : start + self.batch_size])
                        )
                    writer_times.append(time.perf_counter() - t0)
            except BaseException as exc:
                errors.append(exc)
            finally:
                finished.append(time.perf_counter())

        thread = threading.Thread(target=writer, name="bench-writer")
        reads: list[float] = []
        read_errors: list[str] = []
        thread.start()
        # Open loop: a read is due every READ_INTERVAL whatever happens, and its latency counts
        # from when it was due, so a read stuck behind a lock also delays the ones queued after it.
        started = time.perf_counter()
        while len(reads) < 20_000:
            due = started + len(reads) * READ_INTERVAL
            if finished and due > finished[0]:
                break  # every read due while the writer ran has been made
            if (ahead := due - time.perf_counter()) > 0:
                time.sleep(ahead)
            pid = source_id(self.rng.randrange(self.loaded))
            try:
                with self.db.session() as session:
                    patient = patients.by_source_id(session, DEFAULT_ID, pid)
                    snapshot.build(session, patient).to_dict()
            except OperationalError as exc:  # e.g. SQLite "database is locked"
                read_errors.append(str(exc.orig))
            reads.append(time.perf_counter() - due)
        thread.join()
        if errors:
            raise errors[0]
        return {
            "writer_events": len(updates),
            "writer_events_per_s": round(len(updates) / sum(writer_times), 1),
            "writer_batch": latency(writer_times),
            "read_interval_ms": READ_INTERVAL * 1000,
            "reads": latency(reads),
            "reads_over_100ms": sum(r > 0.1 for r in reads),
            "read_errors": len(read_errors),
            "read_error_sample": read_errors[:1],
        }

    def row_counts(self) -> dict[str, int]:
        tables = [
            "patients",
            "prescriptions",
            "shipments",
            "refills",
            "payments",
            "subscriptions",
            "appointments",
            "tasks",
            "events",
            "timeline_entries",
        ]
        with self.db.engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}

    def db_size_mb(self) -> float:
        with self.db.engine.connect() as conn:
            if self.db.is_sqlite:
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = pages * conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            else:
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        return round(size / 1e6, 1)


def single_reserve(target: int, floor: int, sizes: Sizes) -> tuple[int, int]:
    """The patients just below `target` whose events make the single-event samples.

    Returns (first_direct, first_http): direct singles are [first_direct, first_http),
    HTTP singles [first_http, target), each a whole number of patients.
    """
    index, events = target, 0
    while events < sizes.http_events and index > floor:
        index -= 1
        events += len(patient_events(index))
    first_http, events = index, 0
    while events < sizes.single_events and index > floor:
        index -= 1
        events += len(patient_events(index))
    return index, first_http


def run_backend(backend: str, url: str, points: list[int], args: argparse.Namespace) -> dict:
    sizes = Sizes(args.snapshot_reads, args.http_reads, args.single_events, args.http_events)
    started = time.perf_counter()
    t0 = time.perf_counter()
    upgrade(url)
    migrate_s = time.perf_counter() - t0
    bench = Bench(backend, url, args.batch_size, sizes)
    out: dict[str, Any] = {"migrate_s": round(migrate_s, 2), "points": {}}
    try:
        for target in points:
            first_direct, first_http = single_reserve(target, bench.loaded, sizes)
            log(f"{backend}: batched load to {first_direct:,} patients")
            bench.load_batched(first_direct)
            log(f"{backend}: single-event ingest, direct and HTTP, to {target:,} patients")
            single = bench.ingest_single(first_direct, first_http)
            http_single = bench.ingest_http(first_http, target)
            log(f"{backend}: snapshot reads at {target:,} patients")
            reads = bench.snapshot_reads(sizes.snapshot_reads)
            http = bench.http_reads(sizes.http_reads)
            out["points"][str(target)] = {
                "patients": bench.loaded,
                "single_direct": single,
                "single_http": http_single,
                "snapshot_direct": reads,
                "snapshot_http": http,
                "batched_so_far": {
                    "events": bench.batched.events,
                    "events_per_s": round(bench.batched.events / bench.batched.seconds, 1),
                },
            }
            log(
                f"{backend} @ {target:,}: snapshot p50 {reads['transaction']['p50_ms']} ms, "
                f"p99 {reads['transaction']['p99_ms']} ms; single "
                f"{single['events_per_s']}/s, HTTP {http_single['events_per_s']}/s"
            )
        log(f"{backend}: snapshot reads while another thread ingests")
        out["reads_under_ingest"] = bench.reads_under_ingest(args.concurrent_batches)
        b = bench.batched
        curve = b.curve
        bounds = sorted({round(k * len(curve) / 10) for k in range(11)})
        segments = []  # the load in tenths (by batches): is ingest slowing as the tables grow?
        for start, end in zip(bounds, bounds[1:], strict=False):
            chunk = curve[start:end]
            segments.append(
                {
                    "patients_after": chunk[-1][0],
                    "events_per_s": round(sum(c[1] for c in chunk) / sum(c[2] for c in chunk), 1),
                }
            )
        batch_times = [c[2] for c in curve if c[1] == args.batch_size]
        out["batched"] = {
            "batch_size": args.batch_size,
            "events": b.events,
            "patients": b.patients,
            "seconds": round(b.seconds, 2),
            "events_per_s": round(b.events / b.seconds, 1),
            "parse_share": round(b.parse_s / b.seconds, 3),
            "apply_share": round(b.apply_s / b.seconds, 3),
            "commit_share": round(b.commit_s / b.seconds, 3),
            "statements_per_event": round(b.statements / b.events, 2),
            "batch_latency": latency(batch_times) if batch_times else None,
            "along_the_load": segments,
        }
        out["rows"] = bench.row_counts()
        out["db_size_mb"] = bench.db_size_mb()
    finally:
        bench.db.dispose()
    out["total_s"] = round(time.perf_counter() - started, 1)
    if bench.load_avg:
        out["load_avg_1m"] = {
            "min": min(bench.load_avg),
            "mean": round(statistics.fmean(bench.load_avg), 2),
            "max": max(bench.load_avg),
        }
    return out


# --- databases -----------------------------------------------------------------------------


def _check_local(url: str) -> None:
    host = urlsplit(url.replace("postgresql+psycopg", "postgresql")).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"refusing to benchmark against a non-local PostgreSQL ({host})")


def postgres_problem() -> str | None:
    _check_local(PG_SERVER)
    try:
        engine = create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    _check_local(PG_SERVER)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def code_version() -> str | None:
    """The commit measured, with "+dirty" when status/ or channels/ differ from it."""
    try:
        run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 10, "check": True}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "status", "channels"], **run)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "postgres": None,
    }
    if postgres_problem() is None:
        engine = create_engine(PG_SERVER)
        with engine.connect() as conn:
            info["postgres"] = conn.execute(text("SHOW server_version")).scalar()
        engine.dispose()
    return info


# --- report --------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    backends = [b for b, r in results["backends"].items() if "skipped" not in r]
    m = results["machine"]
    lines = [
        f"Machine: {m['nproc']} CPU ({m['cpu']}), {m['platform']}; Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgres'] or 'n/a'}, "
        f"SQLAlchemy {m['sqlalchemy']}.",
        f"Run: {results['config']['patients']:,} patients, batches of "
        f"{results['config']['batch_size']} events, {results['config']['started']}, "
        f"code {results['config'].get('code') or 'unknown'}.",
        "",
    ]
    for name, r in results["backends"].items():
        if "skipped" in r:
            lines.append(f"{name}: skipped ({r['skipped']}).")
    if not backends:
        return "\n".join(lines)
    header = "| | " + " | ".join(backends) + " |"
    lines += [header, "|---" * (len(backends) + 1) + "|"]

    def row(label: str, get: Any) -> None:
        cells = []
        for b in backends:
            try:
                cells.append(get(results["backends"][b]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def lat(d: dict) -> str:
        return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} / {d['mean_ms']:.2f}"

    points = list(results["backends"][backends[0]]["points"])
    row(
        "Batched ingest, events/s (whole load)",
        lambda r: (
            f"{_fmt(r['batched']['events_per_s'])} "
            f"({r['batched']['events']:,} events in {r['batched']['seconds']:.0f} s)"
        ),
    )
    row(
        "Batched ingest, events/s (first / last tenth of the load)",
        lambda r: (
            f"{_fmt(r['batched']['along_the_load'][0]['events_per_s'])} / "
            f"{_fmt(r['batched']['along_the_load'][-1]['events_per_s'])}"
        ),
    )
    row(
        "Batched: time in parse / apply / commit",
        lambda r: (
            f"{r['batched']['parse_share']:.0%} / {r['batched']['apply_share']:.0%} / "
            f"{r['batched']['commit_share']:.0%}"
        ),
    )
    row("Batched: SQL statements per event", lambda r: f"{r['batched']['statements_per_event']}")
    row(
        f"Batch of {results['config']['batch_size']}, p50 / p99 ms",
        lambda r: (
            f"{r['batched']['batch_latency']['p50_ms']:.0f} / "
            f"{r['batched']['batch_latency']['p99_ms']:.0f}"
        ),
    )
    for p in points:
        label = f"{int(p):,} patients"
        row(
            f"Single-event ingest, events/s, direct @ {label}",
            lambda r, p=p: (
                f"{_fmt(r['points'][p]['single_direct']['events_per_s'])} "
                f"(p50 {r['points'][p]['single_direct']['latency']['p50_ms']:.2f} ms)"
            ),
        )
        row(
            f"Single-event ingest, events/s, POST /events @ {label}",
            lambda r, p=p: (
                f"{_fmt(r['points'][p]['single_http']['events_per_s'])} "
                f"(p50 {r['points'][p]['single_http']['latency']['p50_ms']:.2f} ms)"
            ),
        )
    for p in points:
        label = f"{int(p):,} patients"
        row(
            f"Snapshot read transaction @ {label}, p50 / p99 / mean ms",
            lambda r, p=p: lat(r["points"][p]["snapshot_direct"]["transaction"]),
        )
        row(
            f"… of which build + to_dict @ {label}",
            lambda r, p=p: lat(r["points"][p]["snapshot_direct"]["build_to_dict"]),
        )
        row(
            f"GET /api/patients/{{id}}/status @ {label}, p50 / p99 / mean ms",
            lambda r, p=p: lat(r["points"][p]["snapshot_http"]),
        )
    row(
        "Snapshot reads (50/s) while another thread ingests batches, p50 / p99 / max ms",
        lambda r: (
            f"{r['reads_under_ingest']['reads']['p50_ms']:.1f} / "
            f"{r['reads_under_ingest']['reads']['p99_ms']:.0f} / "
            f"{r['reads_under_ingest']['reads']['max_ms']:.0f} "
            f"({r['reads_under_ingest']['reads_over_100ms']} of "
            f"{r['reads_under_ingest']['reads']['n']} over 100 ms, "
            f"{r['reads_under_ingest']['read_errors']} failed)"
        ),
    )
    row(
        "… the ingesting thread meanwhile, events/s",
        lambda r: f"{_fmt(r['reads_under_ingest']['writer_events_per_s'])}",
    )
    row(
        "SQL statements per snapshot read",
        lambda r: f"{r['points'][points[-1]]['snapshot_direct']['statements_per_read']}",
    )
    row("Database size at the end, MB", lambda r: f"{r['db_size_mb']:,.0f}")
    row("Backend wall time, s", lambda r: f"{r['total_s']:.0f}")
    row(
        "1-min load average during the load, min / mean / max",
        lambda r: (
            f"{r['load_avg_1m']['min']:.1f} / {r['load_avg_1m']['mean']:.1f} / "
            f"{r['load_avg_1m']['max']:.1f}"
        ),
    )
    first = results["backends"][backends[0]]
    sample = first["points"][points[-1]]
    lines += [
        "",
        f"Samples: {sample['snapshot_direct']['transaction']['n']} direct snapshot reads and "
        f"{sample['snapshot_http']['n']} HTTP reads of random patients per point; "
        f"{sample['single_direct']['events']} direct and {sample['single_http']['events']} HTTP "
        "single-event transactions per point. Rows at the end: "
        + ", ".join(f"{t} {n:,}" for t, n in first["rows"].items())
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="2,000 patients, smaller samples")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--concurrent-batches", type=int, default=6, help="update batches during the read test"
    )
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS} (full runs)")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only print the table of earlier results (backends merged, later files win)",
    )
    args = parser.parse_args(argv)
    if args.report:
        merged: dict[str, Any] = {}
        for path in args.report:
            loaded = json.loads(path.read_text())
            backends = {**merged.get("backends", {}), **loaded["backends"]}
            merged = {**loaded, "backends": backends}
        print(markdown(merged))
        return 0
    if args.quick:
        args.patients = 2000
        args.snapshot_reads, args.http_reads, args.single_events, args.http_events = (
            300,
            100,
            300,
            150,
        )
    else:
        args.snapshot_reads, args.http_reads, args.single_events, args.http_events = (
            1000,
            300,
            2000,
            1000,
        )
    if args.patients < 100 or not 1 <= args.batch_size <= 5000:
        parser.error("--patients must be at least 100 and --batch-size within 1..5000")
    points = [1000, args.patients] if args.patients > 1000 * 2 else [args.patients]
    if args.quick:
        points = [1000, 2000]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]

    results: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "patients": args.patients,
            "batch_size": args.batch_size,
            "quick": args.quick,
            "points": points,
            "started": NOW.isoformat(),
            "code": code_version(),
        },
        "backends": {},
    }
    target = args.json or (None if args.quick else RESULTS)
    started = time.perf_counter()
    for backend in backends:
        if backend == "postgres" and (problem := postgres_problem()):
            if args.backend == "postgres":
                raise SystemExit(f"PostgreSQL not reachable at {PG_SERVER}: {problem}")
            log(f"skipping PostgreSQL: {problem}")
            results["backends"][backend] = {"skipped": problem}
            continue
        with database(backend) as url:
            results["backends"][backend] = run_backend(backend, url, points, args)
        if target is not None:  # after each backend, so a long run keeps what it measured
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(results, indent=2) + "\n")
    results["total_s"] = round(time.perf_counter() - started, 1)

    report = markdown(results)
    print(report)
    print(f"\nTotal wall time: {results['total_s']:.0f} s")
    if target is not None:
        target.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Raw results: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
