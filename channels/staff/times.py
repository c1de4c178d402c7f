"""Times as staff read them: in the clinic's time zone and in words ("Today 9:35 AM",
"Yesterday 4:10 PM", "Mon, Nov 23 9:35 AM", "12 min ago"), each inside a `<time>` element that
keeps the exact instant in its `datetime` attribute and, readable, in its `title`."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo

from markupsafe import Markup, escape

# An ISO 8601 date or date-time as our code writes them (`date.isoformat()`,
# `datetime.isoformat()`), standing alone: not inside a longer run of digits or letters.
ISO = re.compile(
    r"(?<![\w.:-])\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w:-])"
)


def duration(seconds: float | None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    if seconds is None:
        return ""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def parse(value: datetime | date | str | None) -> datetime | date | None:
    """A datetime (naive ones are UTC, as the database keeps them), a date, or None for a value
    that is neither (empty, or not ISO)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value if isinstance(value, date) else None


def _clock(moment: datetime, seconds: bool = False) -> str:
    """`9:35 AM` (`9:35:47 AM` with seconds)."""
    hour = moment.hour % 12 or 12
    sec = f":{moment.second:02d}" if seconds else ""
    return f"{hour}:{moment.minute:02d}{sec} {'AM' if moment.hour < 12 else 'PM'}"


def day_words(day: date, today: date) -> str:
    """`Today`, `Yesterday`, `Tomorrow`, `Mon, Nov 23`, or `Mon, Nov 23, 2025` in another year."""
    offset = (day - today).days
    if offset == 0:
        return "Today"
    if offset == -1:
        return "Yesterday"
    if offset == 1:
        return "Tomorrow"
    year = f", {day.year}" if day.year != today.year else ""
    return f"{day:%a}, {day:%b} {day.day}{year}"


def words(value: datetime | date | str | None, now: datetime, zone: tzinfo) -> str:
    """A date-time as `Today 9:35 AM` in `zone`; a calendar date as `Today` or `Sun, Nov 22`."""
    moment = parse(value)
    if moment is None:
        return "" if value is None else str(value)
    today = now.astimezone(zone).date()
    if not isinstance(moment, datetime):
        return day_words(moment, today)
    local = moment.astimezone(zone)
    return f"{day_words(local.date(), today)} {_clock(local)}"


def age(value: datetime | str | None, now: datetime) -> str:
    """`just now`, `12 min ago`, `3 h 5 min ago`; `in 12 min` for a time still ahead."""
    moment = parse(value)
    if not isinstance(moment, datetime):
        return ""
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 60:
        return "just now"
    return f"{duration(seconds)} ago" if seconds > 0 else f"in {duration(seconds)}"


def exact(value: datetime | date | str | None, zone: tzinfo) -> str:
    """`Friday, November 27, 2026, 9:35:47 AM EST`: the tooltip, to the second."""
    moment = parse(value)
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        return f"{moment:%A, %B} {moment.day}, {moment.year}"
    local = moment.astimezone(zone)
    return f"{local:%A, %B} {local.day}, {local.year}, {_clock(local, True)} {local.tzname()}"


def element(value: datetime | date | str | None, shown: str, zone: tzinfo) -> Markup:
    """`<time datetime="(ISO)" title="(exact, local)">shown</time>`."""
    moment = parse(value)
    if moment is None:
        return Markup(escape(shown))
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), exact(moment, zone), shown
    )


def in_text(text: str | None, now: datetime, zone: tzinfo) -> Markup:
    """Text written by our own code (a next step, a frozen packet as JSON) with every ISO date or
    date-time in it shown in words; everything else escaped."""
    if not text:
        return Markup("")
    out: list[str] = []
    last = 0
    for match in ISO.finditer(text):
        moment = parse(match.group())
        if moment is None:
            continue
        out += [escape(text[last : match.start()]), element(moment, words(moment, now, zone), zone)]
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)
