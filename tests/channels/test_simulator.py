"""The demo's front door: the simulator and `patient-status demo`."""

from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient

from channels.app import create_app
from channels.cli import demo_settings, main
from channels.senders import LogSmsSender, senders_from_settings
from status import demo
from status.settings import Settings, get_settings


def test_simulator_chats_through_the_engine_and_shows_proactive_messages(settings, database):
    settings = settings.model_copy(update={"demo_mode": True})
    with database.session() as session:
        demo.seed(session)
    with TestClient(create_app(settings, database)) as client:
        page = client.get("/simulator")
        assert page.status_code == 200
        assert "Maria Lopez" in page.text and "+15550100001" in page.text
        client.post("/simulator/api/send", json={"phone": "+15550100001", "text": "where is my rx"})
        client.portal.call(client.app.state.runtime.dispatcher.drain)
        thread = client.get("/simulator/api/messages", params={"phone": "+15550100001"}).json()
    bodies = [m["body"] for m in thread["messages"]]
    assert bodies[0] == "where is my rx"
    assert "date of birth" in bodies[1]


def test_simulator_is_off_outside_demo_mode(settings, database):
    with TestClient(create_app(settings, database)) as client:
        assert client.get("/simulator").status_code == 404
        response = client.post("/simulator/api/send", json={"phone": "+15550100001", "text": "hi"})
        assert response.status_code == 404


def test_demo_command_seeds_and_prints_urls_and_logins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main, ["demo", "--no-serve"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/demo.db"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8000/simulator" in result.output
    assert "nurse@demo.clinic / demo-password" in result.output
    assert "Maria Lopez      +15550100001  1985-03-14" in result.output
    assert (tmp_path / "demo.db").exists()


def test_the_demo_sends_nothing_whatever_credentials_the_environment_holds():
    # DESIGN: `demo` serves "outbound in log mode"; a `.env` with a clinic's real Twilio and
    # Telegram credentials must not text real people from the demo.
    configured = Settings(
        _env_file=None,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="real-token",
        twilio_from_number="+15550009999",
        telegram_bot_token="123456:real-bot",
    )
    assert configured.sms_enabled and configured.telegram_enabled  # as the clinic runs
    settings = demo_settings(configured, "127.0.0.1", 8000)
    assert settings.demo_mode and not settings.sms_enabled and not settings.telegram_enabled
    senders = senders_from_settings(settings, echo=True)
    assert isinstance(senders["sms"], LogSmsSender) and senders["sms"].echo
    assert settings.twilio_from_number == "+15550009999"  # still the number it says it is
