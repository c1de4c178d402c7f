"""How the console words times, hand-off reasons and intents (fast: no database, no browser)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup

from bot.handoffs import REASON_WORDS, Reason, reason_words
from bot.intents import Intent
from channels.staff import times
from channels.staff.pages import Clock
from channels.staff.words import INTENT_WORDS, intent_words, reasons_words, timeline_words

NEW_YORK = ZoneInfo("America/New_York")
# Thursday Nov 26 2026, 10:00 in New York (15:00 UTC).
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T14:35:47.808528+00:00", "Today 9:35 AM"),
        ("2026-11-26T05:10:00+00:00", "Today 12:10 AM"),  # after midnight in New York
        ("2026-11-26T04:59:00+00:00", "Yesterday 11:59 PM"),  # before it, though the 26th UTC
        ("2026-11-25T21:10:00+00:00", "Yesterday 4:10 PM"),
        ("2026-11-23T14:35:00+00:00", "Mon, Nov 23 9:35 AM"),
        ("2026-11-27T17:00:00+00:00", "Tomorrow 12:00 PM"),
        ("2026-12-03T14:00:00-05:00", "Thu, Dec 3 2:00 PM"),
        ("2025-11-23T14:35:00+00:00", "Sun, Nov 23, 2025 9:35 AM"),
        ("2026-07-04T16:00:00+00:00", "Sat, Jul 4 12:00 PM"),  # summer time: UTC-4
        ("2026-11-26", "Today"),  # a calendar date stays that date, in no zone
        ("2026-11-22", "Sun, Nov 22"),
        (datetime(2026, 11, 26, 14, 35), "Today 9:35 AM"),  # naive: UTC, as stored
    ],
)
def test_times_read_in_words_in_the_clinics_zone(value, expected):
    assert times.words(value, NOW, NEW_YORK) == expected


def test_the_day_is_the_clinics_day_not_utcs():
    late_evening = datetime(2026, 11, 27, 3, 30, tzinfo=UTC)  # 22:30 on the 26th in New York
    assert times.words("2026-11-26T15:00:00+00:00", late_evening, NEW_YORK) == "Today 10:00 AM"
    tokyo = ZoneInfo("Asia/Tokyo")  # already the 27th there
    assert times.words("2026-11-26T15:00:00+00:00", late_evening, tokyo) == "Today 12:00 AM"


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=12), "12 min ago"),
        (timedelta(hours=3, minutes=5), "3 h 5 min ago"),
        (timedelta(days=3, hours=2), "3 d 2 h ago"),
        (-timedelta(minutes=30), "in 30 min"),
    ],
)
def test_ages_read_relative_to_now(delta, expected):
    assert times.age(NOW - delta, NOW) == expected


def test_a_shown_time_keeps_the_exact_instant_for_the_tooltip_and_machines():
    clock = Clock("America/New_York", now=NOW)
    html = clock.at("2026-11-26T14:35:47.808528+00:00")
    assert isinstance(html, Markup)
    assert html == (
        '<time datetime="2026-11-26T14:35:47.808528+00:00" '
        'title="Thursday, November 26, 2026, 9:35:47 AM EST">Today 9:35 AM</time>'
    )
    assert str(clock.ago(NOW - timedelta(minutes=12))).endswith(">12 min ago</time>")
    assert str(clock.since(NOW - timedelta(minutes=12))).endswith(">12 min</time>")
    assert str(clock.day("2026-12-08T15:00:00+00:00")).endswith(">Tue, Dec 8</time>")
    assert clock.at(None) == "" and clock.at("") == ""


def test_iso_times_inside_our_own_text_are_worded_and_the_rest_escaped():
    clock = Clock("America/New_York", now=NOW)
    packet = '{"built_at": "2026-11-26T14:35:47+00:00", "due": "2026-11-27", "id": "rx-2026-11-01"}'
    html = str(clock.text(packet))
    visible = re.sub(r"<[^>]+>", "", html)
    assert visible.replace("&#34;", '"') == (
        '{"built_at": "Today 9:35 AM", "due": "Tomorrow", "id": "rx-2026-11-01"}'
    )
    assert 'datetime="2026-11-26T14:35:47+00:00"' in html
    assert str(clock.text("Visit at 2026-11-27T19:00:00+00:00 <b>")).endswith(
        ">Tomorrow 2:00 PM</time> &lt;b&gt;"
    )
    assert str(clock.text("not a date: 2026-13-45")) == "not a date: 2026-13-45"


def test_every_handoff_reason_has_plain_words():
    assert set(REASON_WORDS) == set(Reason)
    assert all(words and "_" not in words for words in REASON_WORDS.values())
    assert reason_words("human") == "asked for a person"
    assert reason_words("verification_locked") == "three wrong dates of birth"
    assert reason_words("some_future_reason") == "some future reason"
    assert reasons_words([], "clinical_question") == ["clinical question"]
    assert timeline_words("handoff", "hand-off opened: human") == (
        "hand-off opened: asked for a person"
    )
    assert timeline_words("state_change", "refill r-1: human") == "refill r-1: human"


def test_every_intent_has_plain_words():
    assert set(INTENT_WORDS) == set(Intent)
    assert all(words and "_" not in words for words in INTENT_WORDS.values())
    assert intent_words("prescription_status") == "prescription status"
    assert intent_words("unknown") == "not understood"
