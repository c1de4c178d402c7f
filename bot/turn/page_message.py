"""Step 2d: "message the clinic" on the status page. The text is in the patient's conversation
(stored like any message, after the emergency checks); it goes to a person, who answers in
that thread. The page itself confirms it was sent, so the bot says nothing here."""

from __future__ import annotations

from bot.handoffs import Reason
from bot.turn.context import TurnContext


def from_page(t: TurnContext) -> bool:
    if t.inbound.origin != "page":
        return False
    if t.patient is not None:
        t.conv.patient_id = t.patient.id
    t.handoff(Reason.PAGE_MESSAGE, t.kept)
    return True
