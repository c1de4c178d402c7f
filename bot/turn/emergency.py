"""Step 2: an emergency gets instructions at once and an urgent hand-off, whoever owns the
conversation and even after STOP (the patient wrote to us; the carrier may still block it)."""

from __future__ import annotations

from bot.handoffs import Reason
from bot.turn.context import TurnContext
from bot.understanding.emergency import emergency_rule
from bot.understanding.normalize import normalize

CRISIS_RULES = {"self_harm", "overdose"}  # emergency rules whose answer is 988 first


def emergency(t: TurnContext) -> bool:
    if "emergency" not in t.intents:
        return False
    rule = emergency_rule(normalize(t.text))
    # No rule: the learned model read an emergency the rules have no wording for (most often
    # self-harm said indirectly); the answer names both 911 and 988.
    t.say("emergency", crisis=rule in CRISIS_RULES, unclear=rule is None)
    t.reply.urgent = True
    t.handoff(Reason.EMERGENCY, t.kept)
    return True
