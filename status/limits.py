"""Every input limit, declared once: the event schema, the table columns and the webhook parsers
all read these, so a value the schema accepts always fits the column that stores it.

What falls outside is refused with a 4xx naming the field and the limit (never a 5xx, never half
a batch); text from patients is kept with the bytes a database cannot hold replaced (`scrub`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

# --- string lengths (characters): the column and the schema use the same number -------------
SOURCE_ID = 128  # a source system's id: patient_id, prescription_id, ...
EVENT_ID = 200
NAME = 100  # first_name, last_name, staff name
EMAIL = 255
PHONE = 32  # as written by a source system, before normalising to E.164 (<= 16)
E164 = 20
TIMEZONE = 64  # the longest IANA name is 32 characters
MEDICATION = 200
PHARMACY_NAME = 200
CARRIER = 64
TRACKING_NUMBER = 128
URL = 500
PLAN = 200
DESCRIPTION = 300
VISIT_TYPE = 100
PROVIDER_NAME = 200
TASK_KIND = 64
TASK_TITLE = 300
REASON = 1000  # blocked_reason, failure_reason (TEXT columns, but nobody reads an essay)

# --- integers -------------------------------------------------------------------------------
MAX_INT32 = 2**31 - 1  # an INTEGER column on PostgreSQL; every row id is one
MAX_CENTS = MAX_INT32  # amount_cents: $21,474,836.47, far above any patient's bill
MAX_REFILLS = 999
MAX_LIMIT = 1000  # `?limit=` on list routes
MAX_DAYS = 3660  # `?days=` on report pages

# --- timestamps -----------------------------------------------------------------------------
MIN_YEAR = 1900
MAX_YEAR = 2200

# --- bodies ---------------------------------------------------------------------------------
MAX_EVENTS_BODY = 16 * 1024 * 1024  # POST /events: 5,000 events of about 3 KB
MAX_WEBHOOK_BODY = 1024 * 1024  # Twilio, Telegram, the hand-off API
MAX_JSON_DEPTH = 32  # an event is 4 deep, a Telegram update about 8
MAX_NUMBER_DIGITS = 20  # any integer we store fits in 19 digits and a sign

# --- webhooks -------------------------------------------------------------------------------
PROVIDER_ID = 64  # MessageSid (34 characters today), Telegram ids
MAX_MEDIA = 10  # Twilio sends at most 10 media per MMS
MESSAGE_BODY = 4096  # Telegram's own limit; an SMS concatenates to at most 1,600


class LimitExceeded(ValueError):
    """A value outside a limit: `field` and `rule` say which, never what was sent."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


# NUL cannot be stored by PostgreSQL; a lone surrogate cannot be encoded as UTF-8 at all.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def scrub(text: str) -> str:
    """Patient text as it can be stored: NULs and lone surrogates become U+FFFD, nothing lost."""
    return _UNSTORABLE.sub("\ufffd", text)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_timezone(name: str) -> bool:
    """An IANA time zone name this machine knows (looked up, never opened as a path)."""
    return len(name) <= TIMEZONE and name in _zones()


def in_year_range(value: datetime) -> bool:
    return MIN_YEAR <= value.year <= MAX_YEAR


def media_count(raw: str | None) -> int:
    """Twilio's NumMedia: a small non-negative integer written in digits, else LimitExceeded."""
    text = (raw or "0").strip() or "0"
    if len(text) > 3 or not text.isascii() or not text.isdigit():
        raise LimitExceeded("NumMedia", f"must be a whole number from 0 to {MAX_MEDIA}")
    count = int(text)
    if count > MAX_MEDIA:
        raise LimitExceeded("NumMedia", f"must be a whole number from 0 to {MAX_MEDIA}")
    return count


def provider_id(field: str, value: str | None) -> str:
    """A provider's message id: present, printable and at most PROVIDER_ID characters."""
    if not value:
        raise LimitExceeded(field, "is required")
    if len(value) > PROVIDER_ID or not value.isprintable():
        raise LimitExceeded(field, f"must be at most {PROVIDER_ID} printable characters")
    return value


# --- JSON bodies ----------------------------------------------------------------------------
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays and objects deeper than `limit` (strings skipped).

    Runs before parsing, so a body nested thousands deep is refused without recursing into it:
    each pass removes the innermost level of brackets, in C, at most `limit` passes.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(_AS_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):
        reduced = brackets.replace(b"[]", b"")
        if len(reduced) == len(brackets):  # nothing left, or mismatched: the parser says so
            return False
        brackets = reduced
    return bool(brackets)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise LimitExceeded("(body)", f"numbers may have at most {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _parse_constant(name: str) -> float:
    raise LimitExceeded("(body)", f"{name} is not a JSON number")


def load_json(raw: bytes, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> object:
    """A request body -> the parsed JSON value, or LimitExceeded / ValueError naming the rule."""
    if len(raw) > max_bytes:
        raise LimitExceeded("(body)", f"at most {max_bytes} bytes")
    if json_depth_exceeds(raw, max_depth):
        raise LimitExceeded("(body)", f"JSON nested at most {max_depth} levels deep")
    try:
        return json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError as exc:  # the scan above makes this unreachable; kept as a guard
        raise LimitExceeded("(body)", f"JSON nested at most {max_depth} levels deep") from exc
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
