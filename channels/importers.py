"""The first load: today's state from a FHIR server's searches and Stripe's events list, applied
with the same mapping and applier as the webhooks, for one clinic (`config` says which and with
whose keys), so a later notification of the same version or event changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import stripe
from sqlalchemy.orm import Session

from channels.integrations import customer_source
from status.clinics import DEFAULT_SLUG
from status.db import Database
from status.events.apply import Change
from status.integrations import fhir, stripe_events
from status.integrations.config import IntegrationSettings
from status.integrations.ingest import IngestResult, ingest
from status.integrations.lookup import Lookup
from status.integrations.receipts import Source

# Patients first: the resources after them name them.
FHIR_TYPES = (
    "Patient",
    "MedicationRequest",
    "MedicationDispense",
    "Task",
    "Appointment",
    "Invoice",
    "PaymentReconciliation",
)
PAGE_SIZE = 100
STRIPE_CHUNK = 500  # events applied per transaction


class ImportFailed(RuntimeError):
    """The source could not be read (the message says which request and why)."""


Hooks = Iterable[Callable[[Session, list[Change]], None]]


@dataclass
class ImportTotals:
    pages: int = 0
    received: int = 0
    duplicate_notifications: int = 0
    unmapped: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, result: IngestResult) -> None:
        self.pages += 1
        self.received += result.received
        self.duplicate_notifications += result.duplicates
        self.unmapped += len(result.unmapped)
        for name, count in result.applied.counts().items():
            self.counts[name] = self.counts.get(name, 0) + count

    def body(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "received": self.received,
            "duplicate_notifications": self.duplicate_notifications,
            "unmapped": self.unmapped,
            **self.counts,
        }


# --- FHIR ------------------------------------------------------------------------------------


def fhir_pages(
    http: httpx.Client, base: str, resource_type: str, since: datetime | None
) -> Iterator[dict]:
    """Search result Bundles for one type, oldest change first, following `link` next."""
    params: dict[str, str] | None = {"_count": str(PAGE_SIZE), "_sort": "_lastUpdated"}
    if since is not None:
        params["_lastUpdated"] = f"ge{since.isoformat()}"
    url: str | None = f"{base.rstrip('/')}/{resource_type}"
    while url:
        try:
            response = http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise ImportFailed(f"GET {resource_type} search: {exc}") from exc
        if response.status_code != 200:
            raise ImportFailed(
                f"GET {resource_type} search answered {response.status_code}: {response.text[:200]}"
            )
        bundle = response.json()
        yield bundle
        links = bundle.get("link") or []
        url = next((link.get("url") for link in links if link.get("relation") == "next"), None)
        params = None  # the next link carries its own query


def import_fhir(
    db: Database,
    config: IntegrationSettings,
    base: str,
    since: datetime | None = None,
    on_changes: Hooks = (),
    token: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> ImportTotals:
    totals = ImportTotals()
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=30, headers=headers, transport=transport) as http:
        for resource_type in FHIR_TYPES:
            for bundle in fhir_pages(http, base, resource_type, since):
                if not bundle.get("entry"):
                    continue
                with db.read_session() as session:
                    lookup = Lookup(session, config.clinic_id, Source.FHIR)
                    notifications = fhir.map_body(bundle, config, lookup)
                totals.add(ingest(db, config.clinic_id, notifications, on_changes))
    return totals


# --- Stripe ----------------------------------------------------------------------------------


def stripe_events_since(config: IntegrationSettings, since: datetime | None) -> list[dict]:
    """Every event of the types we use since `since` (Stripe keeps 30 days), oldest first."""
    if not config.stripe_api_key:
        missing = "STRIPE_API_KEY is not set" if config.clinic == DEFAULT_SLUG else (
            f"clinic {config.clinic!r} has no Stripe API key "
            f"(patient-status clinic update {config.clinic} --stripe-api-key)"
        )  # fmt: skip
        raise ImportFailed(f"{missing}: `import stripe` reads Stripe's events list")
    client = stripe.StripeClient(
        config.stripe_api_key, base_addresses={"api": config.stripe_api_base}
    )
    params: dict[str, Any] = {"limit": 100, "types": list(stripe_events.EVENT_TYPES)}
    if since is not None:
        params["created"] = {"gte": int(since.timestamp())}
    try:
        found = [event.to_dict() for event in client.v1.events.list(params).auto_paging_iter()]
    except stripe.StripeError as exc:
        raise ImportFailed(f"Stripe's events list: {exc.user_message or exc}") from exc
    return sorted(found, key=lambda event: event["created"])


def import_stripe(
    db: Database,
    config: IntegrationSettings,
    since: datetime | None = None,
    on_changes: Hooks = (),
) -> ImportTotals:
    totals = ImportTotals()
    events = stripe_events_since(config, since)
    customers = customer_source(config)
    for start in range(0, len(events), STRIPE_CHUNK):
        chunk = events[start : start + STRIPE_CHUNK]
        with db.read_session() as session:
            notifications = stripe_events.map_events(
                chunk, config, Lookup(session, config.clinic_id, Source.STRIPE), customers
            )
        totals.add(ingest(db, config.clinic_id, notifications, on_changes))
    return totals
