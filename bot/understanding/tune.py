"""Choose the combination thresholds (`pipeline.Thresholds`) on the training corpus, out of fold.

The files of the corpus written blind (`training.blind_written_files()`: by people who had read
neither the rules nor the catalogue, so the rules are not tuned on them) are split into folds
by message; for each
fold the model is trained on the whole corpus without that fold's messages (and without their
noisy copies) and reads the held-out messages, as it would read messages it has never seen. The
rules read every message once. Thresholds are then chosen by coordinate search to maximise

    accuracy + RECALL_WEIGHT * emergency recall + two-intent exact share
    - FALSE_WEIGHT * max(0, false-emergency rate - FALSE_BUDGET)

Never run on an evaluation set: they are not in the corpus, and this reads only the corpus.
`patient-status nlu tune` prints the figures at the chosen thresholds beside the defaults.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

from bot.intents import Intent, primary
from bot.understanding import model, pipeline, training
from bot.understanding.classifier import Classification, with_keywords
from bot.understanding.classifier import classify as classify_rules
from bot.understanding.keywords import KeywordSentences, keyword_sentences
from bot.understanding.model import Prediction
from bot.understanding.pipeline import DEFAULT, Thresholds, decide
from bot.understanding.risk import Risk

FOLDS = 4
RECALL_WEIGHT = 4.0
FALSE_BUDGET = 0.008
FALSE_WEIGHT = 20.0
# A check-in (possible risk) where the writer saw none costs a little: the patient gets a warm
# message and staff a review instead of the answer. A missed possible risk costs more.
CHECK_IN_WEIGHT = 0.5
POSSIBLE_WEIGHT = 1.0
OPT_OUT_WEIGHT = 1.0  # per false opt-out: one silences a patient
GRID = {
    "rules_clear": [0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.01],
    "model_sure": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7],
    "model_overrides": [0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01],
    "emergency_with_possible": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01],
    "emergency_unread": [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.01],
    "emergency": [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.01],
    "emergency_over_clear_rules": [0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.01],
    "lower_below": [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3],
    "lower_intent": [0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95],
    "lower_intent_alone": [0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.01],
    "clause_rules": [0.4, 0.45, 0.5, 0.55, 0.6],
    "model_opt_in": [0.5, 0.6, 0.7, 0.8, 0.9, 1.01],
    "model_help": [0.5, 0.6, 0.7, 0.8, 0.9, 1.01],
    "clause_model": [0.5, 0.6, 0.7, 0.8, 0.9, 1.01],
    "clause_model_first": [0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.01],
    "clauses_over_pair": [0.6, 0.7, 0.8, 0.9, 1.01],
    "clauses_over_whole": [0.6, 0.7, 0.8, 0.9, 1.01],
    "emergency_second": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01],
    "figure_of_speech": [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1],
    "figure_of_speech_self_harm": [0.0, 0.01, 0.02, 0.03, 0.05],
    "backstory_below": [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15],
    "backstory_model": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
}


@dataclass(frozen=True)
class Case:
    text: str
    intents: tuple[str, ...]
    risk: str  # the writer's grade
    rules: Classification
    prediction: Prediction
    clauses: tuple[Prediction, ...]
    beside_readings: Prediction | None = None  # see `pipeline.beside_readings`
    # carrier keywords written as sentences of their own: the readings above are of the rest,
    # as `pipeline.classify` reads it, and `whole` is the model's reading of the whole message
    keywords: KeywordSentences | None = None
    whole: Prediction | None = None


@dataclass(frozen=True)
class Figures:
    accuracy: float
    emergency_recall: float
    false_emergencies: float
    two_intent: float
    false_opt_outs: int
    false_check_ins: float = 0.0  # risk-none messages given a check-in or the emergency script
    possible_recall: float = 0.0  # possible-risk messages flagged (possible or emergency)

    def score(self) -> float:
        excess = max(0.0, self.false_emergencies - FALSE_BUDGET)
        return (
            self.accuracy
            + RECALL_WEIGHT * self.emergency_recall
            + self.two_intent
            - FALSE_WEIGHT * excess
            - CHECK_IN_WEIGHT * self.false_check_ins
            + POSSIBLE_WEIGHT * self.possible_recall
            - OPT_OUT_WEIGHT * self.false_opt_outs
        )

    def __str__(self) -> str:
        return (
            f"accuracy {self.accuracy:.3f}, emergency recall {self.emergency_recall:.3f}, "
            f"false emergencies {self.false_emergencies:.3f}, two-intent {self.two_intent:.3f}, "
            f"false opt-outs {self.false_opt_outs}, false check-ins "
            f"{self.false_check_ins:.3f}, possible-risk recall {self.possible_recall:.3f}"
        )


def held_out_cases(folds: int = FOLDS, log: Callable[[str], object] = print) -> list[Case]:
    written = [row for path in training.blind_written_files() for row in training.read_tsv(path)]
    texts = sorted({text for text, _, _ in written})
    random.Random(training.SEED).shuffle(texts)
    fold_of = {text: i % folds for i, text in enumerate(texts)}
    corpus = training.build_corpus()
    cases: list[Case] = []
    for fold in range(folds):
        held = [(t, i, r) for t, i, r in written if fold_of[t] == fold]
        log(f"fold {fold + 1}/{folds}: training without {len(held)} messages")
        models = model.train([r for r in corpus if fold_of.get(r.source, -1) != fold])
        for text, intents, risk in held:
            keywords = keyword_sentences(text)
            read = keywords.rest if keywords and keywords.rest else text
            rules = classify_rules(read)
            clauses = tuple(models.predict(c.text) for c in rules.clauses)
            if len(clauses) < 2:
                clauses = ()
            p = models.predict(read)
            beside = pipeline.beside_readings(rules, read, p, models)
            if read == text:
                cases.append(Case(text, intents, risk, rules, p, clauses, beside))
            else:
                whole = models.predict(text)
                case = Case(text, intents, risk, rules, p, clauses, beside, keywords, whole)
                cases.append(case)
    return cases


Answer = tuple[tuple[str, ...], str]  # intents as answered, risk grade


def model_alone(case: Case) -> Answer:
    """What the learned model alone answers (its risk grade decides an emergency)."""
    p = case.whole or case.prediction
    intent = str(Intent.EMERGENCY) if p.risk == Risk.EMERGENCY else p.intent
    return (intent,), p.risk


def rules_alone(case: Case) -> Answer:
    c = with_keywords(case.rules, case.keywords) if case.keywords else case.rules
    return tuple(c.intents), c.risk


def figures(
    cases: list[Case],
    t: Thresholds,
    answer: Callable[[Case], Answer] | None = None,
) -> Figures:
    """The tuning figures of the combination at `t` (or of another `answer`)."""

    def combined(case: Case) -> Answer:
        c = decide(case.rules, case.prediction, t, case.clauses, case.beside_readings)
        if case.keywords:
            c = with_keywords(c, case.keywords)
        return tuple(c.intents), c.risk

    answer = answer or combined
    correct = emergencies = found = ordinary = false = multi = multi_ok = opt_outs = 0
    calm = check_ins = possible = flagged = 0
    for case in cases:
        intents, risk = answer(case)
        if case.risk == Risk.NONE:
            calm += 1
            check_ins += risk != Risk.NONE
        elif case.risk == Risk.POSSIBLE:
            possible += 1
            flagged += risk != Risk.NONE
        # the primary intent, as `eval-nlu` scores it: what the engine answers
        gold = primary(case.intents)
        correct += primary(intents) == gold
        if len(case.intents) > 1:
            multi += 1
            multi_ok += intents == case.intents
        if Intent.EMERGENCY in case.intents:
            emergencies += 1
            found += Intent.EMERGENCY in intents
        else:
            ordinary += 1
            false += Intent.EMERGENCY in intents
        opt_outs += gold != Intent.OPT_OUT and primary(intents) == Intent.OPT_OUT
    return Figures(
        correct / len(cases),
        found / max(emergencies, 1),
        false / max(ordinary, 1),
        multi_ok / max(multi, 1),
        opt_outs,
        check_ins / max(calm, 1),
        flagged / max(possible, 1),
    )


def search(cases: list[Case], start: Thresholds = DEFAULT, rounds: int = 3) -> Thresholds:
    best, best_score = start, figures(cases, start).score()
    for _ in range(rounds):
        improved = False
        for name, values in GRID.items():
            for value in values:
                candidate = replace(best, **{name: value})
                score = figures(cases, candidate).score()
                if score > best_score + 1e-9:
                    best, best_score, improved = candidate, score, True
        if not improved:
            break
    return best


def changes(t: Thresholds) -> Iterator[str]:
    for f in fields(Thresholds):
        if getattr(t, f.name) != getattr(DEFAULT, f.name):
            yield f"{f.name} = {getattr(t, f.name)} (was {getattr(DEFAULT, f.name)})"


def run(log: Callable[[str], object] = print, score_on: tuple[str, ...] = ()) -> Thresholds:
    """`score_on`: measure and choose only on these corpus files' messages (each still read by
    a model trained without it). The rules were changed after most retired sets' runs, so on
    those they read messages they were fitted to; on a file they were never changed after,
    both readings are held out alike."""
    cases = held_out_cases(log=log)
    if score_on:
        names = {path.name for path in training.blind_written_files()}
        unknown = sorted(set(score_on) - names)
        if unknown:
            raise ValueError(f"not a blind-written corpus file: {', '.join(unknown)}")
        keep = {
            text
            for path in training.blind_written_files()
            if path.name in score_on
            for text, _, _ in training.read_tsv(path)
        }
        cases = [case for case in cases if case.text in keep]
        log(f"scored on {', '.join(sorted(score_on))} only")
    log(f"held-out messages: {len(cases)}")
    log(f"rules alone:        {figures(cases, DEFAULT, rules_alone)}")
    log(f"model alone:        {figures(cases, DEFAULT, model_alone)}")
    log(f"default thresholds: {figures(cases, DEFAULT)}")
    chosen = search(cases)
    log(f"chosen thresholds:  {figures(cases, chosen)}")
    for line in changes(chosen):
        log(f"  {line}")
    return chosen
