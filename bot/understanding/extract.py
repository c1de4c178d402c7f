"""Parsers for answers to the assistant's own questions: a date of birth, yes/no, a choice.

They read what patients actually type ("3/14/85", "my dob is March 14 1985", "14 de marzo de
1985", "yes pls", "sí", "nope", "2", "luis") and return None (or False) rather than guess when
the answer is unclear, so the conversation can ask again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from rapidfuzz import fuzz, process

from bot.understanding.normalize import strip_accents
from status import clock

MAX_AGE_YEARS = 110

MONTHS = {
    **dict.fromkeys(("january", "jan", "enero", "ene"), 1),
    **dict.fromkeys(("february", "feb", "febrero"), 2),
    **dict.fromkeys(("march", "mar", "marzo"), 3),
    **dict.fromkeys(("april", "apr", "abril", "abr"), 4),
    **dict.fromkeys(("may", "mayo"), 5),
    **dict.fromkeys(("june", "jun", "junio"), 6),
    **dict.fromkeys(("july", "jul", "julio"), 7),
    **dict.fromkeys(("august", "aug", "agosto", "ago"), 8),
    **dict.fromkeys(("september", "sept", "sep", "septiembre", "setiembre", "set"), 9),
    **dict.fromkeys(("october", "oct", "octubre"), 10),
    **dict.fromkeys(("november", "nov", "noviembre"), 11),
    **dict.fromkeys(("december", "dec", "diciembre", "dic"), 12),
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th|ro|do|to|vo|o)?"
_YEAR = r"(\d{4}|'?\d{2})"

_ISO = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})\b")
_MONTH_FIRST = re.compile(
    rf"\b({_MONTH})\.?\s+(\d{{1,2}}){_ORD},?\s+(?:de\s+|del\s+)?{_YEAR}(?!\d)"
)
_DAY_FIRST = re.compile(
    rf"\b(\d{{1,2}}){_ORD}\s+(?:de\s+|of\s+)?({_MONTH})\.?,?\s+(?:de\s+|del\s+)?{_YEAR}(?!\d)"
)
_COMPACT = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{4})(?!\d)")


def parse_dob(text: str, today: date | None = None) -> date | None:
    """A date of birth in the text, or None when there is none or it cannot be one.

    Ambiguous numeric dates are read the US way (03/04/1985 is March 4); day-first only when the
    first number cannot be a month (14/03/1985). A two-digit year takes the century that puts
    the date in the past with an age under 110. Future and impossible dates give None.
    """
    today = today or clock.now().date()
    folded = strip_accents(text.lower())

    if m := _ISO.search(folded):
        return _valid(int(m[1]), int(m[2]), int(m[3]), today)
    if m := _MONTH_FIRST.search(folded):
        return _with_year(m[3], MONTHS[m[1]], int(m[2]), today)
    if m := _DAY_FIRST.search(folded):
        return _with_year(m[3], MONTHS[m[2]], int(m[1]), today)
    if m := _NUMERIC.search(folded):
        first, second = int(m[1]), int(m[2])
        if first > 12 and second <= 12:
            month, day = second, first
        else:
            month, day = first, second
        return _with_year(m[3], month, day, today)
    if m := _COMPACT.search(folded):
        return _valid(int(m[3]), int(m[1]), int(m[2]), today)
    return None


def _fold_in_place(text: str) -> str:
    """Lower case without accents, one character for one, so spans map back to `text`."""
    out = []
    for ch in text.lower():
        plain = strip_accents(ch)
        out.append(plain if len(plain) == 1 else ch)
    return "".join(out)


def dob_spans(text: str, today: date, min_age_days: int = 365) -> list[tuple[int, int]]:
    """Where the text holds a date that may be somebody's date of birth: a whole date with a
    year, in any form `parse_dob` reads, at least `min_age_days` in the past (a recent date is
    a charge or a delivery, not a birthday). Spans index `text`, sorted, not overlapping."""
    folded = _fold_in_place(text)
    found: list[tuple[int, int]] = []

    def keep(match: re.Match[str], born: date | None) -> None:
        if born is not None and (today - born).days >= min_age_days:
            found.append(match.span())

    for m in _ISO.finditer(folded):
        keep(m, _valid(int(m[1]), int(m[2]), int(m[3]), today))
    for m in _MONTH_FIRST.finditer(folded):
        keep(m, _with_year(m[3], MONTHS[m[1]], int(m[2]), today))
    for m in _DAY_FIRST.finditer(folded):
        keep(m, _with_year(m[3], MONTHS[m[2]], int(m[1]), today))
    for m in _NUMERIC.finditer(folded):
        first, second = int(m[1]), int(m[2])
        month, day = (second, first) if first > 12 and second <= 12 else (first, second)
        keep(m, _with_year(m[3], month, day, today))
    for m in _COMPACT.finditer(folded):
        keep(m, _valid(int(m[3]), int(m[1]), int(m[2]), today))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _with_year(year_text: str, month: int, day: int, today: date) -> date | None:
    digits = year_text.lstrip("'")
    if len(digits) == 4:
        return _valid(int(digits), month, day, today)
    short = int(digits)
    for century in (2000, 1900):  # the most recent century that puts the date in the past
        found = _valid(century + short, month, day, today)
        if found is not None:
            return found
    return None


def _valid(year: int, month: int, day: int, today: date) -> date | None:
    try:
        born = date(year, month, day)
    except ValueError:
        return None
    if born > today:
        return None
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return born if age < MAX_AGE_YEARS else None


# ---------------------------------------------------------------- yes / no

_YES = {
    "yes", "y", "yeah", "yea", "yep", "yup", "ye", "yess", "yas", "sure", "ok", "okay", "k",
    "kk", "okey", "confirm", "confirmed", "correct", "right", "affirmative", "absolutely",
    "definitely", "certainly", "please", "pls", "plz", "si", "claro", "dale", "va", "vale",
    "correcto", "exacto", "afirmativo", "bueno", "sale", "simon", "ándale", "andale", "perfect",
    "perfecto", "great", "good", "fine", "agreed",
}  # fmt: skip
_YES_PHRASES = (
    ("go", "ahead"), ("do", "it"), ("sounds", "good"), ("of", "course"), ("por", "favor"),
    ("por", "supuesto"), ("de", "acuerdo"), ("esta", "bien"), ("lets", "do", "it"),
    ("thumbs", "up"), ("that", "works"), ("works", "for", "me"),
)  # fmt: skip
_NO = {
    "no", "n", "nope", "nah", "naw", "nay", "negative", "not", "dont", "don't", "never",
    "cancel", "nel", "nop", "tampoco", "nunca", "wrong", "incorrect", "incorrecto",
}  # fmt: skip
_NO_PHRASES = (
    ("not", "now"), ("not", "yet"), ("no", "thanks"), ("no", "thank", "you"), ("no", "gracias"),
    ("todavia", "no"), ("aun", "no"), ("ahorita", "no"), ("para", "nada"), ("i", "dont"),
)  # fmt: skip
_NOT_A_REFUSAL = re.compile(r"\b(no problem|no worries|no prob|why not|sin problema)\b")
_EMOJI_WORDS = {"👍": " yes ", "👌": " yes ", "✅": " yes ", "👎": " no ", "❌": " no "}
_SHORT_ANSWER_WORDS = 8


def _answer_words(text: str) -> list[str]:
    for emoji, word in _EMOJI_WORDS.items():
        text = text.replace(emoji, word)
    folded = strip_accents(text.lower()).replace("'", "").replace("’", "")
    folded = re.sub(r"([a-z])\1{2,}", r"\1", folded)  # "yesss" -> "yes", "noooo" -> "no"
    folded = _NOT_A_REFUSAL.sub(" ok ", folded)
    return re.findall(r"[a-z]+", folded)


def _has_phrase(words: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    return any(
        tuple(words[i : i + len(p)]) == p for p in phrases for i in range(len(words) - len(p) + 1)
    )


def _says_yes(words: list[str]) -> bool:
    return bool(_YES.intersection(words)) or _has_phrase(words, _YES_PHRASES)


def _says_no(words: list[str]) -> bool:
    return bool(_NO.intersection(words)) or _has_phrase(words, _NO_PHRASES)


def is_yes(text: str) -> bool:
    """A short reply that agrees and does not also refuse ("yes pls", "sí", "yeah go ahead")."""
    words = _answer_words(text)
    if not words or len(words) > _SHORT_ANSWER_WORDS:
        return False
    return _says_yes(words) and not _says_no(words)


def is_no(text: str) -> bool:
    """A short reply that refuses ("no thanks", "nope", "todavía no")."""
    words = _answer_words(text)
    if not words or len(words) > _SHORT_ANSWER_WORDS:
        return False
    if _says_no(words):
        # "no" leading, or no word of agreement at all ("nope", "not now")
        return words[0] in _NO or not _says_yes(words) or _has_phrase(words, _NO_PHRASES)
    return False


# ---------------------------------------------------------------- choices

_ORDINALS = {
    **dict.fromkeys(("first", "1st", "primero", "primera", "one", "uno", "una"), 1),
    **dict.fromkeys(("second", "2nd", "segundo", "segunda", "two", "dos"), 2),
    **dict.fromkeys(("third", "3rd", "tercero", "tercera", "three", "tres"), 3),
    **dict.fromkeys(("fourth", "4th", "cuarto", "cuarta", "four", "cuatro"), 4),
    **dict.fromkeys(("fifth", "5th", "quinto", "quinta", "five", "cinco"), 5),
}
_FILLER_ONE = {"one", "uno", "una"}
_NAME_SCORE_CUTOFF = 80


def parse_choice(text: str, options: Sequence[str]) -> int | None:
    """The 0-based index of the option the reply picks: "2", "#2", "the second", "luis".

    Names are matched fuzzily (rapidfuzz) on each word of the option, so a first name picks
    "Luis Ortega"; when two options share the first name the last name decides, and a reply
    that fits two options equally well picks neither.
    """
    folded = strip_accents(text.lower())
    words = re.findall(r"[a-z0-9]+", folded)
    if not words or not options:
        return None
    numbers = [int(w) for w in words if w.isdigit()]
    if len(numbers) == 1 and 1 <= numbers[0] <= len(options):
        return numbers[0] - 1
    ordinals = [w for w in words if w in _ORDINALS]
    if len(ordinals) > 1:  # "the second one": "one" is only a filler next to another ordinal
        ordinals = [w for w in ordinals if w not in _FILLER_ONE]
    picked = {_ORDINALS[w] for w in ordinals if _ORDINALS[w] <= len(options)}
    name_index = _by_name(words, options)
    if name_index is not None:
        return name_index
    if len(picked) == 1:
        return picked.pop() - 1
    return None


def _by_name(words: list[str], options: Sequence[str]) -> int | None:
    candidates = [w for w in words if len(w) >= 2 and not w.isdigit()]
    if not candidates:
        return None
    scores = []
    for option in options:
        name_words = re.findall(r"[a-z]+", strip_accents(option.lower()))
        total = 0.0
        for name_word in name_words:
            best = process.extractOne(
                name_word, candidates, scorer=fuzz.ratio, score_cutoff=_NAME_SCORE_CUTOFF
            )
            if best is not None:
                total += best[1]
        scores.append(total)
    top = max(scores)
    if top == 0 or scores.count(top) > 1:
        return None
    return scores.index(top)
