"""Evaluation of the classifier on a labelled file, and the `classify` command's loop.

Two file formats:

- JSON lines: {"text": ..., "intent": ..., "intents"?: [...], "lang"?: "en"|"es",
  "risk"?: "none"|"possible"|"emergency"}. `intents` (all intents in the order written) is given
  for messages that carry more than one; `lang` is optional and, when present, language guesses
  are scored too.
- TSV: `text<TAB>intent`, `text<TAB>intent1,intent2` (two intents in written order) or, for a
  risk file, `text<TAB>possible|none|emergency` (every label of the file is a risk grade).
  A first line `text<TAB>intent` (or `...<TAB>risk`) is a header and skipped.

Accuracy is of the primary intent (`bot.intents.primary`): a label `greeting,reschedule` is
scored as reschedule, and its whole list by the two-intent figure.

Rows of a risk file carry no intent: they score only the risk grade (possible-risk recall and
precision, emergencies among them, false alarms on "none").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bot.intents import Intent, primary
from bot.understanding.classifier import Classification
from bot.understanding.pipeline import classify
from bot.understanding.risk import RISK_GRADES, Risk


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
    multi_missed: list[str] = field(default_factory=list)
    language_total: int = 0
    language_correct: int = 0
    emergency_total: int = 0
    emergency_found: int = 0
    missed_emergencies: list[str] = field(default_factory=list)
    non_emergency_total: int = 0
    false_emergencies: list[str] = field(default_factory=list)
    non_opt_out_total: int = 0
    false_opt_outs: list[str] = field(default_factory=list)
    per_intent: list[IntentScore] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)
    # risk rows (a risk file, or rows labelled with "risk")
    risk_total: int = 0
    risk_possible_total: int = 0  # gold possible
    risk_possible_flagged: int = 0  # ...given possible or emergency
    risk_flagged: int = 0  # predicted possible or emergency, any gold
    risk_flagged_correct: int = 0  # ...whose gold is possible or emergency
    risk_emergency_total: int = 0
    risk_emergency_found: int = 0
    risk_missed: list[str] = field(default_factory=list)
    risk_false: list[str] = field(default_factory=list)  # gold none, flagged
    risk_none_emergency: list[str] = field(default_factory=list)  # gold none, 911 script

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
    def false_emergency_rate(self) -> float:
        return _ratio(len(self.false_emergencies), self.non_emergency_total, empty=0.0)

    @property
    def false_opt_out_rate(self) -> float:
        return _ratio(len(self.false_opt_outs), self.non_opt_out_total, empty=0.0)

    @property
    def possible_recall(self) -> float:
        return _ratio(self.risk_possible_flagged, self.risk_possible_total)

    @property
    def risk_precision(self) -> float:
        return _ratio(self.risk_flagged_correct, self.risk_flagged)

    def score(self, intent: str) -> IntentScore:
        for item in self.per_intent:
            if item.intent == intent:
                return item
        return IntentScore(intent, 0.0, 0.0, 0.0, 0)


def _ratio(part: int, whole: int, empty: float = 1.0) -> float:
    return part / whole if whole else empty


class BadEvalFile(ValueError):
    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")


_INTENTS = frozenset(str(i) for i in Intent)


def load_examples(path: str | Path) -> list[dict[str, Any]]:
    """Labelled rows of a JSON-lines or TSV file (see the module docstring)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if str(path).endswith(".tsv"):
        return _load_tsv(path, lines)
    return [json.loads(line) for line in lines if line.strip()]


def _load_tsv(path: str | Path, lines: list[str]) -> list[dict[str, Any]]:
    rows: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        if not tab:
            raise BadEvalFile(path, number, "no TAB between the text and its label")
        label = label.strip().lower()
        if number == 1 and label in ("intent", "intents", "label", "risk"):
            continue
        rows.append((number, text.strip(), label))
    is_risk = bool(rows) and all(label in RISK_GRADES for _, _, label in rows)
    out: list[dict[str, Any]] = []
    for number, text, label in rows:
        if is_risk:
            out.append({"text": text, "risk": label})
            continue
        intents = [part.strip() for part in label.split(",") if part.strip()]
        unknown = [i for i in intents if i not in _INTENTS]
        if not intents or unknown:
            raise BadEvalFile(path, number, f"unknown intent {', '.join(unknown) or label!r}")
        row: dict[str, Any] = {"text": text, "intent": primary(intents)}
        if len(intents) > 1:
            row["intents"] = intents
        out.append(row)
    return out


Classifier = Callable[[str], Classification]


def evaluate_file(path: str | Path, classifier: Classifier = classify) -> EvalReport:
    return evaluate(load_examples(path), classifier)


def _score_risk(report: EvalReport, text: str, gold: str, result: Classification) -> None:
    predicted = result.risk
    report.risk_total += 1
    flagged = predicted != Risk.NONE
    report.risk_flagged += flagged
    if gold == Risk.NONE:
        if flagged:
            report.risk_false.append(f"{text}  [{predicted}: {result.risk_reason}]")
        if predicted == Risk.EMERGENCY:
            report.risk_none_emergency.append(text)
        return
    report.risk_flagged_correct += flagged
    if gold == Risk.POSSIBLE:
        report.risk_possible_total += 1
        report.risk_possible_flagged += flagged
    else:
        report.risk_emergency_total += 1
        report.risk_emergency_found += predicted == Risk.EMERGENCY
    if not flagged:
        report.risk_missed.append(f"{text}  [gold {gold}]")


def evaluate(examples: list[dict[str, Any]], classifier: Classifier = classify) -> EvalReport:
    report = EvalReport()
    pairs: Counter[tuple[str, str]] = Counter()
    first_example: dict[tuple[str, str], str] = {}
    for row in examples:
        text = row["text"]
        result = classifier(text)
        if "risk" in row:
            _score_risk(report, text, row["risk"], result)
        if "intent" not in row:
            continue
        gold = row["intent"]
        gold_intents = row.get("intents", [gold])
        predicted = result.intent
        report.total += 1
        report.correct += predicted == gold
        pairs[(gold, predicted)] += 1
        first_example.setdefault((gold, predicted), text)
        if len(gold_intents) > 1:
            report.multi_total += 1
            if list(result.intents) == list(gold_intents):
                report.multi_correct += 1
            else:
                report.multi_missed.append(
                    f"{text}  [{','.join(gold_intents)} -> {','.join(result.intents)}]"
                )
        if "lang" in row:
            report.language_total += 1
            report.language_correct += result.language == row["lang"]
        if Intent.EMERGENCY in gold_intents:
            report.emergency_total += 1
            if predicted == Intent.EMERGENCY:
                report.emergency_found += 1
            else:
                report.missed_emergencies.append(text)
        else:
            report.non_emergency_total += 1
            if Intent.EMERGENCY in result.intents:
                report.false_emergencies.append(f"{text}  [{result.risk_reason}]")
        if Intent.OPT_OUT not in gold_intents:
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


def format_report(report: EvalReport, top_confusions: int = 10, figures_only: bool = False) -> str:
    """The report; `figures_only` leaves out every message (for a blind set's aggregate)."""
    lines: list[str] = []
    if report.total:
        unknown = report.score(str(Intent.UNKNOWN))
        lines += [
            f"messages: {report.total}",
            f"accuracy (primary intent): {report.accuracy:.3f} ({report.correct}/{report.total})",
            f"two-intent exact (all intents, in order): {report.multi_accuracy:.3f} "
            f"({report.multi_correct}/{report.multi_total})",
            f"emergency recall: {report.emergency_recall:.3f} "
            f"({report.emergency_found}/{report.emergency_total})",
            f"false emergencies (non-emergency given the emergency script): "
            f"{len(report.false_emergencies)} of {report.non_emergency_total} "
            f"({report.false_emergency_rate:.3f})",
            f"false opt_out: {len(report.false_opt_outs)} of {report.non_opt_out_total} "
            f"non-opt_out messages ({report.false_opt_out_rate:.3f})",
            f"unknown: precision {unknown.precision:.3f}, recall {unknown.recall:.3f}",
        ]
        if report.language_total:
            lines.append(
                f"language: {report.language_accuracy:.3f} "
                f"({report.language_correct}/{report.language_total})"
            )
    if report.risk_total:
        lines += [
            f"risk messages: {report.risk_total}",
            f"possible-risk recall (flagged possible or emergency): {report.possible_recall:.3f} "
            f"({report.risk_possible_flagged}/{report.risk_possible_total})",
            f"risk precision (flagged messages whose label is a risk): "
            f"{report.risk_precision:.3f} ({report.risk_flagged_correct}/{report.risk_flagged})",
            f"risk 'none' flagged: {len(report.risk_false)}, of which given the emergency "
            f"script: {len(report.risk_none_emergency)}",
        ]
        if report.risk_emergency_total:
            lines.append(
                f"risk 'emergency' given the emergency script: {report.risk_emergency_found}/"
                f"{report.risk_emergency_total}"
            )
    if report.total:
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
            example = "" if figures_only else json.dumps(c.example, ensure_ascii=False)
            lines.append(f"  {c.gold} -> {c.predicted}  {c.count}  {example}".rstrip())
    if figures_only:
        return "\n".join(lines)
    for title, texts in (
        ("missed emergencies", report.missed_emergencies),
        ("false emergencies", report.false_emergencies),
        ("false opt_out", report.false_opt_outs),
        ("two-intent misses", report.multi_missed),
        ("risk missed", report.risk_missed),
        ("risk false alarms", report.risk_false),
    ):
        if texts:
            lines += ["", f"{title}:"] + [f"  {json.dumps(t, ensure_ascii=False)}" for t in texts]
    return "\n".join(lines)


def run_eval(
    path: str | Path, stdout: TextIO, classifier: Classifier = classify, figures_only: bool = False
) -> int:
    report = evaluate_file(path, classifier)
    stdout.write(format_report(report, figures_only=figures_only) + "\n")
    stdout.flush()
    return 0


def run_classify(stdin: TextIO, stdout: TextIO) -> None:
    """One JSON object per non-empty input line: {"text", "intent", "intents", "confidence",
    "risk"}."""
    for line in stdin:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        stdout.write(json.dumps(classify(text).as_json(text), ensure_ascii=False) + "\n")
        stdout.flush()
