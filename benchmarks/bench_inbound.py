"""Durable inbound: the web tier's webhook rate under `wrk`, then the workers' turns.

Per backend, in one run (one uvicorn process per server, `patient-status serve`'s options, the
product's JSON logs at INFO to a file; `wrk` on loopback with a Lua script that sends pre-signed
Twilio bodies read from a file, each with its own MessageSid, from 1,000 verified patients
asking where their prescription is; every wrk run gets fresh bodies, so no MessageSid repeats):

1. Webhook throughput, `wrk -t2 -c32`: a bare FastAPI endpoint parsing the same form and
   answering the same TwiML (`bare`), the same plus twilio's signature check (`bare_signed`),
   and the product's web tier (`serve --no-workers`: verify, store in the inbox, answer); the
   three up side by side and loaded in turn, `--webhook-rounds` times (default 3), so a host
   whose speed drifts weighs on all three alike.
2. Turns: what phase 1 stored is answered by `--worker-processes` `patient-status worker`
   processes (default 2) sending to a local fake Twilio (pacing off): turns/s from the first
   answered to the last, and every stored message answered exactly once.
3. In-process workers (plain `serve`): the same wrk burst; accepted/s next to turned/s, no
   request refused, and the backlog drained afterwards.
4. Webhook to provider: `serve --no-workers` + the worker processes at a fixed offered rate
   (`--rates`, default 20 100 300 msg/s) for `--rate-seconds`: wrk with a per-request Lua
   `delay()` (wrk2's fixed-rate mode is not available here; each connection waits
   connections/rate seconds between requests, so the offered rate holds while replies are
   faster than that) and p50/p99 from a message's receipt (its inbox row's `received_at`) to
   its reply reaching the fake Twilio.

`--messages varied` sends the distinct status questions of the blind evaluation sets
(`tests/data/blind/set*/single.tsv`: orders, shipping, refills, bills, cards, visits, next
steps; about 4,700, in a fixed shuffled order) instead of the four questions every earlier round
sent, so no reading is remembered (`pipeline.classify_remembered`) and the turns take every
answer's path.

`--history DAYS` first writes DAYS past days of each patient's exchange (inbox row, both
messages, the day's status-page link; `bench_channels.write_history`), so the turns run on a
clinic's database rather than a new one. The default, 0, keeps the rounds comparable.

    python benchmarks/bench_inbound.py [--backend sqlite|postgres|both] [--seconds 10]
        [--history DAYS] [--messages four|varied]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spy
from bench_channels import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    QUESTIONS,
    ROOT,
    TWILIO_NUMBER,
    WEBHOOK,
    Server,
    TimedFakeTwilio,
    base_env,
    cpu_seconds,
    load_avg,
    phone,
    seed_verified_patients,
    serve_child,
    write_history,
)
from bench_status import database, log, machine, percentile, postgres_problem
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

RESULTS = Path(__file__).resolve().parent / "results" / "inbound.json"
PATIENTS = 1000
WALL = time.time() - time.monotonic()  # the fake notes monotonic times; the inbox, wall times

LUA = r"""
local count = 0
function setup(thread)
  thread:set("tid", count)
  count = count + 1
end

function init(args)
  sigs, bodies, i, wrapped = {}, {}, 0, 0
  for line in io.lines(os.getenv("BENCH_BODIES") .. "." .. tid) do
    local sig, body = line:match("^(%S+) (.*)$")
    sigs[#sigs + 1] = sig
    bodies[#bodies + 1] = body
  end
  pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
end

function request()
  i = i + 1
  if i > #bodies then i, wrapped = 1, wrapped + 1 end
  return wrk.format("POST", "/webhooks/twilio/sms", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = sigs[i]}, bodies[i])
end

if os.getenv("BENCH_DELAY_MS") then
  function delay() return pause end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d,'
    .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


STATUS_QUESTIONS = frozenset(
    {"prescription_status", "shipment_tracking", "refill", "billing", "update_payment_method",
     "appointment", "next_steps"}
)  # fmt: skip
BODIES = list(QUESTIONS)  # what the patients write, in turn (`--messages`)


def varied_questions() -> list[str]:
    """The blind sets' distinct single-intent status questions, in a fixed shuffled order."""
    texts: set[str] = set()
    for path in sorted((ROOT / "tests" / "data" / "blind").glob("set*/single.tsv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) >= 2 and row[1] in STATUS_QUESTIONS:  # (a header, if any, is not)
                    texts.add(row[0])
    ordered = sorted(texts)
    random.Random(12).shuffle(ordered)
    return ordered


def write_bodies(prefix: Path, threads: int, per_thread: int, offset: int) -> None:
    """`threads` files `prefix.N` of signed inbound-SMS bodies, one per line: signature, body.
    Patient (offset + k) % PATIENTS sends body k; every MessageSid is new."""
    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + WEBHOOK
    k = offset
    for thread in range(threads):
        lines = []
        for _ in range(per_thread):
            sid = "SM" + uuid.uuid4().hex
            params = {
                "ToCountry": "US",
                "ToState": "NY",
                "SmsMessageSid": sid,
                "NumMedia": "0",
                "ToCity": "NEW YORK",
                "FromZip": "10001",
                "SmsSid": sid,
                "FromState": "NY",
                "SmsStatus": "received",
                "FromCity": "NEW YORK",
                "Body": BODIES[k % len(BODIES)],
                "FromCountry": "US",
                "To": TWILIO_NUMBER,
                "ToZip": "10001",
                "NumSegments": "1",
                "MessageSid": sid,
                "AccountSid": ACCOUNT_SID,
                "From": phone(k % PATIENTS),
                "ApiVersion": "2010-04-01",
            }
            lines.append(f"{validator.compute_signature(url, params)} {urlencode(params)}")
            k += 1
        Path(f"{prefix}.{thread}").write_text("\n".join(lines) + "\n")


class Load:
    """wrk runs against one server, each with bodies no other run used."""

    def __init__(self, workdir: Path, threads: int, connections: int) -> None:
        self.workdir, self.threads, self.connections = workdir, threads, connections
        self.script = workdir / "inbound.lua"
        self.script.write_text(LUA)
        self.runs = 0

    def run(
        self, server: Server, seconds: float, bodies: int, delay_ms: float | None = None
    ) -> dict[str, Any]:
        self.runs += 1
        prefix = self.workdir / f"bodies-{self.runs}"
        write_bodies(prefix, self.threads, bodies // self.threads + 1, self.runs * 7919)
        env = {"PATH": "/usr/bin:/bin", "BENCH_BODIES": str(prefix)}
        if delay_ms is not None:
            env["BENCH_DELAY_MS"] = str(delay_ms)
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{round(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(self.script),
            server.base_url,
        ]
        load = load_avg()
        cpu = cpu_seconds(server.proc.pid)
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(server.proc.pid) - cpu
        raw = json.loads(next(x for x in out.splitlines() if x.startswith("WRK_JSON "))[9:])
        if raw["requests"] > bodies:
            raise RuntimeError(f"wrk sent {raw['requests']} requests for {bodies} bodies")
        return {
            "requests": raw["requests"],
            "req_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "non_2xx": raw["non_2xx"],
            "socket_errors": raw["socket_errors"],
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000,
            "server_cpu_ms_per_req": round(cpu * 1000 / max(1, raw["requests"]), 3),
            "load_avg_before": load,
        }


# The benchmark's own messages arrive after this (`--history` writes days before it).
RUN_START: datetime | None = None


def inbox_counts(url: str) -> Counter:
    from bot.inbox import InboxMessage
    from status.db import Database

    db = Database(url)
    query = select(InboxMessage.state, InboxMessage.outcome, func.count())
    if RUN_START is not None:
        query = query.where(InboxMessage.received_at >= RUN_START)
    # a read: on SQLite it must not queue for the write lock the workers pass between them
    with db.read_session() as session:
        rows = session.execute(query.group_by(InboxMessage.state, InboxMessage.outcome)).all()
    db.dispose()
    return Counter({f"{state}/{outcome}": count for state, outcome, count in rows})


def done_count(counts: Counter) -> int:
    return sum(v for k, v in counts.items() if k.startswith("done/"))


def wait_done(
    url: str, total: int, timeout: float
) -> tuple[Counter, tuple[float, int] | None, float]:
    """Poll until `total` inbox rows are done: (counts, (the first moment some were, how many
    were then), the last moment). A rate is (done - how many then) / (last - first): turns
    finished before the first poll (a profile's seconds) are not in its window."""
    deadline = time.monotonic() + timeout
    first = None
    while True:
        counts = inbox_counts(url)
        done = done_count(counts)
        now = time.monotonic()
        if first is None and done:
            first = (now, done)
        if done >= total or now > deadline:
            return counts, first, now
        time.sleep(0.25)


class Workers:
    """`patient-status worker` processes sending to `fake`."""

    def __init__(
        self, url: str, fake: TimedFakeTwilio, count: int, workdir: Path, **extra: str
    ) -> None:
        env = base_env(url, TWILIO_API_BASE=fake.base_url, **{"LOG_LEVEL": "WARNING", **extra})
        self.logs = (workdir / "workers.log").open("ab")
        command = [sys.executable, "-m", "channels.cli", "worker"]
        self.procs = [
            subprocess.Popen(command, env=env, stdout=self.logs, stderr=self.logs, cwd=ROOT)
            for _ in range(count)
        ]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
        self.logs.close()


def replies_due(url: str) -> int:
    """The replies the turns wrote: one an answered message; a message filed into a hand-off
    that owns the conversation gets at most the half-hourly "it is with our team"."""
    from bot.messages import Direction, Message
    from status.db import Database

    db = Database(url)
    query = select(func.count()).select_from(Message).where(Message.direction == Direction.OUT)
    if RUN_START is not None:
        query = query.where(Message.created_at >= RUN_START)
    with db.read_session() as session:
        due = session.scalar(query) or 0
    db.dispose()
    return due


def replies_once(fake: TimedFakeTwilio, url: str) -> dict[str, Any]:
    """Every inbox row finished, each reply the turns wrote at the fake exactly once, and
    nothing more arrived (with `--messages four`, one reply an answered row)."""
    counts = inbox_counts(url)
    arrived = len(fake.timed_messages())
    due = replies_due(url)
    return {
        "inbox": dict(counts),
        "answered_rows": counts.get("done/answered", 0),
        "replies_written": due,
        "replies_at_provider": arrived,
        "answered_exactly_once": arrived == due
        and done_count(counts) == sum(counts.values())
        and counts.get("done/answered", 0) <= due,
    }


def phase_webhooks(url: str, load: Load, workdir: Path, args: argparse.Namespace) -> dict:
    """The three servers up side by side, loaded in turn for `--webhook-rounds` rounds of
    `--seconds / rounds` each (the order reversed every other round), so a host whose speed
    drifts over a minute weighs on all three alike. Per server: requests over the rounds'
    time, the worst round's p99; per round, the app's share of bare."""
    env = base_env(url)
    kinds = ("bare", "bare_signed", "app")
    rounds = max(1, args.webhook_rounds)
    seconds = max(2.0, args.seconds / rounds)
    budget = int(seconds * 12000)  # more bodies than any server here can take in the time
    servers = {}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for kind in kinds:
            servers[kind] = Server(kind, env, workdir / f"{kind}.log").start(timeout=300)
            load.run(servers[kind], args.warmup, int(args.warmup * 12000))
        for r in range(rounds):
            for kind in kinds if r % 2 == 0 else reversed(kinds):
                runs[kind].append(load.run(servers[kind], seconds, budget))
                last = runs[kind][-1]
                log(f"  round {r + 1} {kind}: {last['req_s']} req/s, p99 {last['p99_ms']} ms")
    finally:
        for server in servers.values():
            server.stop()
    result: dict[str, Any] = {kind: _combined(runs[kind]) for kind in kinds}
    for kind in ("bare", "bare_signed"):
        result[f"app_over_{kind}"] = round(result["app"]["req_s"] / result[kind]["req_s"], 3)
    result["rounds"] = [
        {kind: runs[kind][r]["req_s"] for kind in kinds}
        | {"app_over_bare": round(runs["app"][r]["req_s"] / runs["bare"][r]["req_s"], 3)}
        for r in range(rounds)
    ]
    return result


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds as one: requests over their time, the worst round's tail."""
    requests = sum(run["requests"] for run in runs)
    duration = sum(run["requests"] / run["req_s"] for run in runs if run["req_s"])
    cpu = sum(run["server_cpu_ms_per_req"] * run["requests"] for run in runs)
    return {
        "requests": requests,
        "req_s": round(requests / duration, 1) if duration else 0.0,
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "p50_ms": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms": max(run["p99_ms"] for run in runs),
        "max_ms": max(run["max_ms"] for run in runs),
        "server_cpu_ms_per_req": round(cpu / max(1, requests), 3),
        "load_avg_before": runs[0]["load_avg_before"],
    }


def analyze(url: str) -> None:
    """The planner's statistics for the filled inbox and outbox, as autovacuum gathers them
    within a minute on a default server (this machine's runs with autovacuum off, so the
    workers would otherwise claim with plans made for empty tables)."""
    if url.startswith("sqlite"):
        return
    from status.db import Database

    db = Database(url)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE inbox, messages, conversations")
    db.dispose()


def phase_turns(url: str, workdir: Path, args: argparse.Namespace) -> dict:
    stored = sum(inbox_counts(url).values())
    analyze(url)
    fake = TimedFakeTwilio()
    fake.start()
    started = time.monotonic()
    workers = Workers(url, fake, args.worker_processes, workdir)
    try:
        if args.profile:  # one worker under the backlog, by py-spy (its CPU, by function)
            while not done_count(inbox_counts(url)):  # past its start-up (imports, catalogue)
                time.sleep(0.5)
            time.sleep(2)
            backend = "sqlite" if url.startswith("sqlite") else "postgres"
            flame = RESULTS.with_name(f"inbound.{backend}.worker.spy.txt")
            spy.record(workers.procs[0].pid, args.profile, flame).wait()
            log("a worker under the backlog, py-spy:\n" + spy.table(flame, 45))
        counts, first, last = wait_done(url, stored, timeout=1800)
        cpu = workers.cpu()
        fake.wait_for(replies_due(url), timeout=900)  # the sends may trail a long backlog
    finally:
        workers.stop()
        fake.stop()
    done = done_count(counts)
    since, at = first or (started, 0)
    return {
        "worker_processes": args.worker_processes,
        "stored": stored,
        "turns": done,
        "turns_per_s": round((done - at) / max(last - since, 1e-6), 1),
        "seconds_including_start": round(last - started, 1),
        "worker_cpu_ms_per_turn": round(cpu * 1000 / max(1, done), 2),
        **replies_once(fake, url),
        "load_avg_after": load_avg(),
    }


def phase_in_process(url: str, load: Load, workdir: Path, args: argparse.Namespace) -> dict:
    """Plain `serve`: the same burst with the turn runner and dispatcher in the process."""
    before = sum(inbox_counts(url).values())
    fake = TimedFakeTwilio()
    fake.start()
    env = base_env(url, TWILIO_API_BASE=fake.base_url)
    server = Server("app", env, workdir / "serve.log", run_workers=True).start(timeout=300)
    try:
        wrk = load.run(server, args.seconds, int(args.seconds * 12000))
        burst_end = time.monotonic()
        time.sleep(0.5)  # the requests still in flight when wrk stopped are stored too
        after_burst = inbox_counts(url)
        accepted = sum(after_burst.values()) - before
        turned_during = done_count(after_burst) - before
        counts, _, last = wait_done(url, before + accepted, timeout=1800)
        drained_s = last - burst_end
    finally:
        server.stop()
    fake.stop()
    return {
        "wrk": wrk,
        "accepted": accepted,
        "accepted_per_s": round(accepted / args.seconds, 1),
        "turned_during_burst": turned_during,
        "turned_per_s_during_burst": round(turned_during / args.seconds, 1),
        "backlog_at_end_of_burst": accepted - turned_during,
        "all_done_after_burst_s": round(drained_s, 1),
        "done": done_count(counts) - before,
        "refused": wrk["non_2xx"] + wrk["socket_errors"],
    }


def phase_latency(url: str, load: Load, workdir: Path, args: argparse.Namespace) -> list:
    """Receipt -> reply at the provider at fixed offered rates (web tier + worker processes)."""
    from bot.inbox import InboxMessage
    from status.db import Database

    results = []
    env = base_env(url)
    for rate in args.rates:
        fake = TimedFakeTwilio()
        fake.start()
        workers = Workers(url, fake, args.worker_processes, workdir)
        server = Server("app", env, workdir / "latency.log").start(timeout=300)
        db = Database(url)
        with db.read_session() as session:
            last_id = session.scalar(select(func.max(InboxMessage.id))) or 0
        try:
            time.sleep(3)  # the workers are up and idle
            connections = max(1, min(32, round(rate / 10)))
            delay_ms = 1000 * connections / rate
            load.connections = connections
            wrk = load.run(server, args.rate_seconds, int(rate * args.rate_seconds * 2), delay_ms)
            # wrk stops at its deadline with requests in flight; the server still stores those
            time.sleep(2)
            with db.read_session() as session:
                stored = session.scalar(
                    select(func.count(InboxMessage.id)).where(InboxMessage.id > last_id)
                )
            counts, _, _ = wait_done(url, sum(inbox_counts(url).values()), timeout=600)
            fake.wait_for(stored, timeout=60)
            with db.read_session() as session:
                rows = session.execute(
                    select(InboxMessage.address, InboxMessage.received_at)
                    .where(InboxMessage.id > last_id)
                    .order_by(InboxMessage.id)
                ).all()
        finally:
            server.stop()
            workers.stop()
            fake.stop()
            db.dispose()
        # the k-th message of a patient is answered by the k-th reply to them (turns of one
        # conversation run in arrival order)
        replies: dict[str, list[float]] = defaultdict(list)
        for arrived, request in fake.timed_messages():
            replies[request.to].append(WALL + arrived)
        seen: Counter = Counter()
        latencies = []
        for address, received_at in rows:
            k = seen[address]
            seen[address] += 1
            if k < len(replies[address]):
                latencies.append(replies[address][k] - received_at.timestamp())
        point = {
            "offered_per_s": rate,
            "wrk_connections": connections,
            "wrk_delay_ms": round(delay_ms, 1),
            "sent_per_s": wrk["req_s"],
            "stored": stored,
            "answered": len(latencies),
            "webhook_p99_ms": wrk["p99_ms"],
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
            "load_avg_before": wrk["load_avg_before"],
        }
        log(f"  {rate}/s offered: {json.dumps(point)}")
        results.append(point)
    load.connections = args.connections
    return results


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from status.db import utcnow
    from status.migrate import upgrade

    with database(backend) as url:
        upgrade(url)
        log(f"{backend}: seeding {PATIENTS} verified patients")
        seed_verified_patients(url, PATIENTS)
        if args.history:
            log(f"{backend}: {args.history} days of history (messages, inbox rows, links)")
            write_history(url, PATIENTS, args.history)
        global RUN_START
        RUN_START = utcnow() - timedelta(minutes=1)  # the history ended a day ago
        load = Load(workdir, args.threads, args.connections)
        result: dict[str, Any] = {"backend": backend, "load_avg_start": load_avg()}
        log(f"{backend}: webhook throughput")
        result["webhooks"] = phase_webhooks(url, load, workdir, args)
        if not args.skip_turns:
            log(f"{backend}: turns by {args.worker_processes} worker processes")
            result["turns"] = phase_turns(url, workdir, args)
            log(f"{backend}: {json.dumps(result['turns'])}")
        if not args.skip_in_process:
            log(f"{backend}: plain serve (in-process workers) under the same burst")
            result["in_process"] = phase_in_process(url, load, workdir, args)
            log(f"{backend}: {json.dumps(result['in_process'])}")
        if args.rates:
            log(f"{backend}: webhook -> provider at {args.rates} msg/s offered")
            result["latency"] = phase_latency(url, load, workdir, args)
        result["load_avg_end"] = load_avg()
        return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| backend | bare req/s | bare+signature req/s | web tier req/s | web/bare | "
        "web/bare+sig | p50 / p99 ms bare, web | CPU ms/req bare, web | non-2xx | load |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in results["backends"]:
        w = r["webhooks"]
        b, s, a = w["bare"], w["bare_signed"], w["app"]
        lines.append(
            f"| {r['backend']} | {b['req_s']:,.0f} | {s['req_s']:,.0f} | {a['req_s']:,.0f} "
            f"| {w['app_over_bare']:.2f} | {w['app_over_bare_signed']:.2f} "
            f"| {b['p50_ms']:.1f} / {b['p99_ms']:.1f}, {a['p50_ms']:.1f} / {a['p99_ms']:.1f} "
            f"| {b['server_cpu_ms_per_req']:.2f}, {a['server_cpu_ms_per_req']:.2f} "
            f"| {a['non_2xx'] + a['socket_errors']} | {a['load_avg_before'][0]} |"
        )
    for r in results["backends"]:
        shares = ", ".join(f"{x['app_over_bare']:.2f}" for x in r["webhooks"].get("rounds", []))
        if shares:
            lines.append(f"\n{r['backend']}: web/bare in each round: {shares}")
    lines += [
        "",
        "| backend | worker processes | stored | turns/s | worker CPU ms/turn | "
        "replies at provider | answered exactly once |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["backends"]:
        if (t := r.get("turns")) is None:
            continue
        lines.append(
            f"| {r['backend']} | {t['worker_processes']} | {t['stored']:,} | {t['turns_per_s']} "
            f"| {t['worker_cpu_ms_per_turn']} | {t['replies_at_provider']:,} "
            f"| {t['answered_exactly_once']} |"
        )
    if any("in_process" in r for r in results["backends"]):
        lines += [
            "",
            "| backend | plain serve: accepted/s | turned/s during burst | backlog at "
            "end | refused | all done |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in results["backends"]:
            if (p := r.get("in_process")) is not None:
                lines.append(
                    f"| {r['backend']} | {p['accepted_per_s']} | {p['turned_per_s_during_burst']} "
                    f"| {p['backlog_at_end_of_burst']:,} | {p['refused']} "
                    f"| {p['done']:,} of {p['accepted']:,} |"
                )
    if any("latency" in r for r in results["backends"]):
        lines += [
            "",
            "| backend | offered msg/s | sent/s | answered | receipt -> provider p50 / "
            "p99 ms | webhook p99 ms | load |",
            "|---|---:|---:|---:|---|---:|---|",
        ]
        for r in results["backends"]:
            for p in r.get("latency", []):
                lines.append(
                    f"| {r['backend']} | {p['offered_per_s']} | {p['sent_per_s']} "
                    f"| {p['answered']:,} of {p['stored']:,} | {p['p50_ms']} / {p['p99_ms']} "
                    f"| {p['webhook_p99_ms']} | {p['load_avg_before'][0]} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument(
        "--webhook-rounds", type=int, default=3, help="bare / signed / app in turn, N times"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--rates", type=int, nargs="*", default=[20, 100, 300])
    parser.add_argument("--rate-seconds", type=float, default=15)
    parser.add_argument(
        "--history", type=int, default=0, metavar="DAYS",
        help="the patients wrote once a day for DAYS days before (a clinic's database)",
    )  # fmt: skip
    parser.add_argument(
        "--messages", choices=["four", "varied"], default="four",
        help="the four questions of every earlier round, or the blind sets' distinct ones",
    )  # fmt: skip
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-turns", action="store_true")
    parser.add_argument("--profile", type=float, default=10, help="py-spy seconds on a worker")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--serve-child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-workers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child, args.port, args.run_workers)
        return 0
    if args.messages == "varied":
        BODIES[:] = varied_questions()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and (problem := postgres_problem()):
        log(f"PostgreSQL unavailable: {problem}")
        backends.remove("postgres")
    results: dict[str, Any] = {
        "machine": machine(),
        "args": vars(args) | {"json": None},
        "backends": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        for backend in backends:
            results["backends"].append(run_backend(backend, args, Path(tmp)))
            args.json.parent.mkdir(exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
