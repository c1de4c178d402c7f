"""Webhooks from the systems clinics already run: a FHIR server and Stripe.

Thin, like the other webhooks: find the clinic by the path (404 for none; the path without a
slug is `default`), verify with that clinic's own secret (401 and nothing stored when it fails),
parse (400 naming the problem), then map and apply in a worker thread through the same applier
as POST /events, within that clinic, and answer 200 with what became of each notification,
unmapped ones with their reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import stripe
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from channels import openapi
from channels.deps import read_body
from status import clock, limits
from status.clinics import DEFAULT_SLUG, ClinicNotFound
from status.db import Database
from status.integrations import fhir, stripe_events
from status.integrations.config import IntegrationSettings, integration_settings
from status.integrations.ingest import IngestResult, ingest
from status.integrations.lookup import Lookup
from status.integrations.receipts import Source

router = APIRouter(responses=openapi.WEBHOOK)

STRIPE_TOLERANCE = timedelta(minutes=5)


def _lookup_config(state: Any, slug: str) -> IntegrationSettings | None:
    with state.db.read_session() as session:
        try:
            return integration_settings(session, state.settings, slug)
        except ClinicNotFound:
            return None


async def _config(request: Request, slug: str) -> IntegrationSettings:
    """The clinic's integration settings, or 404 before the body is read."""
    config = await asyncio.to_thread(_lookup_config, request.app.state, slug)
    if config is None:
        raise HTTPException(404, f"no clinic with slug {slug[:40]!r}")
    return config


def _not_configured(config: IntegrationSettings, setting: str, option: str, source: str) -> str:
    if config.clinic == DEFAULT_SLUG:
        return f"{setting} is not configured on this server, so /integrations/{source} refuses"
    return (
        f"clinic {config.clinic!r} has no {option.removeprefix('--').replace('-', ' ')} "
        f"(patient-status clinic update {config.clinic} {option}), so "
        f"/integrations/{source}/{config.clinic} refuses"
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail)


# --- FHIR ------------------------------------------------------------------------------------


def verify_fhir(
    config: IntegrationSettings, raw: bytes, signature: str, authorization: str
) -> None:
    """Medplum's X-Signature (hex HMAC-SHA256 of the raw body) or a bearer token."""
    if not config.fhir_webhook_secret and not config.fhir_bearer_token:
        raise _unauthorized(
            _not_configured(config, "FHIR_WEBHOOK_SECRET", "--fhir-webhook-secret", "fhir")
            + " every call"
        )
    if config.fhir_webhook_secret and signature:
        expected = hmac.new(config.fhir_webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
        if secrets.compare_digest(expected.encode(), signature.strip().lower().encode()):
            return
        raise _unauthorized("X-Signature does not match the body (HMAC-SHA256, FHIR secret)")
    scheme, _, token = authorization.partition(" ")
    if config.fhir_bearer_token and scheme.lower() == "bearer" and token:
        if secrets.compare_digest(token.strip().encode(), config.fhir_bearer_token.encode()):
            return
        raise _unauthorized("wrong bearer token for /integrations/fhir")
    wanted = " or ".join(
        name
        for name, on in (
            ("an X-Signature header", config.fhir_webhook_secret),
            ("'Authorization: Bearer <FHIR_BEARER_TOKEN>'", config.fhir_bearer_token),
        )
        if on
    )
    raise _unauthorized(f"missing signature: send {wanted}")


def apply_fhir(state: Any, config: IntegrationSettings, body: Any) -> IngestResult:
    db: Database = state.db
    with db.read_session() as session:
        lookup = Lookup(session, config.clinic_id, Source.FHIR)
        notifications = fhir.map_body(body, config, lookup)
    return ingest(db, config.clinic_id, notifications, state.on_changes)


@router.post("/integrations/fhir")
async def fhir_webhook(request: Request) -> JSONResponse:
    """A FHIR R4 resource or Bundle for the default clinic."""
    return await clinic_fhir_webhook(DEFAULT_SLUG, request)


@router.post("/integrations/fhir/{clinic_slug}", responses=openapi.NOT_FOUND)
async def clinic_fhir_webhook(clinic_slug: str, request: Request) -> JSONResponse:
    """A FHIR R4 resource or Bundle (a Medplum rest-hook Subscription, or any FHIR server) for
    the clinic, signed with its own secret."""
    config = await _config(request, clinic_slug)
    raw = await read_body(request, limits.MAX_EVENTS_BODY)
    verify_fhir(
        config,
        raw,
        request.headers.get("x-signature", ""),
        request.headers.get("authorization", ""),
    )
    body = _json(raw)
    try:
        result = await asyncio.to_thread(apply_fhir, request.app.state, config, body)
    except fhir.MalformedFhir as exc:
        raise HTTPException(400, f"not a usable FHIR R4 body: {exc}") from exc
    request.app.state.runtime.notify()
    return JSONResponse(result.body())


def _json(raw: bytes) -> Any:
    if not raw.strip():
        raise HTTPException(400, "the body is empty")
    try:
        return limits.load_json(raw, max_bytes=limits.MAX_EVENTS_BODY)
    except limits.LimitExceeded as exc:
        raise HTTPException(400, f"the body is outside a limit: {exc.rule}") from exc
    except ValueError as exc:
        raise HTTPException(400, f"the body is {exc}") from exc


# --- Stripe ----------------------------------------------------------------------------------


def verify_stripe(config: IntegrationSettings, raw: bytes, header: str) -> dict[str, Any]:
    """The event, once `stripe.Webhook.construct_event` accepts its signature and its timestamp
    is within five minutes of the product's clock, either way (`status.clock`, so a test's
    frozen clock is the one that counts; the library's own check reads the system clock)."""
    if not config.stripe_webhook_secret:
        raise _unauthorized(
            _not_configured(config, "STRIPE_WEBHOOK_SECRET", "--stripe-webhook-secret", "stripe")
            + " every call"
        )
    try:
        raw.decode("utf-8")
        stripe.Webhook.construct_event(raw, header, config.stripe_webhook_secret, tolerance=0)
    except stripe.SignatureVerificationError as exc:
        raise _unauthorized(f"Stripe-Signature refused: {exc.user_message or exc}") from exc
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        # signed, but not an event object (the library reads it as one once the signature holds)
        raise HTTPException(400, "the body is not a JSON Stripe event object") from exc
    skew = _stripe_timestamp(header) - clock.now().timestamp()
    if skew < -STRIPE_TOLERANCE.total_seconds():
        raise _unauthorized("Stripe-Signature timestamp is more than 5 minutes old (a replay?)")
    if skew > STRIPE_TOLERANCE.total_seconds():
        # the library checks only the past: a signature dated ahead would be replayable until then
        raise _unauthorized("Stripe-Signature timestamp is more than 5 minutes ahead of our clock")
    return _json(raw)


def _stripe_timestamp(header: str) -> int:
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    raise _unauthorized("Stripe-Signature has no timestamp")


def customer_source(config: IntegrationSettings) -> stripe_events.CustomerSource | None:
    """Stripe's customer, read with STRIPE_API_KEY (None: no key, so no look-up)."""
    if not config.stripe_api_key:
        return None
    client = stripe.StripeClient(
        config.stripe_api_key, base_addresses={"api": config.stripe_api_base}
    )

    def customer(customer_id: str) -> dict[str, Any] | None:
        try:
            return client.v1.customers.retrieve(customer_id).to_dict()
        except stripe.StripeError:
            return None

    return customer


def apply_stripe(state: Any, config: IntegrationSettings, events: list[dict]) -> IngestResult:
    db: Database = state.db
    with db.read_session() as session:
        notifications = stripe_events.map_events(
            events, config, Lookup(session, config.clinic_id, Source.STRIPE),
            customer_source(config),
        )  # fmt: skip
    return ingest(db, config.clinic_id, notifications, state.on_changes)


@router.post("/integrations/stripe")
async def stripe_webhook(request: Request) -> JSONResponse:
    """A Stripe event for the default clinic."""
    return await clinic_stripe_webhook(DEFAULT_SLUG, request)


@router.post("/integrations/stripe/{clinic_slug}", responses=openapi.NOT_FOUND)
async def clinic_stripe_webhook(clinic_slug: str, request: Request) -> JSONResponse:
    """A Stripe event for the clinic, signed with its endpoint's secret (Stripe-Signature)."""
    config = await _config(request, clinic_slug)
    raw = await read_body(request, limits.MAX_WEBHOOK_BODY)
    event = verify_stripe(config, raw, request.headers.get("stripe-signature", ""))
    try:
        result = await asyncio.to_thread(apply_stripe, request.app.state, config, [event])
    except stripe_events.MalformedStripeEvent as exc:
        raise HTTPException(400, f"not a usable Stripe event: {exc.problem}") from exc
    request.app.state.runtime.notify()
    return JSONResponse(result.body())
