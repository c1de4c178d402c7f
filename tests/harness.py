"""The app under test wired to the fake providers, driven as Twilio and Telegram drive it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.inbound import Inbound
from status import clock as product_clock
from status import demo
from status.db import utcnow

TWILIO_NUMBER = "+15550109000"
TELEGRAM_SECRET = "tg-secret-123"
API_KEY = "test-api-key"


class Clock:
    """A clock the test moves by hand: nothing sleeps."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@contextmanager
def frozen(start: datetime) -> Iterator[Clock]:
    """A hand-moved clock installed as the product's one clock for the block: the webhooks,
    the ORM defaults, the dispatcher and the scheduler all read it."""
    clock = Clock(start_time(start))
    with product_clock.use(clock):
        yield clock


# Time-sensitive tests start at a fixed instant. CI runs them again with the start moved:
# TEST_CLOCK_SHIFT=year (the same weekday and local time, 52 weeks after today) and
# TEST_CLOCK_SHIFT=dst (the same weekday and local time in the week before the clinic zone's
# first daylight-saving change a year from today), so nothing depends on the calendar.
CLINIC_ZONE = ZoneInfo("America/New_York")


def start_time(default: datetime, zone: ZoneInfo = CLINIC_ZONE) -> datetime:
    shift = os.environ.get("TEST_CLOCK_SHIFT", "").strip().lower()
    if not shift:
        return default
    local = default.astimezone(zone)
    anchor = date.today() + timedelta(days=364)
    if shift == "dst":
        anchor = _next_dst_change(anchor, zone) - timedelta(days=6)
    elif shift != "year":
        raise ValueError(f"TEST_CLOCK_SHIFT must be 'year' or 'dst', not {shift!r}")
    day = anchor + timedelta(days=(local.weekday() - anchor.weekday()) % 7)
    return datetime.combine(day, local.time().replace(tzinfo=None), zone).astimezone(default.tzinfo)


def _next_dst_change(after: date, zone: ZoneInfo) -> date:
    """The first day after `after` whose UTC offset differs from the day before's."""
    day = after
    noon = time(12)
    for _ in range(400):
        before = datetime.combine(day, noon, zone).utcoffset()
        day += timedelta(days=1)
        if datetime.combine(day, noon, zone).utcoffset() != before:
            return day
    raise ValueError(f"{zone.key} has no daylight-saving change")


def channel_overrides(fake_twilio, fake_telegram) -> dict:
    return {
        **fake_twilio.settings_overrides(),
        **fake_telegram.settings_overrides(),
        "twilio_from_number": TWILIO_NUMBER,
        "telegram_webhook_secret": TELEGRAM_SECRET,
        "twilio_messages_per_second": 0,
        "sms_keyword_replies": "app",
    }


class App:
    """The app under test, with the fakes behind it."""

    def __init__(self, client: TestClient, settings, database):
        self.client, self.settings, self.db = client, settings, database
        self.runtime = client.app.state.runtime
        self._sids = 0

    # Twilio -----------------------------------------------------------------------------------
    def sms(
        self,
        text: str,
        sender: str = demo.DEMO_PATIENTS[0][3],
        sid: str | None = None,
        *,
        turn: bool = True,
        **extra,
    ):
        """Deliver a signed SMS webhook; with `turn`, the worker then answers what is due."""
        self._sids += 1
        params = {
            "MessageSid": sid or f"SM{self._sids:032d}",
            "AccountSid": self.settings.twilio_account_sid,
            "From": sender,
            "To": TWILIO_NUMBER,
            "Body": text,
            "NumMedia": "0",
            **extra,
        }
        url = self.settings.public_base_url + "/webhooks/twilio/sms"
        signature = RequestValidator(self.settings.twilio_auth_token).compute_signature(url, params)
        response = self.client.post(
            "/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
        )
        if turn:
            self.turns()
        return response

    def status_callback(self, callback):
        path = callback.url.removeprefix(self.settings.public_base_url)
        return self.client.post(path, data=callback.params, headers=callback.headers)

    # Telegram ---------------------------------------------------------------------------------
    def telegram(self, update: dict, secret: str = TELEGRAM_SECRET, *, turn: bool = True):
        response = self.client.post(
            "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )
        if turn:
            self.turns()
        return response

    def turns(self):
        """Run the turns that are due, as a worker woken by the webhook would."""
        self.client.portal.call(self.runtime.turns.drain)

    # the outbox -------------------------------------------------------------------------------
    def drain(self, later: timedelta = timedelta(0)):
        """Answer every stored message and send everything due now (or `later` from now)."""
        clock = self.runtime.clock
        self.runtime.dispatcher.clock = self.runtime.turns.clock = lambda: clock() + later
        self.client.portal.call(self.runtime.drain)

    def events(self, *events):
        response = self.client.post(
            "/events", json={"events": list(events)}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 202, response.text
        return response.json()

    def count(self, model, *where) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))

    def rows(self, model, *where):
        with self.db.session() as session:
            return list(session.scalars(select(model).where(*where).order_by(model.id)))


# A weekday inside clinic hours (Mon-Fri 08:00-18:00 New York); moved by TEST_CLOCK_SHIFT.
NOW = start_time(datetime.fromisoformat("2026-11-18T15:00:00+00:00"))


class Patient:
    """A phone in a test: say something, get the bot's reply text."""

    def __init__(self, database, engine, address, channel="sms"):
        self.database, self.engine, self.address, self.channel = database, engine, address, channel
        self.clock = NOW

    def say(self, text: str, **extra) -> str:
        self.clock += timedelta(seconds=30)
        with self.database.session() as session:
            turn = self.engine.handle(
                session,
                Inbound(self.channel, self.address, text, received_at=self.clock, **extra),
            )
            return "\n".join(reply.body for reply in turn.replies)


def phi_in(text: str, words: list[str]) -> list[str]:
    """The words of `words` that `text` shows as words of their own: a date of birth's year
    inside a random token or a CSRF hex digest ("...e1985f...") is chance, not a leak."""
    return [w for w in words if re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", text)]
