"""Possible risk: a warm check-in with the 988 line and an urgent staff review.

`classify` grades risk (bot/understanding/risk.py). `emergency` has its own step (911/988 at
once); `possible` comes here: a short check-in in the patient's language, never a cheerful
answer and never silence, and an URGENT hand-off whose summary says which category fired and
on which words, so the nurse who opens it knows why. Like an emergency, it runs whoever owns
the conversation and even after STOP (the patient wrote to us).
"""

from __future__ import annotations

from typing import Protocol

from bot.handoffs import Handoff, Reason
from bot.understanding import Classification
from bot.understanding.risk import Risk

TEMPLATE = "risk_checkin"


class _Turn(Protocol):  # the engine's turn context, as far as this step needs it
    cls: Classification

    def _render(self, name: str, **ctx) -> str: ...  # noqa: ANN003
    def _handoff(self, reason: Reason, summary: str) -> Handoff: ...


def applies(cls: Classification) -> bool:
    return cls.risk == Risk.POSSIBLE


def summary(cls: Classification, text: str) -> str:
    """What staff read first: the grade, the category and the words, then the message."""
    return f"possible risk ({cls.risk_reason or 'unspecified'}): {text}"


def check_in(turn: _Turn, text: str) -> None:
    """Reply with the check-in and open (or raise to urgent) the staff hand-off."""
    turn.reply.add(turn._render(TEMPLATE), TEMPLATE)  # type: ignore[attr-defined]
    turn.reply.urgent = True  # type: ignore[attr-defined]
    turn._handoff(Reason.POSSIBLE_RISK, summary(turn.cls, text))
