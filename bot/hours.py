"""Clinic hours, so the bot can say honestly when a person will reply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from status.settings import Settings

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class ClinicHours:
    days: frozenset[int]  # 0 = Monday
    opens: time
    closes: time
    tz: str

    @classmethod
    def parse(cls, text: str, tz: str) -> ClinicHours:
        """`Mon-Fri 08:00-18:00` (also `Mon-Sat 9:00-17:00`, `Mon,Wed,Fri 08:00-12:00`)."""
        match = re.fullmatch(
            r"\s*([A-Za-z,\- ]+?)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text
        )
        if not match:
            raise ValueError(f"CLINIC_HOURS {text!r} must look like 'Mon-Fri 08:00-18:00'")
        days: set[int] = set()
        for part in match.group(1).lower().replace(" ", "").split(","):
            if "-" in part:
                first, last = (_DAYS.index(p[:3]) for p in part.split("-"))
                days.update(range(first, last + 1))
            else:
                days.add(_DAYS.index(part[:3]))
        opens = time.fromisoformat(match.group(2).zfill(5))
        closes = time.fromisoformat(match.group(3).zfill(5))
        return cls(frozenset(days), opens, closes, tz)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.tz))
        return local.weekday() in self.days and self.opens <= local.time() < self.closes

    def next_opening(self, at: datetime) -> datetime:
        local = at.astimezone(ZoneInfo(self.tz))
        for offset in range(0, 8):
            day = (local + timedelta(days=offset)).date()
            opening = datetime.combine(day, self.opens, tzinfo=ZoneInfo(self.tz))
            if day.weekday() in self.days and opening > local:
                return opening
        return local + timedelta(days=1)


@dataclass(frozen=True)
class ResponseEstimate:
    open_now: bool
    hours: int
    opens_at: datetime | None
    tz: str


def estimate(settings: Settings, at: datetime, patient_tz: str | None = None) -> ResponseEstimate:
    hours = ClinicHours.parse(settings.clinic_hours, settings.clinic_timezone)
    tz = patient_tz or settings.clinic_timezone
    if hours.is_open(at):
        return ResponseEstimate(True, 2, None, tz)
    return ResponseEstimate(False, 2, hours.next_opening(at), tz)
