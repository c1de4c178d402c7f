"""Reacting to applied state changes, and what happens around a proactive send."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot import context, handoffs
from bot.handoffs import Reason
from bot.messages import Kind, Message
from bot.proactive import rules
from bot.proactive.policy import Policy
from status import timeline
from status.db import utcnow
from status.events.apply import Change
from status.patients import Patient
from status.settings import Settings

log = logging.getLogger("patient_status.proactive")

# Older news is not news: a backfill of last month's events texts nobody.
MAX_AGE = timedelta(hours=24)


class Notifier:
    def __init__(
        self,
        settings: Settings,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.policy = policy or Policy(settings)
        self.clock = clock

    def on_changes(
        self, session: Session, changes: list[Change], now: datetime | None = None
    ) -> None:
        """The hook `POST /events` and `ingest` run in their transaction."""
        now = now or self.clock()
        for change in changes:
            if now - change.occurred_at > MAX_AGE:
                continue
            item = (
                self.policy.item(session, change.clinic_id, change.entity, change.source_id)
                if change.entity != "patient"
                else None
            )
            rx_id = getattr(item, "prescription_source_id", None)
            notice = rules.notice_for(change, rx_id)
            if notice is None:
                if rules.silences(change):
                    key = rules.item_key(change.entity, change.source_id, rx_id)
                    self.policy.cancel_pending(session, change.patient_id, key, now)
                continue
            if notice.staff_first:
                patient = session.get(Patient, change.patient_id)
                handoffs.open_or_add(
                    session, clinic_id=change.clinic_id, reason=Reason.PRESCRIPTION_DENIED,
                    now=now, patient_id=change.patient_id, conversation_id=None,
                    summary=f"prescription {change.source_id} denied: call the patient",
                    settings=self.policy.profiles.get(session, change.clinic_id).settings,
                    context=lambda p=patient: context.build(session, p, None, now),
                )  # fmt: skip
            self.policy.notify(session, notice, now, item=item)

    # --- dispatcher hooks ----------------------------------------------------------------------
    def record_told(self, session: Session, message: Message) -> None:
        """Every proactive message sent is on the patient's timeline: staff see what they know."""
        if message.kind != Kind.PROACTIVE or message.patient_id is None:
            return
        about = (message.data or {}).get("template") or message.template or "update"
        timeline.record(
            session, message.patient_id, kind=timeline.EntryKind.MESSAGE_SENT,
            occurred_at=message.sent_at or utcnow(),
            summary=f"told the patient by {message.channel}: {about.removeprefix('notify_')}",
            entity_type=(message.data or {}).get("entity"),
            entity_source_id=(message.data or {}).get("source_id"),
        )  # fmt: skip

    def fall_back(self, session: Session, message: Message, result) -> None:  # noqa: ANN001
        """A Telegram chat that blocked the bot: the same news by SMS, where consented."""
        if message.kind != Kind.PROACTIVE or message.channel != "telegram":
            return
        if result.permanent_reason not in ("blocked", "chat_not_found"):
            return
        patient = session.get(Patient, message.patient_id) if message.patient_id else None
        if patient is None:
            return
        patient.preferred_channel = "sms"
        route = self.policy.route(session, patient, exclude="telegram")
        if route is None:
            return
        spec = message.data or {}
        now = self.clock()
        settings = self.policy.clinic(session, patient).settings
        if spec.get("template") == "notify_digest":
            body = self.policy.render_digest(
                session, patient, spec.get("items", []), route.channel, now
            )
        else:
            body = self.policy.render(session, patient, spec, route.channel, now)
        from bot import outbox

        outbox.enqueue(
            session, clinic_id=patient.clinic_id, channel=route.channel, address=route.address,
            body=body, kind=Kind.PROACTIVE, conversation_id=route.conversation.id,
            patient_id=patient.id, template=message.template, language=patient.language,
            urgent=message.urgent, coalesce_key=message.coalesce_key, data=spec,
            not_before=(
                self.policy.after_quiet_hours(patient, now, settings) if not message.urgent else now
            ),
            now=now,
        )  # fmt: skip
        log.info("telegram blocked: fell back to sms", extra={"message_id": message.id})
