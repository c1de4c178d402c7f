"""Step 6: who is writing. An address we don't know gets the clinic's contact and no facts; on
a shared phone we ask which person (a date of birth that matches exactly one of them answers
that too, and verifies them)."""

from __future__ import annotations

from datetime import date

from bot.conversations import Awaiting
from bot.handoffs import Reason
from bot.turn import verification
from bot.turn.context import TurnContext
from bot.understanding.extract import parse_choice, parse_dob
from status.patients import Patient

PERSON_INTENTS = {"human": Reason.HUMAN, "clinical_question": Reason.CLINICAL_QUESTION}


def settle(t: TurnContext) -> Patient | None:
    """The patient writing, or None when this turn ends without one (it has replied)."""
    if not t.people:
        _unknown_address(t)
        return None
    if t.patient is not None:
        t.conv.patient_id = t.patient.id
        return t.patient
    asked = t.pending_intents() if t.conv.awaiting == Awaiting.WHICH_PATIENT else []
    patient = _which_patient(t)
    if patient is not None:
        t.intents = asked or t.intents
    return patient


def _unknown_address(t: TurnContext) -> None:
    wants_person = [i for i in t.intents if i in PERSON_INTENTS]
    if wants_person:
        t.handoff(PERSON_INTENTS[wants_person[0]], t.kept)
        t.say(wants_person[0], eta=t.eta())
    else:
        t.say("unknown_number")


def _which_patient(t: TurnContext) -> Patient | None:
    names = [p.first_name for p in t.people]
    dob = parse_dob(t.text, today=t.now.date())
    if dob is not None:  # a date of birth instead of "1 or 2": it may say who this is
        return _by_date_of_birth(t, dob, names)
    if t.conv.expected(t.now) == Awaiting.WHICH_PATIENT:
        choice = parse_choice(t.text, options=names)
        if choice is not None:
            return choose(t, t.people[choice])
    pending = t.pending_intents() if t.conv.awaiting == Awaiting.WHICH_PATIENT else []
    keep = [i for i in t.intents if i != "unknown"] or pending
    t.conv.expect(Awaiting.WHICH_PATIENT, t.now, intents=keep)
    t.say("which_patient", names=names)
    return None


def choose(t: TurnContext, patient: Patient) -> Patient:
    t.patient = patient
    t.conv.patient_id = patient.id
    t.msg.patient_id = patient.id
    t.lang = patient.language if t.cls.language != "es" else "es"
    return patient


def _by_date_of_birth(t: TurnContext, dob: date, names: list[str]) -> Patient | None:
    """Exactly one person on the phone has that date of birth: it is them, and verified.
    Otherwise say why we still ask; a date that matches nobody counts as a wrong try."""
    t.msg.body = "[date of birth]"
    matches = [p for p in t.people if p.date_of_birth == dob]
    if len(matches) == 1:
        patient = choose(t, matches[0])
        if t.conv.locked_at is None:
            verification.mark_verified(t, patient)
        return patient
    pending = t.pending_intents() if t.conv.awaiting == Awaiting.WHICH_PATIENT else []
    if not matches and verification.wrong_try(t):
        return None
    t.conv.expect(Awaiting.WHICH_PATIENT, t.now, intents=pending)
    t.say("which_patient_dob", names=names, matches=len(matches))
    return None
