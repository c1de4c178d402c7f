"""One conversational turn: an inbound message in, replies written to the outbox.

The steps live in `bot/turn/`, one module each, and `bot.turn.steps.run` lists them in the
order the product's safety rules require: STOP/START/HELP first, then emergencies, then staff
ownership (an open hand-off silences the bot), then identity and verification, then answers
from the live snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot import messages
from bot.clinic import Profiles
from bot.conversations import Conversation
from bot.handoffs import Handoff, Reason
from bot.inbound import Inbound
from bot.messages import Direction, Kind, Message
from bot.render import Renderer
from bot.turn import opening, status_link
from bot.turn.context import Turn, TurnContext
from bot.turn.steps import run
from bot.understanding import Classification, classify_remembered
from bot.understanding.redact import redact_card_numbers, redact_dates_of_birth
from status import caregivers, metrics
from status.db import utcnow
from status.patients import Patient
from status.settings import Settings

__all__ = ["Engine", "Turn"]

log = logging.getLogger("patient_status.turn")

NOTHING_SAID = Classification(intent="unknown", intents=["unknown"], confidence=0.0, language="en")
SHARED_PHONE_MEMORY = timedelta(hours=1)


class Engine:
    def __init__(
        self,
        settings: Settings,
        renderer: Renderer | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self.settings = settings  # the deployment's; a turn reads its clinic's (`TurnContext`)
        self.renderer = renderer or Renderer(settings)
        self.profiles = profiles or Profiles(settings, self.renderer)
        # Listeners told of each new or escalated hand-off (staff chat alerts, metrics).
        self.handoff_listeners: list[Callable[[Session, Handoff, Reason, bool], None]] = []

    # --- entry point ---------------------------------------------------------------------------
    def handle(self, session: Session, inbound: Inbound) -> Turn:
        started = time.perf_counter()
        now = inbound.received_at or utcnow()
        clinic = self.profiles.get(session, inbound.clinic_id)
        first = opening.read(
            session, inbound.clinic_id, inbound.channel, inbound.address,
            since=now - status_link.OFFER_EVERY,
        )  # fmt: skip
        conv, own_people, carers = first.conv, first.own_people, first.carers
        text, had_card = redact_card_numbers(inbound.text or "")
        # What is kept (rows, hand-off reasons, the console): never a date of birth. The raw
        # text is read once here, for verification, and goes no further.
        kept = redact_dates_of_birth(text, now.date())
        if inbound.intent_hint:
            cls = Classification(
                intent=inbound.intent_hint, intents=[inbound.intent_hint], confidence=1.0,
                language=conv.language or "en",
            )  # fmt: skip
        else:
            cls = classify_remembered(text) if text.strip() else NOTHING_SAID
        people = own_people + self._cared_for(session, carers, own_people)
        patient = self._current_patient(conv, people, now)
        if inbound.about_patient_id is not None:  # written on a patient's status page
            patient = next((p for p in people if p.id == inbound.about_patient_id), patient)
        msg = Message(
            clinic_id=inbound.clinic_id,
            conversation_id=conv.id,
            patient_id=patient.id if patient else None,
            direction=Direction.IN,
            kind=Kind.REPLY,
            channel=inbound.channel,
            address=inbound.address,
            body=kept,
            intent=cls.intent,
            intents=list(cls.intents),
            confidence=round(cls.confidence, 3),
            provider_id=inbound.provider_id,
            media=list(inbound.media),
            created_at=now,
            **messages.OUTBOUND_DEFAULTS,
        )
        session.add(msg)  # written by the next flush: the turn's, or its batch's (`run_batch`)
        conv.last_inbound_at = now
        lang = self._language(cls, patient, conv)
        conv.language = lang
        turn = Turn(inbound=msg, classification=cls)
        metrics.count_on_commit(
            session, metrics.INBOUND.labels(inbound.channel, cls.intent, clinic.slug)
        )
        run(
            TurnContext(
                engine=self, clinic=clinic, session=session, conv=conv, inbound=inbound, msg=msg,
                cls=cls, people=people, patient=patient, lang=lang, now=now, turn=turn, text=text,
                kept=kept, had_card=had_card, intents=list(cls.intents), carers=carers,
                own_people=own_people, opening=first,
            )
        )  # fmt: skip
        log.info(
            "turn",
            extra={
                "channel": inbound.channel,
                "conversation_id": conv.id,
                "intent": cls.intent,
                "confidence": round(cls.confidence, 3),
                "replies": len(turn.replies),
                "handoff_id": turn.handoff.id if turn.handoff else None,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return turn

    @staticmethod
    def _cared_for(
        session: Session, carers: list[caregivers.Caregiver], own: list[Patient]
    ) -> list[Patient]:
        """The patients the caregivers at this address look after (beyond its own)."""
        known = {p.id for p in own}
        found = []
        for carer in carers:
            if carer.patient_id not in known:
                person = session.get(Patient, carer.patient_id)
                if person is not None:
                    known.add(person.id)
                    found.append(person)
        return found

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

    def render(self, name: str, lang: str, channel: str, **context: Any) -> str:
        """A message in the environment's (default) clinic's words; a turn renders its own
        clinic's (`TurnContext.render`)."""
        return self.renderer.render(name, lang, channel, **context)
