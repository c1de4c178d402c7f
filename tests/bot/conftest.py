"""Fixtures for bot tests: the demo clinic and an engine; whole-app tests reuse the channel
fixtures (the fakes behind the app)."""

from __future__ import annotations

import pytest

from bot.engine import Engine
from status import clock as product_clock
from status import demo
from tests.channels.conftest import app, channel_settings  # noqa: F401
from tests.harness import NOW, Patient


@pytest.fixture
def clinic(database, settings):
    # seeded at the tests' NOW, with the product's clock there too (NOW moves with
    # TEST_CLOCK_SHIFT, and an event dated ahead of the product's clock is refused)
    with product_clock.use(lambda: NOW), database.session() as session:
        demo.seed(session, now=NOW)
    return database


@pytest.fixture
def engine(settings):
    return Engine(settings.model_copy(update={"sms_keyword_replies": "app"}))


@pytest.fixture
def phone(clinic, engine):
    """A phone per address; the product's clock is as far as any phone in the test has got."""
    phones: list[Patient] = []

    def latest():
        return max((p.clock for p in phones), default=NOW)

    def new(address, channel="sms"):
        phones.append(Patient(clinic, engine, address, channel))
        return phones[-1]

    with product_clock.use(latest):
        yield new
