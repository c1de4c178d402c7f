"""Proactive updates benchmark: state changes in through `POST /events`, SMS out to Twilio.

N patients (default 10,000; SMS consent, distinct phones, a prescription each) are seeded
directly in the database. Then one `shipment.updated` (in_transit, occurred_at = now) per
patient is POSTed to the real app over HTTP in batches (default 500 events, one batch in flight),
with `NOTIFY_DELAY_SECONDS=0`, `QUIET_HOURS=off` and caps out of the way, while dispatchers send
what the rules wrote to the local fake Twilio (the real twilio client). Reported:

- events/s applied (202 answers), and each batch's request time;
- proactive messages/s reaching the fake Twilio;
- per message, the time from its batch's 202 to the fake's receipt (p50/p99/max);
- `GET /healthz` latency probed every 250 ms during the ingest (how responsive the app stays);
- that every patient got exactly one message, carrying their tracking link.

Dispatcher set-ups (`--workers`): 0 = the app's in-process dispatcher (`patient-status serve`);
K > 0 = `serve --no-workers` plus K `patient-status worker` processes. Each set-up gets a fresh
database.

    python benchmarks/bench_proactive.py [--backend sqlite|postgres|both] [--patients N]
                                         [--workers 0 2] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_channels import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ROOT,
    TWILIO_NUMBER,
    Server,
    TimedFakeTwilio,
    base_env,
    cpu_seconds,
    latency_ms,
    load_avg,
)
from bench_status import PG_SERVER, database, log, machine, postgres_problem
from sqlalchemy import func, select

RESULTS = Path(__file__).resolve().parent / "results" / "proactive.json"
API_KEY = "bench-api-key"
PHONE_BASE = 3_000_000  # patient i: +1555 300 0000 + i
PROBE_EVERY = 0.25


def phone(index: int) -> str:
    return f"+1555{PHONE_BASE + index:07d}"


def tracking(index: int) -> str:
    return f"1Z999AA2{index:010d}"


def seed(url: str, count: int, start: int = 0) -> dict[str, Any]:
    """Patients with a prescription in processing, applied directly (no notifications)."""
    from status.db import Database, utcnow
    from status.events.apply import apply_events
    from status.events.schemas import parse_events

    started = time.perf_counter()
    earlier = (utcnow() - timedelta(hours=3)).isoformat()
    db = Database(url)
    for first in range(start, start + count, 1000):
        events: list[dict[str, Any]] = []
        for i in range(first, min(start + count, first + 1000)):
            pid = f"pp-{i:06d}"
            events += [
                {"id": f"p-p-{i}", "type": "patient.updated", "occurred_at": earlier, "data": {
                    "patient_id": pid, "first_name": "Ana", "last_name": f"Bench{i}",
                    "date_of_birth": "1979-06-02", "phone": phone(i),
                    "language": "es" if i % 5 == 0 else "en", "timezone": "America/Chicago",
                    "sms_consent": True}},
                {"id": f"p-rx-{i}", "type": "prescription.updated", "occurred_at": earlier,
                 "data": {"prescription_id": f"prx-{i:06d}", "patient_id": pid,
                          "medication": "Tirzepatide 5 mg", "status": "processing",
                          "pharmacy": {"name": "Harbor Mail Pharmacy"}, "refills_remaining": 3}},
            ]  # fmt: skip
        with db.session() as session:
            apply_events(session, parse_events(events))
    db.dispose()
    return {"patients": count, "seconds": round(time.perf_counter() - started, 1)}


def shipment_batches(count: int, batch_size: int, start: int = 0) -> list[list[dict[str, Any]]]:
    from status.db import utcnow

    now = utcnow()
    eta = (now + timedelta(days=2)).date().isoformat()
    events = [
        {
            "id": f"ship-{i}-{uuid.uuid4().hex[:8]}",
            "type": "shipment.updated",
            "occurred_at": now.isoformat(),
            "data": {
                "shipment_id": f"psh-{i:06d}",
                "patient_id": f"pp-{i:06d}",
                "prescription_id": f"prx-{i:06d}",
                "carrier": "UPS",
                "tracking_number": tracking(i),
                "tracking_url": f"https://www.ups.com/track?tracknum={tracking(i)}",
                "status": "in_transit",
                "estimated_delivery": eta,
            },
        }
        for i in range(start, start + count)
    ]
    return [events[i : i + batch_size] for i in range(0, count, batch_size)]


async def ingest(
    base_url: str, batches: list[list[dict]], fake: TimedFakeTwilio, expected: int, wait_s: float
) -> dict[str, Any]:
    """POST the batches one after another; probe /healthz meanwhile; wait for the messages."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    sent: list[float] = []
    accepted: list[float] = []
    statuses: Counter = Counter()
    probes: list[float] = []
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        idle = []
        for _ in range(20):  # /healthz before any event: the baseline
            began = time.perf_counter()
            await client.get("/healthz")
            idle.append(time.perf_counter() - began)
            await asyncio.sleep(0.05)

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=300) as prober:
                while not done.is_set():
                    began = time.perf_counter()
                    await prober.get("/healthz")
                    probes.append(time.perf_counter() - began)
                    await asyncio.sleep(PROBE_EVERY)

        prober = asyncio.create_task(probe())
        for batch in batches:
            sent.append(time.monotonic())
            response = await client.post("/events", json={"events": batch}, headers=headers)
            accepted.append(time.monotonic())
            statuses[response.status_code] += 1
            if response.status_code != 202 or response.json().get("accepted") != len(batch):
                raise RuntimeError(f"POST /events answered {response.status_code}: {response.text}")
        done.set()
        await prober
    deadline = time.monotonic() + wait_s
    while fake.count() < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return {
        "sent": sent,
        "accepted": accepted,
        "statuses": dict(statuses),
        "probes": probes,
        "idle": idle,
    }


def cost_breakdown(url: str, start: int, count: int = 200, batch: int = 100) -> dict[str, Any]:
    """In this process, what one event costs inside `POST /events`: apply vs. proactive rules.

    Fresh patients (indexes from `start`), the same events, the same calls as the route
    (`parse_body`, `apply_events`, `Notifier.on_changes`, commit), with SQL statements counted.
    Their messages stay in the outbox: no dispatcher runs any more.
    """
    from bench_status import StatementCounter

    from bot.proactive.notifier import Notifier
    from status.db import Database
    from status.events.apply import apply_events
    from status.events.schemas import parse_body
    from status.settings import Settings

    seed(url, count, start)
    settings = Settings(
        _env_file=None, database_url=url, notify_delay_seconds=0, quiet_hours="off",
        daily_message_cap=1000, weekly_message_cap=1000, twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN, twilio_from_number=TWILIO_NUMBER,
    )  # fmt: skip
    db = Database(url)
    notifier = Notifier(settings)
    counter = StatementCounter(db.engine)
    totals = Counter()
    for events in shipment_batches(count, batch, start):
        with db.session() as session:
            began, statements = time.perf_counter(), counter.count
            result = apply_events(session, parse_body({"events": events}))
            applied, applied_statements = time.perf_counter(), counter.count
            notifier.on_changes(session, result.changes)
            notified, notified_statements = time.perf_counter(), counter.count
        totals["apply_s"] += applied - began
        totals["apply_statements"] += applied_statements - statements
        totals["notify_s"] += notified - applied
        totals["notify_statements"] += notified_statements - applied_statements
        totals["commit_s"] += time.perf_counter() - notified
    db.dispose()
    return {
        "events": count,
        "apply_ms_per_event": round(totals["apply_s"] * 1000 / count, 2),
        "apply_statements_per_event": round(totals["apply_statements"] / count, 1),
        "notify_ms_per_event": round(totals["notify_s"] * 1000 / count, 2),
        "notify_statements_per_event": round(totals["notify_statements"] / count, 1),
        "commit_ms_per_batch": round(totals["commit_s"] * 1000 / (count / batch), 1),
    }


def start_workers(env: dict[str, str], count: int, workdir: Path) -> list[subprocess.Popen]:
    exe = Path(sys.executable).with_name("patient-status")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "channels.cli"]
    workers = []
    for n in range(count):
        handle = (workdir / f"worker-{uuid.uuid4().hex[:6]}-{n}.log").open("ab")
        workers.append(
            subprocess.Popen(
                [*command, "worker"], env=env, stdout=subprocess.PIPE, stderr=handle, cwd=ROOT
            )
        )
        handle.close()  # the child has its own descriptor
    for worker in workers:
        line = worker.stdout.readline().decode()
        if "running" not in line:
            raise RuntimeError(f"worker did not start: {line!r}")
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        if worker.stdout:
            worker.stdout.close()


def check(url: str, fake: TimedFakeTwilio, count: int) -> dict[str, Any]:
    from bot.messages import Direction, Kind, Message
    from status.db import Database

    messages = [r for _, r in fake.timed_messages()]
    recipients = Counter(r.to for r in messages)
    expected = {phone(i) for i in range(count)}
    with_link = sum(
        1 for r in messages if tracking(int(r.to[5:]) - PHONE_BASE) in (r.body or "")
    )  # fmt: skip
    db = Database(url)
    with db.session() as session:
        rows = Counter(
            session.scalars(
                select(Message.status).where(
                    Message.direction == Direction.OUT, Message.kind == Kind.PROACTIVE
                )
            )
        )
        timeline = session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == Direction.IN)
        )
    db.dispose()
    result = {
        "messages": len(messages),
        "patients_told": len(set(recipients) & expected),
        "duplicates": sum(n - 1 for n in recipients.values() if n > 1),
        "unexpected_recipients": len(set(recipients) - expected),
        "with_tracking_link": with_link,
        "outbox_statuses": dict(rows),
        "inbound_rows": timeline,
        "provider_errors": sum(1 for r in fake.requests if r.status_code != 201),
    }
    result["exactly_once"] = (
        result["messages"] == count == result["patients_told"] == with_link
        and result["duplicates"] == 0
        and result["unexpected_recipients"] == 0
        and rows.get("sent", 0) == count
    )
    return result


def run_setup(
    backend: str, workers: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    from status.migrate import upgrade

    count = args.patients
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with database(backend) as url:
        upgrade(url)
        seeded = seed(url, count)
        log(f"{backend}/{workers}w: seeded {count} patients in {seeded['seconds']} s")
        fake = TimedFakeTwilio().start()
        env = base_env(
            url,
            TWILIO_API_BASE=fake.base_url,
            NOTIFY_DELAY_SECONDS="0",
            QUIET_HOURS="off",
            DAILY_MESSAGE_CAP="1000",
            WEEKLY_MESSAGE_CAP="1000",
        )
        server = Server(
            "app", env, workdir / f"app-{backend}-{workers}.log", run_workers=not workers
        )
        procs: list[subprocess.Popen] = []
        try:
            server.start()
            procs = start_workers(env, workers, workdir)
            batches = shipment_batches(count, args.batch_size)
            pids = [server.proc.pid] + [p.pid for p in procs]
            cpu_before = {pid: cpu_seconds(pid) for pid in pids}
            load_before = load_avg()
            log(f"{backend}/{workers}w: posting {count} events in {len(batches)} batches")
            raw = asyncio.run(ingest(server.base_url, batches, fake, count, args.wait))
            cpu = {pid: round(cpu_seconds(pid) - cpu_before[pid], 2) for pid in pids}
            time.sleep(1.5)  # room for a duplicate to arrive, if there were one
            load_after = load_avg()
        finally:
            stop_workers(procs)
            server.stop()
            fake.stop()
        result = summarize(raw, fake, count, args.batch_size)
        result["check"] = check(url, fake, count)
        if args.breakdown:
            result["cost_per_event"] = cost_breakdown(url, start=count)
    result.update(
        started=started_at,
        backend=backend,
        dispatchers="in-process (serve)" if not workers else f"{workers} worker processes",
        seed=seeded,
        load_before=load_before,
        load_after=load_after,
        cpu_seconds={"app": cpu[pids[0]], "workers": [cpu[p] for p in pids[1:]]},
    )
    log(
        f"{backend}/{workers}w: {result['events_per_s']} events/s, "
        f"{result['messages_per_s']} msg/s, latency p50 {result['latency']['p50_ms']} ms "
        f"p99 {result['latency']['p99_ms']} ms; exactly once: {result['check']['exactly_once']}"
    )
    return result


def summarize(raw: dict, fake: TimedFakeTwilio, count: int, batch_size: int) -> dict[str, Any]:
    sent, accepted = raw["sent"], raw["accepted"]
    first = sent[0]
    arrivals = fake.timed_messages()
    latencies = []
    for at, request in arrivals:
        index = int(request.to[5:]) - PHONE_BASE
        latencies.append(at - accepted[index // batch_size])
    times = sorted(at for at, _ in arrivals)
    ingest_s = accepted[-1] - first
    result: dict[str, Any] = {
        "events": count,
        "batches": len(sent),
        "batch_size": batch_size,
        "ingest_s": round(ingest_s, 2),
        "events_per_s": round(count / ingest_s, 1),
        "batch_request": latency_ms([a - s for s, a in zip(sent, accepted, strict=True)]),
        "healthz_idle": latency_ms(raw["idle"]),
        "healthz_during_ingest": latency_ms(raw["probes"]) | {"n": len(raw["probes"])},
        "messages": len(arrivals),
    }
    if times:
        result.update(
            first_message_s=round(times[0] - first, 2),
            last_message_s=round(times[-1] - first, 2),
            messages_per_s=round(len(times) / (times[-1] - first), 1),
            messages_during_ingest=sum(1 for t in times if t <= accepted[-1]),
            latency=latency_ms(latencies)
            | {"negative": sum(1 for v in latencies if v < 0), "min_ms": min(latencies) * 1000},
        )
        result["latency"]["min_ms"] = round(result["latency"]["min_ms"], 2)
    else:
        result.update(messages_per_s=0.0, latency={"p50_ms": None, "p99_ms": None})
    return result


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    lines = [
        f"Machine: {m['nproc']} CPU ({m['cpu']}); Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgres'] or 'n/a'}. Load average at start "
        f"{' / '.join(map(str, results['load_start']))}, at end "
        f"{' / '.join(map(str, results.get('load_end', [])))}.",
        f"Run: {cfg['patients']:,} patients, one shipment.updated (in_transit) each, batches of "
        f"{cfg['batch_size']} POSTed one at a time; NOTIFY_DELAY_SECONDS=0, QUIET_HOURS=off; "
        f"{cfg['started']}; {results.get('total_s', 0):.0f} s in all.",
        "",
        "| backend | dispatchers | events/s applied | batch p50 / p99 ms | msg/s delivered "
        "| 202 -> provider p50 / p99 / max ms | /healthz during ingest p50 / p99 / max ms "
        "| exactly once | CPU s app / workers | load before |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['backend']} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        lat, hz, br, ck = r["latency"], r["healthz_during_ingest"], r["batch_request"], r["check"]
        lines.append(
            f"| {r['backend']} | {r['dispatchers']} | {r['events_per_s']:,.0f} | "
            f"{br['p50_ms']:,.0f} / {br['p99_ms']:,.0f} | {r['messages_per_s']:,.0f} | "
            f"{lat['p50_ms']:,.0f} / {lat['p99_ms']:,.0f} / {lat['max_ms']:,.0f} | "
            f"{hz['p50_ms']:,.0f} / {hz['p99_ms']:,.0f} / {hz['max_ms']:,.0f} | "
            f"{'yes' if ck['exactly_once'] else 'NO'} ({ck['patients_told']:,}/{r['events']:,}, "
            f"{ck['duplicates']} dup.) | {r['cpu_seconds']['app']:.0f} / "
            f"{sum(r['cpu_seconds']['workers']):.0f} | {r['load_before'][0]} |"
        )
    lines.append("")
    for r in results["runs"]:
        if "skipped" in r:
            continue
        lines.append(
            f"- {r['backend']}, {r['dispatchers']}: ingest {r['ingest_s']} s; first message "
            f"{r.get('first_message_s')} s, last {r.get('last_message_s')} s after the first "
            f"POST; {r.get('messages_during_ingest', 0):,} of {r['messages']:,} messages sent "
            f"while events were still arriving; /healthz idle p50 / max "
            f"{r['healthz_idle']['p50_ms']} / {r['healthz_idle']['max_ms']} ms; "
            f"seed {r['seed']['seconds']} s."
        )
        if cost := r.get("cost_per_event"):
            lines.append(
                f"  Cost per event in the POST /events transaction (in-process, "
                f"{cost['events']} events): apply {cost['apply_ms_per_event']} ms / "
                f"{cost['apply_statements_per_event']} SQL statements, proactive rules "
                f"{cost['notify_ms_per_event']} ms / {cost['notify_statements_per_event']} "
                f"statements; commit {cost['commit_ms_per_batch']} ms per batch of 100."
            )
    return "\n".join(lines)


def _key(run: dict[str, Any]) -> tuple:
    return run["backend"], run.get("dispatchers"), run.get("events")


def save(target: Path, results: dict[str, Any]) -> None:
    """Write the results, keeping earlier runs of other set-ups (one invocation per set-up is
    allowed, so that each stays under ten minutes)."""
    previous: list[dict[str, Any]] = []
    if target.exists():
        try:
            previous = json.loads(target.read_text()).get("runs", [])
        except (ValueError, AttributeError):
            previous = []
    fresh = {_key(r) for r in results["runs"]}
    merged = dict(results)
    merged["runs"] = [r for r in previous if _key(r) not in fresh] + results["runs"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2],
        help="dispatcher set-ups: 0 = in-process (serve), K = K worker processes",
    )  # fmt: skip
    parser.add_argument("--wait", type=float, default=300.0, help="max s to wait for messages")
    parser.add_argument("--quick", action="store_true", help="1,000 patients, batches of 100")
    parser.add_argument(
        "--no-breakdown", dest="breakdown", action="store_false",
        help="skip the in-process apply/notify cost breakdown (200 more events per set-up)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS} (full runs)")
    parser.add_argument("--logs", type=Path, default=None, help="keep server and worker logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.batch_size = 1000, 100
    if args.patients < 10 or not 1 <= args.batch_size <= 5000 or min(args.workers) < 0:
        parser.error("--patients >= 10, --batch-size within 1..5000, --workers >= 0")
    results: dict[str, Any] = {
        "machine": machine(),
        "load_start": load_avg(),
        "config": {
            "patients": args.patients,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "quick": args.quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "server": "uvicorn, 1 process, JSON logs at INFO to a file",
        },
        "runs": [],
    }
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-proactive-") as tmp:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
        for backend in backends:
            if backend == "postgres" and (problem := postgres_problem()):
                if args.backend == "postgres":
                    raise SystemExit(f"PostgreSQL not reachable at {PG_SERVER}: {problem}")
                results["runs"].append({"backend": backend, "skipped": problem})
                continue
            for workers in args.workers:
                results["runs"].append(run_setup(backend, workers, args, args.logs or Path(tmp)))
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["load_end"] = load_avg()
    print(markdown(results))
    target = args.json or (None if args.quick else RESULTS)
    if target is not None:
        save(target, results)
        print(f"\nRaw results: {target}")
    ok = all("skipped" in r or r["check"]["exactly_once"] for r in results["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
