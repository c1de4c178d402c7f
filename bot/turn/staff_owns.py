"""Step 3: after STOP, and while a person owns the conversation, the bot files what arrives
for staff. To a patient who has not opted out it says, at most every half hour and never while
a person is writing, that the message is with the team.

After an emergency, until a person at the clinic has answered, every message the patient sends
is answered with the emergency instructions again (911, and 988 for a crisis), not with a
business-hours estimate: a patient who writes "what do i do" a minute after "i cant breathe"
must be pointed back to 911, whatever the message says."""

from __future__ import annotations

from datetime import timedelta

from bot import handoffs, messages
from bot.handoffs import Handoff, Reason
from bot.turn.context import TurnContext

ACK_EVERY = timedelta(minutes=30)


def opted_out(t: TurnContext) -> bool:
    if not t.conv.opted_out:
        return False
    _file_into_open_handoff(t)  # silence until START; staff still see what arrives
    return True


def staff_own_it(t: TurnContext) -> bool:
    handoff = _file_into_open_handoff(t)
    if handoff is None:
        return False
    if Reason.EMERGENCY in handoff.reasons and handoff.first_response_at is None:
        t.say("emergency_followup")
        t.reply.urgent = True
    elif not messages.wrote_since(t.session, t.conv.id, t.now - ACK_EVERY):
        t.say("handoff_ack", eta=t.eta())
    return True


def _file_into_open_handoff(t: TurnContext) -> Handoff | None:
    """The open hand-off that owns the conversation, with the message filed into it."""
    handoff = t.open_handoff()
    if handoff is None or not handoff.owns_conversation:
        return None
    t.msg.handoff_id = handoff.id
    handoff.last_patient_message_at = t.now
    handoffs.add_entry(t.session, handoff, "message", message_id=t.message_id(), now=t.now)
    t.note_writer(handoff)
    t.turn.handoff = handoff
    return handoff
