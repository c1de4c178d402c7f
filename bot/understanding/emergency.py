"""Emergency pattern rules (English and Spanish), checked before any other understanding.

The rules are data (`catalogue/emergency.yaml`): regular expressions over normalised text and
"near" rules (a body part and a symptom within a few words, in either order). They favour
recall: a patient who writes "chest hurts and left arm numb" or "me duele el pecho" must get
emergency instructions even if nothing else about the message is understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import yaml

from bot.understanding.normalize import CATALOGUE_DIR


@dataclass(frozen=True)
class EmergencyRule:
    name: str
    pattern: re.Pattern[str]
    negatable: bool


def _near(a: str, b: str, within: int) -> str:
    gap = rf"(?:\s+\S+){{0,{within}}}?\s+"
    return rf"\b(?:{a})\b{gap}\b(?:{b})\b|\b(?:{b})\b{gap}\b(?:{a})\b"


_TERM = re.compile(r"\{([a-z_]+)\}")


def _compile(data: dict) -> tuple[list[EmergencyRule], re.Pattern[str]]:
    terms = {name: f"(?:{alts})" for name, alts in data["terms"].items()}

    def expand(pattern: str) -> str:
        return _TERM.sub(lambda m: terms.get(m.group(1), m.group(0)), pattern)

    rules = []
    for rule in data["rules"]:
        if "near" in rule:
            a, b = (terms[t] for t in rule["near"])
            source = _near(a, b, rule.get("within", 4))
        else:
            source = "|".join(f"(?:{expand(p)})" for p in rule["any"])
        rules.append(EmergencyRule(rule["name"], re.compile(source), rule.get("negatable", False)))
    return rules, re.compile(data["negation"])


@lru_cache(maxsize=1)
def _rules() -> tuple[list[EmergencyRule], re.Pattern[str]]:
    with open(CATALOGUE_DIR / "emergency.yaml", encoding="utf-8") as f:
        return _compile(yaml.safe_load(f))


def emergency_rule(normalized: str) -> str | None:
    """The name of the first emergency rule the normalised text matches, else None."""
    rules, negation = _rules()
    for rule in rules:
        for match in rule.pattern.finditer(normalized):
            if rule.negatable and negation.search(normalized, 0, match.start()):
                continue
            return rule.name
    return None


def is_emergency(normalized: str) -> bool:
    return emergency_rule(normalized) is not None
