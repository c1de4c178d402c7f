"""Risk grades: the one definition of what `classify` reports as "risk" and why.

- `none`: nothing in the message suggests danger.
- `possible`: a sign that is not clear (dark mood, an ambiguous "not safe", words of death with
  nothing else to go on): a warm check-in with the 988 line and an urgent staff review.
- `emergency`: the `emergency` intent; 911/988 at once and an urgent hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Risk(StrEnum):
    NONE = "none"
    POSSIBLE = "possible"
    EMERGENCY = "emergency"


RISK_GRADES = frozenset(str(r) for r in Risk)
RISK_ORDER = {Risk.NONE: 0, Risk.POSSIBLE: 1, Risk.EMERGENCY: 2}


@dataclass(frozen=True)
class RiskReason:
    """Why a grade fired: the clinical category and the words that matched."""

    category: str
    words: str = ""

    def __str__(self) -> str:
        return f'{self.category}: "{self.words}"' if self.words else self.category


def higher(a: Risk, b: Risk) -> Risk:
    return a if RISK_ORDER[a] >= RISK_ORDER[b] else b
