"""Local fake provider servers (Twilio REST, Telegram Bot API) for tests; loopback only."""

from tests.fakes.server import BackgroundServer, unused_base_url
from tests.fakes.telegram_server import FakeTelegram, TelegramCall
from tests.fakes.twilio_server import FakeTwilio, SignedCallback, TwilioRequest

__all__ = [
    "BackgroundServer",
    "FakeTelegram",
    "FakeTwilio",
    "SignedCallback",
    "TelegramCall",
    "TwilioRequest",
    "unused_base_url",
]
