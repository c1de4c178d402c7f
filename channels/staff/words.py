"""The console's vocabulary: what the bot understood and why a hand-off opened, in plain words.

Hand-off reasons are worded once, beside their enum (`bot.handoffs.REASON_WORDS`), because the
staff chat's alerts say them too; intents are worded here, since only staff pages show them."""

from __future__ import annotations

from bot.handoffs import reason_words

__all__ = ["INTENT_WORDS", "intent_words", "reason_words", "reasons_words", "timeline_words"]
from bot.intents import Intent

INTENT_WORDS: dict[Intent, str] = {
    Intent.PRESCRIPTION_STATUS: "prescription status",
    Intent.SHIPMENT_TRACKING: "shipment tracking",
    Intent.REFILL: "refill",
    Intent.BILLING: "billing",
    Intent.UPDATE_PAYMENT_METHOD: "update payment card",
    Intent.CANCEL_SUBSCRIPTION: "cancel or pause the plan",
    Intent.APPOINTMENT: "appointment",
    Intent.RESCHEDULE: "move or cancel a visit",
    Intent.NEXT_STEPS: "what to do next",
    Intent.HUMAN: "asks for a person",
    Intent.CLINICAL_QUESTION: "clinical question",
    Intent.EMERGENCY: "emergency",
    Intent.GREETING: "greeting",
    Intent.THANKS: "thanks",
    Intent.HELP: "help",
    Intent.OPT_OUT: "stop texts",
    Intent.OPT_IN: "resume texts",
    Intent.UNKNOWN: "not understood",
}


def intent_words(intent: str | None) -> str:
    """An intent name in plain words (one this version does not know: as written)."""
    if not intent:
        return ""
    try:
        return INTENT_WORDS[Intent(intent)]
    except ValueError:
        return intent.replace("_", " ")


def timeline_words(kind: str, summary: str) -> str:
    """A timeline entry as staff read it: the engine writes a hand-off's entry with its reason
    code ("hand-off opened: human"), which is said here in words."""
    if kind != "handoff":
        return summary
    what, sep, reason = summary.rpartition(": ")
    return f"{what}{sep}{reason_words(reason)}" if sep else summary


def reasons_words(reasons: list[str] | None, reason: str = "") -> list[str]:
    """A hand-off's reasons (its first one when the list is empty), each in plain words."""
    return [reason_words(r) for r in (reasons or [reason]) if r]
