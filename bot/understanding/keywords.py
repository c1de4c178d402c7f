"""Carrier keywords and plain-language consent requests.

Carrier keywords are exact: the message holds one word, and it is one of the words below (any
case; whitespace, punctuation and digits around it ignored: "Stop.", " STOP!! ", "stop 2").
They are checked before anything else, so "Stop." always opts out and "cancel my plan" (not a
bare keyword) never does. This is the ONE definition: the engine's compliance step
(`bot/compliance.py`) and `classify` both call `carrier_keyword`. A Telegram command ("/start")
is not a carrier keyword: the channel handles it. Plain-language requests ("stop texting me",
"dejen de mandarme mensajes") are patterns in `catalogue/consent.yaml`, matched per clause.
"""

from __future__ import annotations

import re
from functools import lru_cache

import yaml

from bot.intents import Intent
from bot.understanding.normalize import CATALOGUE_DIR, strip_accents

OPT_OUT_KEYWORDS = frozenset(
    {"stop", "unsubscribe", "cancel", "end", "quit", "stopall", "revoke", "optout"}
)
OPT_IN_KEYWORDS = frozenset({"start", "unstop"})
HELP_KEYWORDS = frozenset({"help", "info"})

_CARRIER = {
    **{word: Intent.OPT_OUT for word in OPT_OUT_KEYWORDS},
    **{word: Intent.OPT_IN for word in OPT_IN_KEYWORDS},
    **{word: Intent.HELP for word in HELP_KEYWORDS},
}
_WORDS = re.compile(r"[a-z]+")
MAX_KEYWORD_MESSAGE = 20  # characters; a longer message is a sentence, not a keyword


def carrier_keyword(text: str) -> Intent | None:
    """The intent of a message that is exactly a carrier keyword ("STOP", " Stop.!", "stop 2")."""
    stripped = text.strip()
    if not stripped or stripped.startswith("/") or len(stripped) > MAX_KEYWORD_MESSAGE:
        return None
    words = _WORDS.findall(strip_accents(stripped.lower()))
    return _CARRIER.get(words[0]) if len(words) == 1 else None


@lru_cache(maxsize=1)
def _consent_patterns() -> dict[Intent, re.Pattern[str]]:
    with open(CATALOGUE_DIR / "consent.yaml", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return {
        Intent(name): re.compile("|".join(f"(?:{p})" for p in data[name]))
        for name in ("opt_out", "opt_in")
    }


# A request is not one when denied just before it ("not trying to opt out of texts, i just
# want to cancel my plan", "no quiero darme de baja").
NEGATIONS = frozenset({"not", "dont", "never", "no", "nunca", "wont", "didnt", "isnt", "nor"})
NEGATION_REACH = 4  # words before the request


def _asked(pattern: re.Pattern[str], text: str) -> bool:
    for match in pattern.finditer(text):
        before = text[: match.start()].split()[-NEGATION_REACH:]
        if not NEGATIONS.intersection(before):
            return True
    return False


def consent_request(normalized_clause: str) -> Intent | None:
    """opt_out / opt_in for a plain-language request about texts, else None."""
    patterns = _consent_patterns()
    if _asked(patterns[Intent.OPT_OUT], normalized_clause):
        return Intent.OPT_OUT
    if _asked(patterns[Intent.OPT_IN], normalized_clause):
        return Intent.OPT_IN
    return None
