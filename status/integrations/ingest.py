"""From mapped notifications to applied events: the same validation and applier as POST /events.

A delivery (one FHIR resource, a Bundle, one Stripe event, a page of an import) is applied in
one transaction: its events through `apply_in_transaction` (dedupe on event id, ordered by
`occurred_at` per item, kept pending until the patient arrives, all or nothing) and, in that same
transaction, one receipt per notification and the patient links it taught. A notification whose
events fail our own validation (a phone that is no phone) is not applied: it is kept as
unmapped, with the problems, for staff to see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from status.db import Database
from status.events.apply import ApplyResult, Change, apply_in_transaction
from status.events.schemas import InvalidEvents, parse_events
from status.integrations import receipts
from status.integrations.receipts import IntegrationLink, IntegrationReceipt, ReceiptOutcome


@dataclass
class Notification:
    """One thing a source told us, and what it maps to: events, or the reason it does not."""

    source: str  # receipts.Source
    key: str  # the source's identity of this delivery: a resource version, a Stripe event id
    kind: str  # "MedicationDispense", "invoice.payment_failed"
    external_id: str  # "MedicationDispense/md-1", "in_123"
    occurred_at: datetime | None
    events: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # set: not mapped, and why (never PHI: it is shown to staff)
    links: dict[str, str] = field(default_factory=dict)  # outside identity -> our patient_id

    @property
    def mapped(self) -> bool:
        return self.reason is None

    def event_id(self, entity: str) -> str:
        return f"{self.source}:{self.key}:{entity}"

    def add(self, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": self.event_id(entity),
            "type": f"{entity.split(':')[0]}.updated",
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "data": data,
        }
        self.events.append(event)
        return event

    def refuse(self, reason: str) -> Notification:
        self.reason = reason
        self.events = []
        return self


@dataclass
class IngestResult:
    received: int
    duplicates: int
    unmapped: list[Notification]
    applied: ApplyResult

    def body(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "duplicate_notifications": self.duplicates,
            "unmapped": [
                {"kind": n.kind, "id": n.external_id, "reason": n.reason} for n in self.unmapped
            ],
            **self.applied.counts(),
        }


def _validated(notification: Notification) -> list:
    """Its events validated by the event contract; a problem makes the notification unmapped."""
    if not notification.mapped or not notification.events:
        return []
    try:
        return parse_events(notification.events)
    except InvalidEvents as exc:
        problems = "; ".join(
            f"{notification.events[p.index]['type']} {p.field}: {p.message}" for p in exc.problems
        )
        notification.refuse(f"the mapped values break the event contract ({problems})")
        return []


def ingest(
    db: Database,
    clinic_id: int,
    notifications: list[Notification],
    on_changes: Iterable[Callable[[Session, list[Change]], None]] = (),
) -> IngestResult:
    """Apply the notifications as the clinic's (its patients, its receipts and links)."""
    keys: dict[tuple[str, str], Notification] = {}
    for notification in notifications:  # the same key twice in one delivery: the first counts
        keys.setdefault((notification.source, notification.key), notification)
    with db.read_session() as session:
        known: set[tuple[str, str]] = set()
        for source in {source for source, _key in keys}:
            wanted = [k for s, k in keys if s == source]
            found = receipts.known_keys(session, clinic_id, source, wanted)
            known.update((source, key) for key in found)
    fresh = [n for key, n in keys.items() if key not in known]
    events = [event for n in fresh for event in _validated(n)]

    def record(session: Session, _changes: list[Change]) -> None:
        _write_receipts(session, clinic_id, fresh)

    result = apply_in_transaction(db, events, [*on_changes, record], clinic_id=clinic_id)
    return IngestResult(
        received=len(notifications),
        duplicates=len(notifications) - len(fresh),
        unmapped=[n for n in fresh if not n.mapped],
        applied=result,
    )


def _write_receipts(session: Session, clinic_id: int, notifications: list[Notification]) -> None:
    """The receipts (a concurrent delivery's are left as they are) and the links learned."""
    if not notifications:
        return
    taken = {
        (source, key)
        for source in {n.source for n in notifications}
        for key in receipts.known_keys(session, clinic_id, source, [n.key for n in notifications])
    }
    rows = [
        {
            "clinic_id": clinic_id,
            "source": n.source,
            "key": n.key,
            "kind": n.kind,
            "external_id": n.external_id,
            "occurred_at": n.occurred_at,
            "outcome": ReceiptOutcome.MAPPED if n.mapped else ReceiptOutcome.UNMAPPED,
            "reason": n.reason,
            "event_ids": [event["id"] for event in n.events],
        }
        for n in notifications
        if (n.source, n.key) not in taken
    ]
    if rows:
        session.execute(insert(IntegrationReceipt), rows)
    for n in notifications:
        for external_id, patient_id in (n.links if n.mapped else {}).items():
            link = receipts.link(session, clinic_id, n.source, external_id)
            if link is None:
                session.add(IntegrationLink(clinic_id=clinic_id, source=n.source,
                                            external_id=external_id,
                                            patient_source_id=patient_id))  # fmt: skip
            else:
                link.patient_source_id = patient_id
    session.flush()
