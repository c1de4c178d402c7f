"""Step 2b: possible risk gets a warm check-in with the 988 line and an urgent staff review.

`classify` grades risk (bot/understanding/risk.py). `emergency` has its own step (911/988 at
once); `possible` comes here: a short check-in in the patient's language, never a cheerful
answer and never silence, and an URGENT hand-off whose summary says which category fired and
on which words, so the nurse who opens it knows why. Like an emergency, it runs whoever owns
the conversation and even after STOP (the patient wrote to us).
"""

from __future__ import annotations

from bot.handoffs import Reason
from bot.turn.context import TurnContext
from bot.understanding import Classification
from bot.understanding.risk import Risk

TEMPLATE = "risk_checkin"


def summary(cls: Classification, kept: str) -> str:
    """What staff read first: the grade, the category and the words, then the message."""
    return f"possible risk ({cls.risk_reason or 'unspecified'}): {kept}"


def check_in(t: TurnContext) -> bool:
    if t.cls.risk != Risk.POSSIBLE:
        return False
    t.say(TEMPLATE)
    t.reply.urgent = True
    t.handoff(Reason.POSSIBLE_RISK, summary(t.cls, t.kept))
    return True
