"""Clinics: every patient, event, conversation, hand-off, message and key belongs to one.

The clinic `default` is the one configured from the environment (`CLINIC_NAME`, `API_KEY`,
`TWILIO_FROM_NUMBER`, ...): its row leaves those columns empty and the environment answers, so a
single-clinic deployment keeps working unchanged. Another clinic's row carries its own name,
numbers, bot and wording; what it leaves empty (hours, quiet hours, caps, SLA) falls back to the
deployment's settings, but never its channels: a clinic without its own Twilio sender or bot
sends nothing on that channel rather than speak from another brand's number.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    String,
    Text,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

import templates as templates_package
from status.db import AsyncRawCursor, Base, Prepared, RawCursor, insert_ignore, utcnow
from status.settings import Settings, parse_matches, parse_quiet_hours

DEFAULT_SLUG = "default"
DEFAULT_ID = 1  # the migration and `ensure_default` give the default clinic this id
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
KEY_PREFIX = "ps_"
COLOUR = re.compile(r"#[0-9a-fA-F]{6}")  # brand and accent colours
LOGO_URL = re.compile(r"https://[^\s\"'<>]+")
MESSAGES = Path(templates_package.__file__).parent / "messages"


class Clinic(Base):
    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    # Empty (None) columns take the deployment's setting (see `settings_for`).
    name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    hours: Mapped[str | None] = mapped_column(String(100))  # CLINIC_HOURS shape
    support_phone: Mapped[str | None] = mapped_column(String(32))
    sla_minutes: Mapped[dict[str, int] | None] = mapped_column(JSON)
    quiet_hours: Mapped[str | None] = mapped_column(String(32))
    daily_message_cap: Mapped[int | None] = mapped_column(Integer)
    weekly_message_cap: Mapped[int | None] = mapped_column(Integer)
    payment_update_url: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str | None] = mapped_column(String(5))
    # channels: never taken from the environment for a clinic other than `default`
    twilio_from_numbers: Mapped[list[str]] = mapped_column(JSON, default=list)  # E.164, first sends
    twilio_messaging_service_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    telegram_bot_token: Mapped[str | None] = mapped_column(String(100))
    telegram_webhook_secret: Mapped[str | None] = mapped_column(String(256))
    telegram_bot_username: Mapped[str | None] = mapped_column(String(64))
    telegram_staff_chat_id: Mapped[str | None] = mapped_column(String(32))
    # integrations (docs/integrations.md): /integrations/{stripe|fhir}/{slug} check these
    stripe_webhook_secret: Mapped[str | None] = mapped_column(String(256))
    stripe_api_key: Mapped[str | None] = mapped_column(String(256))
    stripe_patient_match: Mapped[str | None] = mapped_column(String(64))
    fhir_webhook_secret: Mapped[str | None] = mapped_column(String(256))
    fhir_bearer_token: Mapped[str | None] = mapped_column(String(256))
    fhir_patient_id_system: Mapped[str | None] = mapped_column(String(500))
    # branding of patient-facing pages and messages
    display_name: Mapped[str | None] = mapped_column(String(100))
    brand_color: Mapped[str | None] = mapped_column(String(16))
    accent_color: Mapped[str | None] = mapped_column(String(16))
    logo_url: Mapped[str | None] = mapped_column(String(500))
    # "<lang>/<template>" (or "<lang>/<template>.<sms|telegram>") -> jinja2 source
    templates: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    api_key_rotated_at: Mapped[datetime | None]
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def is_default(self) -> bool:
        return self.slug == DEFAULT_SLUG


# --- errors -----------------------------------------------------------------------------------


class ClinicNotFound(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"no clinic with slug {slug!r}")
        self.slug = slug


class InvalidClinic(ValueError):
    """A clinic field that cannot be stored; the message names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field = field
        self.rule = rule


class ClinicExists(ValueError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"a clinic with slug {slug!r} exists already")
        self.slug = slug


class NumberTaken(ValueError):
    """An SMS number or messaging service routes to one clinic only."""

    def __init__(self, sender: str, slug: str) -> None:
        super().__init__(f"{sender} already belongs to clinic {slug!r}")
        self.sender = sender
        self.slug = slug


# --- queries ----------------------------------------------------------------------------------


def by_id(session: Session, clinic_id: int) -> Clinic | None:
    return session.get(Clinic, clinic_id)


def by_slug(session: Session, slug: str) -> Clinic | None:
    if not SLUG.fullmatch(slug or ""):
        return None
    return session.scalars(select(Clinic).where(Clinic.slug == slug)).one_or_none()


def require(session: Session, slug: str) -> Clinic:
    clinic = by_slug(session, slug)
    if clinic is None:
        raise ClinicNotFound(slug)
    return clinic


def all_clinics(session: Session) -> list[Clinic]:
    return list(session.scalars(select(Clinic).order_by(Clinic.id)))


def ids(session: Session) -> list[int]:
    return list(session.scalars(select(Clinic.id).order_by(Clinic.id)))


_HELD = "patient_status.clinics_held"


def held(session: Session, clinic_id: int) -> Clinic | None:
    """The clinic's row, read at most once per transaction: the session's identity map holds
    rows only while something refers to them, so the transaction's session keeps a reference
    until the transaction ends (a turn, a send and its record each ask for their clinic)."""
    rows = session.info.setdefault(_HELD, {})
    if clinic_id not in rows:
        rows[clinic_id] = session.get(Clinic, clinic_id)
    return cast(Clinic | None, rows[clinic_id])


@event.listens_for(Session, "after_transaction_end")
def _let_go(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the transaction, not a savepoint in it
        session.info.pop(_HELD, None)


def slug_of(session: Session, clinic_id: int) -> str:
    """The clinic's slug (a metrics label); one primary-key read at most per transaction."""
    clinic = held(session, clinic_id)
    return clinic.slug if clinic is not None else str(clinic_id)


def slugs(session: Session) -> dict[int, str]:
    return {row.id: row.slug for row in session.execute(select(Clinic.id, Clinic.slug))}


def for_sms(session: Session, to: str | None, messaging_service_sid: str | None) -> Clinic:
    """The clinic an inbound SMS was sent to (see `sms_clinic_id`)."""
    statement = select(sms_clinic_id(session.get_bind().dialect.name))
    params = {"to": to, "messaging_service_sid": messaging_service_sid}
    return session.get(Clinic, session.execute(statement, params).scalar_one()) or default(session)


@dataclass(frozen=True)
class SmsRecipient:
    """Where an inbound SMS was sent: the `To` number (E.164) and the messaging service."""

    to: str | None = None
    messaging_service_sid: str | None = None


def sms_clinic_id(dialect: str) -> ColumnElement[int]:
    """The id of the clinic an inbound SMS was sent to, as SQL (binds `to` and
    `messaging_service_sid`), so the webhook's one insert routes it: by its messaging service,
    else its `To` number.

    The environment's sender (`TWILIO_FROM_NUMBER`, `TWILIO_MESSAGING_SERVICE_SID`) is the
    default clinic's; a number no clinic claims goes to the default clinic too (a deployment
    with one number never has to list it), so only numbers of other clinics need a row.
    """
    table = Clinic.__table__
    each = "json_array_elements_text" if dialect == "postgresql" else "json_each"
    numbers = getattr(func, each)(table.c.twilio_from_numbers).table_valued("value")
    listed = select(numbers.c.value).where(numbers.c.value == bindparam("to", type_=String))
    first = select(table.c.id).order_by(table.c.id).limit(1)
    by_service = first.where(
        table.c.twilio_messaging_service_sid == bindparam("messaging_service_sid", type_=String)
    )
    return func.coalesce(
        by_service.scalar_subquery(),
        first.where(listed.exists()).scalar_subquery(),
        select(table.c.id).where(table.c.slug == DEFAULT_SLUG).scalar_subquery(),
    )


def by_api_key(session: Session, key: str) -> Clinic | None:
    found = key_hash(key)
    if found is None:
        return None
    return session.scalars(select(Clinic).where(Clinic.api_key_hash == found)).one_or_none()


def key_hash(key: str) -> str | None:
    """What a clinic's key is stored as; None when `key` cannot be one that `rotate_key` made
    (so a guess costs no database read)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return hash_key(key)


@dataclass(frozen=True)
class KeyedClinic:
    """The clinic an API key names: the default one for the environment's `API_KEY`, known at
    once; for a `clinic key`, its hash, looked up in the statement that reads with it (so a
    rotated key finds nothing from the moment the rotation commits)."""

    clinic_id: int | None = None
    key_hash: str | None = None


_CLINIC_OF_KEY_HASH = select(Clinic.id).where(Clinic.api_key_hash == bindparam("key_hash"))
# the clinic id where a statement reads a `KeyedClinic`: the one given, else the key's
KEYED_CLINIC_ID = func.coalesce(
    bindparam("clinic_id", type_=Integer), _CLINIC_OF_KEY_HASH.scalar_subquery()
)
_CLINIC_OF_KEY_HASH_RAW = Prepared(_CLINIC_OF_KEY_HASH)


def read_clinic_of_key(reader: RawCursor, keyed: KeyedClinic) -> int | None:
    """`keyed`'s clinic id through `Database.raw_autocommit`; None: no clinic has that key."""
    if keyed.clinic_id is not None:
        return keyed.clinic_id
    found = reader.rows(_CLINIC_OF_KEY_HASH_RAW, key_hash=keyed.key_hash)
    return found[0][0] if found else None


async def read_clinic_of_key_async(reader: AsyncRawCursor, keyed: KeyedClinic) -> int | None:
    """`read_clinic_of_key` on the event loop (`AsyncReads`)."""
    if keyed.clinic_id is not None:
        return keyed.clinic_id
    found = await reader.rows(_CLINIC_OF_KEY_HASH_RAW, key_hash=keyed.key_hash)
    return found[0][0] if found else None


def default(session: Session) -> Clinic:
    clinic = session.get(Clinic, DEFAULT_ID)
    if clinic is None or not clinic.is_default:
        clinic = require(session, DEFAULT_SLUG)
    return clinic


# --- operations -------------------------------------------------------------------------------


def ensure_default(session: Session) -> None:
    """The default clinic's row (the migration writes it; a truncated test database needs it)."""
    now = utcnow()
    insert_ignore(
        session,
        Clinic.__table__,
        {"id": DEFAULT_ID, "slug": DEFAULT_SLUG, "twilio_from_numbers": [], "templates": {},
         "notes": "", "created_at": now, "updated_at": now},
    )  # fmt: skip


EDITABLE = (
    "name", "timezone", "hours", "support_phone", "sla_minutes", "quiet_hours",
    "daily_message_cap", "weekly_message_cap", "payment_update_url", "language",
    "twilio_from_numbers", "twilio_messaging_service_sid", "telegram_bot_token",
    "telegram_webhook_secret", "telegram_bot_username", "telegram_staff_chat_id", "display_name",
    "brand_color", "accent_color", "logo_url", "templates", "stripe_webhook_secret",
    "stripe_api_key", "stripe_patient_match", "fhir_webhook_secret", "fhir_bearer_token",
    "fhir_patient_id_system",
)  # fmt: skip


def _check(field: str, value: Any) -> Any:
    """A value for `field`, normalised, or InvalidClinic naming what is wrong."""
    if value is None:
        return None
    if field == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidClinic("timezone", f"{value!r} is not an IANA time zone") from exc
    elif field == "quiet_hours":
        try:
            parse_quiet_hours(value)
        except ValueError as exc:
            raise InvalidClinic("quiet_hours", str(exc)) from exc
    elif field == "hours":
        if not re.fullmatch(r"\s*[A-Za-z,\- ]+\s+\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*", value):
            raise InvalidClinic("hours", f"{value!r} must look like 'Mon-Fri 08:00-18:00'")
    elif field == "twilio_from_numbers":
        from status.patients import InvalidPhone, normalize_phone

        numbers = []
        for raw in value:
            try:
                numbers.append(normalize_phone(raw))
            except InvalidPhone as exc:
                raise InvalidClinic("twilio_from", f"{raw!r} is not a phone number") from exc
        return numbers
    elif field == "stripe_patient_match":
        try:
            return ",".join(parse_matches(value))
        except ValueError as exc:
            raise InvalidClinic("stripe_patient_match", str(exc)) from exc
    elif field in ("brand_color", "accent_color") and not COLOUR.fullmatch(value):
        raise InvalidClinic(field, f"{value!r} must be a #rrggbb colour, e.g. #0b5cab")
    elif field == "logo_url" and not LOGO_URL.fullmatch(value):
        raise InvalidClinic("logo_url", f"{value!r} must be an https:// address")
    elif field == "language" and value not in ("en", "es"):
        raise InvalidClinic("language", "must be 'en' or 'es'")
    elif field == "templates":
        return {key: _check_template(key, source) for key, source in value.items()}
    return value


def _check_template(key: str, source: str) -> str:
    """A template override: a message we have (`en/help_keyword`, optionally `.sms` or
    `.telegram`), written in jinja2 that compiles."""
    lang, _, name = key.partition("/")
    base = name.removesuffix(".sms").removesuffix(".telegram")
    if lang not in ("en", "es") or not (MESSAGES / lang / f"{base}.j2").exists():
        raise InvalidClinic(
            f"template {key!r}", "is not one of ours: use '<en|es>/<name>' as in templates/messages"
        )
    try:
        jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidClinic(f"template {key!r}", f"does not compile: {exc.message}") from exc
    return source


def update(session: Session, clinic: Clinic, **values: Any) -> Clinic:
    """Set the given fields (None leaves a field as it is; use `clear` to empty one)."""
    for field, value in values.items():
        if field not in EDITABLE:
            raise InvalidClinic(field, "is not a clinic setting")
        if value is None:
            continue
        value = _check(field, value)
        if field == "twilio_from_numbers":
            for number in value:
                owner = _number_owner(session, number)
                if owner is not None and owner.id != clinic.id:
                    raise NumberTaken(number, owner.slug)
        if field == "twilio_messaging_service_sid":
            owner = session.scalars(
                select(Clinic).where(Clinic.twilio_messaging_service_sid == value)
            ).first()
            if owner is not None and owner.id != clinic.id:
                raise NumberTaken(value, owner.slug)
        setattr(clinic, field, value)
    clinic.updated_at = utcnow()
    return clinic


def _number_owner(session: Session, number: str) -> Clinic | None:
    for clinic in all_clinics(session):
        if number in (clinic.twilio_from_numbers or []):
            return clinic
    return None


def add(session: Session, slug: str, name: str, **values: Any) -> Clinic:
    if not SLUG.fullmatch(slug or ""):
        raise InvalidClinic(
            "slug", "must be 1-40 lowercase letters, digits and dashes (not at either end)"
        )
    if by_slug(session, slug) is not None:
        raise ClinicExists(slug)
    if not (name or "").strip():
        raise InvalidClinic("name", "is required")
    clinic = Clinic(slug=slug, name=name.strip(), twilio_from_numbers=[], templates={}, notes="")
    session.add(clinic)
    update(session, clinic, **values)
    session.flush()
    return clinic


def hash_key(key: str) -> str:
    """Keys are 32 random bytes: a plain SHA-256 cannot be brute-forced, and looks up fast."""
    return hashlib.sha256(key.encode()).hexdigest()


def rotate_key(session: Session, clinic: Clinic) -> str:
    """A new API key for the clinic; the old one stops working. Only the hash is stored."""
    key = f"{KEY_PREFIX}{clinic.slug}_{secrets.token_urlsafe(32)}"
    clinic.api_key_hash = hash_key(key)
    clinic.api_key_rotated_at = clinic.updated_at = utcnow()
    return key


# --- the clinic's settings ----------------------------------------------------------------------

# clinic column -> setting, taken from the row when it is set, else from the environment
_OWN_OR_DEPLOYMENT = {
    "name": "clinic_name",
    "timezone": "clinic_timezone",
    "hours": "clinic_hours",
    "support_phone": "clinic_support_phone",
    "sla_minutes": "sla_minutes",
    "quiet_hours": "quiet_hours",
    "daily_message_cap": "daily_message_cap",
    "weekly_message_cap": "weekly_message_cap",
    "payment_update_url": "payment_update_url",
    "stripe_patient_match": "stripe_patient_match",
}
# settings a clinic other than `default` never takes from the environment
_CHANNELS = {
    "twilio_messaging_service_sid": "twilio_messaging_service_sid",
    "telegram_bot_token": "telegram_bot_token",
    "telegram_webhook_secret": "telegram_webhook_secret",
    "telegram_bot_username": "telegram_bot_username",
    "telegram_staff_chat_id": "telegram_staff_chat_id",
    # a clinic's Stripe account and FHIR server are its own: never another's secrets
    "stripe_webhook_secret": "stripe_webhook_secret",
    "stripe_api_key": "stripe_api_key",
    "fhir_webhook_secret": "fhir_webhook_secret",
    "fhir_bearer_token": "fhir_bearer_token",
    "fhir_patient_id_system": "fhir_patient_id_system",
}


def settings_for(base: Settings, clinic: Clinic) -> Settings:
    """The deployment's settings as this clinic sees them (its name, hours, numbers, bot)."""
    update: dict[str, Any] = {}
    for column, setting in _OWN_OR_DEPLOYMENT.items():
        value = getattr(clinic, column)
        if value is not None:
            update[setting] = value
    numbers = list(clinic.twilio_from_numbers or [])
    if (
        clinic.is_default
        and not numbers
        and not any(
            getattr(clinic, column) is not None for column in (*_OWN_OR_DEPLOYMENT, *_CHANNELS)
        )
    ):
        return base  # the environment's clinic, exactly as configured
    if clinic.is_default:
        for column, setting in _CHANNELS.items():
            if getattr(clinic, column) is not None:
                update[setting] = getattr(clinic, column)
        if numbers:
            update["twilio_from_number"] = numbers[0]
    else:
        update.update({setting: getattr(clinic, column) for column, setting in _CHANNELS.items()})
        update["twilio_from_number"] = numbers[0] if numbers else None
        update["api_key"] = None
    return base.model_copy(update=update)


@dataclass(frozen=True)
class Branding:
    """What patient-facing pages show: the clinic's own name, colours and logo."""

    display_name: str
    brand_color: str
    accent_color: str
    logo_url: str | None


def branding(clinic: Clinic, settings: Settings) -> Branding:
    return Branding(
        display_name=clinic.display_name or settings.clinic_name,
        brand_color=clinic.brand_color or "#0b5cad",
        accent_color=clinic.accent_color or "#f2a900",
        logo_url=clinic.logo_url,
    )
