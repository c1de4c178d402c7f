"""Profile conversational turns (pyinstrument): where a turn's time goes.

Seeds verified patients with a shipped prescription, then runs `--turns` turns ("where is my
prescription", each from another patient) and prints pyinstrument's summary and the process's
CPU time per turn.

- default: through `Engine.handle`, one transaction per turn, on SQLite (the turn alone);
- `--runner`: as a worker runs them: the messages stored in the inbox first, then the turn
  runner's `drain` (claim, run, record the outcome) and, timed apart, the dispatcher's
  `drain` sending the replies with the log sender (no network);
- `--backend postgres`: on a fresh PostgreSQL database (dropped afterwards); the CPU time of
  the server's backends for that database is printed beside the process's.

- `--history DAYS`: the patients have written before, once a day for DAYS days: the database
  holds those days' inbox rows, messages and status-page links (written directly, a statement
  a table a day, as the turns of those days left them), so a turn whose reads grow with a
  clinic's history shows; `--scans` lists the tables PostgreSQL read whole.

    python benchmarks/profile_turn.py [--turns 300] [--backend sqlite|postgres] [--runner]
        [--history DAYS] [--no-profile | --spy FILE | --statements] [--html out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spy
from bench_channels import PUBLIC_BASE_URL, phone, seed_verified_patients, write_history
from bench_status import database
from pyinstrument import Profiler
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.pool import NullPool

from bot import inbox
from bot.engine import Engine
from bot.inbound import Inbound
from channels.runtime import Runtime
from channels.senders.base import SendResult
from channels.senders.twilio_sms import LogSmsSender
from status.clinics import DEFAULT_ID
from status.db import Database, utcnow
from status.migrate import upgrade
from status.settings import Settings

try:
    from channels.runtime import freeze_start_up
except ImportError:  # the code before it
    freeze_start_up = None  # type: ignore[assignment]
try:
    from channels.turns import TURNS_PER_TRANSACTION, Ready
except ImportError:  # the code before batches
    TURNS_PER_TRANSACTION, Ready = 1, None  # type: ignore[assignment,misc]


class Clocks:
    """Wall and process CPU time of a stretch of work; on PostgreSQL also the CPU time of the
    server backends serving the benchmark's database (read from /proc: the server is local)."""

    server: ServerCpu | None = None

    def __enter__(self) -> Clocks:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.db_cpu = self.server.seconds() if self.server else {}
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        if self.server:
            after = self.server.seconds()
            self.db = sum(cpu - self.db_cpu.get(pid, 0.0) for pid, cpu in after.items())


class ServerCpu:
    """CPU seconds of each PostgreSQL backend connected to one database (its pid -> seconds)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.name = make_url(url).database

    def seconds(self) -> dict[int, float]:
        with self.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            ).scalars()
            found = {}
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found


def store_messages(db: Database, settings: Settings, count: int) -> None:
    with db.session() as session:
        for i in range(count):
            inbox.store(
                session, settings.secret_key, clinic_id=DEFAULT_ID, source="twilio_sms",
                provider_id=f"SM{uuid.uuid4().hex}", action=inbox.Action.SMS, channel="sms",
                address=phone(i), payload={"text": "where is my prescription"},
            )  # fmt: skip


def seq_scans(db: Database, since: dict[str, tuple[int, int]] | None = None):
    """PostgreSQL's count of sequential scans of each table and the rows they read (minus
    `since`): a turn's statement that reads a table whole shows here."""
    if db.is_sqlite:
        return {}
    time.sleep(1.2)  # the backends report their counts about once a second
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = conn.execute(text("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables"))
        found = {name: (scans, read) for name, scans, read in rows}
    since = since or {}
    return {
        name: (scans - since.get(name, (0, 0))[0], read - since.get(name, (0, 0))[1])
        for name, (scans, read) in found.items()
        if read > since.get(name, (0, 0))[1]
    }


def through_engine(db: Database, settings: Settings, turns: int, profiler: Profiler | None):
    engine = Engine(settings)
    with db.session() as session:  # warm-up: catalogue, templates, first connection
        engine.handle(session, Inbound("sms", phone(0), "hi", "warm", utcnow()))
    if profiler:
        profiler.start()
    with Clocks() as clocks:
        for i in range(turns):
            with db.session() as session:
                inbound = Inbound("sms", phone(i), "where is my prescription", f"SM{i}", utcnow())
                engine.handle(session, inbound)
    if profiler:
        profiler.stop()
    return {"turns": clocks}


def through_runner(
    db: Database, settings: Settings, turns: int, profiler: Profiler | None, again: bool = False
):
    runtime = Runtime(settings, db, senders={"sms": LogSmsSender()})
    # warm-up: catalogue, templates, the first connections; `again`: every patient has written
    # and been answered once today (their conversation and status link exist), as in the steady
    # state of bench_inbound's backlog, where each patient writes many times
    store_messages(db, settings, turns if again else 1)
    runner, dispatcher = runtime.turns, runtime.dispatcher
    turn_all(runner)
    send_all(dispatcher)
    if freeze_start_up is not None:  # as `worker` starts
        freeze_start_up()
    store_messages(db, settings, turns)
    STATEMENTS.clear()  # the warm-up's and the webhooks' are not the turns'

    async def run() -> dict[str, Clocks]:
        if Perf.out is not None:
            Perf.start()
        if Durations.log is not None:
            Durations.start()
        with Clocks() as turned:
            await runtime.turns.drain(timeout=3600)
        if Perf.out is not None and Clocks.server is not None:
            Perf.stop(Clocks.server.seconds())
        if Durations.log is not None and Clocks.server is not None:
            time.sleep(1.0)  # the server's log written
            Durations.report(Clocks.server.seconds(), turns)
        with Clocks() as sent:
            await runtime.dispatcher.drain(timeout=3600)
        return {"turns": turned, "sends": sent}

    if profiler is None:
        try:
            return asyncio.run(run())
        finally:
            runtime.turns.close()
    # pyinstrument sees one thread: the runner's and the dispatcher's database work, driven
    # from this one (the sends themselves, with the log sender, are left out)
    profiler.start()
    with Clocks() as turned:
        turn_all(runner)
    with Clocks() as sent:
        send_all(dispatcher)
    profiler.stop()
    return {"turns": turned, "sends": sent}


def turn_all(runner) -> None:
    """Every due message's turn, batched as the worker batches them, from this thread."""
    while claimed := runner.claim():
        if not hasattr(runner, "run_batch"):  # the code before batches (for a "before")
            for one in claimed:
                runner.run_turn(one, runner.payload(one))
            continue
        ready = [Ready(one, runner.payload(one)) for one in claimed]
        for at in range(0, len(ready), TURNS_PER_TRANSACTION):
            runner.run_batch(ready[at : at + TURNS_PER_TRANSACTION])


def send_all(dispatcher) -> None:
    """Every due send recorded as accepted (no provider), from this thread."""
    while claimed_out := dispatcher.claim():
        accepted = SendResult(ok=True, provider_message_id="SM1")
        if not hasattr(dispatcher, "record_all"):
            for out in claimed_out:
                dispatcher.record(out, accepted)
            continue
        dispatcher.record_all([(out, accepted) for out in claimed_out])


class Perf:
    """`perf record` of the PostgreSQL backends serving the benchmark's database while the
    turns run (`--perf FILE`): the whole host is sampled (a backend the pool opens mid-run is
    seen too), and the report keeps only those backends' samples, by function."""

    out: Path | None = None
    recorder: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> None:
        command = [
            "perf",
            "record",
            "-a",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "-g",
            "-o",
            str(cls.out),
        ]
        cls.recorder = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)

    @classmethod
    def stop(cls, backends: dict[int, float]) -> None:
        assert cls.recorder is not None
        cls.recorder.send_signal(signal.SIGINT)
        cls.recorder.wait()
        pids = ",".join(str(pid) for pid in backends)
        report = ["perf", "report", "-i", str(cls.out), "--stdio", "--pid", pids]
        for sort, children in (("dso,symbol", "--no-children"), ("symbol", "--children")):
            text_ = subprocess.run(
                [*report, children, "--sort", sort, "-g", "none", "--percent-limit", "0.7"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            print(f"perf, backends {pids}, {children}:")
            print("\n".join(line for line in text_.splitlines() if line and line[0] != "#"))


class Durations:
    """The server's own time per statement while the turns run (`--durations LOG`): each
    connection of the benchmark sets `log_min_duration_statement = 0` for its session, and the
    server log's lines of those backends are summed by phase (parse, bind = planning for an
    unprepared statement, execute) and statement (its first words), after the run. Logging
    every statement costs the server time of its own: the shares, not the sums, are the
    point."""

    log: Path | None = None
    offset = 0

    @classmethod
    def listen(cls, engine) -> None:
        def session_logging(dbapi_connection, record) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET log_min_duration_statement = 0")
            dbapi_connection.commit()

        event.listen(engine, "connect", session_logging)

    @classmethod
    def start(cls) -> None:
        assert cls.log is not None
        cls.offset = cls.log.stat().st_size

    @classmethod
    def report(cls, backends: dict[int, float], turns: int) -> None:
        assert cls.log is not None
        with cls.log.open("rb") as f:
            f.seek(cls.offset)
            lines = f.read().decode(errors="replace").splitlines()
        pattern = re.compile(
            r"\[(\d+)\] .*duration: ([\d.]+) ms\s+(parse|bind|execute|statement)\s*([^:]*):?\s*(.*)"
        )
        total: Counter[tuple[str, str]] = Counter()
        for line in lines:
            found = pattern.search(line)
            if not found or int(found[1]) not in backends:
                continue
            phase, sql = found[3], " ".join(found[5].split()[:6])[:70]
            total[(phase, sql)] += float(found[2])
        print(f"server time per turn by phase and statement ({len(lines)} log lines):")
        for (phase, sql), ms in total.most_common(25):
            print(f"{ms / turns:7.3f} ms  {phase:9} {sql}")
        print(f"{sum(total.values()) / turns:7.3f} ms  all")


class Spy:
    """py-spy on this process (CPU samples, the thread holding the GIL), started and stopped
    like pyinstrument's profiler; `output_text` is the summary the docs quote."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.recorder: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.recorder = spy.record(os.getpid(), 3600, self.out)
        time.sleep(1.5)  # py-spy attaches

    def stop(self) -> None:
        assert self.recorder is not None
        self.recorder.send_signal(signal.SIGINT)
        self.recorder.wait()

    def output_text(self, **_: object) -> str:
        return spy.table(self.out, 60)


STATEMENTS: Counter[str] = Counter()  # --statements: those of the measured turns and sends


def _counter(statements: Counter[str]):
    def count(conn, cursor, statement: str, parameters, context, executemany) -> None:
        statements[" ".join(statement.split())[:110]] += 1

    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runner", action="store_true", help="through the worker's turn runner")
    parser.add_argument(
        "--again", action="store_true",
        help="with --runner: each patient's second message of the day (first ones not measured)",
    )  # fmt: skip
    parser.add_argument(
        "--history", type=int, default=0, metavar="DAYS",
        help="DAYS past days of messages, inbox rows and status-page links",
    )  # fmt: skip
    parser.add_argument(
        "--scans", action="store_true", help="tables PostgreSQL read whole (turns and sends)"
    )
    parser.add_argument("--no-profile", action="store_true", help="CPU times only")
    parser.add_argument("--statements", action="store_true", help="count SQL statements")
    parser.add_argument("--spy", type=Path, help="py-spy (CPU, all threads) into this file")
    parser.add_argument("--html")
    parser.add_argument("--perf", type=Path, help="perf record the PostgreSQL backends (turns)")
    parser.add_argument("--durations", type=Path, help="the PostgreSQL server log to read")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # as the benchmark's workers run (LOG_LEVEL=WARNING)
    with database(args.backend) as url:
        upgrade(url)
        seed_verified_patients(url, args.turns)
        settings = Settings(
            _env_file=None,
            database_url=url,
            quiet_hours="off",
            twilio_messages_per_second=0,
            public_base_url=PUBLIC_BASE_URL,  # as the workers of bench_inbound run: a
        )  # "Details:" link on each patient's first answer of the day
        db = Database(url)
        if args.history:
            write_history(url, args.turns, args.history)
        if args.durations:
            Durations.log = args.durations
            Durations.listen(db.engine)
        if args.backend == "postgres":
            Clocks.server = ServerCpu(url)
            Perf.out = args.perf
        statements = STATEMENTS
        if args.statements:
            event.listen(db.engine, "before_cursor_execute", _counter(statements))
        profiler: Profiler | Spy | None = None
        if args.spy:
            profiler = Spy(args.spy)
        elif not args.no_profile:
            profiler = Profiler(interval=0.0005)
        scans_before = seq_scans(db) if args.scans else {}
        try:
            if args.runner:
                clocks = through_runner(db, settings, args.turns, profiler, again=args.again)
            else:
                clocks = through_engine(db, settings, args.turns, profiler)
            scans = seq_scans(db, scans_before) if args.scans else {}
        finally:
            db.dispose()
    for what, c in clocks.items():
        print(
            f"{what}: {args.turns} in {c.wall:.2f} s wall ({args.turns / c.wall:.0f}/s), "
            f"process CPU {c.cpu * 1000 / args.turns:.2f} ms per turn"
            + (f", PostgreSQL {c.db * 1000 / args.turns:.2f} ms" if c.server else "")
        )
    if args.statements:
        print(
            f"statements per turn (turns and sends), {sum(statements.values()) / args.turns:.1f}:"
        )
        for sql, n in statements.most_common():
            print(f"{n / args.turns:6.2f}  {sql}")
    if args.scans:
        print("tables read whole (sequential scans and rows they read, per turn):")
        for table, (count, rows) in sorted(scans.items(), key=lambda kv: -kv[1][1]):
            print(f"{count / args.turns:8.2f} {rows / args.turns:10.1f}  {table}")
    if profiler is not None:
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.html and isinstance(profiler, Profiler):
            Path(args.html).write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
