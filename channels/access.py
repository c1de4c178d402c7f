"""The access log and the per-route latency metric: for the middleware (`app.AccessLog`) and
for the plain ASGI routes that run ahead of it (`twilio_sms.InboundSms`, `api.StatusApi`)."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("patient_status.http")


def record(seconds: Any, method: str, route: str, status: int, started: float) -> None:
    """One request done: its latency into `seconds` (a labelled `ps_webhook_seconds`, or None
    for routes without one) and one log line naming the route's template, never the path or
    query (they can carry ids and phones)."""
    elapsed = time.perf_counter() - started
    if seconds is not None:
        seconds.observe(elapsed)
    log.info(
        "request",
        extra={"method": method, "route": route, "status": status, "ms": round(elapsed * 1000, 1)},
    )
