"""Steps 4-5: what arrived beside the words. Pictures go to a person; a card number was
redacted before storing, and the patient is told to use the secure link instead."""

from __future__ import annotations

from bot.handoffs import Reason
from bot.intents import asks_something
from bot.turn.context import TurnContext


def pictures(t: TurnContext) -> bool:
    """A person looks at the pictures; words beside them that ask something ("here's my card,
    what do i owe") are answered too, by the steps after this one."""
    if not t.inbound.media:
        return False
    t.say("media_received")
    t.handoff(Reason.MEDIA_RECEIVED, f"{len(t.inbound.media)} picture(s) received")
    return not asks_something(t.intents)


def card_number(t: TurnContext) -> bool:
    if not t.had_card:
        return False
    t.say("card_warning")
    return True
