"""One conversational turn: an inbound message in, replies written to the outbox.

Order matters and is the product's safety rules in code:
STOP/START/HELP first, then emergencies, then staff ownership (an open hand-off silences the
bot), then identity and verification, then answers from the live snapshot.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot import answers, compliance, context, conversations, handoffs, outbox, risk_checkin
from bot.conversations import Conversation
from bot.handoffs import Handoff, Reason
from bot.hours import estimate
from bot.inbound import Inbound
from bot.messages import Direction, Kind, Message
from bot.render import Renderer
from bot.understanding import Classification, classify
from bot.understanding.emergency import emergency_rule
from bot.understanding.extract import is_no, is_yes, parse_choice, parse_dob
from bot.understanding.normalize import normalize
from bot.understanding.redact import redact_card_numbers
from status import metrics, snapshot, timeline
from status import patients as patient_queries
from status.db import utcnow
from status.patients import Patient
from status.refills import Refill, RefillStatus
from status.settings import Settings

log = logging.getLogger("patient_status.turn")

MAX_DOB_TRIES = 3
NOTHING_SAID = Classification(intent="unknown", intents=["unknown"], confidence=0.0, language="en")
SHARED_PHONE_MEMORY = timedelta(hours=1)
# Sent even to an address that opted out: compliance confirmations and emergency instructions.
SYSTEM_TEMPLATES = {"opt_out", "opt_in", "help_keyword", "emergency", risk_checkin.TEMPLATE}
CONFIRM_WORDS = {"c", "confirm", "confirmed", "confirmo", "confirmar", "i confirm"}
RESCHEDULE_WORDS = {"r", "reschedule", "cambiar", "reprogramar", "change", "move it"}
# Asking about these while a prescription is blocked brings in fulfilment staff.
BLOCKED_ASKS = {"prescription_status", "shipment_tracking", "next_steps"}
HANDOFF_INTENTS = {
    "human": Reason.HUMAN,
    "clinical_question": Reason.CLINICAL_QUESTION,
    "reschedule": Reason.RESCHEDULE,
    "cancel_subscription": Reason.CANCEL_SUBSCRIPTION,
}
CRISIS_RULES = {"self_harm", "overdose"}  # emergency rules whose answer is 988 first
MENU_BUTTONS = {
    "en": [
        [{"text": "Where's my prescription?", "data": "ask:prescription_status"}],
        [{"text": "Track my delivery", "data": "ask:shipment_tracking"},
         {"text": "My refill", "data": "ask:refill"}],
        [{"text": "Billing", "data": "ask:billing"},
         {"text": "My next visit", "data": "ask:appointment"}],
        [{"text": "Talk to a person", "data": "ask:human"}],
    ],
    "es": [
        [{"text": "¿Dónde está mi receta?", "data": "ask:prescription_status"}],
        [{"text": "Rastrear envío", "data": "ask:shipment_tracking"},
         {"text": "Mi resurtido", "data": "ask:refill"}],
        [{"text": "Pagos", "data": "ask:billing"},
         {"text": "Mi próxima cita", "data": "ask:appointment"}],
        [{"text": "Hablar con una persona", "data": "ask:human"}],
    ],
}  # fmt: skip
YES_NO_BUTTONS = {
    "en": [[{"text": "Yes", "data": "yes"}, {"text": "No", "data": "no"}]],
    "es": [[{"text": "Sí", "data": "yes"}, {"text": "No", "data": "no"}]],
}


@dataclass
class Turn:
    """What happened in one turn, for the channel and for tests."""

    inbound: Message
    replies: list[Message] = field(default_factory=list)
    classification: Classification | None = None
    handoff: Handoff | None = None
    duplicate: bool = False


@dataclass
class _Reply:
    parts: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    buttons: list = field(default_factory=list)
    urgent: bool = False

    def add(self, text: str, template: str) -> None:
        if text:
            self.parts.append(text)
            self.templates.append(template)


class Engine:
    def __init__(self, settings: Settings, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer(settings)
        # Listeners told of each new or escalated hand-off (staff chat alerts, metrics).
        self.handoff_listeners: list = []

    # --- entry point ---------------------------------------------------------------------------
    def handle(self, session: Session, inbound: Inbound) -> Turn:
        started = time.perf_counter()
        now = inbound.received_at or utcnow()
        conv = conversations.get_or_create(session, inbound.channel, inbound.address)
        text, had_card = redact_card_numbers(inbound.text or "")
        if inbound.intent_hint:
            cls = Classification(
                intent=inbound.intent_hint, intents=[inbound.intent_hint], confidence=1.0,
                language=conv.language or "en",
            )  # fmt: skip
        else:
            cls = classify(text) if text.strip() else NOTHING_SAID
        people = self._people(session, inbound)
        patient = self._current_patient(conv, people, now)
        msg = Message(
            conversation_id=conv.id,
            patient_id=patient.id if patient else None,
            direction=Direction.IN,
            kind=Kind.REPLY,
            channel=inbound.channel,
            address=inbound.address,
            body=text,
            intent=cls.intent,
            intents=list(cls.intents),
            confidence=round(cls.confidence, 3),
            provider_id=inbound.provider_id,
            media=list(inbound.media),
            created_at=now,
        )
        session.add(msg)
        session.flush()
        conv.last_inbound_at = now
        lang = self._language(cls, patient, conv)
        conv.language = lang
        turn = Turn(inbound=msg, classification=cls)
        metrics.INBOUND.labels(inbound.channel, cls.intent).inc()
        ctx = _TurnContext(self, session, conv, inbound, msg, cls, people, patient, lang, now, turn)
        ctx.run(text, had_card)
        log.info(
            "turn",
            extra={
                "channel": inbound.channel,
                "conversation_id": conv.id,
                "message_id": msg.id,
                "intent": cls.intent,
                "confidence": round(cls.confidence, 3),
                "replies": len(turn.replies),
                "handoff_id": turn.handoff.id if turn.handoff else None,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return turn

    def _people(self, session: Session, inbound: Inbound) -> list[Patient]:
        channel = "telegram" if inbound.channel == "telegram" else "sms"
        return patient_queries.by_address(session, channel, inbound.address)

    @staticmethod
    def _current_patient(
        conv: Conversation, people: list[Patient], now: datetime
    ) -> Patient | None:
        """Who is writing. On a shared phone, the person chosen is remembered for the
        conversation: until it has been quiet for a while, then we ask again."""
        if len(people) == 1:
            return people[0]
        idle = conv.last_inbound_at is None or now - conv.last_inbound_at > SHARED_PHONE_MEMORY
        if idle:
            conv.patient_id = None
            return None
        for person in people:
            if person.id == conv.patient_id:
                return person
        return None

    @staticmethod
    def _language(cls: Classification, patient: Patient | None, conv: Conversation) -> str:
        """The message's language when it shows one, else the conversation's, else the patient's.

        A date of birth, "1" or "ok" says nothing about language: keep the one in use.
        """
        says_something = cls.intent not in ("opt_out", "opt_in", "help", "unknown") or (
            cls.risk != "none"
        )
        if says_something and cls.language == "es":
            return "es"
        if says_something and patient is not None:
            return patient.language
        return conv.language or (patient.language if patient else None) or cls.language or "en"

    def render(self, name: str, lang: str, channel: str, **context) -> str:
        return self.renderer.render(name, lang, channel, **context)


class _TurnContext:
    """The state of one turn while it runs."""

    def __init__(self, engine, session, conv, inbound, msg, cls, people, patient, lang, now, turn):  # noqa: ANN001, PLR0913
        self.engine = engine
        self.settings = engine.settings
        self.session = session
        self.conv: Conversation = conv
        self.inbound: Inbound = inbound
        self.msg: Message = msg
        self.cls: Classification = cls
        self.people: list[Patient] = people
        self.patient: Patient | None = patient
        self.lang = lang
        self.now: datetime = now
        self.turn: Turn = turn
        self.reply = _Reply()

    # --- the turn --------------------------------------------------------------------------
    def run(self, text: str, had_card: bool) -> None:
        intents = list(self.cls.intents)
        keyword = compliance.keyword(text) if not self.inbound.intent_hint else None
        if self.conv.opted_out and compliance.is_resubscribe_yes(text):
            keyword = "opt_in"  # carriers treat YES as START for an opted-out number
        # 1. STOP / START / HELP, before anything else.
        wants = keyword or (intents[0] if intents[0] in ("opt_out", "opt_in") else None)
        if wants and self._compliance(wants, exact=keyword is not None):
            return self._flush()
        # 2. Emergencies: instructions at once, urgent hand-off, whoever owns the conversation,
        #    even after STOP (the patient wrote to us; the carrier may still block the reply).
        if "emergency" in intents:
            crisis = emergency_rule(normalize(text)) in CRISIS_RULES
            self.reply.add(self._render("emergency", crisis=crisis), "emergency")
            self.reply.urgent = True
            self._handoff(Reason.EMERGENCY, text)
            return self._flush()
        # 2b. Possible risk: a warm check-in with 988 and an urgent staff review, likewise.
        if risk_checkin.applies(self.cls):
            risk_checkin.check_in(self, text)
            return self._flush()
        if self.conv.opted_out:  # silence until START; staff still see what arrives
            self._file_into_open_handoff()
            return None
        # 3. A person owns the conversation: file the message, stay silent.
        if self._file_into_open_handoff():
            return None
        # 4. Pictures: acknowledge and let a person look.
        if self.inbound.media:
            self.reply.add(self._render("media_received"), "media_received")
            self._handoff(Reason.MEDIA_RECEIVED, f"{len(self.inbound.media)} picture(s) received")
            return self._flush()
        # 5. A card number: it was redacted before storing; say so, give the safe link.
        if had_card:
            self.reply.add(self._render("card_warning"), "card_warning")
            return self._flush()
        # 6. Who is this?
        if not self.people:
            return self._unknown_address(intents, text)
        if self.patient is None:
            if not self._which_patient(text, intents):
                return self._flush()
            intents = self._pending_intents() or intents
        else:
            self.conv.patient_id = self.patient.id
        # 7. Answers to what the bot last asked.
        expected = self.conv.expected(self.now)
        if expected == "dob":
            handled, intents = self._verification_answer(text, intents)
            if handled:
                return self._flush()
        elif self._expected_answer(expected, text):
            return self._flush()
        self._answer(intents, text)
        return self._flush()

    # --- compliance --------------------------------------------------------------------------
    def _compliance(self, what: str, exact: bool) -> bool:
        """True when the message was a compliance request and is fully handled."""
        sms = self.inbound.channel == "sms"
        twilio_replies = sms and exact and self.settings.sms_keyword_replies == "twilio"
        if what == "opt_out":
            self.conv.opted_out = True
            self.conv.opted_out_at = self.now
            self.conv.clear_expectation()
            if not twilio_replies:
                self.reply.add(self._render("opt_out"), "opt_out")
                self.reply.urgent = True
            return True
        if what == "opt_in":
            was_out = self.conv.opted_out
            self.conv.opted_out = False
            self.conv.opted_out_at = None
            if not twilio_replies and (was_out or exact):
                self.reply.add(self._render("opt_in"), "opt_in")
            return True
        if what == "help":
            if not twilio_replies:
                self.reply.add(self._render("help_keyword"), "help_keyword")
            return True
        return False

    # --- staff ownership ---------------------------------------------------------------------
    def _file_into_open_handoff(self) -> bool:
        patient_id = self.patient.id if self.patient else None
        handoff = handoffs.find_open(self.session, patient_id, self.conv.id)
        if handoff is None or not handoff.owns_conversation:
            return False
        self.msg.handoff_id = handoff.id
        handoff.last_patient_message_at = self.now
        handoffs.add_entry(self.session, handoff, "message", message_id=self.msg.id, now=self.now)
        self.turn.handoff = handoff
        return True

    def _handoff(self, reason: Reason, summary: str) -> Handoff:
        patient_id = self.patient.id if self.patient else None
        summary = summary[:300]
        handoff, created = handoffs.open_or_add(
            self.session,
            reason=reason,
            now=self.now,
            patient_id=patient_id,
            conversation_id=self.conv.id,
            summary=summary,
            context=lambda: context.build(self.session, self.patient, self.conv, self.now),
            settings=self.settings,
        )
        self.msg.handoff_id = handoff.id
        self.turn.handoff = handoff
        if self.patient is not None:
            timeline.record(
                self.session, self.patient.id, kind=timeline.EntryKind.HANDOFF,
                occurred_at=self.now, summary=f"hand-off {'opened' if created else 'updated'}: "
                f"{reason.value}", entity_type="handoff", entity_source_id=str(handoff.id),
            )  # fmt: skip
        for listener in self.engine.handoff_listeners:
            listener(self.session, handoff, reason, created)
        return handoff

    # --- identity ----------------------------------------------------------------------------
    def _unknown_address(self, intents: list[str], text: str) -> None:
        wants_person = [i for i in intents if i in ("human", "clinical_question")]
        if wants_person:
            reason = HANDOFF_INTENTS[wants_person[0]]
            self._handoff(reason, text)
            self.reply.add(self._render(wants_person[0], eta=self._eta()), wants_person[0])
        else:
            self.reply.add(self._render("unknown_number"), "unknown_number")
        self._flush()

    def _which_patient(self, text: str, intents: list[str]) -> bool:
        """True once we know who is writing on a shared phone."""
        names = [p.first_name for p in self.people]
        if self.conv.expected(self.now) == "which_patient":
            choice = parse_choice(text, options=names)
            if choice is not None:
                self.patient = self.people[choice]
                self.conv.patient_id = self.patient.id
                self.msg.patient_id = self.patient.id
                self.lang = self.patient.language if self.cls.language != "es" else "es"
                return True
        pending = self._pending_intents() if self.conv.awaiting == "which_patient" else []
        keep = [i for i in intents if i != "unknown"] or pending
        self.conv.expect("which_patient", self.now, intents=keep)
        self.reply.add(self._render("which_patient", names=names), "which_patient")
        return False

    def _pending_intents(self) -> list[str]:
        return list((self.conv.awaiting_data or {}).get("intents") or [])

    # --- verification ------------------------------------------------------------------------
    def _verified(self) -> bool:
        if self.settings.verification == "none":
            return True
        return self.conv.is_verified(self.patient.id if self.patient else None, self.now)

    def _ask_verification(self, intents: list[str]) -> None:
        self.conv.expect("dob", self.now, intents=intents)
        self.reply.add(self._render("verify_ask", first_name=self.patient.first_name), "verify_ask")

    def _verification_answer(self, text: str, intents: list[str]) -> tuple[bool, list[str]]:
        """(handled, intents to answer now)."""
        dob = parse_dob(text)
        pending = self._pending_intents()
        if dob is None:
            asks_facts = [i for i in intents if i in answers.FACT_INTENTS]
            if asks_facts:  # a new question while we wait: remember it, ask again
                self._ask_verification(list(dict.fromkeys([*pending, *asks_facts])))
                return True, []
            if all(i == "unknown" for i in intents):
                self.reply.add(self._render("verify_format"), "verify_format")
                return True, []
            return False, intents  # "agent", "thanks", ...: answer it, keep waiting
        if dob == self.patient.date_of_birth:
            self.conv.verified_patient_id = self.patient.id
            self.conv.verified_until = self.now + timedelta(
                days=self.settings.verification_ttl_days
            )
            self.conv.failed_verifications = 0
            self.conv.clear_expectation()
            self.msg.body = "[date of birth]"  # never kept, never echoed
            self.reply.add(self._render("verify_ok"), "verify_ok")
            return False, pending or ["next_steps"]
        self.msg.body = "[date of birth]"
        self.conv.failed_verifications += 1
        tries_left = MAX_DOB_TRIES - self.conv.failed_verifications
        if tries_left <= 0:
            self.conv.locked_at = self.now
            self.conv.clear_expectation()
            self._handoff(Reason.VERIFICATION_LOCKED, "three wrong dates of birth")
            self.reply.add(self._render("verify_locked"), "verify_locked")
        else:
            self.reply.add(self._render("verify_retry", tries_left=tries_left), "verify_retry")
        return True, []

    # --- refills -----------------------------------------------------------------------------
    def _refill_answer(self, text: str) -> bool:
        if is_yes(text) or self.inbound.intent_hint == "yes":
            # No date of birth needed: asking for a refill discloses nothing, and the provider
            # reviews every request.
            self.conv.clear_expectation()
            self._request_refill()
            self.reply.add(self._render("refill_requested"), "refill_requested")
            return True
        if is_no(text) or self.inbound.intent_hint == "no":
            self.conv.clear_expectation()
            self.reply.add(self._render("refill_declined"), "refill_declined")
            return True
        self.conv.clear_expectation()
        return False

    def _expected_answer(self, expected: str | None, text: str) -> bool:
        if expected == "refill_confirm":
            return self._refill_answer(text)
        if expected == "appointment_reply":
            return self._appointment_answer(text)
        return False

    def _appointment_answer(self, text: str) -> bool:
        """C / R after an appointment reminder."""
        # the raw words: the normaliser reads SMS shorthand ("r" = "are"), which is not meant here
        word = re.sub(r"[^\w\s]", "", text).strip().lower()
        appointment_id = (self.conv.awaiting_data or {}).get("appointment_id")
        if word in CONFIRM_WORDS or is_yes(text):
            self.conv.clear_expectation()
            snap = snapshot.build(self.session, self.patient, self.now)
            appt = next((a for a in snap.appointments if a.source_id == appointment_id), None)
            timeline.record(
                self.session, self.patient.id, kind=timeline.EntryKind.STATE_CHANGE,
                occurred_at=self.now, summary=f"patient confirmed appointment {appointment_id} "
                f"by {self.inbound.channel}", entity_type="appointment",
                entity_source_id=appointment_id,
            )  # fmt: skip
            self.reply.add(
                self._render("appointment_confirmed", appt=appt), "appointment_confirmed"
            )
            return True
        if word in RESCHEDULE_WORDS:
            self.conv.clear_expectation()
            self._handoff(Reason.RESCHEDULE, f"asked to reschedule appointment {appointment_id}")
            self.reply.add(self._render("reschedule", eta=self._eta()), "reschedule")
            return True
        return False

    def _request_refill(self) -> Refill:
        snap = snapshot.build(self.session, self.patient, self.now)
        rx = snap.next_refill_prescription or (
            snap.prescriptions[0] if snap.prescriptions else None
        )
        refill = Refill(
            source_id=f"bot-{uuid.uuid4().hex[:16]}",
            patient_id=self.patient.id,
            prescription_source_id=rx.source_id if rx else "",
            status=RefillStatus.REQUESTED,
            due_date=snap.next_refill_date,
            origin="patient",
            status_since=self.now,
            last_event_at=self.now,
        )
        self.session.add(refill)
        self.session.flush()
        timeline.record(
            self.session,
            self.patient.id,
            kind=timeline.EntryKind.REFILL_REQUESTED,
            occurred_at=self.now,
            summary=f"patient asked for a refill by {self.inbound.channel}",
            entity_type="refill",
            entity_source_id=refill.source_id,
        )
        return refill

    # --- answers -----------------------------------------------------------------------------
    def _answer(self, intents: list[str], text: str) -> None:
        intents = list(dict.fromkeys(intents))
        if self.conv.locked_at is not None and any(i in answers.FACT_INTENTS for i in intents):
            self.reply.add(self._render("verify_locked"), "verify_locked")
            return
        wants_person = [i for i in intents if i in ("human", "clinical_question", "emergency")]
        if any(i in answers.FACT_INTENTS for i in intents) and not self._verified():
            if wants_person:  # a person was asked for: staff verify and answer the rest
                intents = [i for i in intents if i not in answers.FACT_INTENTS]
            else:
                self._ask_verification([i for i in intents if i not in ("greeting", "thanks")])
                return
        if intents == ["unknown"]:
            self.conv.unknown_streak += 1
            if self.conv.unknown_streak >= 2:
                self.conv.unknown_streak = 0
                self._handoff(Reason.NOT_UNDERSTOOD, text)
                self.reply.add(self._render("unknown_handoff", eta=self._eta()), "unknown_handoff")
            else:
                self.reply.add(self._render("unknown"), "unknown")
                self.reply.buttons = MENU_BUTTONS[self.lang]
            return
        self.conv.unknown_streak = 0
        substantive = [i for i in intents if i not in ("greeting", "thanks", "unknown")]
        if not substantive:
            name = intents[0] if intents[0] in ("greeting", "thanks") else "greeting"
            first = self.patient.first_name if self.patient else None
            self.reply.add(self._render(name, first_name=first), name)
            if name == "greeting":
                self.reply.buttons = MENU_BUTTONS[self.lang]
            return
        snap = None
        for intent in substantive:
            if intent in answers.FACT_ANSWERS or intent == "update_payment_method":
                snap = snap or snapshot.build(self.session, self.patient, self.now)
            self._answer_one(intent, snap, text)

    def _answer_one(self, intent: str, snap, text: str) -> None:  # noqa: ANN001
        if intent in answers.FACT_ANSWERS:
            answer = answers.FACT_ANSWERS[intent](snap)
            self.reply.add(self._render(answer.template, **answer.context), answer.template)
            if answer.offer_refill:
                self.conv.expect("refill_confirm", self.now)
                self.reply.buttons = YES_NO_BUTTONS[self.lang]
            if intent in BLOCKED_ASKS and answers.is_blocked(snap):
                self._handoff(Reason.BLOCKED, f"patient asked about a blocked prescription: {text}")
            return
        if intent == "update_payment_method":
            answer = answers.update_payment_method(snap if self._verified() else None)
            self.reply.add(self._render(answer.template, **answer.context), answer.template)
            return
        if intent in HANDOFF_INTENTS:
            self._handoff(HANDOFF_INTENTS[intent], text)
            self.reply.add(self._render(intent, eta=self._eta()), intent)
            return
        if intent == "help":
            self.reply.add(self._render("help"), "help")
            self.reply.buttons = MENU_BUTTONS[self.lang]

    # --- output ------------------------------------------------------------------------------
    def _eta(self):  # noqa: ANN202
        tz = self.patient.timezone if self.patient else None
        return estimate(self.settings, self.now, tz)

    def _render(self, name: str, **ctx) -> str:
        ctx.setdefault("first_name", self.patient.first_name if self.patient else None)
        ctx.setdefault("tz", self.patient.timezone if self.patient else None)
        return self.engine.render(name, self.lang, self.inbound.channel, **ctx)

    def _flush(self) -> None:
        if not self.reply.parts:
            return
        separator = "\n\n" if self.inbound.channel == "telegram" else "\n"
        body = separator.join(self.reply.parts)
        message = outbox.enqueue(
            self.session,
            channel=self.inbound.channel,
            address=self.inbound.address,
            body=body,
            kind=Kind.SYSTEM if self.reply.templates[0] in SYSTEM_TEMPLATES else Kind.REPLY,
            conversation_id=self.conv.id,
            patient_id=self.patient.id if self.patient else None,
            template="+".join(self.reply.templates),
            language=self.lang,
            urgent=self.reply.urgent,
            buttons=self.reply.buttons if self.inbound.channel == "telegram" else [],
            handoff_id=self.turn.handoff.id if self.turn.handoff else None,
            now=self.now,
        )
        self.turn.replies.append(message)
        self.reply = _Reply()
