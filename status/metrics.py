"""Prometheus metrics, defined once; every layer increments them, `GET /metrics` exposes them.

With several processes (uvicorn workers, `worker`s) set PROMETHEUS_MULTIPROC_DIR to a shared
empty directory so the counters add up across processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from status.db import Database, utcnow

# `clinic` is the clinic's slug: counts per clinic, never per patient.
INBOUND = Counter(
    "ps_inbound_messages_total", "Patient messages received", ["channel", "intent", "clinic"]
)
REPLIES = Counter(
    "ps_replies_total", "Messages written to the outbox", ["channel", "kind", "clinic"]
)
HANDOFFS = Counter("ps_handoffs_total", "Hand-offs opened", ["reason", "clinic"])
SENDS = Counter("ps_sends_total", "Send attempts by outcome", ["channel", "outcome", "clinic"])
SEND_FAILURES = Counter(
    "ps_send_failures_total", "Failed send attempts by provider code", ["channel", "code"]
)
EVENTS = Counter("ps_events_total", "Events received by outcome", ["outcome", "clinic"])
WEBHOOK_SECONDS = Histogram(
    "ps_webhook_seconds",
    "Time to answer a webhook or API call",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


_UNCOMMITTED = "metrics.uncommitted"


def count_on_commit(session: Session, counter: Counter, amount: float = 1) -> None:
    """Count when the session's transaction commits, not before: a rolled-back turn is not
    counted, and a batch of turns run again one by one counts each turn once."""
    session.info.setdefault(_UNCOMMITTED, []).append((counter, amount))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint released is not a commit
        for counter, amount in session.info.pop(_UNCOMMITTED, ()):
            counter.inc(amount)


@event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the transaction ended without a commit: nothing happened
        session.info.pop(_UNCOMMITTED, None)


class OutboxCollector:
    """Outbox depth and the age of the oldest unsent message, read from the database at scrape
    time, so every process reports the same truth."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        from datetime import UTC

        from sqlalchemy import func, select

        from bot.messages import Direction, Message, OutStatus
        from status.clinics import Clinic

        depth = GaugeMetricFamily(
            "ps_outbox_depth", "Messages waiting to be sent", labels=["channel", "clinic"]
        )
        oldest = GaugeMetricFamily(
            "ps_outbox_oldest_age_seconds", "Age of the oldest message due and not yet sent"
        )
        now = utcnow()
        with self.db.read_session() as session:
            waiting = (
                select(
                    Message.channel, Clinic.slug, func.count(), func.min(Message.next_attempt_at)
                )
                .join(Clinic, Clinic.id == Message.clinic_id)
                .where(
                    Message.direction == Direction.OUT,
                    Message.status.in_([OutStatus.PENDING, OutStatus.SENDING]),
                )
                .group_by(Message.channel, Clinic.slug)
            )
            first_due = None
            for channel, slug, count, due in session.execute(waiting):
                depth.add_metric([channel, slug], count)
                if due is not None and due.tzinfo is None:
                    due = due.replace(tzinfo=UTC)
                if due is not None and due <= now and (first_due is None or due < first_due):
                    first_due = due
        oldest.add_metric([], (now - first_due).total_seconds() if first_due else 0.0)
        yield depth
        yield oldest


def render(db: Database) -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counters = generate_latest(registry)
    else:
        counters = generate_latest(REGISTRY)
    outbox = CollectorRegistry()
    outbox.register(OutboxCollector(db))
    return counters + generate_latest(outbox), CONTENT_TYPE_LATEST
