"""Outbound delivery per channel: one `Sender` each, called by the outbox dispatcher."""

from __future__ import annotations

from channels.senders.base import Sender, SendResult
from channels.senders.telegram import TelegramSender
from channels.senders.twilio_sms import LogSmsSender, TwilioSmsSender
from status.settings import Settings


def senders_from_settings(settings: Settings, *, echo: bool = False) -> dict[str, Sender]:
    """`{"sms": ..., "telegram": ...}` for what is configured; SMS falls back to log mode and
    Telegram is left out without a token."""
    senders: dict[str, Sender] = {
        "sms": TwilioSmsSender(settings) if settings.sms_enabled else LogSmsSender(echo=echo)
    }
    if settings.telegram_enabled:
        senders["telegram"] = TelegramSender(settings)
    return senders


__all__ = [
    "LogSmsSender",
    "SendResult",
    "Sender",
    "TelegramSender",
    "TwilioSmsSender",
    "senders_from_settings",
]
