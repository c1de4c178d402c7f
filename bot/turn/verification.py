"""Verification: a date of birth before any health or billing fact, remembered per address;
three wrong tries lock the address and hand it to a person."""

from __future__ import annotations

from datetime import timedelta

from bot import answers
from bot.conversations import Awaiting
from bot.handoffs import Reason
from bot.turn.context import TurnContext
from bot.understanding.extract import parse_dob
from bot.understanding.redact import DOB_REDACTED
from status.patients import Patient

MAX_TRIES = 3


def is_verified(t: TurnContext, patient: Patient) -> bool:
    if t.settings.verification == "none":
        return True
    return t.conv.is_verified(patient.id, t.now)


ASKED_KEPT = 500  # characters of the waiting questions kept for the summaries


def ask(t: TurnContext, patient: Patient, intents: list[str]) -> None:
    """Ask for the date of birth; what the patient asked (as stored) waits with its intents, so
    the turn that verifies answers it and its hand-off, if any, quotes it (not the date)."""
    before = (t.conv.awaiting_data or {}).get("asked") or ""
    asked = " / ".join(dict.fromkeys(x for x in (before, t.kept) if x))[-ASKED_KEPT:]
    t.conv.expect(Awaiting.DOB, t.now, intents=intents, asked=asked)
    t.say("verify_ask", first_name=patient.first_name)


def answer(t: TurnContext, patient: Patient) -> bool:
    """The reply to "what is your date of birth?". True when the turn is done; otherwise
    `t.intents` holds what to answer now (the question that prompted verification)."""
    dob = parse_dob(t.text, today=t.now.date())
    pending = t.pending_intents()
    asked = (t.conv.awaiting_data or {}).get("asked")
    if dob is None:
        asks_facts = [i for i in t.intents if i in answers.FACT_INTENTS]
        if asks_facts:  # a new question while we wait: remember it, ask again
            ask(t, patient, list(dict.fromkeys([*pending, *asks_facts])))
            return True
        if all(i == "unknown" for i in t.intents):
            t.say("verify_format")
            return True
        return False  # "agent", "thanks", ...: answer it, keep waiting
    t.msg.body = DOB_REDACTED  # never kept, never echoed
    if dob == patient.date_of_birth:
        mark_verified(t, patient)
        t.say("verify_ok")
        t.intents = pending or ["next_steps"]
        if asked:  # the words this turn answers, for a hand-off's summary
            t.kept = asked if t.kept.strip() == DOB_REDACTED else f"{asked} / {t.kept}"
        return False
    if not wrong_try(t):
        tries_left = MAX_TRIES - t.conv.failed_verifications
        t.say("verify_retry", tries_left=tries_left)
    return True


def mark_verified(t: TurnContext, patient: Patient) -> None:
    t.conv.verified_patient_id = patient.id
    t.conv.verified_until = t.now + timedelta(days=t.settings.verification_ttl_days)
    t.conv.failed_verifications = 0
    t.conv.clear_expectation()


def wrong_try(t: TurnContext) -> bool:
    """Count a wrong date of birth; True when that was the last try (locked, handed off)."""
    t.conv.failed_verifications += 1
    if t.conv.failed_verifications < MAX_TRIES:
        return False
    t.conv.locked_at = t.now
    t.conv.clear_expectation()
    t.handoff(Reason.VERIFICATION_LOCKED, "three wrong dates of birth")
    t.say("verify_locked")
    return True
