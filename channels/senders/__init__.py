"""Outbound delivery per channel: one `Sender` each, called by the outbox dispatcher."""

from __future__ import annotations

from channels.senders.base import Sender, SendResult
from channels.senders.telegram import TelegramSender
from channels.senders.twilio_sms import LogSmsSender, TwilioSmsSender
from status.settings import Settings


def senders_from_settings(settings: Settings, *, echo: bool = False) -> dict[str, Sender]:
    """`{"sms": ..., "telegram": ...}`; SMS falls back to log mode without Twilio credentials.
    Telegram sends as each clinic's own bot: a clinic without one has its messages refused
    ("channel_not_configured") by the dispatcher."""
    return {
        "sms": TwilioSmsSender(settings) if settings.sms_enabled else LogSmsSender(echo=echo),
        "telegram": TelegramSender(settings),
    }


__all__ = [
    "LogSmsSender",
    "SendResult",
    "Sender",
    "TelegramSender",
    "TwilioSmsSender",
    "senders_from_settings",
]
