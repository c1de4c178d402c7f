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
from dataclasses import dataclass
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


# A keyword written as a sentence of its own beside other words ("ok thanks. STOP", "START.
# when is my next appointment") is honoured too, where the word can mean nothing else: not
# CANCEL, END or QUIT, which name the plan as often as the texts beside other words ("im done.
# cancel. no I dont want a discount"). Sentences end at sentence punctuation; a keyword inside
# a sentence ("STOP charging me twice") is a word of that sentence, never a keyword.
SENTENCE_KEYWORDS = (OPT_OUT_KEYWORDS - {"cancel", "end", "quit"}) | OPT_IN_KEYWORDS | HELP_KEYWORDS
_SENTENCE_END = re.compile(r"[.!?;\n\r]+")


@dataclass(frozen=True)
class KeywordSentences:
    """The carrier keywords a message holds as sentences of their own, and the rest of it."""

    before: tuple[Intent, ...]  # written before anything else in the message
    after: tuple[Intent, ...]
    rest: str  # the other sentences, as written


def keyword_sentences(text: str) -> KeywordSentences | None:
    """The keyword sentences of a message of several sentences, else None (a message that is
    one keyword is `carrier_keyword`'s)."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2 or not any(carrier_keyword(s) for s in sentences):
        return None
    before: list[Intent] = []
    after: list[Intent] = []
    rest: list[str] = []
    for sentence in sentences:
        found = carrier_keyword(sentence)
        words = _WORDS.findall(strip_accents(sentence.lower()))
        if found is None or words[0] not in SENTENCE_KEYWORDS:
            rest.append(sentence.strip())
        elif found not in (*before, *after):
            (after if rest else before).append(found)
    if not (before or after):
        return None
    return KeywordSentences(tuple(before), tuple(after), ". ".join(rest))


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
