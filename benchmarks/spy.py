"""py-spy on a running server or worker: where its CPU goes, as a short flame summary.

`record(pid, seconds, out)` samples the process (all threads, idle samples left out) into
collapsed stacks; `summary(path)` turns them into the table the docs quote: for each function,
the share of samples it is on the stack (inclusive) and at the top (self).

    python benchmarks/spy.py PID [--seconds 15] [--top 30]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy into the venv)")
    return found


def record(
    pid: int, seconds: float, out: Path, rate: int = 200, gil: bool = True
) -> subprocess.Popen:
    """Start sampling `pid` for `seconds` into `out` (collapsed stacks); wait() on the result.

    `gil`: only the thread holding the GIL is sampled, so the shares are of the Python CPU
    time (waits on the database or a queue drop out)."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds)),
               "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking",
               *(["--gil"] if gil else [])]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "module.py:function"
    name, _, where = frame.partition(" (")
    path = where.split(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{short}:{name}"


def summary(path: Path, top: int = 30) -> tuple[int, list[tuple[str, float, float]]]:
    """(samples, [(function, inclusive %, self %)]) by inclusive share, highest first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    rows = [
        (name, 100 * n / total, 100 * own[name] / total) for name, n in inclusive.most_common(top)
    ]
    return total, rows


def table(path: Path, top: int = 30) -> str:
    """Two markdown tables: the functions most often on the stack, and most often on top."""
    total, rows = summary(path, 10_000)
    lines = [f"{total} samples", "| function | on stack % | self % |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {inc:.1f} | {own:.1f} |" for name, inc, own in rows[:top]]
    lines += ["", "| function (by self) | self % | on stack % |", "|---|---:|---:|"]
    by_self = sorted(rows, key=lambda row: -row[2])[:top]
    lines += [f"| `{name}` | {own:.1f} | {inc:.1f} |" for name, inc, own in by_self]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/spy.txt"))
    args = parser.parse_args(argv)
    record(args.pid, args.seconds, args.out).wait()
    print(table(args.out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
