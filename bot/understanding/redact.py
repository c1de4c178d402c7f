"""Card numbers and dates of birth that patients text are removed before a message is stored.

A card number is a run of 13-19 digits (spaces or dashes allowed between digits, as people
group them: "4111 1111 1111 1111", "4111-1111-1111-1111") that passes the Luhn check and starts
like a payment card (2-6: Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro).
Phone numbers, dates and tracking numbers fail one of those tests and are left alone. When a
longer run of digits holds a card number followed by more digits ("4111 1111 1111 1111 0427"),
the card-number groups are removed and the rest is kept.

A card's security code is never kept either (card rules forbid storing it at all): a 3 or 4
digit code after its label ("cvv 123", "CVC: 1234", "security code is 123", "código de
seguridad 123") is removed whenever it is written, card number or not; a labelled expiry date
("exp 12/27", "expires 12/2027", "vence 12/27") is removed when the message also carried a card
number. Unlabelled short numbers are left alone: they are order numbers, amounts and times.
"""

from __future__ import annotations

import re
from datetime import date

from bot.understanding.extract import dob_spans

REDACTED = "[card number removed]"
CODE_REDACTED = "[security code removed]"
EXPIRY_REDACTED = "[expiry removed]"
DOB_REDACTED = "[date of birth]"
MIN_DIGITS, MAX_DIGITS = 13, 19

# A maximal run of digits with at most one space or dash between two digits.
_DIGIT_RUN = re.compile(r"(?<![\d])\d(?:[ \-]?\d)*(?![\d])")
_GROUP = re.compile(r"\d+")
_SECURITY_CODE = re.compile(
    r"\b(?P<label>cvv2?|cvc2?|csc|security\s*code|sec\s*code|c[oó]digo\s+de\s+seguridad)"
    r"(?P<between>\s*(?:number|no\.?|is|es|:|#|=|-)?\s*(?:is|es|:)?\s*)(?P<code>\d{3,4})\b",
    re.IGNORECASE,
)
_EXPIRY = re.compile(
    r"\b(?P<label>exp(?:iry|iration|ires|\.)?(?:\s+date)?|vence|vencimiento)"
    r"(?P<between>\s*(?:is|es|on|:|-)?\s*)"
    r"(?P<date>(?:0?[1-9]|1[0-2])\s*[/\-]\s*(?:20)?\d{2})(?![\d/])",
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


def redact_card_numbers(text: str) -> tuple[str, bool]:
    """(text with card numbers replaced by "[card number removed]", whether one was there)."""
    found = False

    def replace(match: re.Match[str]) -> str:
        nonlocal found
        run = match.group(0)
        digits = re.sub(r"\D", "", run)
        if looks_like_card(digits):
            found = True
            return REDACTED
        if len(digits) > MAX_DIGITS:
            redacted = _redact_inside(run)
            if redacted is not None:
                found = True
                return redacted
        return run

    redacted = _DIGIT_RUN.sub(replace, text)
    # Text redacted earlier (at the webhook) still says a card number or code was there.
    card = found or REDACTED in text
    redacted, codes = _SECURITY_CODE.subn(rf"\g<label>\g<between>{CODE_REDACTED}", redacted)
    if card:
        redacted = _EXPIRY.sub(rf"\g<label>\g<between>{EXPIRY_REDACTED}", redacted)
    return redacted, card or codes > 0 or CODE_REDACTED in text


def _redact_inside(run: str) -> str | None:
    """Remove a card number made of whole leading groups of a longer run, if there is one."""
    groups = list(_GROUP.finditer(run))
    if len(groups) > 1:
        for end in range(len(groups), 0, -1):
            digits = "".join(g.group(0) for g in groups[:end])
            if looks_like_card(digits):
                return REDACTED + run[groups[end - 1].end() :]
        return None
    for length in range(MAX_DIGITS, MIN_DIGITS - 1, -1):  # one unbroken blob of digits
        if looks_like_card(run[:length]):
            return REDACTED + " " + run[length:]
    return None


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
