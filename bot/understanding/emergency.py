"""Emergency pattern rules (English and Spanish), checked before any other understanding.

The rules are data (`catalogue/emergency.yaml`): regular expressions over normalised text,
"near" rules (a body part and a symptom within a few words, in either order) and "all" rules
(every listed expression somewhere in the message: "hit my head" ... "throwing up"). They favour
recall: a patient who writes "chest hurts and left arm numb" or "me duele el pecho" must get
emergency instructions even if nothing else about the message is understood.

After these phrase rules, the red-flag layer (`red_flags.py`) looks at the same text by clinical
category; both run on the text with figures of speech blanked ("heart attack when I saw the
bill"). Each expression is run only when the text holds one of the words it starts with (read by
`triggers.pattern_triggers`, conservatively: an expression that does not start with plain words
is always run), which keeps the few hundred expressions cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from bot.understanding.normalize import CATALOGUE_DIR
from bot.understanding.red_flags import red_flags
from bot.understanding.triggers import Present, TriggerIndex, Triggers, pattern_triggers


@dataclass(frozen=True)
class Expression:
    pattern: re.Pattern[str]
    needs: tuple[Triggers | None, ...]  # each must be present for the pattern to match


@dataclass(frozen=True)
class EmergencyRule:
    name: str
    alternatives: tuple[Expression, ...]  # the rule matches when any of these does...
    negatable: bool
    also: tuple[Expression, ...] = ()  # ...and, for "all" rules, each of these too, anywhere


def _near(a: str, b: str, within: int) -> str:
    gap = rf"(?:\s+\S+){{0,{within}}}?\s+"
    return rf"\b(?:{a})\b{gap}\b(?:{b})\b|\b(?:{b})\b{gap}\b(?:{a})\b"


_TERM = re.compile(r"\{([a-z_]+)\}")


def _expression(source: str) -> Expression:
    return Expression(re.compile(source), (pattern_triggers(source),))


def _compile(data: dict[str, Any]) -> tuple[list[EmergencyRule], re.Pattern[str]]:
    alternations = data["terms"]
    terms = {name: f"(?:{alts})" for name, alts in alternations.items()}

    def expand(pattern: str) -> str:
        return _TERM.sub(lambda m: terms.get(m.group(1), m.group(0)), pattern)

    rules = []
    for rule in data["rules"]:
        also: tuple[Expression, ...] = ()
        if "near" in rule:
            a, b = rule["near"]
            source = _near(terms[a], terms[b], rule.get("within", 4))
            needs = tuple(pattern_triggers(f"({alternations[t]})") for t in (a, b))
            alternatives: tuple[Expression, ...] = (Expression(re.compile(source), needs),)
        elif "all" in rule:
            first, *rest = (expand(p) for p in rule["all"])
            alternatives, also = (_expression(first),), tuple(_expression(p) for p in rest)
        else:
            alternatives = tuple(_expression(expand(p)) for p in rule["any"])
        negatable = rule.get("negatable", False)
        rules.append(EmergencyRule(rule["name"], alternatives, negatable, also))
    return rules, re.compile(data["negation"])


@dataclass(frozen=True)
class RuleSet:
    """The rules, and an index from trigger words and stems to the expressions that need them."""

    rules: list[EmergencyRule]
    negation: re.Pattern[str]
    flat: list[tuple[int, Expression]]  # (rule position, expression), in rule order
    index: TriggerIndex  # positions in `flat` by the first trigger each needs

    @classmethod
    def build(cls, rules: list[EmergencyRule], negation: re.Pattern[str]) -> RuleSet:
        flat = [(i, e) for i, rule in enumerate(rules) for e in rule.alternatives]
        # indexed by the first trigger; the others are checked when the expression is a candidate
        first = (next((t for t in e.needs if t is not None), None) for _, e in flat)
        return cls(rules, negation, flat, TriggerIndex.build(first))


@lru_cache(maxsize=1)
def _rule_set() -> RuleSet:
    with open(CATALOGUE_DIR / "emergency.yaml", encoding="utf-8") as f:
        return RuleSet.build(*_compile(yaml.safe_load(f)))


def _rules() -> tuple[list[EmergencyRule], re.Pattern[str]]:
    rule_set = _rule_set()
    return rule_set.rules, rule_set.negation


def _found(expression: Expression, present: Present, text: str) -> bool:
    return all(present.has(t) for t in expression.needs) and bool(expression.pattern.search(text))


def _pattern_rule(normalized: str) -> tuple[str, str] | None:
    """(name, matched words) of the first phrase rule (`emergency.yaml`) the text matches."""
    rule_set = _rule_set()
    present = Present(normalized.split())
    for k in rule_set.index.candidates(present):
        position, expression = rule_set.flat[k]
        rule = rule_set.rules[position]
        if not all(present.has(t) for t in expression.needs):
            continue
        for match in expression.pattern.finditer(normalized):
            if rule.negatable and rule_set.negation.search(normalized, 0, match.start()):
                continue
            if all(_found(e, present, normalized) for e in rule.also):
                return rule.name, match.group(0).strip()
            break
    return None


def emergency_match(normalized: str) -> tuple[str, str] | None:
    """(rule name, the words that fired) of the first emergency rule the text matches.

    Figures of speech, denials and non-urgent contexts are blanked first (`red_flags.yaml`,
    guards); then the phrase rules (`emergency.yaml`), then the red-flag categories
    (`red_flags.yaml`); each on the text as written and again without filler and intensifier
    words ("i seriously dont even want to be alive").
    """
    flags = red_flags()
    text = flags.unguarded(normalized)
    plain = flags.without_intensifiers(text)
    for candidate in (text, plain) if plain != text else (text,):
        found = _pattern_rule(candidate) or flags.first_match(candidate.split())
        if found is not None:
            return found
    return None


def emergency_rule(normalized: str) -> str | None:
    """The name of the first emergency rule the normalised text matches, else None."""
    found = emergency_match(normalized)
    return found[0] if found else None


def is_emergency(normalized: str) -> bool:
    return emergency_match(normalized) is not None
