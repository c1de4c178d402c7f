"""Step 8: the answer, from the live snapshot, to each thing the patient asked, in order."""

from __future__ import annotations

from bot import answers
from bot.conversations import Awaiting
from bot.handoffs import Reason
from bot.turn import status_link, verification
from bot.turn.context import TurnContext
from bot.understanding import problems
from status.alerts import Topic
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
# SMS leaves details out of these answers (the medicine's name, what a charge was for): they
# end with the status-page link, at most once a day.
DETAILS_ON_PAGE = {"prescription_status", "billing"}
# What each fact question is about, for a caregiver who receives only some topics.
INTENT_TOPIC = {
    "prescription_status": {Topic.SHIPPING, Topic.REFILLS},
    "shipment_tracking": {Topic.SHIPPING},
    "refill": {Topic.REFILLS, Topic.SHIPPING},
    "billing": {Topic.BILLING},
    "update_payment_method": {Topic.BILLING},
    "appointment": {Topic.APPOINTMENTS},
}


def answer(t: TurnContext, patient: Patient) -> bool:
    intents = list(dict.fromkeys(t.intents))
    problem = problems.detect(t.kept)
    if problem and any(i in PROBLEM_READS_AS for i in intents):
        intents = [problem, *(i for i in intents if i not in PROBLEM_READS_AS)]
    if t.caregiver is not None:
        intents = _for_caregiver(t, intents)
        if not intents:
            return True
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
            snap = snap or t.snapshot(patient)
        _answer_one(t, patient, intent, snap)
    if any(i in DETAILS_ON_PAGE for i in substantive):
        status_link.offer_details(t, patient)
    return True


def _for_caregiver(t: TurnContext, intents: list[str]) -> list[str]:
    """A caregiver asks within their topics; a caregiver who may not ask is told so once."""
    carer = t.caregiver
    assert carer is not None  # `answer` asks only for a caregiver's turn
    facts = [i for i in intents if i in answers.FACT_INTENTS]
    if not facts:
        return intents
    if not carer.may_ask:
        t.say("caregiver_updates_only")
        return [i for i in intents if i not in answers.FACT_INTENTS and i != "unknown"]
    allowed = {Topic(x) for x in carer.topics}
    refused = [i for i in facts if i in INTENT_TOPIC and not INTENT_TOPIC[i] & allowed]
    if refused:
        t.say("caregiver_not_shared")
    return [i for i in intents if i not in refused]


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
