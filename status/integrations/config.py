"""An integration's secrets and choices, looked up in one place: the clinic's.

A clinic's row carries its own Stripe and FHIR secrets (`patient-status clinic add|update`); a
clinic other than `default` never borrows the environment's, so a notification signed for one
clinic can't be accepted on another's path. The default clinic reads the environment's settings
(`STRIPE_WEBHOOK_SECRET`, `FHIR_WEBHOOK_SECRET`, ...) unless its row sets its own. The routes,
the importers and the mappers only ever see an `IntegrationSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from status import clinics
from status.clinics import DEFAULT_SLUG
from status.settings import Settings, parse_matches


@dataclass(frozen=True)
class IntegrationSettings:
    clinic_id: int
    clinic: str  # its slug
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


def integration_settings(
    session: Session, settings: Settings, slug: str = DEFAULT_SLUG
) -> IntegrationSettings:
    """The integration settings of the clinic with this slug (`ClinicNotFound` if none)."""
    clinic = clinics.require(session, slug)
    own = clinics.settings_for(settings, clinic)
    return IntegrationSettings(
        clinic_id=clinic.id,
        clinic=clinic.slug,
        stripe_webhook_secret=own.stripe_webhook_secret or None,
        stripe_api_key=own.stripe_api_key or None,
        stripe_api_base=own.stripe_api_base,
        stripe_patient_match=parse_matches(own.stripe_patient_match),
        fhir_webhook_secret=own.fhir_webhook_secret or None,
        fhir_bearer_token=own.fhir_bearer_token or None,
        fhir_patient_id_system=own.fhir_patient_id_system or None,
        default_timezone=own.clinic_timezone,
        fhir_sms_consent=own.fhir_sms_consent,
    )
