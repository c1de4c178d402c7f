"""`GET /api/patients/{id}/status` against a bare FastAPI JSON GET, loaded by `wrk`.

Per backend (SQLite, PostgreSQL): a database is filled with `--small` patients (default 1,000),
then grown to `--large` (default 1,000,000); at each size the app and the baseline are served
the same way (one uvicorn process each, `patient-status serve`'s options, the product's JSON logs
at INFO to a file) and loaded in turn by `wrk` on 127.0.0.1 (`--threads`, `--connections`,
`--duration` after a `--warmup`), its Lua script cycling through every patient id with a
stride, so consecutive requests hit patients far apart in the tables.

The app is the real one (`create_app(..., run_workers=False)`, as `serve --no-workers`) with
`API_KEY`; the baseline is a bare FastAPI app whose one route, at the same path, returns a
snapshot dict of the same shape and size (built once at start), so both pay for routing,
FastAPI's response and the same bytes on the wire.

Rows are written directly, not through events: patients, a prescription each, a shipment for
half, a payment and a subscription each, in id order, with `COPY` on PostgreSQL and SQLAlchemy
Core `executemany` in one transaction per 50,000 patients on SQLite. The small set's read model
is then filled by the product's own `read_model.rebuild` (what `patient-status snapshot rebuild`
runs; its rate is reported); the large set's read-model rows are written directly with the
others, encoded from the same values by `read_model.encode_items`. Either way a sample of 200
patients is checked with `snapshot.drift` (the row equals a fresh build from the tables), and
PostgreSQL is `ANALYZE`d.

    python benchmarks/bench_status_api.py --quick          # 1,000 -> 20,000 patients, both
    python benchmarks/bench_status_api.py                  # 1,000 -> 1,000,000, both
    python benchmarks/bench_status_api.py --backend postgres --large 200000
    python benchmarks/bench_status_api.py --backend postgres --large 0 --clinic-key  # 1,000 only

Below saturation each is also loaded at ~200 req/s (4 connections pausing 20 ms) for
`--probe-seconds` (default `--duration`): the p99 the 1M/1k ratio compares. At 8 s that p99 is
the 16th-slowest of ~1,600 requests, so a longer probe steadies it on a shared host.

With `--clinic-key` the app is also loaded with a `patient-status clinic key` key of the default
clinic (hashed in the table, resolved in the patient read) besides the environment's `API_KEY`,
on the same server, alternating with the others. `--large 0` measures the small set only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import spy  # noqa: E402
from bench_status import PG_SERVER, database, log, machine, postgres_problem  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402

from status.clinics import DEFAULT_ID  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "status_api.json"
API_KEY = "bench-api-key"
ROUTE = "/api/patients/{patient_id}/status"
NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
STRIDE = 7919  # prime: request k asks for patient (k * STRIDE) mod N, every id once per N
SLICE = 50_000  # patients per insert transaction

LUA = """
local n = tonumber(os.getenv("BENCH_PATIENTS"))
local stride = %(stride)d
local auth = "Bearer %(key)s"
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 104729)
  table.insert(threads, thread)
end

function init(args)
  counter = offset
end

function request()
  counter = counter + 1
  local id = string.format("bp-%%07d", (counter * stride) %% n)
  return wrk.format("GET", "/api/patients/" .. id .. "/status", {["Authorization"] = auth})
end

if os.getenv("BENCH_DELAY_MS") then
  local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
  function delay() return pause end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d,'
    .. ' "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


# --- rows, written directly ---------------------------------------------------------------------

RX_STATUSES = ["processing", "shipped", "awaiting_provider", "ready_for_pickup", "delivered"]
SHIP_STATUSES = ["in_transit", "out_for_delivery", "delivered", "label_created"]


def patient_rows(start: int, stop: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of patients start..stop-1 (ids start+1..stop), as the event applier would leave
    them after their events (ids equal in every table, so the tables stay in patient order)."""
    rows: dict[str, list[dict[str, Any]]] = {
        "patients": [], "prescriptions": [], "shipments": [], "payments": [], "subscriptions": [],
    }  # fmt: skip
    for i in range(start, stop):
        key = i + 1
        since = NOW - timedelta(hours=1 + i % 200)
        # every table's: the default clinic (API_KEY's), the times of the last event
        stamps = {"clinic_id": DEFAULT_ID, "last_event_at": since, "created_at": since,
                  "updated_at": since}  # fmt: skip
        rows["patients"].append(
            {
                "id": key,
                "source_id": f"bp-{i:07d}",
                "first_name": "Ana",
                "last_name": f"Bench{i}",
                "date_of_birth": date(1980, 1 + i % 12, 1 + i % 28),
                "phone": f"+1555{3_000_000 + i:07d}",
                "email": f"ana{i}@example.com",
                "language": "es" if i % 5 == 0 else "en",
                "timezone": "America/Chicago",
                "sms_consent": True,
                "telegram_chat_id": None,
                "preferred_channel": "sms",
                **stamps,
            }
        )
        rx_status = RX_STATUSES[i % len(RX_STATUSES)]
        rows["prescriptions"].append(
            {
                "id": key,
                "source_id": f"brx-{i:07d}",
                "patient_id": key,
                "status_since": since,
                **stamps,
                "medication": "Tirzepatide 5 mg",
                "status": rx_status,
                "pharmacy_name": "Harbor Mail Pharmacy",
                "pharmacy_phone": "+15550109999",
                "blocked_reason": None,
                "refills_remaining": i % 4,
                "next_refill_date": (NOW + timedelta(days=3 + i % 40)).date(),
            }
        )
        if i % 2 == 0:
            rows["shipments"].append(
                {
                    "id": key // 2 + 1,
                    "source_id": f"bship-{i:07d}",
                    "patient_id": key,
                    "status_since": since,
                    **stamps,
                    "prescription_source_id": f"brx-{i:07d}",
                    "carrier": "UPS",
                    "tracking_number": f"1Z999AA1{i:010d}",
                    "tracking_url": f"https://www.ups.com/track?tracknum=1Z999AA1{i:010d}",
                    "status": SHIP_STATUSES[i % len(SHIP_STATUSES)],
                    "estimated_delivery": (NOW + timedelta(days=2)).date(),
                }
            )
        failed = i % 7 == 0
        rows["payments"].append(
            {
                "id": key,
                "source_id": f"bpay-{i:07d}",
                "patient_id": key,
                "status_since": since,
                **stamps,
                "amount_cents": 29900,
                "currency": "USD",
                "status": "failed" if failed else "succeeded",
                "description": "Monthly care plan",
                "failure_reason": "card expired" if failed else None,
                "next_retry_at": NOW + timedelta(days=3) if failed else None,
                "ever_failed": failed,
            }
        )
        rows["subscriptions"].append({
            "id": key, "source_id": f"bsub-{i:07d}", "patient_id": key, "status_since": since,
            **stamps, "plan": "Monthly care plan", "amount_cents": 29900, "currency": "USD",
            "status": "past_due" if failed else "active", "renews_at": NOW + timedelta(days=11),
            "auto_renew": True, "renewals_seen": i % 3,
        })  # fmt: skip
    return rows


def write_rows(url: str, start: int, stop: int, snapshots: bool) -> float:
    """Patients start..stop-1 and their items (and, with `snapshots`, their read-model rows,
    encoded by `read_model.encode_items` from the same values); seconds taken."""
    from status.db import Database
    from status.patients import Patient
    from status.read_model import KINDS, PatientSnapshot, encode_items

    tables = {kind.model.__tablename__: kind.model.__table__ for kind in KINDS}
    tables["patients"] = Patient.__table__
    tables["patient_snapshots"] = PatientSnapshot.__table__
    started = time.perf_counter()
    db = Database(url)
    for first in range(start, stop, SLICE):
        rows = patient_rows(first, min(stop, first + SLICE))
        if snapshots:
            items: dict[int, dict[str, list[dict[str, Any]]]] = {}
            for kind in KINDS:
                for row in rows.get(kind.name, []):
                    items.setdefault(row["patient_id"], {}).setdefault(kind.name, []).append(row)
            rows["patient_snapshots"] = [
                {"patient_id": patient["id"], "state": encode_items(items.get(patient["id"], {})),
                 "version": 1, "updated_at": NOW}
                for patient in rows["patients"]
            ]  # fmt: skip
        if db.is_sqlite:
            with db.engine.begin() as conn:
                for name, table_rows in rows.items():
                    if table_rows:
                        conn.execute(insert(tables[name]), table_rows)
        else:
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                for name, table_rows in rows.items():
                    if not table_rows:
                        continue
                    columns = list(table_rows[0])
                    with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in table_rows:
                            copy.write_row([row[c] for c in columns])
                raw.commit()
            finally:
                raw.close()
        log(f"  wrote patients to {min(stop, first + SLICE):,}")
    if not db.is_sqlite:  # COPY with explicit ids: move the sequences past them
        with db.engine.begin() as conn:
            for name in ("patients", "prescriptions", "shipments", "payments", "subscriptions"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                         f"(SELECT max(id) FROM {name}))")
                )  # fmt: skip
    db.dispose()
    return time.perf_counter() - started


def check_sample(url: str, count: int, sample: int = 200) -> int:
    """The read model of `sample` patients spread over the first `count` equals a fresh build
    (so directly written rows are what the product would have stored)."""
    from status import patients, snapshot
    from status.db import Database

    db = Database(url)
    checked = 0
    with db.read_session() as session:
        for i in range(0, count, max(1, count // sample)):
            patient = patients.by_source_id(session, DEFAULT_ID, f"bp-{i:07d}")
            problems = snapshot.drift(session, patient, NOW + timedelta(hours=1))
            if problems:
                raise AssertionError(f"bp-{i:07d}: {problems[:2]}")
            checked += 1
    db.dispose()
    return checked


def clinic_key(url: str) -> str:
    """A fresh `clinic key` of the default clinic (what `patient-status clinic key default`
    makes): the API then finds the clinic by the key's hash."""
    from status import clinics
    from status.db import Database

    db = Database(url)
    with db.session() as session:
        key = clinics.rotate_key(session, clinics.default(session))
    db.dispose()
    return key


def rebuild(url: str, after_id: int) -> dict[str, Any]:
    """The read model of every patient above `after_id`, by the product's rebuild."""
    from status import read_model
    from status.db import Database

    db = Database(url)
    started = time.perf_counter()
    total = read_model.RefreshCounts()
    after: int | None = after_id
    while after is not None:
        with db.session() as session:
            counts, after = read_model.rebuild(session, NOW, after_id=after)
        total.add(counts)
    seconds = time.perf_counter() - started
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    db.dispose()
    done = total.created + total.updated + total.unchanged
    return {"patients": done, "seconds": round(seconds, 1), "per_s": round(done / seconds)}


# --- servers ---------------------------------------------------------------------------------


def bare_app(body: dict[str, Any]) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(ROUTE)
    def status(patient_id: str) -> dict[str, Any]:
        return body

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def serve_child(kind: str, port: int, body_path: str | None) -> None:
    """Child process: serve `kind` on 127.0.0.1:`port` with `patient-status serve`'s options."""
    import uvicorn

    from status.logs import configure
    from status.settings import Settings

    settings = Settings(_env_file=None)
    configure(settings.log_format, settings.log_level)
    if kind == "app":
        from channels.app import create_app
        from status.db import Database

        app = create_app(settings, Database(settings.database_url), run_workers=False)
    else:
        app = bare_app(json.loads(Path(body_path).read_text()))
    uvicorn.run(
        app, host="127.0.0.1", port=port, proxy_headers=True, log_config=None,
        access_log=False, timeout_graceful_shutdown=5,
    )  # fmt: skip


class Server:
    def __init__(self, kind: str, env: dict[str, str], log_path: Path, body: Path) -> None:
        self.kind, self.env, self.log_path, self.body = kind, env, log_path, body
        self.proc: subprocess.Popen | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        command = [sys.executable, __file__, "--serve-child", self.kind, "--port", str(self.port),
                   "--body", str(self.body)]  # fmt: skip
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 400  # a busy 2-core host imports the app slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.log_path}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} server did not start; see {self.log_path}")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def env_for(url: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(DATABASE_URL=url, API_KEY=API_KEY, LOG_FORMAT="json", LOG_LEVEL="INFO",
               PUBLIC_BASE_URL="https://clinic.example", PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def wrk(
    server: Server,
    script: Path,
    patients: int,
    args: argparse.Namespace,
    seconds: float,
    connections: int | None = None,
    delay_ms: float | None = None,
) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{connections or args.connections}",
        f"-d{round(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        server.base_url,
    ]
    env = {**os.environ, "BENCH_PATIENTS": str(patients)}
    if delay_ms is not None:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    cpu_before, db_before = _cpu(server.proc.pid), _postgres_cpu()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    cpu = _cpu(server.proc.pid) - cpu_before
    db_cpu = _postgres_cpu() - db_before
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    rps = raw["requests"] / (raw["duration_us"] / 1e6)
    return {
        "req_s": round(rps),
        "requests": raw["requests"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "server_cpu_ms_per_req": round(cpu * 1000 / max(1, raw["requests"]), 3),
        # every PostgreSQL process's CPU (the server's, this and other sessions' on the host)
        "postgres_cpu_ms_per_req": round(db_cpu * 1000 / max(1, raw["requests"]), 3),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds of the processes named postgres on this host (exited backends not counted:
    the app's keep their connections)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(
    url: str, patients: int, workdir: Path, args: argparse.Namespace, key: str | None = None
) -> dict[str, Any]:
    """Bare and app, served one after the other, each warmed up then loaded `--rounds` times,
    alternating, so a change in the machine's load hits both."""
    script = workdir / "cycle.lua"
    script.write_text(LUA % {"stride": STRIDE, "key": API_KEY})
    loads = [("bare", script), ("app", script)]  # (what is loaded, its script)
    if key is not None:  # a clinic key as well as the environment's API_KEY
        keyed = workdir / "cycle-clinic-key.lua"
        keyed.write_text(LUA % {"stride": STRIDE, "key": key})
        loads.append(("app_clinic_key", keyed))
    env = env_for(url)
    body = workdir / "body.json"
    sample = httpx.Client(timeout=120)  # the first read of a cold database on a busy host
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in loads}
    with Server("app", env, workdir / "app.log", body) as app:
        answer = sample.get(app.base_url + "/api/patients/bp-0000000/status",
                            headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        answer.raise_for_status()
        body.write_text(answer.text)
        with Server("bare", env, workdir / "bare.log", body) as bare:
            same = sample.get(bare.base_url + "/api/patients/bp-0000000/status").text
            assert json.loads(same) == answer.json(), "the baseline must send the same body"
            served = {"bare": bare, "app": app, "app_clinic_key": app}
            for name, lua in loads:
                wrk(served[name], lua, patients, args, args.warmup)
            for round_ in range(args.rounds):
                # the app's loads in turn first and last: a drift of the host hits both alike
                order = loads if round_ % 2 == 0 else [loads[0], *reversed(loads[1:])]
                for name, lua in order:
                    run = wrk(served[name], lua, patients, args, args.duration)
                    results[name].append(run)
                    log(f"  {name}: {run['req_s']:,} req/s, p99 {run['p99_ms']} ms")
            # latency below saturation: 4 connections, each pausing so ~200 req/s are offered
            # (at -c32 the p99 is queueing behind whatever else the shared host runs)
            for name, lua in loads:
                probe = wrk(served[name], lua, patients, args, args.probe_seconds, 4, 20)
                results[f"{name}_probe"] = [probe]
                log(f"  {name} at ~200 req/s: p50 {probe['p50_ms']} ms, p99 {probe['p99_ms']} ms")
            if args.profile and patients == args.small:  # where the app time goes (py-spy)
                backend = "sqlite" if url.startswith("sqlite") else "postgres"
                flame = RESULTS.with_name(f"status_api.{backend}.spy.txt")
                spying = spy.record(app.proc.pid, args.profile, flame)
                wrk(app, script, patients, args, args.profile)
                spying.wait()
                log("app under wrk, py-spy:\n" + spy.table(flame, 40))
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        total = sum(r["requests"] for r in runs)
        summary[name] = {
            "req_s": round(sum(r["req_s"] for r in runs) / len(runs)),
            "p50_ms": max(r["p50_ms"] for r in runs),
            "p99_ms": max(r["p99_ms"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "requests": total,
            "runs": runs,
        }
    summary["app_over_bare"] = round(summary["app"]["req_s"] / summary["bare"]["req_s"], 3)
    if "app_clinic_key" in summary:
        summary["app_clinic_key_over_bare"] = round(
            summary["app_clinic_key"]["req_s"] / summary["bare"]["req_s"], 3
        )
    summary["body_bytes"] = len(answer.content)
    return summary


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    from status.migrate import upgrade

    result: dict[str, Any] = {"backend": backend}
    with database(backend) as url, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workdir = Path(tmp)
        upgrade(url)
        key = clinic_key(url) if args.clinic_key else None
        done = 0
        for size in sizes(args):
            log(f"{backend}: writing patients {done:,}..{size:,}")
            direct = size == args.large  # the small set goes through the product's rebuild
            seconds = write_rows(url, done, size, snapshots=direct)
            if direct:
                built = {"written_directly": size - done}
                if not url.startswith("sqlite"):
                    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
                        conn.execute(text("ANALYZE"))
            else:
                log(f"{backend}: rebuilding the read model of {size - done:,} patients")
                built = rebuild(url, after_id=done)
            built["checked_against_fresh_build"] = check_sample(url, size)
            log(f"{backend}: {built}")
            done = size
            log(f"{backend}: measuring at {size:,} patients")
            point = measure(url, size, workdir, args, key)
            point["write_rows_s"] = round(seconds, 1)
            point["rebuild"] = built
            result[str(size)] = point
            if args.json:  # what is measured so far survives a run cut short
                args.json.with_suffix(".partial.json").write_text(json.dumps(result, indent=2))
    if len(sizes(args)) == 1:
        return result
    small, large = result[str(args.small)], result[str(args.large)]
    for key in ("app", "app_probe"):
        result[f"{key}_p99_large_over_small"] = round(
            large[key]["p99_ms"] / max(small[key]["p99_ms"], 1e-3), 3
        )
    return result


def sizes(args: argparse.Namespace) -> tuple[int, ...]:
    return (args.small, args.large) if args.large > args.small else (args.small,)


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| backend | patients | bare req/s | app req/s | app/bare | bare p50 / p99 ms "
        "| app p50 / p99 ms | server CPU ms/req bare / app (PostgreSQL's) | non-2xx "
        "| at ~200 req/s: bare p50 / p99, app p50 / p99 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend in results["backends"]:
        for size in sizes(args):
            point = backend[str(size)]
            bare, app = point["bare"], point["app"]
            cpu = [_cpu_ms(bare), _cpu_ms(app), _cpu_ms(app, "postgres_cpu_ms_per_req")]
            lines.append(
                f"| {backend['backend']} | {size:,} | {bare['req_s']:,} | {app['req_s']:,} "
                f"| {point['app_over_bare']:.2f} | {bare['p50_ms']:.2f} / {bare['p99_ms']:.2f} "
                f"| {app['p50_ms']:.2f} / {app['p99_ms']:.2f} "
                f"| {cpu[0]:.3f} / {cpu[1]:.3f} ({cpu[2]:.3f}) "
                f"| {app['non_2xx']} | {point['bare_probe']['p50_ms']:.2f} / "
                f"{point['bare_probe']['p99_ms']:.2f}, {point['app_probe']['p50_ms']:.2f} / "
                f"{point['app_probe']['p99_ms']:.2f} | {app['runs'][0]['load_avg'][0]} |"
            )
            if "app_clinic_key" in point:
                keyed, probe = point["app_clinic_key"], point["app_clinic_key_probe"]
                lines.append(
                    f"| {backend['backend']} | {size:,}, clinic key | | {keyed['req_s']:,} "
                    f"| {point['app_clinic_key_over_bare']:.2f} | | {keyed['p50_ms']:.2f} / "
                    f"{keyed['p99_ms']:.2f} | {_cpu_ms(keyed):.3f} | {keyed['non_2xx']} "
                    f"| {probe['p50_ms']:.2f} / {probe['p99_ms']:.2f} "
                    f"| {keyed['runs'][0]['load_avg'][0]} |"
                )
        if len(sizes(args)) == 1:
            continue
        lines.append(
            f"| {backend['backend']} | app p99 at {args.large:,} / at {args.small:,}: "
            f"saturated {backend['app_p99_large_over_small']:.2f}, "
            f"at ~200 req/s {backend['app_probe_p99_large_over_small']:.2f} | | | | | | | | | |"
        )
    return "\n".join(lines)


def _cpu_ms(point: dict[str, Any], key: str = "server_cpu_ms_per_req") -> float:
    return sum(r.get(key, 0) for r in point["runs"]) / len(point["runs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument(
        "--probe-seconds", type=float, default=None,
        help="each load at ~200 req/s (default: --duration); a p99 of 1,600 requests is noisy",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1,000 -> 20,000 patients, 1 round")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy on the app")
    parser.add_argument(
        "--clinic-key", action="store_true", help="also load with a clinic's hashed key"
    )
    parser.add_argument("--serve-child", choices=["app", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child, args.port, args.body)
        return 0
    if args.quick:
        args.large, args.rounds, args.duration = 20_000, 1, 6
    if args.probe_seconds is None:
        args.probe_seconds = args.duration
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {
        "machine": machine(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {
            k: v
            for k, v in vars(args).items()
            if k not in ("json",) and v is not None and not k.startswith(("serve", "port", "body"))
        },  # fmt: skip
        "backends": [],
    }
    for backend in backends:
        if backend == "postgres" and (problem := postgres_problem()):
            log(f"PostgreSQL skipped: {problem} ({PG_SERVER})")
            continue
        started = time.perf_counter()
        outcome = run_backend(backend, args)
        outcome["seconds"] = round(time.perf_counter() - started)
        results["backends"].append(outcome)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    table = markdown(results, args)
    print(table)
    path = args.json or (None if args.quick else RESULTS)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
