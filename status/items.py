"""What every tracked item (prescription, shipment, ...) has in common."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from status import limits
from status.db import utcnow


class TrackedItem:
    """Columns shared by items fed by `<type>.updated` events.

    `source_id` is the clinic system's own id; `last_event_at` is the `occurred_at` of the newest
    event applied, so an older event can be recognised as stale; `status_since` is when the item
    entered its current status (per the source system's clock).
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    status_since: Mapped[datetime]
    last_event_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            # a source id is the clinic system's own: two clinics may both have an `rx-1`
            UniqueConstraint("clinic_id", "source_id"),
            # the scheduler's check for stuck items (`stuck`), every tick: a clinic's items in a
            # status since before a time, not every item the clinic ever had
            Index(
                f"ix_{cls.__dict__['__tablename__']}_clinic_id_status_status_since",
                "clinic_id",
                "status",
                "status_since",
            ),
            *cls.more_indexes(),
        )

    @classmethod
    def more_indexes(cls) -> tuple[Index, ...]:
        """A kind of item's own indexes, beside the ones every kind has."""
        return ()

    def time_in_status(self, now: datetime) -> float:
        return max(0.0, (now - self.status_since).total_seconds())


def by_source_id(session: Session, clinic_id: int, model: Any, source_id: str) -> Any:
    """The clinic's item of this kind (`Prescription`, ...) with the source system's id."""
    query = select(model).where(model.clinic_id == clinic_id, model.source_id == source_id)
    return session.scalars(query).one_or_none()


def stuck(
    session: Session, clinic_id: int, model: Any, status: str, hours: float, now: datetime
) -> list[int]:
    """Ids of the clinic's items in `status` for longer than `hours`."""
    query = select(model.id).where(
        model.clinic_id == clinic_id,
        model.status == status,
        model.status_since < now - timedelta(hours=hours),
    )
    return list(session.scalars(query))
