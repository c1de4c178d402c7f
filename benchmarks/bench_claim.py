"""The turn runner's claim against the backlog: how long `TurnRunner.claim` takes with N messages
waiting.

For each backlog, a fresh database with N inbox rows from `--patients` conversations, stored in
arrival order round-robin (as a burst from many patients arrives), then `--repeat` claims of a
batch each by one runner (each leases the next heads; the backlog shrinks by a batch per claim),
timed wall, with the median and the worst. `--flood F` puts F more messages of one conversation
first, its oldest leased to another worker, so every claim has to look past them. On
PostgreSQL the tables are ANALYZEd after filling unless `--no-analyze` (this machine's server
runs with autovacuum off: without it the planner sees the statistics of empty tables).

    python benchmarks/bench_claim.py [--backend postgres|sqlite] [--backlogs 3000 15000]
        [--patients 1000] [--repeat 10] [--flood 0] [--no-analyze] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_channels import load_avg, phone
from bench_status import database, log
from sqlalchemy import insert

from bot import inbox
from bot.inbox import InboxMessage
from channels.runtime import Runtime
from channels.turns import TurnRunner
from status.clinics import DEFAULT_ID
from status.db import Database, utcnow
from status.migrate import upgrade
from status.settings import Settings


def fill(db: Database, settings: Settings, backlog: int, patients: int, flood: int) -> None:
    sealed = inbox.seal(settings.secret_key, {"text": "where is my prescription"})
    now = utcnow()

    def row(n: int, address: str) -> dict:
        return {
            "clinic_id": DEFAULT_ID, "source": "twilio_sms", "provider_id": f"SM{n}",
            "action": "sms", "channel": "sms", "address": address, "sealed": sealed,
            "received_at": now, "state": "pending", "attempts": 0, "next_attempt_at": None,
        }  # fmt: skip

    rows = [row(-n - 1, "+15559990000") for n in range(flood)]
    rows += [row(n, phone(n % patients)) for n in range(backlog)]
    with db.session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(InboxMessage), rows[start : start + 5000])


def measure(args: argparse.Namespace, backlog: int) -> dict:
    with database(args.backend) as url:
        upgrade(url)
        settings = Settings(_env_file=None, database_url=url, quiet_hours="off")
        db = Database(url)
        try:
            fill(db, settings, backlog, args.patients, args.flood)
            runtime = Runtime(settings, db)
            if args.flood:  # the flooding conversation's oldest, leased to another worker
                held = TurnRunner(runtime, worker_id="other", batch_size=1).claim()
                assert held and held[0].address == "+15559990000", held
            if not args.no_analyze and args.backend == "postgres":
                with db.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE inbox")
            runner = TurnRunner(runtime, worker_id="bench")
            runner.claim(utcnow() - timedelta(days=1))  # warm-up: nothing is due a day ago
            times, claimed = [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                claimed.append(len(runner.claim()))
                times.append((time.perf_counter() - started) * 1000)
        finally:
            db.dispose()
    result = {
        "backlog": backlog,
        "flood": args.flood,
        "claimed_per_claim": claimed,
        "ms_median": round(statistics.median(times), 2),
        "ms_max": round(max(times), 2),
        "ms_each": [round(t, 2) for t in times],
    }
    log(f"  backlog {backlog} (+ flood {args.flood}): median {result['ms_median']} ms, "
        f"max {result['ms_max']} ms, claimed {claimed}")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--backlogs", type=int, nargs="+", default=[3000, 15000])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--no-analyze", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load = load_avg()
    runs = [measure(args, backlog) for backlog in args.backlogs]
    report = {
        "backend": args.backend,
        "analyzed": not args.no_analyze,
        "patients": args.patients,
        "load_avg_before": load,
        "load_avg_after": load_avg(),
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
