"""The values the engine takes and gives: no provider types cross this line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.messages import Buttons
from status.clinics import DEFAULT_ID


@dataclass(frozen=True)
class Inbound:
    channel: str  # "sms", "telegram", "terminal", "simulator"
    address: str  # E.164 phone, or Telegram chat id
    text: str
    provider_id: str | None = None  # Twilio MessageSid, Telegram update id
    received_at: datetime | None = None
    media: tuple[str, ...] = ()  # media URLs (MMS, Telegram photos)
    intent_hint: str | None = None  # a button pressed: the intent is known, skip understanding
    # The clinic written to (the SMS's To number, the bot's webhook path); `default` when the
    # channel has one clinic only (the terminal, tests).
    clinic_id: int = DEFAULT_ID
    # "page": written on the status page ("message the clinic") about `about_patient_id`
    origin: str = "channel"
    about_patient_id: int | None = None


@dataclass
class Outbound:
    channel: str
    address: str
    body: str
    buttons: Buttons = field(default_factory=list)
    message_id: int | None = None
    urgent: bool = False
