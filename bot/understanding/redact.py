"""Card numbers and dates of birth that patients text are removed before a message is stored.

A card number is a run of 13-19 digits (a space, dash, dot, slash or underscore allowed between
digits, as people group them: "4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111")
that passes the Luhn check and starts like a payment card (2-6: Visa, Mastercard, Amex, Discover,
Diners, JCB, UnionPay, Maestro). Digits are read in any script ("４１１１", "٤١١١"). Phone numbers,
dates and tracking numbers fail one of those tests and are left alone. When a longer run of
digits holds a card number beside more digits ("4111 1111 1111 1111 0427", "4111 1111 1111 1111
12/27"), the card-number groups are removed and the rest is kept; every card in a run goes.

A card's security code is never kept either (card rules forbid storing it at all): a 3 or 4
digit code after its label ("cvv 123", "CVC: 1234", "ccv 123", "security code is 123", "código
de seguridad 123") is removed whenever it is written, card number or not. When the message also
carried a card number, a few more things go with it: a labelled expiry date ("exp 12/27",
"expires 12/2027", "vence 12/27"), an expiry written right beside the card ("4111 1111 1111 1111
12/27"), a code after the bare label "code" ("code 1234", "código 123"), and a 3 or 4 digit
number right after the card and its expiry ("4111 1111 1111 1111 12/27 123"). Other unlabelled
short numbers are left alone: they are order numbers, amounts and times.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date

from bot.understanding.extract import dob_spans

REDACTED = "[card number removed]"
CODE_REDACTED = "[security code removed]"
EXPIRY_REDACTED = "[expiry removed]"
DOB_REDACTED = "[date of birth]"
MIN_DIGITS, MAX_DIGITS = 13, 19

# A maximal run of digits (any script: \d is every Unicode decimal digit) with at most one
# space, dash, dot, slash or underscore between two digits.
_DIGIT_RUN = re.compile(r"(?<![\d])\d(?:[ \-./_]?\d)*(?![\d])")
_GROUP = re.compile(r"\d+")
_TOKEN = re.compile(r"\d(?:[\-./_]?\d)*")  # space-separated parts: "12/27", "4111-1111"
# A label starts a word, or follows digits ("12/27exp 12/27"): no letter right before it.
_LABEL_START = r"(?<![^\W\d_])"
_SECURITY_CODE = re.compile(
    rf"{_LABEL_START}(?P<label>cvv2?|cvc2?|ccv2?|csc|security\s*code|sec\s*code"
    r"|c[oó]digo\s+de\s+seguridad)"
    r"(?P<between>\s*(?:code|number|no\.?|is|es|:|#|=|-)?\s*(?:is|es|:)?\s*)(?P<code>\d{3,4})\b",
    re.IGNORECASE,
)
# Month and year of an expiry date, checked by _is_expiry (any script's digits, so \d here).
_DATE = r"(?P<month>\d{1,2})\s*[/\-]\s*(?P<year>\d{4}|\d{2})(?![\d/])"
_EXPIRY = re.compile(
    rf"{_LABEL_START}(?P<label>exp(?:iry|iration|ires|\.)?(?:\s+date)?|vence|vencimiento)"
    rf"(?P<between>\s*(?:is|es|on|:|-)?\s*){_DATE}",
    re.IGNORECASE,
)
# Only when the message carried a card number: what is written right beside it.
_BESIDE = r"[\s,;/._\-]*"
_CARD, _EXPIRED = re.escape(REDACTED), re.escape(EXPIRY_REDACTED)
_EXPIRY_AFTER_CARD = re.compile(rf"{_CARD}{_BESIDE}{_DATE}")
_EXPIRY_BEFORE_CARD = re.compile(rf"(?<![\d/]){_DATE}{_BESIDE}{_CARD}")
_CODE_AFTER_CARD_AND_EXPIRY = re.compile(
    rf"(?:{_CARD}{_BESIDE}{_EXPIRED}|{_EXPIRED}{_BESIDE}{_CARD}){_BESIDE}"
    r"(?P<code>\d{3,4})(?!\d|[.,/]\d)"
)
_CODE_WORD = re.compile(
    rf"{_LABEL_START}(?P<label>code|c[oó]digo)"
    r"(?P<between>\s*(?:is|es|:|#|=|-)?\s*(?:is|es|:)?\s*)(?P<code>\d{3,4})\b",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def looks_like_card(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits[0] in "23456" and luhn_valid(digits)


def _ascii_digits(text: str) -> str:
    """The decimal digits of `text`, whatever script they are written in, as ASCII ("４" -> "4")."""
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


def redact_card_numbers(text: str) -> tuple[str, bool]:
    """(text with card numbers replaced by "[card number removed]", whether one was there).

    "Whether one was there" is also true for a security code alone, and for text redacted
    before: the caller tells the patient not to text card numbers or codes."""
    found = False

    def replace(match: re.Match[str]) -> str:
        nonlocal found
        redacted = _redact_run(match.group(0))
        if redacted is None:
            return match.group(0)
        found = True
        return redacted

    redacted = _DIGIT_RUN.sub(replace, text)
    # Text redacted earlier (at the webhook) still says a card number or code was there.
    card = found or REDACTED in text
    redacted, codes = _SECURITY_CODE.subn(rf"\g<label>\g<between>{CODE_REDACTED}", redacted)
    if card:
        for pattern in (_EXPIRY, _EXPIRY_AFTER_CARD, _EXPIRY_BEFORE_CARD):
            redacted = pattern.sub(_redact_expiry, redacted)
        redacted = _CODE_AFTER_CARD_AND_EXPIRY.sub(_redact_code, redacted)
        redacted = _CODE_WORD.sub(_redact_code, redacted)
    return redacted, card or codes > 0 or CODE_REDACTED in text


def _redact_run(run: str) -> str | None:
    """The run of digits with every card number in it removed, or None when it holds none."""
    if len(_ascii_digits(run)) < MIN_DIGITS:
        return None
    split = _GROUP.sub(_split_blob, run)
    # Whole space-separated parts first, so "4111 1111 1111 1111 12/27" keeps "12/27" whole;
    # then whole groups in what is left ("4111 1111 1111 1111-0427").
    redacted = _cut_cards(split, _TOKEN, lambda gap: _cut_cards(gap, _GROUP, lambda rest: rest))
    return None if redacted == run else redacted


def _cut_cards(text: str, part: re.Pattern[str], between: Callable[[str], str]) -> str:
    """`text` with card numbers made of whole parts replaced, read from the left (the longest
    card number starting at each part); what lies between them goes through `between`."""
    parts = [(m.start(), m.end(), _ascii_digits(m.group(0))) for m in part.finditer(text)]
    out: list[str] = []
    done = first = 0
    while first < len(parts):
        digits, last = "", -1
        for index in range(first, len(parts)):
            digits += parts[index][2]
            if len(digits) > MAX_DIGITS:
                break
            if looks_like_card(digits):
                last = index
        if last < 0:
            first += 1
            continue
        out += [between(text[done : parts[first][0]]), REDACTED]
        done, first = parts[last][1], last + 1
    out.append(between(text[done:]))
    return "".join(out)


def _split_blob(match: re.Match[str]) -> str:
    """An unbroken blob of more than 19 digits, split after the card number it starts with
    ("41111111111111110427" -> "4111111111111111 0427"), or as it was."""
    blob, out = match.group(0), ""  # one character a digit
    while len(blob) > MAX_DIGITS:
        lengths = range(MAX_DIGITS, MIN_DIGITS - 1, -1)
        length = next((n for n in lengths if looks_like_card(_ascii_digits(blob[:n]))), 0)
        if not length:
            break
        out, blob = out + blob[:length] + " ", blob[length:]
    return out + blob


def _is_expiry(month: str, year: str) -> bool:
    year = _ascii_digits(year)
    return 1 <= int(_ascii_digits(month)) <= 12 and (len(year) == 2 or year.startswith("20"))


def _redact_expiry(match: re.Match[str]) -> str:
    if not _is_expiry(match["month"], match["year"]):
        return match.group(0)
    return _replace_within(match, match.start("month"), match.end("year"), EXPIRY_REDACTED)


def _redact_code(match: re.Match[str]) -> str:
    return _replace_within(match, match.start("code"), match.end("code"), CODE_REDACTED)


def _replace_within(match: re.Match[str], start: int, end: int, replacement: str) -> str:
    """The matched text with its part from `start` to `end` (indexes of the whole text) replaced."""
    whole, offset = match.group(0), match.start()
    return whole[: start - offset] + replacement + whole[end - offset :]


def redact_dates_of_birth(text: str, today: date) -> str:
    """The text with every date that may be a date of birth replaced by "[date of birth]".

    Whatever the conversation is doing (verifying, choosing who is writing on a shared phone,
    a hand-off that owns the conversation), a date of birth is read from the raw text and only
    this redacted form is kept: in message rows, hand-off reasons, the console and the API.
    """
    spans = dob_spans(text, today)
    for start, end in reversed(spans):
        text = text[:start] + DOB_REDACTED + text[end:]
    return text
