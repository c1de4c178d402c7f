"""Every status of every item is one of these: the bot and staff read items through it."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class StatusClass(StrEnum):
    ACTIVE = "active"  # the clinic, pharmacy or carrier is moving it along
    NEEDS_PATIENT = "needs_patient"  # stuck until the patient does something
    TERMINAL = "terminal"  # finished, one way or another


def classify_all(enum: type[S], table: dict[S, StatusClass]) -> dict[S, StatusClass]:
    """Check at import time that a classification names every status exactly once."""
    missing = set(enum) - set(table)
    if missing:
        raise RuntimeError(f"{enum.__name__} statuses without a class: {sorted(missing)}")
    return table
