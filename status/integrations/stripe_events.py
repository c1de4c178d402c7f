"""Stripe events onto our payment and subscription events (docs/integrations.md has the table).

The Stripe event id is the notification's key (a redelivery changes nothing) and its `created`
the events' `occurred_at` (Stripe delivers out of order; an older event never overwrites a newer
state). The patient is the one the customer names in `metadata.patient_id`, else the one found
by email or phone, as `STRIPE_PATIENT_MATCH` orders them; a customer matched once is remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from status.integrations.config import IntegrationSettings
from status.integrations.ingest import Notification
from status.integrations.lookup import Lookup
from status.integrations.receipts import Source
from status.patients import InvalidPhone, normalize_phone

EVENT_TYPES = (
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.upcoming",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "customer.created",
    "customer.updated",
)
_SUBSCRIPTION = {
    "active": "active", "trialing": "active", "past_due": "past_due", "unpaid": "past_due",
    "incomplete": "past_due", "paused": "paused", "canceled": "cancelled",
    "incomplete_expired": "cancelled",
}  # fmt: skip

CustomerSource = Callable[[str], dict[str, Any] | None]


class MalformedStripeEvent(ValueError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _at(epoch: Any) -> str | None:
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat()
    except (ValueError, OverflowError, OSError):  # beyond the years a datetime holds
        return None


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` when it is an object, else {} (absent, null, or not the shape Stripe
    documents: read as absent, never a 500)."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _first_line(invoice: dict[str, Any]) -> dict[str, Any]:
    """The invoice's first line (`lines.data[0]`), else {} (absent or not in Stripe's shape)."""
    data = _obj(invoice, "lines").get("data")
    first = data[0] if isinstance(data, list) and data else None
    return first if isinstance(first, dict) else {}


def _if_failed(payment: dict[str, Any] | None) -> dict[str, Any]:
    """The payment as last known when it stands failed (what the other of the two failure
    events told of the same failure), else {}."""
    return payment if payment and payment.get("status") == "failed" else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class StripeMapper:
    def __init__(
        self, config: IntegrationSettings, lookup: Lookup, customers: CustomerSource | None = None
    ) -> None:
        self.config = config
        self.lookup = lookup
        self.customers = customers
        self._fetched: dict[str, dict[str, Any] | None] = {}

    def map(self, events: list[dict[str, Any]]) -> list[Notification]:
        """Notifications in `created` order; later ones see what earlier ones changed."""
        notifications = [self._notification(event) for event in events]
        order = sorted(range(len(events)), key=lambda i: events[i]["created"])
        for index in order:
            event, n = events[index], notifications[index]
            handler = getattr(self, "_" + event["type"].replace(".", "_"), None)
            if handler is None:
                n.refuse(
                    f"Stripe event {event['type']!r} is not one we use: deselect it on the "
                    "endpoint (we use " + ", ".join(EVENT_TYPES) + ")"
                )
                continue
            try:
                reason = handler(event["data"]["object"], n)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # a field in a shape Stripe does not send (a list for an object, text for a
                # number): refused whole, before anything is applied, naming the event
                raise MalformedStripeEvent(
                    f"data.object of {event['type']} {event['id']}: a field is not of the type "
                    f"Stripe documents ({type(exc).__name__}: {str(exc)[:80]})"
                ) from exc
            if reason:
                n.refuse(reason)
            for mapped in n.events:
                self.lookup.remember(mapped)
            for external_id, patient_id in n.links.items():
                self.lookup.learn(external_id, patient_id)
        return [notifications[i] for i in order]

    @staticmethod
    def _notification(event: Any) -> Notification:
        if not isinstance(event, dict):
            raise MalformedStripeEvent("an event must be a JSON object")
        event_id, kind, created = event.get("id"), event.get("type"), event.get("created")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
            raise MalformedStripeEvent("id: missing or not an event id")
        if not isinstance(kind, str) or not kind:
            raise MalformedStripeEvent("type: missing")
        if not isinstance(created, int) or _at(created) is None:
            raise MalformedStripeEvent("created: missing or not a Unix timestamp")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise MalformedStripeEvent("data.object: missing")
        external: str = obj["id"] if isinstance(obj.get("id"), str) else event_id
        occurred = datetime.fromtimestamp(created, UTC)
        return Notification(Source.STRIPE, event_id, kind, external[:128], occurred)

    # --- who is the patient ----------------------------------------------------------------------

    def _customer(self, customer_id: str | None) -> dict[str, Any]:
        if not customer_id or self.customers is None:
            return {}
        if customer_id not in self._fetched:
            self._fetched[customer_id] = self.customers(customer_id)
        return self._fetched[customer_id] or {}

    def _patient(self, obj: dict[str, Any], n: Notification) -> str | None:
        customer_id = obj.get("customer") if isinstance(obj.get("customer"), str) else None
        if isinstance(obj.get("customer"), dict):  # expanded
            customer_id = obj["customer"].get("id")
        billing = _obj(obj, "billing_details")
        for match in self.config.stripe_patient_match:
            found: list[str] = []
            if match == "metadata":
                named = _text(_obj(obj, "metadata").get("patient_id"))
                if not named and customer_id:
                    named = self.lookup.link(customer_id)
                if not named:
                    named = _text(_obj(self._customer(customer_id), "metadata").get("patient_id"))
                found = [named] if named else []
            elif match == "email":
                email = (
                    obj.get("customer_email") or obj.get("receipt_email") or billing.get("email")
                    or self._customer(customer_id).get("email")
                )  # fmt: skip
                found = self.lookup.patients_with_email(email) if email else []
            elif match == "phone":
                phone = (
                    obj.get("customer_phone") or billing.get("phone")
                    or self._customer(customer_id).get("phone")
                )  # fmt: skip
                try:
                    found = self.lookup.patients_with_phone(normalize_phone(phone)) if phone else []
                except InvalidPhone:
                    found = []
            if len(found) == 1:
                if customer_id:
                    n.links[customer_id] = found[0]
                return found[0]
            if len(found) > 1:
                n.reason = f"the customer's {match} matches {len(found)} patients"
                return None
        return None

    def _no_patient(self, n: Notification) -> str:
        return n.reason or (
            "no patient for this Stripe customer (tried "
            + ", ".join(self.config.stripe_patient_match)
            + "): set metadata.patient_id on the customer"
        )

    # --- invoices and payments ---------------------------------------------------------------

    def _invoice_payment(self, invoice: dict[str, Any], n: Notification, status: str) -> str | None:
        patient_id = self._patient(invoice, n)
        if patient_id is None:
            return self._no_patient(n)
        if not _text(invoice.get("id")):
            return "the invoice has no id"
        paid = status == "succeeded"
        amount = invoice.get("amount_paid") if paid else invoice.get("amount_remaining")
        if not isinstance(amount, int) or (paid and amount == 0):
            amount = invoice.get("amount_due") if isinstance(invoice.get("amount_due"), int) else 0
        description = (
            invoice.get("description")
            or _first_line(invoice).get("description")
            or (f"Invoice {invoice['number']}" if invoice.get("number") else "Invoice")
        )
        failed = status == "failed"
        # Stripe sends a failed invoice's payment intent too (payment_intent.payment_failed),
        # in either order: each keeps what the other told of the same failure (the intent
        # has the card's reason, the invoice the retry date and the link)
        before = _if_failed(self.lookup.item("payment", invoice["id"])) if failed else {}
        n.add(
            "payment",
            {
                "payment_id": invoice["id"],
                "patient_id": patient_id,
                "amount_cents": amount,
                "currency": invoice.get("currency") or "usd",
                "status": status,
                "description": description[:300],
                "failure_reason": (_invoice_failure(invoice) or before.get("failure_reason"))
                if failed
                else None,
                "next_retry_at": _at(invoice.get("next_payment_attempt")) if failed else None,
                "payment_url": invoice.get("hosted_invoice_url") if failed else None,
            },
        )
        return None

    def _invoice_paid(self, invoice: dict[str, Any], n: Notification) -> str | None:
        return self._invoice_payment(invoice, n, "succeeded")

    def _invoice_payment_failed(self, invoice: dict[str, Any], n: Notification) -> str | None:
        return self._invoice_payment(invoice, n, "failed")

    def _invoice_upcoming(self, invoice: dict[str, Any], n: Notification) -> str | None:
        subscription_id = _subscription_id(invoice)
        if subscription_id is None:
            return "the upcoming invoice belongs to no subscription"
        patient_id = self._patient(invoice, n)
        if patient_id is None:
            return self._no_patient(n)
        current = self.lookup.item("subscription", subscription_id) or {
            "plan": _first_line(invoice).get("description") or "Care plan",
            "status": "active",
            "auto_renew": True,
        }
        renews = _at(invoice.get("next_payment_attempt")) or _at(invoice.get("period_end"))
        n.add(
            "subscription",
            {
                **current,
                "subscription_id": subscription_id,
                "patient_id": patient_id,
                "amount_cents": invoice.get("amount_due") or 0,
                "currency": invoice.get("currency") or current.get("currency") or "usd",
                "renews_at": renews or current.get("renews_at"),
            },
        )
        return None

    def _payment_intent(self, intent: dict[str, Any], n: Notification, status: str) -> str | None:
        patient_id = self._patient(intent, n)
        if patient_id is None:
            return self._no_patient(n)
        error = _obj(intent, "last_payment_error")
        payment_id = _text(intent.get("invoice"))
        current = self.lookup.item("payment", payment_id) if payment_id else None
        own_id = payment_id or _text(intent.get("id"))
        if own_id is None:
            return "the payment intent has no id"
        failed = status == "failed"
        before = _if_failed(current) if failed else {}
        n.add(
            "payment",
            {
                **(current or {}),
                "payment_id": own_id,
                "patient_id": patient_id,
                "amount_cents": intent.get("amount") or 0,
                "currency": intent.get("currency") or "usd",
                "status": status,
                "description": (
                    (current or {}).get("description") or intent.get("description") or "Payment"
                )[:300],
                "failure_reason": (error.get("message") or error.get("decline_code"))
                if failed
                else None,
                "next_retry_at": before.get("next_retry_at"),
                "payment_url": before.get("payment_url"),
            },
        )
        return None

    def _payment_intent_succeeded(self, intent: dict[str, Any], n: Notification) -> str | None:
        return self._payment_intent(intent, n, "succeeded")

    def _payment_intent_payment_failed(self, intent: dict[str, Any], n: Notification) -> str | None:
        return self._payment_intent(intent, n, "failed")

    def _charge_refunded(self, charge: dict[str, Any], n: Notification) -> str | None:
        patient_id = self._patient(charge, n)
        if patient_id is None:
            return self._no_patient(n)
        payment_id = next(
            (
                value
                for value in (charge.get("invoice"), charge.get("payment_intent"), charge.get("id"))
                if isinstance(value, str) and value
            ),
            None,
        )
        if payment_id is None:
            return "the charge has no id, invoice or payment_intent"
        current = self.lookup.item("payment", payment_id) or {}
        n.add(
            "payment",
            {
                **current,
                "payment_id": payment_id,
                "patient_id": patient_id,
                "amount_cents": charge.get("amount_refunded") or charge.get("amount") or 0,
                "currency": charge.get("currency") or "usd",
                "status": "refunded",
                "description": (current.get("description") or charge.get("description")
                                or "Refund")[:300],
                "failure_reason": None,
                "next_retry_at": None,
                "payment_url": None,
            },
        )  # fmt: skip
        return None

    # --- subscriptions -----------------------------------------------------------------------

    def _subscription(
        self, sub: dict[str, Any], n: Notification, deleted: bool = False
    ) -> str | None:
        patient_id = self._patient(sub, n)
        if patient_id is None:
            return self._no_patient(n)
        status = "cancelled" if deleted else _SUBSCRIPTION.get(sub.get("status", ""))
        if status is None:
            return f"subscription status {sub.get('status')!r} is not one we map"
        if not _text(sub.get("id")):
            return "the subscription has no id"
        items = _obj(sub, "items").get("data") or []
        first = items[0] if items else {}
        price = first.get("price") or first.get("plan") or {}
        current = self.lookup.item("subscription", sub["id"]) or {}
        amount = sum(
            ((item.get("price") or item.get("plan") or {}).get("unit_amount")
             or (item.get("plan") or {}).get("amount") or 0) * (item.get("quantity") or 1)
            for item in items
        )  # fmt: skip
        period_end = sub.get("current_period_end") or first.get("current_period_end")
        plan = (
            price.get("nickname")
            or sub.get("description")
            or (sub.get("metadata") or {}).get("plan")
            or current.get("plan")
            or "Care plan"
        )
        n.add(
            "subscription",
            {
                "subscription_id": sub["id"],
                "patient_id": patient_id,
                "plan": plan[:200],
                "amount_cents": amount or current.get("amount_cents") or 0,
                "currency": sub.get("currency") or price.get("currency") or "usd",
                "status": status,
                "renews_at": _at(period_end),
                "auto_renew": status != "cancelled" and not sub.get("cancel_at_period_end"),
            },
        )
        return None

    def _customer_subscription_created(self, sub: dict[str, Any], n: Notification) -> str | None:
        return self._subscription(sub, n)

    def _customer_subscription_updated(self, sub: dict[str, Any], n: Notification) -> str | None:
        return self._subscription(sub, n)

    def _customer_subscription_deleted(self, sub: dict[str, Any], n: Notification) -> str | None:
        return self._subscription(sub, n, deleted=True)

    # --- customers: only who they are --------------------------------------------------------

    def _customer_named(self, customer: dict[str, Any], n: Notification) -> str | None:
        patient_id = _text(_obj(customer, "metadata").get("patient_id"))
        if not patient_id or not _text(customer.get("id")):
            return "the customer has no metadata.patient_id: later events match by email/phone"
        n.links[customer["id"]] = patient_id
        return None

    _customer_created = _customer_named
    _customer_updated = _customer_named


def _subscription_id(invoice: dict[str, Any]) -> str | None:
    value = invoice.get("subscription")
    if isinstance(value, str):
        return value
    details = _obj(_obj(invoice, "parent"), "subscription_details")
    return details.get("subscription") if isinstance(details.get("subscription"), str) else None


def _invoice_failure(invoice: dict[str, Any]) -> str | None:
    return _text(_obj(invoice, "last_finalization_error").get("message"))


def map_events(
    events: list[dict[str, Any]],
    config: IntegrationSettings,
    lookup: Lookup,
    customers: CustomerSource | None = None,
) -> list[Notification]:
    return StripeMapper(config, lookup, customers).map(events)
