"""A patient's reply while thousands of proactive messages drain on the same number.

`--proactive` (default 10,000) proactive SMS wait in the outbox, all from the one Twilio number
paced at `--rate` messages/s (one pacing slot = 1/rate s); `serve --no-workers` and one
`patient-status worker` process run against a local fake Twilio. Once the drain is under way,
`--replies` verified patients text "where is my prescription" one at a time (signed webhooks,
about `--gap` seconds apart, at random phases of the pacing slot). For each: the time from the
webhook, and from the reply's row being written, to the reply reaching the provider (ms and
pacing slots), and how many proactive messages the number sent in between (the reply should be
the next message the number sends: at most the one already claimed for the current slot).

    python benchmarks/bench_reply_priority.py [--backend postgres|sqlite] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_channels import (
    WEBHOOK,
    Server,
    TimedFakeTwilio,
    base_env,
    load_avg,
    phone,
    prepare_requests,
    seed_verified_patients,
    serve_child,
)
from bench_inbound import Workers
from bench_status import database, log, machine, percentile

RESULTS = Path(__file__).resolve().parent / "results" / "reply_priority.json"
PROACTIVE_BASE = "+1555700"
WALL = time.time() - time.monotonic()  # the fake notes monotonic times; rows, wall times


def enqueue_proactive(url: str, count: int) -> None:
    from bot import outbox
    from bot.messages import Kind
    from status.clinics import DEFAULT_ID
    from status.db import Database

    db = Database(url)
    for first in range(0, count, 500):  # one session each: a session of 10,000 grows slow
        with db.session() as session:
            for n in range(first, min(count, first + 500)):
                outbox.enqueue(
                    session, clinic_id=DEFAULT_ID, channel="sms",
                    address=f"{PROACTIVE_BASE}{n:04d}",
                    body=f"Update {n}: your order is on its way.", kind=Kind.PROACTIVE,
                    template="notify_shipped",
                )  # fmt: skip
    # The planner's statistics for the filled outbox, as autovacuum gathers them within a
    # minute on a default server (this machine's runs with autovacuum off, so a benchmark
    # would otherwise measure plans made for an empty table all run long).
    if not db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE messages")
    db.dispose()


def reply_times(url: str) -> dict[str, float]:
    """Address -> when its reply row was written (wall clock), for the patients' replies."""
    from sqlalchemy import select

    from bot.messages import Direction, Kind, Message
    from status.db import Database

    db = Database(url)
    with db.session() as session:
        rows = session.execute(
            select(Message.address, Message.created_at).where(
                Message.direction == Direction.OUT, Message.kind == Kind.REPLY
            )
        ).all()
    db.dispose()
    return {address: created.timestamp() for address, created in rows}


def run(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from status.migrate import upgrade

    with database(backend) as url:
        upgrade(url)
        seed_verified_patients(url, args.replies)
        log(f"{backend}: {args.proactive:,} proactive messages queued")
        enqueue_proactive(url, args.proactive)
        fake = TimedFakeTwilio()
        fake.start()
        rate = str(args.rate)
        env = base_env(url, TWILIO_API_BASE=fake.base_url, TWILIO_MESSAGES_PER_SECOND=rate)
        server = Server("app", env, workdir / "app.log").start(timeout=300)
        workers = None
        points = []
        try:
            levels = {"LOG_LEVEL": "INFO"} if args.logs else {}  # each turn, swap and send
            workers = Workers(url, fake, 1, workdir, TWILIO_MESSAGES_PER_SECOND=rate, **levels)
            while fake.count() < 5:  # the drain is under way
                time.sleep(0.1)
            requests = prepare_requests(args.replies + 1, 0, args.replies + 1)
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                for i, request in enumerate(requests):  # the first warms the worker up
                    time.sleep(args.gap * random.uniform(0.5, 1.5))  # any phase of a slot
                    sent_before = fake.count()
                    started = time.monotonic()
                    answer = client.post(WEBHOOK, content=request.content, headers=request.headers)
                    answer.raise_for_status()
                    deadline = started + 60
                    reply = None
                    while reply is None and time.monotonic() < deadline:
                        time.sleep(0.005)
                        reply = next(
                            ((t, k) for k, (t, r) in enumerate(fake.timed_messages(sent_before))
                             if r.to == phone(i)), None,
                        )  # fmt: skip
                    if reply is None:
                        raise RuntimeError(f"no reply to patient {i} within 60 s")
                    if i > 0:
                        points.append({"address": phone(i), "sent": started, "arrived": reply[0]})
            backlog = args.proactive - sum(
                1 for _, r in fake.timed_messages() if r.to.startswith(PROACTIVE_BASE)
            )
            proactive = [t for t, r in fake.timed_messages() if r.to.startswith(PROACTIVE_BASE)]
            written = reply_times(url)
        finally:
            if workers is not None:
                workers.stop()
            server.stop()
            fake.stop()
    slot_ms = 1000 / args.rate
    for p in points:  # the reply row's commit time, on the fake's (monotonic) clock
        p["written"] = written[p["address"]] - WALL
        p["ms"] = (p["arrived"] - p["sent"]) * 1000
        p["queued_ms"] = (p["arrived"] - p["written"]) * 1000
        p["proactive_between"] = sum(1 for t in proactive if p["written"] < t < p["arrived"])
    ms = [p["ms"] for p in points]
    queued = [p["queued_ms"] for p in points]
    between = [p["proactive_between"] for p in points]
    return {
        "backend": backend,
        "rate_per_s": args.rate,
        "slot_ms": slot_ms,
        "replies": len(points),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "p99_slots": round(percentile(ms, 99) / slot_ms, 2),
        "queued_p50_ms": round(percentile(queued, 50), 1),
        "queued_p99_ms": round(percentile(queued, 99), 1),
        "queued_p99_slots": round(percentile(queued, 99) / slot_ms, 2),
        "proactive_sent_between_max": max(between),
        "proactive_sent_between_p50": percentile(between, 50),
        "proactive_still_queued_at_end": backlog,
        "load_avg": load_avg(),
        "points": points,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--proactive", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s for the number")
    parser.add_argument("--replies", type=int, default=40)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the server's and worker's logs here (INFO)"
    )
    parser.add_argument("--serve-child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-workers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child, args.port, args.run_workers)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp:
        workdir = args.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.backend, args, workdir)
    result["machine"] = machine()
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| backend | number's rate | slot ms | replies | webhook -> provider p50 / p99 / max ms "
        "| reply queued -> provider p50 / p99 ms (p99 in slots) | proactive sent meanwhile (max) "
        "| proactive still queued | load |"
    )
    print("|---|---:|---:|---:|---|---|---:|---:|---|")
    r = result
    print(f"| {r['backend']} | {r['rate_per_s']}/s | {r['slot_ms']:.0f} | {r['replies']} "
          f"| {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} "
          f"| {r['queued_p50_ms']} / {r['queued_p99_ms']} ({r['queued_p99_slots']}) "
          f"| {r['proactive_sent_between_max']} | {r['proactive_still_queued_at_end']:,} "
          f"| {r['load_avg'][0]} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
