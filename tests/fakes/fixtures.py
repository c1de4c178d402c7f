"""Fixtures for the fake providers; loaded with `pytest_plugins = ["tests.fakes.fixtures"]`.

Each server starts once per session; the function-scoped fixtures hand it over reset.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fhir_server import FakeFhir
from tests.fakes.server import unused_base_url
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.twilio_server import FakeTwilio


@pytest.fixture(scope="session")
def fake_twilio_server() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_twilio(fake_twilio_server: FakeTwilio) -> Iterator[FakeTwilio]:
    fake_twilio_server.reset()
    yield fake_twilio_server
    fake_twilio_server.reset()


@pytest.fixture(scope="session")
def fake_telegram_server() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_telegram(fake_telegram_server: FakeTelegram) -> Iterator[FakeTelegram]:
    fake_telegram_server.reset()
    yield fake_telegram_server
    fake_telegram_server.reset()


@pytest.fixture(scope="session")
def fake_fhir_server() -> Iterator[FakeFhir]:
    fake = FakeFhir(token="fhir-import-token").start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_fhir(fake_fhir_server: FakeFhir) -> Iterator[FakeFhir]:
    fake_fhir_server.reset()
    yield fake_fhir_server
    fake_fhir_server.reset()


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripe) -> Iterator[FakeStripe]:
    fake_stripe_server.reset()
    yield fake_stripe_server
    fake_stripe_server.reset()


@pytest.fixture
def refused_base_url() -> str:
    """A loopback base URL where nothing listens: every connection is refused."""
    return unused_base_url()
