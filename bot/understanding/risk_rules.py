"""Possible risk by rule: the grade below `emergency` (data in `catalogue/risk.yaml`).

The same machinery as the red flags (`red_flags.build`): terms over normalised words,
combinations within a window. It reads the text after the red-flag guards, so a figure of
speech about a bill or a delay is already blanked and gets no grade at all.
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from bot.understanding.normalize import CATALOGUE_DIR
from bot.understanding.red_flags import RedFlags, build, red_flags


@lru_cache(maxsize=1)
def risk_flags() -> RedFlags:
    with open(CATALOGUE_DIR / "risk.yaml", encoding="utf-8") as f:
        return build(yaml.safe_load(f))


def possible_match(normalized: str) -> tuple[str, str] | None:
    """(category, words that fired) when the text shows a possible risk, else None."""
    guarded = red_flags()
    text = guarded.unguarded(normalized)
    flags = risk_flags()
    for candidate in (text, guarded.without_intensifiers(text)):
        found = flags.first_match(candidate.split())
        if found is not None:
            return found
    return None
