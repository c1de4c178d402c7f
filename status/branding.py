"""The clinic's look on patient-facing pages: its name and accent colour.

One small function so the clinic record can supply it once clinics carry their own branding;
today it is the environment's clinic (`CLINIC_NAME`, `CLINIC_BRAND_COLOR`).
"""

from __future__ import annotations

from dataclasses import dataclass

from status.settings import Settings


@dataclass(frozen=True)
class Branding:
    name: str
    color: str  # "#rrggbb", validated by the settings
    support_phone: str


def for_patient(settings: Settings, patient_id: int | None = None) -> Branding:
    """The branding a patient's pages wear (the patient's clinic, once there are several)."""
    return Branding(
        name=settings.clinic_name,
        color=settings.clinic_brand_color,
        support_phone=settings.clinic_support_phone,
    )
