"""Alert choices in the patient's words: "stop reminders", "no more shipping texts", "only
urgent", "start reminders", "what alerts do I get?" (English and Spanish).

Read before classification, like `problems`: the classifier would call "stop reminders" an
opt-out, and it is not one. A carrier keyword alone ("STOP") never reaches here (compliance
reads it first); a request here always names a topic, "only urgent", or asks what is on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.understanding.normalize import strip_accents
from status.alerts import Topic

_TOPIC_WORDS: dict[Topic, str] = {
    Topic.SHIPPING: r"ship\w*|deliver\w*|tracking|packages?|pharmac\w*|envios?|entregas?|"
    r"paquetes?|farmacias?",
    Topic.BILLING: r"bill\w*|payments?|charges?|invoices?|pagos?|cobros?|facturas?|facturacion",
    Topic.APPOINTMENTS: r"appointments?|appts?|visits?|citas?|consultas?",
    Topic.REFILLS: r"reminders?|refills?|recordatorios?|resurtidos?|recargas?",
    Topic.DELAYS: r"delays?|delayed|taking longer|running late|late notices?|retrasos?|demoras?|"
    r"tardando",
}
_TOPICS = {topic: re.compile(rf"\b(?:{words})\b") for topic, words in _TOPIC_WORDS.items()}
_OFF = re.compile(
    r"\b(?:stop|no more|dont send|don'?t send|do not send|turn off|mute|pause|unsubscribe|"
    r"no longer|quit|cancel|no quiero|no mas|ya no|deja(?:r|n)? de|dejen de|para(?:r)?|"
    r"no me (?:manden|envien|mande|envie|escriban)|quita(?:r|me)?|desactiva(?:r)?|detener|"
    r"sin)\b"
)
_ON = re.compile(
    r"\b(?:start|resume|turn on|unmute|restart|send (?:me )?(?:the )?\w* ?again|again|"
    r"i want|activa(?:r)?|reanuda(?:r)?|vuelv\w* a|quiero|manden(?:me)?|envien(?:me)?|"
    r"de nuevo|otra vez)\b"
)
_ONLY_URGENT = re.compile(
    r"\b(?:only|just) (?:the )?urgent\b|\burgent (?:ones |alerts |texts |messages )?only\b|"
    r"\bsolo (?:lo |los |las )?(?:urgentes?|importantes?)\b"
)
_ALL_ON = re.compile(
    r"\b(?:all|every|todas|todos) (?:the |mis |my |los |las )?(?:alerts|texts|notifications|"
    r"messages|updates|avisos|alertas|mensajes|notificaciones)\b"
)
_ASK = re.compile(
    r"\b(?:what|which) (?:alerts|texts|notifications|messages|updates|reminders)\b.{0,30}\b"
    r"(?:get|getting|receive|on|sign(?:ed)? up)\b|\bmy (?:alert|notification) (?:settings|"
    r"preferences)\b|\b(?:que|cuales) (?:alertas|avisos|notificaciones|mensajes|"
    r"recordatorios)\b.{0,30}\b(?:recibo|tengo|me llegan|estan activ\w*)\b"
)
# The thing muted is the texts themselves ("no more shipping texts", "stop reminders").
_ALERT_NOUNS = re.compile(
    r"\b(?:texts?|messages?|alerts?|notifications?|updates?|notices?|reminders?|avisos?|"
    r"alertas?|mensajes?|notificaciones|recordatorios?|sms)\b"
)
_REFILL_WORD = re.compile(r"\b(?:refills?|resurtidos?|recargas?)\b")


@dataclass(frozen=True)
class AlertRequest:
    kind: str  # "mute", "unmute", "only_urgent", "all_on", "ask"
    topics: frozenset[Topic] = field(default_factory=frozenset)


def read(text: str) -> AlertRequest | None:
    """The alert choice a message makes, or None (most messages make none)."""
    folded = strip_accents(text.lower())
    folded = re.sub(r"[^\w\s']", " ", folded)
    folded = re.sub(r"\s+", " ", folded).strip()
    if not folded or len(folded) > 160:
        return None
    if _ASK.search(folded):
        return AlertRequest("ask")
    if _ONLY_URGENT.search(folded):
        return AlertRequest("only_urgent")
    topics = frozenset(t for t, pattern in _TOPICS.items() if pattern.search(folded))
    off, on = bool(_OFF.search(folded)), bool(_ON.search(folded))
    if on and not off and _ALL_ON.search(folded):
        return AlertRequest("all_on")
    if len(topics) > 1 and not _REFILL_WORD.search(folded):
        topics -= {Topic.REFILLS}  # "appointment reminders" are about appointments
    if not topics or not _ALERT_NOUNS.search(folded):
        return None
    if off:
        return AlertRequest("mute", topics)
    if on:
        return AlertRequest("unmute", topics)
    return None
