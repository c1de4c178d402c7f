"""The clinic's look on patient-facing pages: its name, colours, logo and phone, from the
patient's clinic record (`clinics` row), with the deployment's settings where the row is empty:
`CLINIC_NAME`, `CLINIC_SUPPORT_PHONE` and `CLINIC_BRAND_COLOR` (the default clinic's look, and
any clinic's that chose no colour).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from status import clinics
from status.patients import Patient
from status.settings import Settings


@dataclass(frozen=True)
class Branding:
    name: str
    color: str  # "#rrggbb"
    accent: str | None  # "#rrggbb"
    logo_url: str | None  # https only
    support_phone: str

    @property
    def logo_origin(self) -> str | None:
        """The logo's origin, for the page's Content-Security-Policy (img-src)."""
        if not self.logo_url:
            return None
        parts = urlsplit(self.logo_url)
        return f"{parts.scheme}://{parts.netloc}"


def colour(value: str | None) -> str | None:
    """A colour stored before clinics checked them is used only if it is one."""
    return value if value and clinics.COLOUR.fullmatch(value) else None


def logo(value: str | None) -> str | None:
    return value if value and clinics.LOGO_URL.fullmatch(value) else None


def for_clinic(session: Session, settings: Settings, clinic_id: int | None) -> Branding:
    """The branding of the clinic's pages (None: the default clinic, e.g. an unknown link)."""
    clinic = clinics.by_id(session, clinic_id) if clinic_id is not None else None
    clinic = clinic or clinics.default(session)
    own = clinics.settings_for(settings, clinic)
    look = clinics.branding(clinic, own)
    return Branding(
        name=look.display_name,
        color=colour(clinic.brand_color) or settings.clinic_brand_color,
        accent=colour(clinic.accent_color),
        logo_url=logo(clinic.logo_url),
        support_phone=own.clinic_support_phone,
    )


def for_patient(session: Session, settings: Settings, patient: Patient) -> Branding:
    """The branding a patient's pages wear: their clinic's."""
    return for_clinic(session, settings, patient.clinic_id)
