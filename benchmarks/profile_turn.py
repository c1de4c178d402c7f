"""Profile conversational turns (pyinstrument): where a turn's time goes.

Seeds verified patients with a shipped prescription in a SQLite file, then runs `--turns` turns
("where is my prescription", each from another patient) through the turn runner's own path
(`Engine.handle` in one transaction per turn) under pyinstrument, and prints the summary.

    python benchmarks/profile_turn.py [--turns 300] [--html out.html]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_channels import phone, seed_verified_patients
from pyinstrument import Profiler

from bot.engine import Engine
from bot.inbound import Inbound
from status.db import Database, utcnow
from status.migrate import upgrade
from status.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--html")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-turn-") as tmp:
        url = f"sqlite:///{tmp}/profile.db"
        upgrade(url)
        seed_verified_patients(url, args.turns)
        settings = Settings(_env_file=None, database_url=url, quiet_hours="off")
        db = Database(url)
        engine = Engine(settings)
        with db.session() as session:  # warm-up: catalogue, templates, first connection
            engine.handle(session, Inbound("sms", phone(0), "hi", "warm", utcnow()))
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        profiler.start()
        for i in range(args.turns):
            with db.session() as session:
                inbound = Inbound("sms", phone(i), "where is my prescription", f"SM{i}", utcnow())
                engine.handle(session, inbound)
        profiler.stop()
        elapsed = time.perf_counter() - started
        print(f"{args.turns} turns in {elapsed:.2f} s: {elapsed / args.turns * 1000:.1f} ms/turn")
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.html:
            Path(args.html).write_text(profiler.output_html())
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
