"""Step 8: the answer, from the live snapshot, to each thing the patient asked, in order."""

from __future__ import annotations

from bot import answers
from bot.conversations import Awaiting
from bot.handoffs import Reason
from bot.turn import verification
from bot.turn.context import TurnContext
from bot.understanding import problems
from status import snapshot
from status.patients import Patient
from status.snapshot import Snapshot

HANDOFF_INTENTS = {
    "human": Reason.HUMAN,
    "clinical_question": Reason.CLINICAL_QUESTION,
    "reschedule": Reason.RESCHEDULE,
    "cancel_subscription": Reason.CANCEL_SUBSCRIPTION,
    problems.DELIVERY_PROBLEM: Reason.DELIVERY_PROBLEM,
    problems.CHANGE_REQUEST: Reason.CHANGE_REQUEST,
}
# A delivery problem or a change request reads like these status questions; it goes to staff.
PROBLEM_READS_AS = {"prescription_status", "shipment_tracking", "refill", "next_steps", "unknown"}
# Asking about these while a prescription is blocked brings in fulfilment staff.
BLOCKED_ASKS = {"prescription_status", "shipment_tracking", "next_steps"}
COURTESY = {"greeting", "thanks"}


def answer(t: TurnContext, patient: Patient) -> bool:
    intents = list(dict.fromkeys(t.intents))
    problem = problems.detect(t.kept)
    if problem and any(i in PROBLEM_READS_AS for i in intents):
        intents = [problem, *(i for i in intents if i not in PROBLEM_READS_AS)]
    asks_facts = any(i in answers.FACT_INTENTS for i in intents)
    if t.conv.locked_at is not None and asks_facts:
        t.say("verify_locked")
        return True
    if asks_facts and not verification.is_verified(t, patient):
        if any(i in ("human", "clinical_question", "emergency") for i in intents):
            # a person was asked for: staff verify and answer the rest
            intents = [i for i in intents if i not in answers.FACT_INTENTS]
        else:
            verification.ask(t, patient, [i for i in intents if i not in COURTESY])
            return True
    if intents == ["unknown"]:
        _not_understood(t)
        return True
    t.conv.unknown_streak = 0
    substantive = [i for i in intents if i not in (*COURTESY, "unknown")]
    if not substantive:
        name = intents[0] if intents[0] in COURTESY else "greeting"
        t.say(name, first_name=patient.first_name)
        if name == "greeting":
            t.reply.buttons = t.buttons("menu")
        return True
    snap = None
    for intent in substantive:
        if intent in answers.FACT_ANSWERS or intent == "update_payment_method":
            snap = snap or snapshot.build(t.session, patient, t.now)
        _answer_one(t, patient, intent, snap)
    return True


def _not_understood(t: TurnContext) -> None:
    """The first miss gets the menu; the second in a row goes to a person."""
    t.conv.unknown_streak += 1
    if t.conv.unknown_streak >= 2:
        t.conv.unknown_streak = 0
        t.handoff(Reason.NOT_UNDERSTOOD, t.kept)
        t.say("unknown_handoff", eta=t.eta())
    else:
        t.say("unknown")
        t.reply.buttons = t.buttons("menu")


def _answer_one(t: TurnContext, patient: Patient, intent: str, snap: Snapshot | None) -> None:
    if intent in answers.FACT_ANSWERS:
        assert snap is not None  # `_answer` builds it for every fact answer
        found = answers.FACT_ANSWERS[intent](snap)
        t.say(found.template, **found.context)
        if found.offer_refill:
            t.conv.expect(Awaiting.REFILL_CONFIRM, t.now)
            t.reply.buttons = t.buttons("yes_no")
        if intent in BLOCKED_ASKS and answers.is_blocked(snap):
            t.handoff(Reason.BLOCKED, f"patient asked about a blocked prescription: {t.kept}")
        return
    if intent == "update_payment_method":
        found = answers.update_payment_method(
            snap if verification.is_verified(t, patient) else None
        )
        t.say(found.template, **found.context)
        return
    if intent in HANDOFF_INTENTS:
        t.handoff(HANDOFF_INTENTS[intent], t.kept)
        t.say(intent, eta=t.eta())
        return
    if intent == "help":
        t.say("help")
        t.reply.buttons = t.buttons("menu")
