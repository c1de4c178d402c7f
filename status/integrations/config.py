"""An integration's secrets and choices, looked up in one place.

Today every clinic is `default` and reads the environment's settings; a clinic with its own
record will answer from it here, and nothing else changes (the routes, the importers and the
mappers only ever see an `IntegrationSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings validate with `parse_matches` below
    from status.settings import Settings

DEFAULT_CLINIC = "default"
MATCHES = ("metadata", "email", "phone")


@dataclass(frozen=True)
class IntegrationSettings:
    clinic: str
    stripe_webhook_secret: str | None
    stripe_api_key: str | None
    stripe_api_base: str
    # How a Stripe customer is matched to a patient, tried in this order.
    stripe_patient_match: tuple[str, ...]
    fhir_webhook_secret: str | None
    fhir_bearer_token: str | None
    fhir_patient_id_system: str | None
    # Values FHIR does not carry for a new patient (an existing patient keeps their own).
    default_timezone: str
    fhir_sms_consent: bool


class UnknownClinic(LookupError):
    def __init__(self, clinic: str) -> None:
        super().__init__(f"no clinic {clinic!r}")
        self.clinic = clinic


def integration_settings(settings: Settings, clinic: str = DEFAULT_CLINIC) -> IntegrationSettings:
    """The integration settings of `clinic` (only `default` exists until clinics are records)."""
    if clinic != DEFAULT_CLINIC:
        raise UnknownClinic(clinic)
    return IntegrationSettings(
        clinic=clinic,
        stripe_webhook_secret=settings.stripe_webhook_secret or None,
        stripe_api_key=settings.stripe_api_key or None,
        stripe_api_base=settings.stripe_api_base,
        stripe_patient_match=parse_matches(settings.stripe_patient_match),
        fhir_webhook_secret=settings.fhir_webhook_secret or None,
        fhir_bearer_token=settings.fhir_bearer_token or None,
        fhir_patient_id_system=settings.fhir_patient_id_system or None,
        default_timezone=settings.clinic_timezone,
        fhir_sms_consent=settings.fhir_sms_consent,
    )


def parse_matches(value: str) -> tuple[str, ...]:
    """`"metadata,email,phone"` -> ("metadata", "email", "phone"); unknown words refused."""
    words = tuple(word.strip().lower() for word in value.split(",") if word.strip())
    unknown = [word for word in words if word not in MATCHES]
    if unknown or not words:
        raise ValueError(
            f"STRIPE_PATIENT_MATCH must list some of {', '.join(MATCHES)} (comma-separated); "
            f"got {value!r}"
        )
    return words
