"""What a running process holds: the engine, the senders, the turn runner, the dispatcher and
the scheduler.

`serve` runs the loops in-process next to the HTTP app (unless `--no-workers`, when the web tier
only stores what arrives); `worker` runs them alone. Several of either can share one PostgreSQL
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.engine import Engine
from bot.proactive.notifier import Notifier
from bot.proactive.policy import Policy
from bot.proactive.scheduler import Scheduler
from bot.understanding import classify, pipeline
from channels.dispatcher import Dispatcher
from channels.senders import senders_from_settings
from channels.telegram import TelegramChannel
from channels.turns import TurnRunner
from status.db import Database, utcnow
from status.settings import Settings

log = logging.getLogger("patient_status.runtime")
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits for it


class Runtime:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        senders: dict | None = None,
        echo: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.engine = Engine(settings)
        self.senders = (
            senders if senders is not None else senders_from_settings(settings, echo=echo)
        )
        self.clock = clock
        # one view of the clinics (settings, wording) for turns, notices and sends
        profiles = self.engine.profiles
        self.dispatcher = Dispatcher(settings, db, self.senders, clock=clock, profiles=profiles)
        self.notifier = Notifier(settings, Policy(settings, profiles=profiles), clock=clock)
        self.scheduler = Scheduler(settings, db, self.notifier.policy, clock=clock)
        self.telegram = TelegramChannel(self)
        self.turns = TurnRunner(self, clock=clock)
        # What happens around a send: the timeline records what the patient was told, and a
        # Telegram chat that blocked the bot gets the same news by SMS.
        self.dispatcher.sent_hooks.append(self.notifier.record_told)
        self.dispatcher.failure_hooks.append(self.notifier.fall_back)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """New outbox rows: wake the dispatcher now instead of at its next poll (and an update
        it holds for a number's next slot, which a reply takes instead)."""
        self._call(self.dispatcher.written)

    def notify_inbox(self) -> None:
        """A message was stored: wake the turn runner now (other processes hear NOTIFY)."""
        self._wake(self.turns.wake)

    def _wake(self, event: asyncio.Event) -> None:
        self._call(event.set)

    def _call(self, fn: Callable[[], None]) -> None:
        """`fn()` on the loop's thread, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    async def drain(self, timeout: float = 30.0) -> None:
        """Answer every stored message that is due, then send what is due (tests, the demo)."""
        await self.turns.drain(timeout)
        await self.dispatcher.drain(timeout)

    async def start(self, workers: bool = True, *, beside_webhooks: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        # Load the understanding catalogue now, not on the first patient's message.
        from bot.understanding.classifier import catalogue

        await asyncio.to_thread(catalogue)
        # Templates compile in the background: a process answers /healthz without waiting.
        self._compiling = asyncio.create_task(asyncio.to_thread(self.engine.renderer.compile_all))
        self._stop.clear()
        if workers:
            # The learned model and the rules' patterns load now, not in the first patient's
            # turn (a second or more on a busy host).
            await asyncio.to_thread(classify, "where is my prescription")
            if beside_webhooks:  # plain `serve`: the turns share the process with the web tier
                # Turns and sends run in threads beside the event loop and hold the GIL for
                # milliseconds at a time; each time the loop gives it up (a socket read, a log
                # write) it waited the default 5 ms switch interval to get it back. With 0.5 ms,
                # plain `serve` on SQLite accepted ~2.5x as many webhooks during a burst (turning
                # correspondingly fewer until it passed): accepting comes first.
                sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
            self._tasks.append(asyncio.create_task(self.turns.run_forever(self._stop)))
            self._tasks.append(asyncio.create_task(self.dispatcher.run_forever(self._stop)))
            if self.settings.worker_heartbeat_file:
                self._tasks.append(asyncio.create_task(self._heartbeat()))
            if self.scheduler is not None:
                self._tasks.append(asyncio.create_task(self.scheduler.run_forever(self._stop)))
            log.info("workers started", extra={"worker_id": self.dispatcher.worker_id})

    async def _heartbeat(self, every: float = 15.0) -> None:
        """Touch a file while the loops are alive, for a container health check."""
        path = Path(self.settings.worker_heartbeat_file)
        while not self._stop.is_set():
            alive = all(
                not task.done() for task in self._tasks if task is not asyncio.current_task()
            )
            if alive:
                path.touch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=every)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks.clear()
        self.turns.close()
        for sender in self.senders.values():
            await sender.close()


def freeze_start_up(turns: bool = True) -> None:
    """A serving process, before its first request or turn: load what its turns need (the
    model, the catalogue; not in a web tier that runs none), then move everything start-up
    built (modules, the app, those) out of the collector's way, as it lives as long as the
    process. Each collection then walks only what requests and turns make (in a worker,
    about 0.1 ms of CPU a turn less), and the first patient does not wait about a second for
    the model."""
    if turns:
        pipeline.load()
    gc.collect()
    gc.freeze()
