"""The one clock. Every timestamp the product writes reads `now()`.

Production reads the system clock. A test (or a tool replaying history) installs another source
for the whole process with `use(...)`, so the webhook that stamps an inbound message, the ORM
defaults, the dispatcher and the scheduler all agree on what "now" is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

Source = Callable[[], datetime]


def system() -> datetime:
    return datetime.now(UTC)


_source: Source = system


def now() -> datetime:
    """The current time, timezone-aware, from the installed source."""
    return _source()


def install(source: Source) -> Source:
    """Make `source` the process clock; returns the one it replaces."""
    global _source
    previous, _source = _source, source
    return previous


@contextmanager
def use(source: Source) -> Iterator[Source]:
    """`source` is the process clock inside the block."""
    previous = install(source)
    try:
        yield source
    finally:
        install(previous)
