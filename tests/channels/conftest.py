"""Channel tests run the app against the fake providers (see tests/harness.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from channels.app import create_app
from status import demo
from tests.harness import TELEGRAM_SECRET, TWILIO_NUMBER, App, channel_overrides

__all__ = ["TELEGRAM_SECRET", "TWILIO_NUMBER"]


@pytest.fixture
def channel_settings(settings, fake_twilio, fake_telegram):
    return settings.model_copy(update=channel_overrides(fake_twilio, fake_telegram))


@pytest.fixture
def app(channel_settings, database):
    with database.session() as session:
        demo.seed(session)
    client = TestClient(create_app(channel_settings, database, run_workers=False))
    with client:
        yield App(client, channel_settings, database)
