"""A fake FHIR R4 server: type searches with `_count`, `_lastUpdated=geT` and `_sort`, paged
through Bundle `link` next like HAPI and Medplum page them; it records every request."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import BackgroundServer, FakeProvider


class FakeFhir(FakeProvider):
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._resources: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []
        self.app = Starlette(routes=[Route("/fhir/R4/{resource_type}", self._search)])
        self._server = BackgroundServer(self.app, name="fake-fhir")

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir/R4"

    def reset(self) -> None:
        with self._lock:
            self._resources.clear()
            self.requests.clear()

    def add(self, *resources: dict[str, Any]) -> None:
        with self._lock:
            for resource in resources:
                self._resources.setdefault(resource["resourceType"], []).append(resource)

    async def _search(self, request: Request) -> JSONResponse:
        with self._lock:
            self.requests.append(str(request.url.path) + "?" + str(request.url.query))
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            outcome = {"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "login"}]}  # fmt: skip
            return JSONResponse(outcome, status_code=401)
        resource_type = request.path_params["resource_type"]
        query = request.query_params
        count = int(query.get("_count", "20"))
        offset = int(query.get("_offset", "0"))
        since = query.get("_lastUpdated", "")
        with self._lock:
            found = list(self._resources.get(resource_type, []))
        if since.startswith("ge"):
            floor = datetime.fromisoformat(since[2:])
            found = [r for r in found if _updated(r) >= floor]
        found.sort(key=_updated)
        page = found[offset : offset + count]
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        links = [{"relation": "self", "url": str(request.url)}]
        if offset + count < len(found):
            extra = f"&{urlencode({'_lastUpdated': since})}" if since else ""
            links.append(
                {"relation": "next",
                 "url": f"{base}?_count={count}&_offset={offset + count}{extra}"}
            )  # fmt: skip
        return JSONResponse(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "link": links,
                "entry": [
                    {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                    for r in page
                ],
            },
            media_type="application/fhir+json",
        )


def _updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])
