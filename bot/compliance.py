"""Carrier keywords, answered before anything else (CTIA / Twilio rules)."""

from __future__ import annotations

import re

OPT_OUT = {"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"}
OPT_IN = {"START", "UNSTOP", "YES"}  # YES only counts while an address is opted out
HELP = {"HELP", "INFO"}


def keyword(text: str) -> str | None:
    """The carrier keyword a message consists of (any case, stray punctuation), else None."""
    word = re.sub(r"[^A-Za-z]", "", text).upper()
    if not word or len(text.strip()) > 20 or text.strip().startswith("/"):
        return None
    if word in OPT_OUT:
        return "opt_out"
    if word in {"START", "UNSTOP"}:
        return "opt_in"
    if word in HELP:
        return "help"
    return None


def is_resubscribe_yes(text: str) -> bool:
    return re.sub(r"[^A-Za-z]", "", text).upper() == "YES" and len(text.strip()) <= 8
