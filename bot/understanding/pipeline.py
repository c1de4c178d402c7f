"""Rules and the learned model combined: what `classify` answers (see docs/nlu.md).

- Carrier keywords and the emergency rules always win: the model never overrides them, and
  never produces opt_out/opt_in (a false opt-out silences a patient).
- The rules' risk layer (`risk_rules.py`) grades what is not a clear emergency.
- The model fills in where the rules have nothing clear: `unknown`, or a low confidence.
- On risk, disagreement goes to the safe side: a model fairly sure of an emergency (or of a
  possible risk) raises the grade to at least `possible`, never lowers what the rules say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.intents import Intent
from bot.understanding import model
from bot.understanding.classifier import Classification
from bot.understanding.classifier import classify as classify_rules
from bot.understanding.risk import Risk, RiskReason

# Tuned on the training corpus and the older sets in tests/data (docs/nlu.md).
RULES_CLEAR = 0.55  # rules at or above this confidence are not second-guessed
MODEL_SURE = 0.55  # the model's intent is taken only at or above this probability
# P(emergency) from which the model raises risk to possible: lower when the rules found
# nothing clear, higher when they understood an ordinary request.
MODEL_EMERGENCY = 0.70
MODEL_EMERGENCY_OVER_CLEAR_RULES = 0.90
MODEL_POSSIBLE = 0.65  # P(possible), likewise
MODEL_POSSIBLE_OVER_CLEAR_RULES = 0.85
# The model raises risk only on a message it mostly has words for (not on gibberish).
MODEL_KNOWN_WORDS = 0.5
NEVER_FROM_MODEL = frozenset({Intent.OPT_OUT, Intent.OPT_IN, Intent.EMERGENCY, Intent.HELP})


def classify_model(text: str) -> Classification:
    """The learned model alone (for evaluation): its intent and risk grade."""
    p = model.models().predict(text)
    rules = classify_rules(text)  # only for the language guess
    risk = p.risk
    reason = str(RiskReason("model", f"p={p.risk_probability:.2f}")) if risk != Risk.NONE else ""
    return Classification(p.intent, [p.intent], p.intent_probability, rules.language, risk, reason)


def combine(rules: Classification, text: str) -> Classification:
    if rules.confidence >= 1.0 and rules.intent in (Intent.OPT_OUT, Intent.OPT_IN, Intent.HELP):
        return rules  # a carrier keyword
    if rules.risk == Risk.EMERGENCY:
        return rules
    p = model.models().predict(text)
    result = rules
    if (
        (rules.intent == Intent.UNKNOWN or rules.confidence < RULES_CLEAR)
        and p.intent_probability >= MODEL_SURE
        and p.intent not in NEVER_FROM_MODEL
        and p.intent != rules.intent
        and Intent.OPT_OUT not in rules.intents
    ):
        if rules.intent == Intent.UNKNOWN:
            intents = [p.intent]
        else:
            intents = [p.intent] + [i for i in rules.intents if i != p.intent][:1]
        result = replace(result, intent=p.intent, intents=intents, confidence=p.intent_probability)
    clear = rules.intent != Intent.UNKNOWN and rules.confidence >= RULES_CLEAR
    emergency_bar = MODEL_EMERGENCY_OVER_CLEAR_RULES if clear else MODEL_EMERGENCY
    possible_bar = MODEL_POSSIBLE_OVER_CLEAR_RULES if clear else MODEL_POSSIBLE
    if result.risk == Risk.NONE and p.known_words >= MODEL_KNOWN_WORDS:
        if p.emergency_probability >= emergency_bar:
            reason = RiskReason("model.emergency", f"p={p.emergency_probability:.2f}")
            result = replace(result, risk=Risk.POSSIBLE, risk_reason=str(reason))
        elif p.possible_probability >= possible_bar:
            reason = RiskReason("model.possible", f"p={p.possible_probability:.2f}")
            result = replace(result, risk=Risk.POSSIBLE, risk_reason=str(reason))
    return result


def classify(text: str) -> Classification:
    """Understand one patient message: rules and the learned model together."""
    return combine(classify_rules(text), text)


def classifier_for(mode: str) -> Callable[[str], Classification]:
    return {"rules": classify_rules, "model": classify_model, "combined": classify}[mode]
