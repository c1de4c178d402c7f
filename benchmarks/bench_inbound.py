"""Durable inbound benchmark: webhook acceptance with `wrk`, then the workers' turns.

1. Webhook throughput: `wrk -t2 -c32` on loopback against the product's web tier (one uvicorn
   process, dispatcher/turns/scheduler left out, as `serve --no-workers`) and against a bare
   FastAPI app whose one route parses the same form and answers the same TwiML, same uvicorn
   options, one after the other in one run. Twilio signatures depend only on URL + parameters,
   so a Lua script cycles through pre-signed bodies, each with its own MessageSid, from verified
   patients asking where their prescription is.
2. Turns: afterwards the stored messages are answered by worker processes (`patient-status
   worker`: two on PostgreSQL, one on SQLite) sending to a local fake Twilio; turns/s from the
   first claim to the last row done, and every accepted message answered exactly once.

    python benchmarks/bench_inbound.py [--backend sqlite|postgres|both] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_channels import (  # noqa: E402
    ROOT,
    Server,
    TimedFakeTwilio,
    base_env,
    load_avg,
    prepare_requests,
    seed_verified_patients,
    serve_child,
)
from bench_status import database, log, machine, postgres_problem  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "inbound.json"
PATIENTS = 1000


def lua_script(path: Path, prepared: list) -> None:
    """A wrk script cycling through the pre-signed requests."""
    lines = ["local bodies = {", *(f"[==[{p.content.decode()}]==]," for p in prepared), "}"]
    lines += ["local sigs = {", *(f'"{p.headers["X-Twilio-Signature"]}",' for p in prepared)]
    lines += [
        "}",
        "local i = 0",
        "request = function()",
        "  i = i % #bodies + 1",
        '  return wrk.format("POST", "/webhooks/twilio/sms", {',
        '    ["Content-Type"] = "application/x-www-form-urlencoded",',
        '    ["X-Twilio-Signature"] = sigs[i]}, bodies[i])',
        "end",
    ]
    path.write_text("\n".join(lines))


def wrk(base_url: str, script: Path, seconds: int) -> dict[str, Any]:
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), base_url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)

    return {"requests": total, "rps": rps, "non_2xx": int(errors.group(1)) if errors else 0,
            "p50_ms": ms("50"), "p99_ms": ms("99")}  # fmt: skip


def inbox_counts(url: str) -> Counter:
    from bot.inbox import InboxMessage
    from status.db import Database

    db = Database(url)
    with db.session() as session:
        rows = session.execute(
            select(InboxMessage.state, InboxMessage.outcome, func.count()).group_by(
                InboxMessage.state, InboxMessage.outcome
            )
        ).all()
    db.dispose()
    return Counter({f"{state}/{outcome}": count for state, outcome, count in rows})


def run_turns(url: str, backend: str, stored: int, workdir: Path) -> dict[str, Any]:
    fake = TimedFakeTwilio()
    fake.start()
    processes = 2 if backend == "postgres" else 1
    env = base_env(url, TWILIO_API_BASE=fake.base_url, LOG_LEVEL="WARNING")
    logs = (workdir / "workers.log").open("ab")
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "channels.cli", "worker"],
            env=env,
            stdout=logs,
            stderr=logs,
            cwd=ROOT,
        )  # fmt: skip
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + 600
        first = None
        while time.monotonic() < deadline:
            counts = inbox_counts(url)
            done = sum(v for k, v in counts.items() if k.startswith("done/"))
            if first is None and done:
                first = time.monotonic()
            if done >= stored:
                break
            time.sleep(0.5)
        finished = time.monotonic()
        fake.wait_for(stored, timeout=120)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        logs.close()
        fake.stop()
    replies = Counter(m.to for m in fake.messages)
    return {
        "worker_processes": processes,
        "turns": done,
        "turns_per_second": round(done / max(finished - (first or started), 1e-6), 1),
        "seconds_including_start": round(finished - started, 1),
        "outcomes": dict(counts),
        "replies": len(fake.messages),
        "patients_answered_twice": sum(1 for n in replies.values() if n > 1),
    }


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from status.migrate import upgrade

    with database(backend) as url:
        upgrade(url)
        log(f"{backend}: seeding {PATIENTS} verified patients")
        seed_verified_patients(url, PATIENTS)
        prepared = prepare_requests(args.requests, 0, PATIENTS)
        script = workdir / "sms.lua"
        lua_script(script, prepared)
        env = base_env(url)
        result: dict[str, Any] = {"load_before": load_avg()}
        for kind in ("bare", "app"):
            server = Server(kind, env, workdir / f"{kind}.log").start(timeout=300)
            try:
                log(f"{backend}: wrk against {kind}")
                result[kind] = wrk(server.base_url, script, args.seconds)
            finally:
                server.stop()
        result["ratio"] = round(result["app"]["rps"] / result["bare"]["rps"], 3)
        stored = sum(inbox_counts(url).values())
        result["stored"] = stored
        log(f"{backend}: {stored} stored; workers answering")
        result["turns"] = run_turns(url, backend, stored, workdir)
        result["load_after"] = load_avg()
        log(f"{backend}: {json.dumps(result)}")
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20000, help="distinct signed messages")
    parser.add_argument("--serve-child")
    parser.add_argument("--port", type=int)
    parser.add_argument("--run-workers", action="store_true")
    args = parser.parse_args(argv)
    if args.serve_child:  # bench_channels.Server starts its own file; kept for symmetry
        serve_child(args.serve_child, args.port, args.run_workers)
        return 0
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and postgres_problem():
        log(f"PostgreSQL unavailable: {postgres_problem()}")
        backends.remove("postgres")
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        for backend in backends:
            results[backend] = run_backend(backend, args, Path(tmp))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
