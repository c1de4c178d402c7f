"""Step 7: the message read as the answer to what the bot asked last, keyed on `Awaiting`."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.conversations import Awaiting
from bot.handoffs import Reason
from bot.turn import verification
from bot.turn.context import TurnContext
from bot.understanding.extract import is_no, is_yes, parse_dob
from status import refills, timeline
from status.patients import Patient

CONFIRM_WORDS = {"c", "confirm", "confirmed", "confirmo", "confirmar", "i confirm"}
RESCHEDULE_WORDS = {"r", "reschedule", "cambiar", "reprogramar", "change", "move it"}


def awaited(t: TurnContext, patient: Patient) -> bool:
    handler = HANDLERS.get(t.conv.expected(t.now))
    if handler is None and _unprompted_date_of_birth(t, patient):
        handler = verification.answer  # read as the answer we would have asked for
    return handler is not None and handler(t, patient)


def _unprompted_date_of_birth(t: TurnContext, patient: Patient) -> bool:
    """A date of birth sent before we asked for one (a patient who knows the drill, or whose
    verification ran out), on its own: read it as the answer, wrong tries counted as ever."""
    return (
        all(i == "unknown" for i in t.intents)
        and not verification.is_verified(t, patient)
        and parse_dob(t.text, today=t.now.date()) is not None
    )


def refill_confirm(t: TurnContext, patient: Patient) -> bool:
    """YES / NO after "Want us to start it? Reply YES"."""
    t.conv.clear_expectation()
    if is_yes(t.text) or t.inbound.intent_hint == "yes":
        # No date of birth needed: asking for a refill discloses nothing, and the provider
        # reviews every request.
        snap = t.snapshot(patient)
        rx = snap.refill_request_for
        refills.request_by_patient(
            t.session, patient.id, clinic_id=patient.clinic_id,
            prescription_source_id=rx.source_id if rx else "",
            due_date=snap.next_refill_date, channel=t.inbound.channel, now=t.now,
        )  # fmt: skip
        t.say("refill_requested")
        return True
    if is_no(t.text) or t.inbound.intent_hint == "no":
        t.say("refill_declined")
        return True
    return False  # something else: answer it as a new message


def appointment_reply(t: TurnContext, patient: Patient) -> bool:
    """C / R after an appointment reminder."""
    # the raw words: the normaliser reads SMS shorthand ("r" = "are"), which is not meant here
    word = re.sub(r"[^\w\s]", "", t.text).strip().lower()
    appointment_id = (t.conv.awaiting_data or {}).get("appointment_id")
    if word in CONFIRM_WORDS or is_yes(t.text):
        t.conv.clear_expectation()
        snap = t.snapshot(patient)
        appt = next((a for a in snap.appointments if a.source_id == appointment_id), None)
        timeline.record(
            t.session, patient.id, kind=timeline.EntryKind.STATE_CHANGE, occurred_at=t.now,
            summary=f"patient confirmed appointment {appointment_id} by {t.inbound.channel}",
            entity_type="appointment", entity_source_id=appointment_id,
        )  # fmt: skip
        t.say("appointment_confirmed", appt=appt)
        return True
    if word in RESCHEDULE_WORDS:
        t.conv.clear_expectation()
        t.handoff(Reason.RESCHEDULE, f"asked to reschedule appointment {appointment_id}")
        t.say("reschedule", eta=t.eta())
        return True
    return False


HANDLERS: dict[Awaiting | None, Callable[[TurnContext, Patient], bool]] = {
    Awaiting.DOB: verification.answer,
    Awaiting.REFILL_CONFIRM: refill_confirm,
    Awaiting.APPOINTMENT_REPLY: appointment_reply,
}
