"""Cost of understanding one message, against one rapidfuzz nearest-phrase lookup.

Also the cost of the learned second opinion: `classify` as the app runs it (rules + model,
bot/understanding/pipeline.py) against the rules alone, in the same run.

    python benchmarks/bench_nlu.py [--rounds 5] [--file tests/data/nlu_eval.jsonl]

The budget (docs/nlu.md): classifying a message may cost at most what a single
`rapidfuzz.process.extractOne(text, all_catalogue_phrases, scorer=fuzz.token_set_ratio)` costs
over the whole catalogue. "All catalogue phrases" are every example and every keyword phrase of
the English and Spanish catalogues, as written. Both are timed per message over the evaluation
messages: the first pass (spelling-correction cache cold) and then `--rounds` warm passes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from rapidfuzz import fuzz, process  # noqa: E402

from bot.understanding import model  # noqa: E402
from bot.understanding.classifier import CATALOGUE_FILES, catalogue  # noqa: E402
from bot.understanding.classifier import classify as classify_rules  # noqa: E402
from bot.understanding.normalize import CATALOGUE_DIR  # noqa: E402
from bot.understanding.pipeline import classify  # noqa: E402


def catalogue_phrases() -> tuple[list[str], list[str]]:
    """(keyword phrases, example phrases) of both catalogues, as written."""
    keywords: list[str] = []
    examples: list[str] = []
    for name in CATALOGUE_FILES:
        with open(CATALOGUE_DIR / name, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        for spec in data["intents"].values():
            keywords += [str(k) for k in (spec.get("keywords") or {})]
            examples += [str(e) for e in spec.get("examples") or []]
    return keywords, examples


def time_each(texts: list[str], work) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter_ns()
        work(text)
        out.append((time.perf_counter_ns() - start) / 1000.0)
    return out


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"mean {statistics.fmean(ordered):7.1f} us   p50 {statistics.median(ordered):7.1f} us"
        f"   p99 {p99:7.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "tests/data/nlu_eval.jsonl"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with open(args.file, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    keywords, examples = catalogue_phrases()
    phrases = keywords + examples

    start = time.perf_counter()
    cat = catalogue()
    load_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    model.models()
    model_ms = (time.perf_counter() - start) * 1000

    def baseline(text: str) -> None:
        process.extractOne(text, phrases, scorer=fuzz.token_set_ratio)

    def baseline_examples(text: str) -> None:
        process.extractOne(text, examples, scorer=fuzz.token_set_ratio)

    cold = time_each(texts, classify)
    warm: list[float] = []
    rules: list[float] = []
    base: list[float] = []
    base_examples: list[float] = []
    for _ in range(args.rounds):
        base += time_each(texts, baseline)
        base_examples += time_each(texts, baseline_examples)
        rules += time_each(texts, classify_rules)
        warm += time_each(texts, classify)

    print(f"messages: {len(texts)} x {args.rounds} rounds")
    print(
        f"catalogue: {len(phrases)} phrases ({len(cat.examples)} examples compared, "
        f"{len(cat.keywords)} keyword phrases, {len(cat.patterns)} patterns); "
        f"loaded once in {load_ms:.0f} ms"
    )
    print(f"baseline extractOne token_set_ratio : {summary(base)}")
    print(f"  (over the {len(examples)} examples only: {summary(base_examples)})")
    print(f"learned model artifact loaded in {model_ms:.0f} ms")
    print(f"rules alone, warm                   : {summary(rules)}")
    print(f"classify, first pass (cold cache)   : {summary(cold)}")
    print(f"classify, warm                      : {summary(warm)}")
    ratio = statistics.fmean(warm) / statistics.fmean(base)
    cold_ratio = statistics.fmean(cold) / statistics.fmean(base)
    print(f"ratio classify/baseline (mean): warm {ratio:.2f}, first pass {cold_ratio:.2f}")
    examples_ratio = statistics.fmean(warm) / statistics.fmean(base_examples)
    print(f"  (against the examples-only lookup: {examples_ratio:.2f})")
    model_ratio = statistics.fmean(warm) / statistics.fmean(rules)
    print(f"ratio classify (rules + model) / rules alone (mean): {model_ratio:.2f}")


if __name__ == "__main__":
    main()
