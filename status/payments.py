"""Payments: charges, failures and retries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


S = PaymentStatus
CLASSES = classify_all(
    PaymentStatus,
    {
        S.PENDING: StatusClass.ACTIVE,
        S.SUCCEEDED: StatusClass.TERMINAL,
        S.FAILED: StatusClass.NEEDS_PATIENT,
        S.REFUNDED: StatusClass.TERMINAL,
    },
)


class Payment(TrackedItem, Base):
    __tablename__ = "payments"

    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus] = mapped_column(
        Enum(
            PaymentStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    description: Mapped[str] = mapped_column(String(limits.DESCRIPTION))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    next_retry_at: Mapped[datetime | None]
    # The patient's own secure link to pay or update the card (Stripe's hosted invoice page);
    # None: the clinic's PAYMENT_UPDATE_URL.
    payment_url: Mapped[str | None] = mapped_column(String(limits.URL))
    # True once this payment has failed at least once: a later success is a "recovery".
    ever_failed: Mapped[bool] = mapped_column(default=False)

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# The snapshot's order (one definition for the tables and the read model): newest status first.
SNAPSHOT_ORDER = (Payment.status_since.desc(), Payment.id.desc())


def for_patient(session: Session, patient_id: int) -> list[Payment]:
    query = select(Payment).where(Payment.patient_id == patient_id)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def retrying(session: Session, clinic_id: int, after: datetime, until: datetime) -> list[int]:
    """Ids of the clinic's failed payments the processor retries in (after, until]."""
    query = select(Payment.id).where(
        Payment.clinic_id == clinic_id,
        Payment.status == PaymentStatus.FAILED,
        Payment.next_retry_at > after,
        Payment.next_retry_at <= until,
    )
    return list(session.scalars(query))
