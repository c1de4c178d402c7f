"""What every tracked item (prescription, shipment, ...) has in common."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from status import limits
from status.db import utcnow


class TrackedItem:
    """Columns shared by items fed by `<type>.updated` events.

    `source_id` is the clinic system's own id; `last_event_at` is the `occurred_at` of the newest
    event applied, so an older event can be recognised as stale; `status_since` is when the item
    entered its current status (per the source system's clock).
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID), unique=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    status_since: Mapped[datetime]
    last_event_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def time_in_status(self, now: datetime) -> float:
        return max(0.0, (now - self.status_since).total_seconds())
