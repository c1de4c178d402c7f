"""Vital signs stated with a number, read against the ranges clinicians call normal.

The emergency rules (`catalogue/emergency.yaml`, `vital_signs`) give the 911 script to a
dangerous reading ("blood sugar 38", "pulse 180", "bp 200 over 120"). A reading inside the range
below is the opposite: a patient telling us a normal number ("mi azucar esta en 95", "my sugar
is 110 this morning"). The learned model, which reads words and not values, may see an
emergency in the words of any reading; the combination (`pipeline.py`) therefore reads the
risk of a message holding only in-range readings without them, so the number is judged by its
value and the rest of the message by both readers.

Ranges: glucose 70-180 mg/dL (the international consensus "time in range" for people with
diabetes), heart rate 60-100 a minute (normal at rest), blood pressure up to 139/89 and from
90/60 (below stage 1 hypertension by the ACC/AHA 2017 table's upper bound, above hypotension).
A reading outside them but short of the emergency rules' thresholds (sugar 300, pulse 120) is
no emergency by the rules, and neither is it read as normal here: the model is heard on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.understanding.normalize import strip_accents

GLUCOSE = r"blood sugar|sugar|glucose|bg|azucar|glucosa|sugar level|glucose level"
PULSE = r"heart rate|pulse|hr|ritmo cardiaco|pulso|frecuencia cardiaca"
PRESSURE = r"blood pressure|bp|presion|presion arterial"
# the sign, up to three linking words ("is", "was at", "esta en"), the number; not a number
# that is something else ("a1c 6.5", "sugar free for 30 days", "bp meds 20 mg")
_FILLER = r"(?:\s+(?:is|was|at|reads|read|of|are|were|about|around|like|only|just|esta|estaba|"
_FILLER += r"en|de|me|dio|salio|marca|marco|como|=|:))*"
_NUMBER = r"\s+(\d{2,3})(?!\s*(?:\.\d|mg\b(?! ?dl)|percent|%|pounds|lbs|years|days|weeks|units))"
_READINGS = {
    "glucose": re.compile(rf"\b(?:{GLUCOSE})\b{_FILLER}{_NUMBER}\b(?:\s*mg\s*dl)?"),
    "pulse": re.compile(rf"\b(?:{PULSE})\b{_FILLER}{_NUMBER}\b(?:\s*(?:bpm|lpm))?"),
    "pressure": re.compile(
        rf"\b(?:{PRESSURE})\b{_FILLER}\s+(\d{{2,3}})\s*(?:/|over|sobre|\s)\s*(\d{{2,3}})\b"
    ),
}
# a cheap look at the raw text first: most messages name no vital sign and no number
_MAY_STATE = re.compile(rf"\b(?:{GLUCOSE}|{PULSE}|{PRESSURE})\b.*\d")
NORMAL = {"glucose": (70, 180), "pulse": (60, 100), "systolic": (90, 139), "diastolic": (60, 89)}


@dataclass(frozen=True)
class Reading:
    sign: str  # glucose, pulse, pressure
    values: tuple[int, ...]
    span: tuple[int, int]  # where in the normalised text

    @property
    def normal(self) -> bool:
        if self.sign == "pressure":
            (low_s, high_s), (low_d, high_d) = NORMAL["systolic"], NORMAL["diastolic"]
            systolic, diastolic = self.values
            return low_s <= systolic <= high_s and low_d <= diastolic <= high_d
        low, high = NORMAL[self.sign]
        return low <= self.values[0] <= high


def may_state_one(text: str) -> bool:
    """False when the message (as written) surely states no reading."""
    return bool(_MAY_STATE.search(strip_accents(text.lower())))


def readings(normalized: str) -> list[Reading]:
    """The vital signs the normalised text states with a number, in written order."""
    found = [
        Reading(sign, tuple(int(g) for g in m.groups()), m.span())
        for sign, pattern in _READINGS.items()
        for m in pattern.finditer(normalized)
    ]
    return sorted(found, key=lambda r: r.span)


def without_normal_readings(normalized: str) -> str | None:
    """The text without its readings when it states at least one and every one is in the
    normal range (what is left for the readers to judge), else None."""
    found = readings(normalized)
    if not found or not all(r.normal for r in found):
        return None
    out, at = [], 0
    for r in found:
        out.append(normalized[at : r.span[0]])
        at = r.span[1]
    out.append(normalized[at:])
    return " ".join(" ".join(out).split())
