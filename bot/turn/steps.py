"""The turn, step by step, in the order the product's safety rules require."""

from __future__ import annotations

from bot.turn import (
    alert_choices,
    answer,
    awaiting,
    compliance_step,
    emergency,
    identity,
    intake,
    page_message,
    risk_checkin,
    staff_owns,
    status_link,
)
from bot.turn.context import PatientStep, Step, TurnContext

# Before we know who is writing: what must happen whoever it is.
BEFORE_IDENTITY: list[Step] = [
    compliance_step.keywords,  # 1. STOP / START / HELP, before anything else
    emergency.emergency,  # 2. emergency instructions at once, even after STOP
    risk_checkin.check_in,  #    possible risk: a check-in with 988 and urgent staff review
    alert_choices.alert_choice,  # alerts by topic ("stop reminders"): not an opt-out
    page_message.from_page,  #    "message the clinic" on the status page: to a person
    staff_owns.opted_out,  # 3. opted out: file for staff, stay silent until START
    staff_owns.staff_own_it,  #    a person owns the conversation: file it, acknowledge rarely
    intake.pictures,  # 4. pictures go to a person
    intake.card_number,  # 5. a card number: redacted already; point to the secure link
]
# Once the patient is known (6. identity.settle).
WITH_PATIENT: list[PatientStep] = [
    awaiting.awaited,  # 7. the answer to what we asked last (date of birth, YES, C / R)
    status_link.asked,  #    "everything", "my account": the status-page link
    answer.answer,  # 8. answers from the live snapshot, hand-offs for what needs a person
]


def run(t: TurnContext) -> None:
    done = any(step(t) for step in BEFORE_IDENTITY)
    if not done:
        patient = identity.settle(t)
        if patient is not None:
            any(step(t, patient) for step in WITH_PATIENT)
    t.flush()
