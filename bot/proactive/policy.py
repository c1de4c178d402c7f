"""When and where a proactive message goes: consent, channel, coalescing, quiet hours, caps.

Every decision is made when the message is written (in the transaction of the change that
caused it) and stored on the outbox row: `not_before` for coalescing windows and quiet hours,
`coalesce_key` so a newer state replaces an unsent older one, `data` for what it is about.
Nothing is dropped: over the frequency cap, messages merge into one digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlalchemy.orm import Session

from bot import conversations, outbox
from bot import messages as message_queries
from bot.clinic import ClinicProfile, Profiles
from bot.conversations import Conversation
from bot.messages import Kind, Message, OutStatus
from bot.proactive.rules import Notice
from bot.render import Renderer
from status import alerts, caregivers, items, links, shipments, snapshot, tasks
from status.events.apply import SPECS
from status.patients import Patient
from status.prescriptions import PrescriptionStatus
from status.settings import Settings
from status.snapshot import blocking_task

log = logging.getLogger("patient_status.proactive")

# Proactive SMS that leave out what the patient needs to act (the medicine, the charge): they
# carry the status-page link, at most once a day.
DETAILS_TEMPLATES = {"notify_rx_blocked", "notify_payment_failed", "notify_subscription_past_due"}
DETAILS_EVERY = timedelta(hours=24)
ENTITY_MODELS = {spec.entity: spec.model for spec in SPECS.values()}


class _Lazy:
    """Builds its value on first attribute access (templates that never touch it pay nothing)."""

    def __init__(self, build: Callable[[], object]) -> None:
        self._build = build
        self._value: object = None

    def __getattr__(self, name: str) -> Any:
        if self._value is None:
            self._value = self._build()
        return getattr(self._value, name)


@dataclass(frozen=True)
class Route:
    channel: str
    address: str
    conversation: Conversation


def _coalesce_key(patient_id: int, key: str) -> str:
    return f"{patient_id}:{key}"


class Policy:
    def __init__(
        self,
        settings: Settings,
        renderer: Renderer | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self.settings = settings  # the deployment's; each patient is told in their clinic's way
        self.profiles = profiles or Profiles(settings, renderer)
        self.renderer = self.profiles.renderer

    def clinic(self, session: Session, patient: Patient) -> ClinicProfile:
        return self.profiles.get(session, patient.clinic_id)

    # --- where ---------------------------------------------------------------------------------
    def route(self, session: Session, patient: Patient, exclude: str | None = None) -> Route | None:
        """Telegram if linked and preferred, else SMS with consent. None: nobody to tell.

        STOP on any channel stops proactive messages on every channel (of the patient's clinic:
        a STOP to one brand's number is not a STOP to another's).
        """
        addresses = [patient.phone] + (
            [patient.telegram_chat_id] if patient.telegram_chat_id else []
        )
        clinic_id = patient.clinic_id
        convs = conversations.at_addresses(
            session, clinic_id, addresses, ("sms", "simulator", "telegram")
        )
        if any(conv is not None and conv.opted_out for conv in convs.values()):
            return None
        telegram = convs.get(("telegram", patient.telegram_chat_id or ""))
        if (
            exclude != "telegram"
            and patient.preferred_channel == "telegram"
            and patient.telegram_chat_id
            and self.clinic(session, patient).settings.telegram_enabled
            and not (telegram is not None and telegram.bad_address)
        ):
            conv = telegram or conversations.get_or_create(
                session, clinic_id, "telegram", patient.telegram_chat_id
            )
            return Route("telegram", patient.telegram_chat_id, conv)
        sms = convs.get(("sms", patient.phone))
        if exclude != "sms" and patient.sms_consent and not (sms is not None and sms.bad_address):
            conv = sms or conversations.get_or_create(session, clinic_id, "sms", patient.phone)
            return Route("sms", patient.phone, conv)
        return None

    # --- when ----------------------------------------------------------------------------------
    def after_quiet_hours(
        self, patient: Patient, at: datetime, settings: Settings | None = None
    ) -> datetime:
        """`at`, or the end of the quiet hours (the clinic's `settings`) in the patient's zone."""
        window = (settings or self.settings).quiet_window
        if window is None:
            return at
        start, end = window
        zone = ZoneInfo(patient.timezone)
        local = at.astimezone(zone)
        t = local.time()
        quiet = (t >= start or t < end) if start > end else (start <= t < end)
        if not quiet:
            return at
        day = local.date() if t < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=zone)

    def _next_morning(self, patient: Patient, after: datetime, settings: Settings) -> datetime:
        zone = ZoneInfo(patient.timezone)
        window = settings.quiet_window
        morning = window[1] if window else time(9, 0)
        day = after.astimezone(zone).date() + timedelta(days=1)
        return datetime.combine(day, morning, tzinfo=zone)

    # --- caps ----------------------------------------------------------------------------------
    def cap_slot(
        self, session: Session, patient: Patient, at: datetime, conversation_id: int | None = None
    ) -> datetime | None:
        """None when a message at `at` is within the clinic's caps, else the earliest time it
        would be. Counted for the patient, or for `conversation_id` (a caregiver's) when given;
        days are the patient's."""
        settings = self.clinic(session, patient).settings
        zone = ZoneInfo(patient.timezone)
        local_day: date = at.astimezone(zone).date()
        day_start = datetime.combine(local_day, time(0), tzinfo=zone)
        day_end = day_start + timedelta(days=1)
        today = message_queries.proactive_count_between(
            session, patient.id, day_start, day_end, conversation_id=conversation_id
        )
        week_times = message_queries.proactive_times_since(
            session, patient.id, at - timedelta(days=7), conversation_id=conversation_id
        )
        slot = None
        if today >= settings.daily_message_cap:
            slot = self._next_morning(patient, at, settings)
        if len(week_times) >= settings.weekly_message_cap:
            # when the oldest message in the week leaves the window
            overflow = len(week_times) - settings.weekly_message_cap
            week_slot = week_times[overflow] + timedelta(days=7)
            slot = max(slot or week_slot, week_slot)
        return slot

    # --- what ----------------------------------------------------------------------------------
    def item(self, session: Session, clinic_id: int, entity: str, source_id: str) -> Any:
        return items.by_source_id(session, clinic_id, ENTITY_MODELS[entity], source_id)

    def context(
        self,
        session: Session,
        patient: Patient,
        spec: dict[str, Any],
        now: datetime,
        item: Any = None,
    ) -> dict[str, Any]:
        """What a notice's template may use. The whole snapshot is built only if the template
        reads it: most need just the item, its shipment or its task."""
        entity = spec.get("entity")
        if item is None and entity:
            item = self.item(session, patient.clinic_id, entity, spec["source_id"])
        snap = _Lazy(lambda: snapshot.build(session, patient, now))
        ship = item if entity == "shipment" else None
        task = item if entity == "task" else None
        if entity == "prescription" and item is not None:
            ship = shipments.latest_for_prescription(
                session, patient.clinic_id, patient.id, item.source_id
            )
            if item.status == PrescriptionStatus.BLOCKED:
                task = blocking_task(item, tasks.open_for(session, patient.id))
        return {
            "snap": snap, "item": item, "ship": ship, "task": task,
            "first_name": patient.first_name, "tz": patient.timezone,
            "extra": spec.get("extra") or {},
        }  # fmt: skip

    def render(
        self,
        session: Session,
        patient: Patient,
        spec: dict[str, Any],
        channel: str,
        now: datetime,
        item: Any = None,
    ) -> str:
        ctx = self.context(session, patient, spec, now, item)
        renderer = self.clinic(session, patient).renderer
        text = Markup(renderer.render(spec["template"], patient.language, channel, **ctx))
        return renderer.render(
            "notify_wrapper", patient.language, channel, text=text, first_name=patient.first_name
        )

    def render_digest(
        self,
        session: Session,
        patient: Patient,
        items: list[dict[str, Any]],
        channel: str,
        now: datetime,
    ) -> str:
        renderer = self.clinic(session, patient).renderer
        texts = [
            Markup(
                renderer.render(
                    item["template"],
                    patient.language,
                    channel,
                    **self.context(session, patient, item, now),
                )
            )  # fmt: skip
            for item in items
        ]
        texts, counts = _tallied(texts)
        return renderer.render(
            "notify_digest", patient.language, channel, texts=texts, counts=counts,
            first_name=patient.first_name,
        )  # fmt: skip

    # --- the decision ----------------------------------------------------------------------------
    def pending(self, session: Session, patient_id: int, key: str) -> list[Message]:
        return message_queries.pending_with_key(session, _coalesce_key(patient_id, key))

    def cancel_pending(
        self, session: Session, patient_id: int, key: str, now: datetime
    ) -> list[Message]:
        cancelled = self.pending(session, patient_id, key)
        for message in cancelled:
            message.status = OutStatus.CANCELLED
            message.error_code = "superseded"
            message.status_updated_at = now
        return cancelled

    def notify(
        self,
        session: Session,
        notice: Notice,
        now: datetime,
        *,
        exclude: str | None = None,
        item: Any = None,  # the item, when the caller has it loaded already
    ) -> Message | None:
        patient = session.get(Patient, notice.patient_id)
        if patient is None:
            return None
        if exclude is None:
            self.tell_caregivers(session, patient, notice, now, item)
        if alerts.suppressed(
            session, patient.clinic_id, patient.id, notice.template, notice.urgent
        ):
            log.info("not told: topic turned off", extra={"patient_id": patient.id})
            return None
        route = self.route(session, patient, exclude=exclude)
        if route is None:
            log.info("not told: no channel with consent", extra={"patient_id": patient.id})
            return None
        settings = self.clinic(session, patient).settings
        superseded = self.cancel_pending(session, patient.id, notice.key, now)
        if notice.delay_seconds is not None:
            delay = notice.delay_seconds
        else:  # urgent news is not held to gather later changes
            delay = 0 if notice.urgent else settings.notify_delay_seconds
        # The coalescing window runs from the first change, so a stream of changes cannot
        # postpone the message for ever.
        not_before = min(
            [m.not_before for m in superseded if m.not_before] + [now + timedelta(seconds=delay)]
        )
        spec = {
            "key": notice.key,
            "template": notice.template,
            "entity": notice.entity,
            "source_id": notice.source_id,
            "extra": dict(notice.extra),
        }
        if not notice.urgent:
            not_before = self.after_quiet_hours(patient, not_before, settings)
            slot = self.cap_slot(session, patient, not_before)
            if slot is not None:
                return self._add_to_digest(
                    session, patient, route, spec,
                    self.after_quiet_hours(patient, slot, settings), now,
                )  # fmt: skip
        body = self.render(session, patient, spec, route.channel, now, item)
        if route.channel == "sms" and notice.template in DETAILS_TEMPLATES:
            body = self._with_details(session, patient, body, now)
        return outbox.enqueue(
            session, clinic_id=patient.clinic_id, channel=route.channel, address=route.address,
            body=body, kind=Kind.PROACTIVE, conversation_id=route.conversation.id,
            patient_id=patient.id, template=notice.template, language=patient.language,
            urgent=notice.urgent,
            coalesce_key=_coalesce_key(patient.id, notice.key), not_before=not_before,
            data=spec, expires_at=notice.expires_at, now=now,
        )  # fmt: skip

    def _with_details(self, session: Session, patient: Patient, body: str, now: datetime) -> str:
        """News the patient must act on, by SMS, carries the status-page link (once a day)."""
        profile = self.clinic(session, patient)
        base = profile.settings.public_base_url
        if not base or links.issued_since(
            session, patient.clinic_id, patient.id, now - DETAILS_EVERY
        ):
            return body
        issued = links.issue(session, patient, hours=profile.settings.status_link_hours, now=now,
                             created_by="proactive")  # fmt: skip
        line = profile.renderer.render("details_link", patient.language, "sms",
                                       url=links.url(base, issued.token))  # fmt: skip
        return f"{body}\n{line}"

    def tell_caregivers(
        self, session: Session, patient: Patient, notice: Notice, now: datetime, item: Any = None
    ) -> list[Message]:
        """The same news for each caregiver who receives its topic and has not said STOP (to
        this clinic), told whose update it is, from the clinic's own number or bot and in its
        wording. Quiet hours and the clinic's caps hold for each caregiver as for a patient,
        counted on the caregiver's own conversation: news over a cap waits in one digest."""
        topic = alerts.topic_of(notice.template)
        settings = self.clinic(session, patient).settings
        sent = []
        for carer in caregivers.for_patient(session, patient.clinic_id, patient.id):
            if not carer.receives(topic):
                continue
            conv = conversations.get_or_create(
                session, patient.clinic_id, carer.channel, carer.address
            )
            if conv.opted_out or conv.bad_address:
                continue
            if carer.channel == "telegram" and not settings.telegram_enabled:
                continue
            sent.append(self._tell_caregiver(session, patient, carer, conv, notice, now, item))
        return sent

    def _tell_caregiver(
        self,
        session: Session,
        patient: Patient,
        carer: caregivers.Caregiver,
        conv: Conversation,
        notice: Notice,
        now: datetime,
        item: Any = None,
    ) -> Message:
        settings = self.clinic(session, patient).settings
        key = f"cg{carer.id}:{notice.key}"
        self.cancel_pending(session, patient.id, key, now)
        spec: dict[str, Any] = {
            "key": notice.key, "template": notice.template, "entity": notice.entity,
            "source_id": notice.source_id, "extra": dict(notice.extra),
            "caregiver_id": carer.id, "patient_id": patient.id,
        }  # fmt: skip
        delay = 0 if notice.urgent else settings.notify_delay_seconds
        not_before = now + timedelta(seconds=delay)
        if not notice.urgent:
            not_before = self.after_quiet_hours(patient, not_before, settings)
            slot = self.cap_slot(session, patient, not_before, conversation_id=conv.id)
            if slot is not None:
                return self._add_to_caregiver_digest(
                    session, patient, carer, conv, spec,
                    self.after_quiet_hours(patient, slot, settings), now,
                )  # fmt: skip
        renderer = self.clinic(session, patient).renderer
        ctx = self.context(session, patient, spec, now, item)
        text = Markup(renderer.render(spec["template"], patient.language, carer.channel, **ctx))
        body = renderer.render(
            "notify_caregiver", patient.language, carer.channel, text=text,
            first_name=patient.first_name,
        )  # fmt: skip
        return outbox.enqueue(
            session, clinic_id=patient.clinic_id, channel=carer.channel, address=carer.address,
            body=body, kind=Kind.PROACTIVE, conversation_id=conv.id, patient_id=None,
            template=notice.template, language=patient.language, urgent=notice.urgent,
            coalesce_key=_coalesce_key(patient.id, key), not_before=not_before, data=spec,
            expires_at=notice.expires_at, now=now,
        )  # fmt: skip

    def _add_to_caregiver_digest(
        self,
        session: Session,
        patient: Patient,
        carer: caregivers.Caregiver,
        conv: Conversation,
        spec: dict[str, Any],
        slot: datetime,
        now: datetime,
    ) -> Message:
        """Over the caregiver's cap: the news joins their one pending digest about the patient."""
        key = f"cg{carer.id}:digest"
        existing = self.cancel_pending(session, patient.id, key, now)
        gathered = [
            i for m in existing for i in (m.data or {}).get("items", []) if i["key"] != spec["key"]
        ]
        gathered.append(spec)
        not_before = min([m.not_before for m in existing if m.not_before] + [slot])
        renderer = self.clinic(session, patient).renderer
        texts = [
            Markup(renderer.render(i["template"], patient.language, carer.channel,
                                   **self.context(session, patient, i, now)))
            for i in gathered
        ]  # fmt: skip
        texts, counts = _tallied(texts)
        body = renderer.render(
            "notify_caregiver_digest", patient.language, carer.channel, texts=texts,
            counts=counts, first_name=patient.first_name,
        )  # fmt: skip
        return outbox.enqueue(
            session, clinic_id=patient.clinic_id, channel=carer.channel, address=carer.address,
            body=body, kind=Kind.PROACTIVE, conversation_id=conv.id, patient_id=None,
            template="notify_caregiver_digest", language=patient.language,
            coalesce_key=_coalesce_key(patient.id, key), not_before=not_before,
            data={"key": key, "template": "notify_caregiver_digest", "items": gathered,
                  "caregiver_id": carer.id, "patient_id": patient.id},
            now=now,
        )  # fmt: skip

    def _add_to_digest(
        self,
        session: Session,
        patient: Patient,
        route: Route,
        spec: dict[str, Any],
        slot: datetime,
        now: datetime,
    ) -> Message:
        existing = self.cancel_pending(session, patient.id, "digest", now)
        items = [
            i for m in existing for i in (m.data or {}).get("items", []) if i["key"] != spec["key"]
        ]
        items.append(spec)
        not_before = min([m.not_before for m in existing if m.not_before] + [slot])
        body = self.render_digest(session, patient, items, route.channel, now)
        return outbox.enqueue(
            session, clinic_id=patient.clinic_id, channel=route.channel, address=route.address,
            body=body, kind=Kind.PROACTIVE, conversation_id=route.conversation.id,
            patient_id=patient.id, template="notify_digest", language=patient.language,
            coalesce_key=_coalesce_key(patient.id, "digest"), not_before=not_before,
            data={"key": "digest", "template": "notify_digest", "items": items}, now=now,
        )  # fmt: skip


def _tallied(texts: list[Markup]) -> tuple[list[Markup], list[int]]:
    """A digest's lines once each, in first-seen order, with how many times each came: six
    prescriptions approved read alike when their names stay out of SMS, and one line "(x6)"
    says as much as six copies."""
    counts: dict[Markup, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    return list(counts), list(counts.values())
