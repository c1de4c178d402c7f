"""The loop a worker runs: a round of work, and when there was none, a nap until woken or
stopped. The dispatcher (outbox) and the turn runner (inbox) both run it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def run_rounds(
    run_once: Callable[[], Awaitable[int]],
    wake: asyncio.Event,
    stop: asyncio.Event,
    idle: float,
    log: logging.Logger,
    what: str,
) -> None:
    """Call `run_once` until `stop`; after a round that handled nothing, wait up to `idle`
    seconds for `wake` (new work) or `stop`. A failing round is logged and the next retries.

    `wake` is cleared before a round, not after it: work that arrives while a round runs (a row
    committed after the round's claim looked) leaves it set, and the next round starts at once.
    Cleared after the round, that wake-up was lost and the work waited for the `idle` poll (a
    reply 1.06 s late, ten pacing slots, in bench_reply_priority)."""
    while not stop.is_set():
        wake.clear()
        try:
            handled = await run_once()
        except Exception:
            log.exception("%s round failed", what)
            handled = 0
        if handled:
            continue
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
        await asyncio.wait(waits, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
