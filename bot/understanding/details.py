"""Asking for the whole picture: "everything", "my account", "details" (English and Spanish).
The answer is the status-page link; SMS is too short and too public for all of it."""

from __future__ import annotations

import re

from bot.understanding.normalize import strip_accents

_WHOLE = re.compile(
    r"^(?:details?|more details|full details|detalles?|mas detalles|todo|everything|account|"
    r"my account|mi cuenta|link|enlace|status page)$"
)
_ASKS = re.compile(
    r"\b(?:(?:show|send|give|tell|see|view|text)\s+(?:me\s+)?everything|everything\s+(?:about|on|"
    r"in)\s+my|(?:my|the)\s+(?:whole|full|entire)\s+(?:account|status|picture|info\w*|details)|"
    r"\bmy\s+account\b|account\s+(?:info\w*|details|status|page|summary)|all\s+(?:of\s+)?my\s+"
    r"(?:info\w*|details|stuff|account)|"
    r"(?:ver|mandame|enviame|dame|mande|envie|quiero ver)\s+(?:todo|toda\s+mi\s+informacion)|"
    r"mi\s+cuenta|toda\s+(?:mi|la)\s+informacion|todos\s+(?:mis|los)\s+detalles)\b"
)


def asks_everything(text: str) -> bool:
    folded = strip_accents(text.lower())
    folded = re.sub(r"[^\w\s]", " ", folded)
    folded = re.sub(r"\s+", " ", folded).strip()
    if not folded or len(folded) > 160:
        return False
    return bool(_WHOLE.match(folded) or _ASKS.search(folded))
