"""One jinja2 environment for every patient message, with filters that speak each language.

Messages live in `templates/messages/<lang>/<name>.j2`; a channel may override one with
`<name>.<channel>.j2` (e.g. `.telegram.j2`, autoescaped because Telegram gets HTML). A plain
template rendered for Telegram is escaped whole, so a `<` in a pharmacy name cannot break it.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import jinja2
import yaml

import templates as templates_package
from bot.messages import Buttons
from bot.sms_text import fit_sms
from status.settings import Settings

TEMPLATES_DIR = Path(templates_package.__file__).parent
LANGUAGES = ("en", "es")
_When = TypeVar("_When", date, datetime)

_DAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "es": ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
}
_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "MXN": "MX$"}


def _as_local(value: _When, tz: str | None) -> _When:
    if isinstance(value, datetime) and tz:
        return value.astimezone(ZoneInfo(tz))
    return value


def short_date(value: date | datetime | None, lang: str = "en", tz: str | None = None) -> str:
    """`Nov 22` / `22 nov`."""
    if value is None:
        return ""
    value = _as_local(value, tz)
    month = _MONTHS[lang][value.month - 1]
    return f"{value.day} {month}" if lang == "es" else f"{month} {value.day}"


def day_date(value: date | datetime | None, lang: str = "en", tz: str | None = None) -> str:
    """`Sat, Nov 22` / `sáb 22 nov`."""
    if value is None:
        return ""
    value = _as_local(value, tz)
    day = _DAYS[lang][value.weekday()]
    return f"{day} {short_date(value, lang)}" if lang == "es" else f"{day}, {short_date(value)}"


def clock(value: datetime, lang: str = "en", tz: str | None = None) -> str:
    """`3:30 PM` / `15:30`."""
    value = _as_local(value, tz)
    if lang == "es":
        return value.strftime("%H:%M")
    return value.strftime("%I:%M %p").lstrip("0")


def day_time(value: datetime | None, lang: str = "en", tz: str | None = None) -> str:
    """`Sat, Nov 22 at 3:30 PM EST` / `sáb 22 nov a las 15:30 (CST)`."""
    if value is None:
        return ""
    local = _as_local(value, tz)
    zone = local.tzname() or ""
    if lang == "es":
        return f"{day_date(local, lang)} a las {clock(local, lang)} ({zone})"
    return f"{day_date(local, lang)} at {clock(local, lang)} {zone}".rstrip()


def money(cents: int | None, currency: str = "USD", lang: str = "en") -> str:
    if cents is None:
        return ""
    symbol = _SYMBOLS.get(currency.upper(), currency.upper() + " ")
    return f"{symbol}{cents / 100:,.2f}"


# A processor's decline code, as a patient reads it (Stripe's codes). A card reported lost or
# stolen, or a suspected fraud, reads as a plain decline, as processors advise.
_DECLINE_GROUPS: list[tuple[tuple[str, ...], tuple[str, str]]] = [
    (("card_declined", "generic_decline", "do_not_honor", "lost_card", "stolen_card",
      "fraudulent", "pickup_card", "restricted_card", "security_violation",
      "transaction_not_allowed", "not_permitted", "merchant_blacklist"),
     ("card declined", "tarjeta rechazada")),
    (("expired_card",), ("card expired", "tarjeta vencida")),
    (("insufficient_funds",), ("insufficient funds", "fondos insuficientes")),
    (("incorrect_cvc", "invalid_cvc"),
     ("security code didn't match", "el código de seguridad no coincide")),
    (("incorrect_number", "invalid_number"),
     ("card number not valid", "número de tarjeta no válido")),
    (("invalid_expiry_month", "invalid_expiry_year"),
     ("expiry date not valid", "fecha de vencimiento no válida")),
    (("processing_error",), ("a processing error", "un error de procesamiento")),
    (("authentication_required",),
     ("your bank asks you to approve it", "su banco pide que lo apruebe")),
    (("card_velocity_exceeded", "withdrawal_count_limit_exceeded"),
     ("card limit reached", "límite de la tarjeta alcanzado")),
]  # fmt: skip
_DECLINES = {code: words for codes, words in _DECLINE_GROUPS for code in codes}
_CODE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")


def failure(reason: str | None, lang: str = "en") -> str:
    """Why a payment failed, in words: a processor's code ("card_declined") as a patient
    reads it; a reason the clinic wrote in words ("card expired") as written."""
    if not reason:
        return ""
    code = reason.strip()
    words = _DECLINES.get(code.lower())
    if words is not None:
        return words[1] if lang == "es" else words[0]
    if _CODE.fullmatch(code):
        return code.replace("_", " ")  # a code we do not know: at least words
    return reason


class Renderer:
    """Renders message templates for a language and channel, with the clinic's settings.

    `overrides` are the clinic's own wording (`{"en/help_keyword": "..."}`, or with `.sms` /
    `.telegram` for one channel); a template the clinic did not reword is ours.
    """

    def __init__(self, settings: Settings, overrides: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = _environment()
        self.overrides = dict(overrides or {})
        self._compiled: dict[str, jinja2.Template] = {}

    def buttons(self, name: str, lang: str) -> Buttons:
        """Telegram button rows (`menu`, `yes_no`) from `messages/<lang>/buttons.yaml`."""
        return _buttons(lang if lang in LANGUAGES else "en")[name]

    def render(self, name: str, lang: str, channel: str, **context: Any) -> str:
        lang = lang if lang in LANGUAGES else "en"
        wire = "telegram" if channel == "telegram" else "sms"
        context.update(
            lang=lang,
            channel=wire,
            clinic=self.settings.clinic_name,
            support_phone=self.settings.clinic_support_phone,
            payment_url=self.settings.payment_update_url,
            show_medication=wire == "telegram" or self.settings.sms_show_medication_names,
        )
        template, channel_specific = self._template(name, lang, wire)
        text = _tidy(template.render(**context))
        if channel_specific:
            return text
        return html.escape(text, quote=False) if wire == "telegram" else fit_sms(text)

    def _template(self, name: str, lang: str, wire: str) -> tuple[jinja2.Template, bool]:
        # A clinic's wording is plain text on every channel (escaped whole for Telegram, fitted
        # to SMS), so an override can never inject markup, whatever the data it shows.
        for key in (f"{lang}/{name}.{wire}", f"{lang}/{name}"):
            if key in self.overrides:
                compiled = self._compiled.get(key)
                if compiled is None:
                    compiled = self._compiled[key] = self.env.from_string(self.overrides[key])
                return compiled, False
        return _template(self.env, name, lang, wire)

    def compile_all(self) -> int:
        """Load and compile every message template now, not on a patient's first message."""
        names = [n for n in self.env.list_templates(extensions=["j2"]) if n.startswith("messages")]
        for name in names:
            self.env.get_template(name)
        return len(names)


@lru_cache(maxsize=2048)
def _template(
    env: jinja2.Environment, name: str, lang: str, wire: str
) -> tuple[jinja2.Template, bool]:
    """(compiled template, whether it is the channel's own): looked up once per process."""
    try:
        return env.get_template(f"messages/{lang}/{name}.{wire}.j2"), True
    except jinja2.TemplateNotFound:
        return env.get_template(f"messages/{lang}/{name}.j2"), False


@lru_cache
def _buttons(lang: str) -> dict[str, Buttons]:
    path = TEMPLATES_DIR / "messages" / lang / "buttons.yaml"
    table = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        name: [[{"text": label, "data": data} for label, data in row] for row in rows]
        for name, rows in table.items()
    }


def _tidy(text: str) -> str:
    """Templates are written readably; messages are compact: collapse runs of spaces and lines."""
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


@lru_cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "telegram.j2"), default_for_string=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # compiled once per process: no stat of the file on every render
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        short_date=short_date,
        day_date=day_date,
        day_time=day_time,
        clock=clock,
        money=money,
        failure=failure,
    )
    return env


def environment() -> jinja2.Environment:
    return _environment()
