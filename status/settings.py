"""Settings from the environment or a `.env` file (names fixed by DESIGN.md)."""

from __future__ import annotations

import re
from datetime import time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///./patient-status.db"
    api_key: str | None = None
    public_base_url: str | None = None
    secret_key: str = Field(
        default="dev-insecure-secret-change-me",
        description="Signs staff sessions, CSRF tokens and Telegram link tokens.",
    )

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    twilio_messages_per_second: float = 1.0
    # Transient send failures (network, 5xx, 429) are retried for this long, then fail.
    send_retry_hours: float = 6.0
    # How long a worker's claim on a message (to answer or to send) holds before another
    # worker may take it over: what a crashed worker's messages wait.
    worker_lease_seconds: float = 60.0

    telegram_bot_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    telegram_staff_chat_id: str | None = None
    telegram_bot_username: str = "HarborHealthBot"

    notify_delay_seconds: int = 60
    quiet_hours: str = "21:00-08:00"
    verification: str = "dob"
    verification_ttl_days: int = 30
    sms_keyword_replies: str = "twilio"
    sms_show_medication_names: bool = False
    daily_message_cap: int = 2
    weekly_message_cap: int = 5
    refill_reminder_days: int = 5
    renewal_reminder_days: int = 3
    scheduler_interval_seconds: int = 30
    # Expected maximum hours in a state before an item is "stuck" (JSON in the environment).
    stuck_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "prescription.awaiting_provider": 24.0,
            "prescription.approved": 24.0,
            "prescription.sent_to_pharmacy": 24.0,
            "prescription.received_by_pharmacy": 48.0,
            "prescription.processing": 72.0,
            "shipment.label_created": 48.0,
            "shipment.exception": 24.0,
            "refill.requested": 24.0,
            "refill.provider_review": 48.0,
            "payment.failed": 72.0,
            "subscription.past_due": 72.0,
        }
    )
    # First staff response due, per hand-off priority (minutes).
    sla_minutes: dict[str, int] = Field(
        default_factory=lambda: {"urgent": 5, "high": 30, "normal": 240}
    )

    clinic_name: str = "Harbor Health"
    clinic_support_phone: str = "+1 555 010 0200"
    clinic_timezone: str = "America/New_York"
    clinic_hours: str = "Mon-Fri 08:00-18:00"
    payment_update_url: str = "https://pay.example/update"
    clinic_brand_color: str = "#0b5cab"  # the status page's accent (a #rrggbb colour)

    status_link_hours: float = 72  # life of a status-page link
    status_session_minutes: float = 30  # a device verified on the status page stays so this long

    # Integrations (docs/integrations.md): Stripe and a FHIR server feed the same events.
    stripe_webhook_secret: str | None = None  # whsec_...: none, /integrations/stripe refuses
    stripe_api_key: str | None = None  # for `import stripe` and looking up a customer
    stripe_api_base: str = "https://api.stripe.com"
    stripe_patient_match: str = "metadata,email,phone"  # how a customer is matched, in order
    fhir_webhook_secret: str | None = None  # HMAC-SHA256 key of X-Signature (Medplum)
    fhir_bearer_token: str | None = None  # or/also: `Authorization: Bearer <token>`
    fhir_patient_id_system: str | None = None  # none: FHIR Patient.id is our patient_id
    fhir_sms_consent: bool = True  # a patient first seen through FHIR may get proactive SMS

    metrics_token: str | None = None  # bearer token for /metrics; none: open (bind privately)
    docs: bool = False  # DOCS=on serves /docs, /redoc and /openapi.json
    # Staff logins: after this many failures in a row (per account, and per client address)
    # a login waits; the lock doubles with each further failure, up to the longest lock.
    staff_login_failures: int = 5
    staff_lock_minutes: float = 1
    staff_lock_max_minutes: float = 60
    staff_idle_minutes: float = 30  # a console session unused this long ends

    worker_heartbeat_file: str | None = None
    demo_mode: bool = False
    log_format: str = "text"
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """`postgres://` and `postgresql://` (as hosting providers print them) mean psycopg."""
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(
                "DATABASE_URL must look like sqlite:///./patient-status.db or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            )
        if scheme in {"postgres", "postgresql", "postgresql+psycopg2"}:
            return f"postgresql+psycopg://{rest}"
        if scheme not in {"sqlite", "postgresql+psycopg"}:
            raise ValueError(
                f"DATABASE_URL scheme {scheme!r} is not supported: use sqlite:///PATH or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("SECRET_KEY must not be empty: set 32+ random characters")
        return value

    @field_validator("verification")
    @classmethod
    def _verification(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"dob", "none"}:
            raise ValueError("VERIFICATION must be 'dob' or 'none'")
        return value

    @field_validator("sms_keyword_replies")
    @classmethod
    def _keyword_replies(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"twilio", "app"}:
            raise ValueError("SMS_KEYWORD_REPLIES must be 'twilio' or 'app'")
        return value

    @field_validator("stripe_patient_match")
    @classmethod
    def _stripe_match(cls, value: str) -> str:
        parse_matches(value)
        return value

    @field_validator("clinic_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"CLINIC_TIMEZONE {value!r} is not an IANA time zone") from exc
        return value

    @field_validator("clinic_brand_color")
    @classmethod
    def _brand_color(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("CLINIC_BRAND_COLOR must be a #rrggbb colour, e.g. #0b5cab")
        return value

    @field_validator("status_link_hours")
    @classmethod
    def _link_hours(cls, value: float) -> float:
        if not 0 < value <= 24 * 90:
            raise ValueError("STATUS_LINK_HOURS must be more than 0 and at most 2160 (90 days)")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @property
    def quiet_window(self) -> tuple[time, time] | None:
        return parse_quiet_hours(self.quiet_hours)

    @property
    def sms_enabled(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from_number or self.twilio_messaging_service_sid)
        )

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """`"21:00-08:00"` -> (21:00, 08:00); `"off"` -> None."""
    text = value.strip().lower()
    if text in {"off", "none", ""}:
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-", 1))
    except ValueError as exc:
        raise ValueError(f"QUIET_HOURS {value!r} must look like 21:00-08:00 or be 'off'") from exc
    return start, end


STRIPE_MATCHES = ("metadata", "email", "phone")


def parse_matches(value: str) -> tuple[str, ...]:
    """`"metadata,email,phone"` -> ("metadata", "email", "phone"): how a Stripe customer is
    matched to a patient, in order; unknown words refused."""
    words = tuple(word.strip().lower() for word in value.split(",") if word.strip())
    unknown = [word for word in words if word not in STRIPE_MATCHES]
    if unknown or not words:
        raise ValueError(
            f"STRIPE_PATIENT_MATCH must list some of {', '.join(STRIPE_MATCHES)} "
            f"(comma-separated); got {value!r}"
        )
    return words


@lru_cache
def get_settings() -> Settings:
    return Settings()
