"""Step 1: STOP / START / HELP, before anything else (carrier rules)."""

from __future__ import annotations

from bot import compliance
from bot.intents import primary
from bot.turn.context import TurnContext
from bot.understanding import alert_requests


def keywords(t: TurnContext) -> bool:
    """True when the message was a compliance request and is fully handled."""
    if t.inbound.origin == "page":
        return False  # written on the status page: not a carrier keyword
    keyword = compliance.keyword(t.text) if not t.inbound.intent_hint else None
    if keyword is None and alert_requests.read(t.text) is not None:
        return False  # "stop reminders" is an alert choice (a later step), not an opt-out
    if t.conv.opted_out and compliance.is_resubscribe_yes(t.text):
        keyword = "opt_in"  # carriers treat YES as START for an opted-out number
    asked = primary(t.intents)  # "thanks, stop texting me": thanks, opt_out
    wants = keyword or (asked if asked in ("opt_out", "opt_in") else None)
    if not wants:
        return False
    exact = keyword is not None
    # With Twilio's own opt-out handling, Twilio already answered the exact keywords.
    twilio_replies = (
        t.inbound.channel == "sms" and exact and t.settings.sms_keyword_replies == "twilio"
    )
    if wants == "opt_out":
        t.conv.opted_out = True
        t.conv.opted_out_at = t.now
        t.conv.clear_expectation()
        if not twilio_replies:
            t.say("opt_out")
            t.reply.urgent = True
        return True
    if wants == "opt_in":
        was_out = t.conv.opted_out
        t.conv.opted_out = False
        t.conv.opted_out_at = None
        if not twilio_replies and (was_out or exact):
            t.say("opt_in")
        return True
    if wants == "help":
        if not twilio_replies:
            t.say("help_keyword")
        return True
    return False
