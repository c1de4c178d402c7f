"""Step 1: STOP / START / HELP, before anything else (carrier rules)."""

from __future__ import annotations

from bot import compliance
from bot.intents import asks_something
from bot.turn import emergency
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
    # STOP is honoured wherever the message says it ("thanks, stop texting me", "ok thanks.
    # STOP": thanks, opt_out); START too ("START. when is my next appointment").
    asked = next((i for i in ("opt_out", "opt_in") if i in t.intents), None)
    wants = keyword or asked
    if not wants:
        return False
    exact = keyword is not None
    # With Twilio's own opt-out handling, Twilio already answered the exact keywords.
    twilio_replies = (
        t.inbound.channel == "sms" and exact and t.settings.sms_keyword_replies == "twilio"
    )
    if wants == "opt_out":
        if "emergency" in t.intents:
            emergency.emergency(t)  # the emergency's answer first, as after STOP
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
        # what else the message asks is answered now that texts may go out again
        t.intents = [i for i in t.intents if i != "opt_in"]
        return exact or not asks_something(t.intents)
    if wants == "help":
        if not twilio_replies:
            t.say("help_keyword")
        return True
    return False
