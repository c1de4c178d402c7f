"""Evaluation of the classifier on a labelled file, and the `classify` command's loop.

The evaluation file is JSON lines: {"text": ..., "intent": ..., "intents"?: [...],
"lang"?: "en"|"es"}. `intents` (all intents in the order written) is given for messages that
carry more than one; `lang` is optional and, when present, language guesses are scored too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.intents import Intent
from bot.understanding.classifier import classify


@dataclass(frozen=True)
class IntentScore:
    intent: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Confusion:
    gold: str
    predicted: str
    count: int
    example: str


@dataclass
class EvalReport:
    total: int = 0
    correct: int = 0
    multi_total: int = 0
    multi_correct: int = 0
    language_total: int = 0
    language_correct: int = 0
    emergency_total: int = 0
    emergency_found: int = 0
    missed_emergencies: list[str] = field(default_factory=list)
    non_opt_out_total: int = 0
    false_opt_outs: list[str] = field(default_factory=list)
    per_intent: list[IntentScore] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.total)

    @property
    def multi_accuracy(self) -> float:
        return _ratio(self.multi_correct, self.multi_total)

    @property
    def language_accuracy(self) -> float:
        return _ratio(self.language_correct, self.language_total)

    @property
    def emergency_recall(self) -> float:
        return _ratio(self.emergency_found, self.emergency_total)

    @property
    def false_opt_out_rate(self) -> float:
        return _ratio(len(self.false_opt_outs), self.non_opt_out_total)

    def score(self, intent: str) -> IntentScore:
        for item in self.per_intent:
            if item.intent == intent:
                return item
        return IntentScore(intent, 0.0, 0.0, 0.0, 0)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def load_examples(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate_file(path: str | Path) -> EvalReport:
    return evaluate(load_examples(path))


def evaluate(examples: list[dict]) -> EvalReport:
    report = EvalReport()
    pairs: Counter[tuple[str, str]] = Counter()
    first_example: dict[tuple[str, str], str] = {}
    for row in examples:
        text, gold = row["text"], row["intent"]
        result = classify(text)
        predicted = result.intent
        report.total += 1
        report.correct += predicted == gold
        pairs[(gold, predicted)] += 1
        first_example.setdefault((gold, predicted), text)
        if "intents" in row and len(row["intents"]) > 1:
            report.multi_total += 1
            report.multi_correct += list(result.intents) == list(row["intents"])
        if "lang" in row:
            report.language_total += 1
            report.language_correct += result.language == row["lang"]
        if gold == Intent.EMERGENCY:
            report.emergency_total += 1
            if predicted == Intent.EMERGENCY:
                report.emergency_found += 1
            else:
                report.missed_emergencies.append(text)
        if Intent.OPT_OUT not in row.get("intents", [gold]):
            report.non_opt_out_total += 1
            if Intent.OPT_OUT in result.intents:
                report.false_opt_outs.append(text)

    gold_counts: Counter[str] = Counter()
    predicted_counts: Counter[str] = Counter()
    for (gold, predicted), count in pairs.items():
        gold_counts[gold] += count
        predicted_counts[predicted] += count
    for intent in Intent:
        name = str(intent)
        hits = pairs[(name, name)]
        precision = _ratio(hits, predicted_counts[name])
        recall = _ratio(hits, gold_counts[name])
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report.per_intent.append(IntentScore(name, precision, recall, f1, gold_counts[name]))
    report.confusions = sorted(
        (
            Confusion(gold, predicted, count, first_example[(gold, predicted)])
            for (gold, predicted), count in pairs.items()
            if gold != predicted
        ),
        key=lambda c: (-c.count, c.gold, c.predicted),
    )
    return report


def format_report(report: EvalReport, top_confusions: int = 10) -> str:
    unknown = report.score(str(Intent.UNKNOWN))
    lines = [
        f"messages: {report.total}",
        f"accuracy (primary intent): {report.accuracy:.3f} ({report.correct}/{report.total})",
        f"multi-intent accuracy (all intents, in order): {report.multi_accuracy:.3f} "
        f"({report.multi_correct}/{report.multi_total})",
        f"emergency recall: {report.emergency_recall:.3f} "
        f"({report.emergency_found}/{report.emergency_total})",
        f"false opt_out: {len(report.false_opt_outs)} of {report.non_opt_out_total} "
        f"non-opt_out messages ({report.false_opt_out_rate:.3f})",
        f"unknown: precision {unknown.precision:.3f}, recall {unknown.recall:.3f}",
    ]
    if report.language_total:
        lines.append(
            f"language: {report.language_accuracy:.3f} "
            f"({report.language_correct}/{report.language_total})"
        )
    lines += ["", f"{'intent':<22} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}"]
    for item in report.per_intent:
        lines.append(
            f"{item.intent:<22} {item.precision:>6.3f} {item.recall:>6.3f} "
            f"{item.f1:>6.3f} {item.support:>5}"
        )
    lines += ["", "top confusions (gold -> predicted, count, example):"]
    if not report.confusions:
        lines.append("  none")
    for c in report.confusions[:top_confusions]:
        example = json.dumps(c.example, ensure_ascii=False)
        lines.append(f"  {c.gold} -> {c.predicted}  {c.count}  {example}")
    for title, texts in (
        ("missed emergencies", report.missed_emergencies),
        ("false opt_out", report.false_opt_outs),
    ):
        if texts:
            lines += ["", f"{title}:"] + [f"  {json.dumps(t, ensure_ascii=False)}" for t in texts]
    return "\n".join(lines)


def run_eval(path: str | Path, stdout: TextIO) -> int:
    stdout.write(format_report(evaluate_file(path)) + "\n")
    stdout.flush()
    return 0


def run_classify(stdin: TextIO, stdout: TextIO) -> None:
    """One JSON object per non-empty input line: {"text", "intent", "intents", "confidence"}."""
    for line in stdin:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        stdout.write(json.dumps(classify(text).as_json(text), ensure_ascii=False) + "\n")
        stdout.flush()
