"""The clinic a turn, a notice or a send speaks for: its settings and its wording.

`Profiles.get(session, clinic_id)` reads the clinic's row (one primary-key read, in the caller's
transaction) and returns its settings and renderer, rebuilt only when the row changed, so a
`clinic update` in another process is seen by the next message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.render import Renderer
from status import clinics
from status.clinics import Branding, Clinic, ClinicNotFound
from status.settings import Settings


@dataclass(frozen=True)
class ClinicProfile:
    id: int
    slug: str
    settings: Settings
    renderer: Renderer
    branding: Branding

    @property
    def name(self) -> str:
        return self.settings.clinic_name


class Profiles:
    def __init__(self, settings: Settings, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer(settings)
        self._cache: dict[int, tuple[datetime | None, ClinicProfile]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, clinic_id: int) -> ClinicProfile:
        clinic = clinics.held(session, clinic_id)
        if clinic is None:
            raise ClinicNotFound(str(clinic_id))
        cached = self._cache.get(clinic_id)
        if cached is not None and cached[0] == clinic.updated_at:
            return cached[1]
        profile = self.build(clinic)
        with self._lock:
            self._cache[clinic_id] = (clinic.updated_at, profile)
        return profile

    def build(self, clinic: Clinic) -> ClinicProfile:
        settings = clinics.settings_for(self.settings, clinic)
        if settings is self.settings and not clinic.templates:
            renderer = self.renderer  # the environment's clinic, as before
        else:
            renderer = Renderer(settings, overrides=clinic.templates)
        branding = clinics.branding(clinic, settings)
        return ClinicProfile(clinic.id, clinic.slug, settings, renderer, branding)
