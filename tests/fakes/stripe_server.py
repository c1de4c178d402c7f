"""A fake Stripe API: `GET /v1/events` (types[], created[gte], limit, starting_after, newest
first, as Stripe lists them) and `GET /v1/customers/{id}`, for the real `stripe` client."""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import BackgroundServer, FakeProvider

API_KEY = "sk_test_fake_0123456789"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


class FakeStripe(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._customers: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.app = Starlette(
            routes=[
                Route("/v1/events", self._events_list),
                Route("/v1/customers/{customer_id}", self._customer),
            ]
        )
        self._server = BackgroundServer(self.app, name="fake-stripe")

    def settings_overrides(self) -> dict[str, str]:
        return {"stripe_api_key": self.api_key, "stripe_api_base": self.base_url}

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._customers.clear()
            self.requests.clear()

    def add_events(self, *events: dict[str, Any]) -> None:
        with self._lock:
            self._events.extend(events)

    def add_customer(self, customer: dict[str, Any]) -> None:
        with self._lock:
            self._customers[customer["id"]] = customer

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _events_list(self, request: Request) -> JSONResponse:
        with self._lock:
            self.requests.append(str(request.url.query))
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        query = request.query_params
        types = [value for key, value in query.multi_items() if key.startswith("types[")]
        floor = int(query.get("created[gte]", "0"))
        limit = int(query.get("limit", "10"))
        after = query.get("starting_after")
        with self._lock:
            found = [e for e in self._events if (not types or e["type"] in types)]
        found = sorted((e for e in found if e["created"] >= floor),
                       key=lambda e: (e["created"], e["id"]), reverse=True)  # fmt: skip
        if after:
            ids = [e["id"] for e in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        page = found[:limit]
        return JSONResponse(
            {"object": "list", "url": "/v1/events", "has_more": len(found) > limit, "data": page}
        )

    async def _customer(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        with self._lock:
            customer = self._customers.get(request.path_params["customer_id"])
        if customer is None:
            return _error(404, "No such customer")
        return JSONResponse(customer)
