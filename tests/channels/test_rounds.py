"""The loop the turn runner and the dispatcher run: a round, then a nap until woken."""

from __future__ import annotations

import asyncio
import logging

import pytest

from channels.rounds import run_rounds

log = logging.getLogger("test_rounds")


@pytest.mark.anyio
async def test_work_that_arrives_during_an_empty_round_starts_the_next_round_at_once():
    # The round's claim looked before the new row was committed, so it found nothing; the
    # NOTIFY for that row arrived while it ran. The next round must start now, not after the
    # idle poll (an hour here; a second in production, a reply ten pacing slots late).
    wake, stop = asyncio.Event(), asyncio.Event()
    rounds: list[int] = []

    async def run_once() -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            wake.set()  # the wake-up for the row this round missed
            return 0
        stop.set()
        return 1

    await asyncio.wait_for(run_rounds(run_once, wake, stop, 3600, log, "test"), timeout=30)
    assert rounds == [0, 1]


@pytest.mark.anyio
async def test_an_empty_round_with_nothing_new_naps_until_woken():
    wake, stop = asyncio.Event(), asyncio.Event()
    rounds: list[int] = []

    async def run_once() -> int:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            stop.set()
        return 0

    loop = asyncio.create_task(run_rounds(run_once, wake, stop, 3600, log, "test"))
    for _ in range(20):  # let the loop run as far as it will without a wake-up
        await asyncio.sleep(0)
    assert rounds == [0]  # napping: no second round without new work
    wake.set()
    await asyncio.wait_for(loop, timeout=30)
    assert rounds == [0, 1]


@pytest.mark.anyio
async def test_a_failing_round_is_logged_and_the_next_one_runs(caplog):
    wake, stop = asyncio.Event(), asyncio.Event()
    rounds: list[int] = []

    async def run_once() -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            wake.set()
            raise RuntimeError("database went away")
        stop.set()
        return 1

    with caplog.at_level(logging.ERROR, logger="test_rounds"):
        await asyncio.wait_for(run_rounds(run_once, wake, stop, 3600, log, "test"), timeout=30)
    assert rounds == [0, 1]
    assert "test round failed" in caplog.text
