"""How many SMS segments a body costs: GSM-7 (160 / 153 per part) or UCS-2 (70 / 67 per part)."""

from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 basic character set (the escape 0x1B is left out: it cannot be sent on its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these costs two septets (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE = {GSM7: 160, UCS2: 70}
_PART = {GSM7: 153, UCS2: 67}


def is_gsm7(body: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body)


def _units(body: str, encoding: str) -> list[int]:
    """The size of each character in the encoding's units; a unit list never splits a char."""
    if encoding == GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in body]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in body]  # UTF-16 surrogate pairs


def sms_segments(body: str) -> tuple[str, int]:
    """`("GSM-7" | "UCS-2", segments)` for `body`; an empty body still costs one segment.

    A multi-part message carries a header in every part, so parts hold 153 septets (GSM-7) or
    67 UTF-16 units (UCS-2), and an escaped GSM character or a surrogate pair is never split.
    """
    encoding = GSM7 if is_gsm7(body) else UCS2
    units = _units(body, encoding)
    if sum(units) <= _SINGLE[encoding]:
        return encoding, 1
    limit, segments, used = _PART[encoding], 1, 0
    for size in units:
        if used + size > limit:
            segments, used = segments + 1, 0
        used += size
    return encoding, segments


# Letters Spanish uses that GSM-7 lacks, and the plain letters readers accept in a text message.
# (é, ñ, ü, ¿ and ¡ are in GSM-7 and stay.)
_FOLD = str.maketrans({"á": "a", "í": "i", "ó": "o", "ú": "u", "Á": "A", "Í": "I", "Ó": "O",
                       "Ú": "U", "’": "'", "‘": "'", "“": '"', "”": '"', "…": "...", "–": "-",
                       "—": "-"})  # fmt: skip


def fit_sms(body: str) -> str:
    """Every SMS in GSM-7 when folding a few letters gets it there.

    UCS-2 cuts each segment from 160 characters to 70, doubling or tripling what the patient
    receives, and folding only the messages it shortens would mix "informacion" and "Pedí" in
    one conversation. So the letters GSM-7 lacks are always folded (é, ñ, ü, ¿ and ¡ stay); a
    message with characters that have no fold (an emoji a clinic put in a template) is sent as
    written.
    """
    if is_gsm7(body):
        return body
    folded = body.translate(_FOLD)
    return folded if is_gsm7(folded) else body
