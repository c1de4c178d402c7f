"""Subscriptions: the patient's plan and its renewals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Enum, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELLED = "cancelled"


S = SubscriptionStatus
CLASSES = classify_all(
    SubscriptionStatus,
    {
        S.ACTIVE: StatusClass.ACTIVE,
        S.PAST_DUE: StatusClass.NEEDS_PATIENT,
        S.PAUSED: StatusClass.ACTIVE,
        S.CANCELLED: StatusClass.TERMINAL,
    },
)


class Subscription(TrackedItem, Base):
    __tablename__ = "subscriptions"

    plan: Mapped[str] = mapped_column(String(limits.PLAN))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[SubscriptionStatus] = mapped_column(
        Enum(
            SubscriptionStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    renews_at: Mapped[datetime | None]
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    # Renewals that have happened; a first renewal is the one patients are most surprised by.
    renewals_seen: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# The snapshot's order (one definition for the tables and the read model): newest status first.
SNAPSHOT_ORDER = (Subscription.status_since.desc(), Subscription.id.desc())


def for_patient(session: Session, patient_id: int) -> list[Subscription]:
    query = select(Subscription).where(Subscription.patient_id == patient_id)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def renewing(session: Session, clinic_id: int, after: datetime, until: datetime) -> list[int]:
    """Ids of the clinic's active auto-renewing subscriptions renewing in (after, until]."""
    query = select(Subscription.id).where(
        Subscription.clinic_id == clinic_id,
        Subscription.status == SubscriptionStatus.ACTIVE,
        Subscription.auto_renew.is_(True),
        Subscription.renews_at > after,
        Subscription.renews_at <= until,
    )
    return list(session.scalars(query))
