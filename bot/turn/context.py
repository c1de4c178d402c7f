"""What a turn knows while it runs, and what every step may do: render a message in the
patient's language, hand the conversation to staff, and write the reply to the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bot import context, handoffs, outbox
from bot.clinic import ClinicProfile
from bot.conversations import Conversation
from bot.handoffs import Handoff, Reason
from bot.hours import ResponseEstimate, estimate
from bot.inbound import Inbound
from bot.messages import Buttons, Kind, Message
from bot.turn.opening import Opening
from bot.understanding import Classification
from status import links, read_model, snapshot, timeline
from status.caregivers import Caregiver
from status.patients import Patient
from status.settings import Settings
from status.snapshot import Snapshot

if TYPE_CHECKING:
    from bot.engine import Engine

# Sent even to an address that opted out: compliance confirmations, emergency instructions and
# the possible-risk check-in.
SYSTEM_TEMPLATES = {"opt_out", "opt_in", "help_keyword", "emergency", "risk_checkin"}
# Said to a caregiver without "Update for Sofia:" (nothing of Sofia's in them).
NOT_AN_UPDATE = SYSTEM_TEMPLATES | {
    "verify_ask", "verify_retry", "verify_format", "verify_locked", "caregiver_updates_only",
    "caregiver_not_shared", "alerts_updated", "alerts_status", "handoff_ack",
}  # fmt: skip


@dataclass
class Turn:
    """What happened in one turn, for the channel and for tests."""

    inbound: Message
    replies: list[Message] = field(default_factory=list)
    classification: Classification | None = None
    handoff: Handoff | None = None
    duplicate: bool = False


@dataclass
class Reply:
    parts: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    buttons: Buttons = field(default_factory=list)
    urgent: bool = False

    def add(self, text: str, template: str) -> None:
        if text:
            self.parts.append(text)
            self.templates.append(template)


@dataclass
class TurnContext:
    engine: Engine
    clinic: ClinicProfile  # the clinic written to: its settings and wording
    session: Session
    conv: Conversation
    inbound: Inbound
    msg: Message
    cls: Classification
    people: list[Patient]
    patient: Patient | None
    lang: str
    now: datetime
    turn: Turn
    text: str  # as written, card numbers removed: read for answers to our questions
    kept: str  # as stored (no date of birth): what summaries may quote
    had_card: bool
    intents: list[str] = field(default_factory=list)
    reply: Reply = field(default_factory=Reply)
    carers: list[Caregiver] = field(default_factory=list)  # caregivers writing from this address
    own_people: list[Patient] = field(default_factory=list)  # patients whose own address it is
    opening: Opening | None = None  # what the turn read first (`opening.read`)

    @property
    def caregiver(self) -> Caregiver | None:
        """The caregiver writing, when this address looks after the patient in question (and
        is not that patient's own address)."""
        if self.patient is None or any(p.id == self.patient.id for p in self.own_people):
            return None
        return next((c for c in self.carers if c.patient_id == self.patient.id), None)

    def writer(self) -> dict[str, Any]:
        """Who wrote, for staff: the patient, or which caregiver."""
        carer = self.caregiver
        if carer is None:
            return {"kind": "patient"}
        return {"kind": "caregiver", "name": carer.name, "relation": carer.relation,
                "channel": carer.channel, "address": carer.address}  # fmt: skip

    def note_writer(self, handoff: Handoff) -> None:
        """An open hand-off says who wrote last (a caregiver writing into the patient's hand-off,
        or the patient after their caregiver) and everyone who has written into it."""
        writer = self.writer()
        packet = dict(handoff.context or {})
        before = packet.get("writer")
        if before == writer:
            return
        writers = list(packet.get("writers") or ([before] if before else []))
        if writer not in writers:
            writers.append(writer)
        handoff.context = {**packet, "writer": writer, "writers": writers}  # a new dict: saved

    def message_id(self) -> int:
        """The stored id of the patient's message (it is written by the next flush)."""
        if self.msg.id is None:
            self.session.flush()
        return self.msg.id

    def open_handoff(self) -> Handoff | None:
        """The open hand-off that may own the conversation: the patient's, or the
        conversation's (while no patient is known; one opened before the address had a patient
        becomes the patient's). Read with the conversation unless this turn
        has opened or joined one since."""
        patient_id = self.patient.id if self.patient else None
        found = self._open_by_key(patient_id)
        if found is None and patient_id is not None:
            found = self._open_by_key(None)  # opened before the address had a patient
            if found is not None:
                # it is the patient's now: the bot does not talk over it, and staff see whose
                found.patient_id = patient_id
                found.open_key = handoffs.open_key(patient_id, self.conv.id)
        return found

    def _open_by_key(self, patient_id: int | None) -> Handoff | None:
        key = handoffs.open_key(patient_id, self.conv.id)
        first = self.opening
        if first is not None and self.turn.handoff is None and key in first.keys_read:
            return first.open_handoffs.get(key)
        return handoffs.find_open(self.session, patient_id, self.conv.id)

    def linked_since(self, patient: Patient, since: datetime) -> bool:
        """Whether a status-page link was made for the patient (or for the caregiver writing)
        since then; read with the conversation when it asked for the same time."""
        carer = self.caregiver
        carer_id = carer.id if carer else None
        first = self.opening
        if first is not None and first.since == since:
            known = first.linked_since.get((patient.id, carer_id))
            if known is not None:
                return known
        return links.issued_since(
            self.session, patient.clinic_id, patient.id, since, caregiver_id=carer_id
        )

    def snapshot(self, patient: Patient) -> Snapshot:
        """The patient's snapshot now, from the read-model row read with the conversation
        unless this transaction has rewritten it since."""
        first = self.opening
        stored = None
        if first is not None and patient.id not in read_model.refreshed_in(self.session):
            stored = first.stored.get(patient.id)
        return snapshot.build(self.session, patient, self.now, stored=stored)

    @property
    def settings(self) -> Settings:
        return self.clinic.settings

    def say(self, template: str, **ctx: Any) -> None:
        """Add a rendered message to this turn's reply."""
        self.reply.add(self.render(template, **ctx), template)

    def render(self, name: str, **ctx: Any) -> str:
        ctx.setdefault("first_name", self.patient.first_name if self.patient else None)
        ctx.setdefault("tz", self.patient.timezone if self.patient else None)
        carer = self.caregiver
        ctx.setdefault("caregiver", carer.name if carer else None)
        return self.clinic.renderer.render(name, self.lang, self.inbound.channel, **ctx)

    def buttons(self, name: str) -> Buttons:
        return self.clinic.renderer.buttons(name, self.lang)

    def eta(self) -> ResponseEstimate:
        tz = self.patient.timezone if self.patient else None
        return estimate(self.settings, self.now, tz)

    def pending_intents(self) -> list[str]:
        return list((self.conv.awaiting_data or {}).get("intents") or [])

    def handoff(self, reason: Reason, summary: str) -> Handoff:
        patient = self.patient
        writer = self.writer()
        if writer["kind"] == "caregiver":
            summary = f"caregiver {writer['name']} ({writer['relation']}): {summary}"
        handoff, created = handoffs.open_or_add(
            self.session,
            clinic_id=self.clinic.id,
            reason=reason,
            now=self.now,
            patient_id=patient.id if patient else None,
            conversation_id=self.conv.id,
            summary=summary[:300],
            context=lambda: {
                **context.build(self.session, patient, self.conv, self.now),
                "writer": writer,
            },
            settings=self.settings,
        )
        self.msg.handoff_id = handoff.id
        self.turn.handoff = handoff
        if not created:
            self.note_writer(handoff)
        if patient is not None:
            timeline.record(
                self.session, patient.id, kind=timeline.EntryKind.HANDOFF,
                occurred_at=self.now, summary=f"hand-off {'opened' if created else 'updated'}: "
                f"{reason.value}", entity_type="handoff", entity_source_id=str(handoff.id),
            )  # fmt: skip
        for listener in self.engine.handoff_listeners:
            listener(self.session, handoff, reason, created)
        return handoff

    def flush(self) -> None:
        """Write what the turn has to say as one outbound message."""
        if not self.reply.parts:
            return
        separator = "\n\n" if self.inbound.channel == "telegram" else "\n"
        body = separator.join(self.reply.parts)
        if self.caregiver is not None and not set(self.reply.templates) <= NOT_AN_UPDATE:
            body = f"{self.render('caregiver_prefix')} {body}"  # "Update for Sofia: ..."
        message = outbox.enqueue(
            self.session,
            flush=False,  # the turn's rows are written together (`TurnRunner.run_batch`)
            clinic_id=self.clinic.id,
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
        self.reply = Reply()


# A step reads the turn and says whether it finished it; a step after identity also gets the
# patient, who is known by then.
Step = Callable[[TurnContext], bool]
PatientStep = Callable[[TurnContext, Patient], bool]
