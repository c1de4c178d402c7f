"""Carrier keywords, answered before anything else (CTIA / Twilio rules).

The keywords themselves are defined once, in `bot.understanding.keywords`: this module adds
only what the engine needs around them (YES re-subscribes an address that opted out).
"""

from __future__ import annotations

import re

from bot.understanding.keywords import carrier_keyword


def keyword(text: str) -> str | None:
    """The carrier keyword's intent ("opt_out", "opt_in", "help") a message consists of."""
    found = carrier_keyword(text)
    return str(found) if found is not None else None


def is_resubscribe_yes(text: str) -> bool:
    """YES counts as START only while an address is opted out (carriers do the same)."""
    return re.sub(r"[^A-Za-z]", "", text).upper() == "YES" and len(text.strip()) <= 8
