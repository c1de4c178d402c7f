"""Every status of every item is classified, so a new status cannot slip through unanswered."""

from __future__ import annotations

import pytest

from status import appointments, payments, prescriptions, refills, shipments, subscriptions, tasks
from status.classification import StatusClass, classify_all


@pytest.mark.parametrize(
    ("module", "enum_name"),
    [
        (prescriptions, "PrescriptionStatus"),
        (shipments, "ShipmentStatus"),
        (refills, "RefillStatus"),
        (payments, "PaymentStatus"),
        (subscriptions, "SubscriptionStatus"),
        (appointments, "AppointmentStatus"),
        (tasks, "TaskStatus"),
    ],
)
def test_classification_covers_every_status(module, enum_name):
    enum = getattr(module, enum_name)
    assert set(module.CLASSES) == set(enum)
    assert all(isinstance(value, StatusClass) for value in module.CLASSES.values())


def test_statuses_match_the_design_contract():
    assert [s.value for s in prescriptions.PrescriptionStatus] == [
        "awaiting_provider", "approved", "sent_to_pharmacy", "received_by_pharmacy",
        "processing", "shipped", "ready_for_pickup", "delivered", "blocked", "denied",
        "cancelled",
    ]  # fmt: skip
    assert [s.value for s in shipments.ShipmentStatus] == [
        "label_created", "in_transit", "out_for_delivery", "delivered", "exception", "returned",
    ]  # fmt: skip
    assert [s.value for s in refills.RefillStatus] == [
        "requested", "provider_review", "approved", "sent_to_pharmacy", "shipped",
        "ready_for_pickup", "waiting_on_patient", "denied",
    ]  # fmt: skip
    assert [s.value for s in payments.PaymentStatus] == [
        "pending", "succeeded", "failed", "refunded",
    ]  # fmt: skip
    assert [s.value for s in subscriptions.SubscriptionStatus] == [
        "active", "past_due", "paused", "cancelled",
    ]  # fmt: skip
    assert [s.value for s in appointments.AppointmentStatus] == [
        "scheduled", "confirmed", "cancelled", "completed", "no_show",
    ]  # fmt: skip


def test_a_missing_class_is_refused_at_import_time():
    with pytest.raises(RuntimeError, match="without a class"):
        classify_all(payments.PaymentStatus, {payments.PaymentStatus.PENDING: StatusClass.ACTIVE})
