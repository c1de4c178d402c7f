"""The real twilio and aiogram clients against the local fake providers."""

from __future__ import annotations

import logging

import pytest
from aiogram.types import Update

from bot.sms_text import sms_segments
from channels.senders.base import BLOCKED, CHAT_NOT_FOUND, INVALID_ADDRESS, OPTED_OUT
from channels.senders.telegram import TelegramSender, build_bot, set_webhook
from channels.senders.twilio_sms import LogSmsSender, TwilioSmsSender
from status.settings import Settings
from tests.fakes.telegram_server import FakeTelegram, callback_update, contact_update
from tests.fakes.twilio_server import FakeTwilio

PATIENT = "+15550100123"
CLINIC = "+15550100999"
SERVICE_SID = "MG" + "ab" * 16
CALLBACK = "https://clinic.example/webhooks/twilio/status"
CHAT = 424242


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope: one event loop for the file, so the senders below are built and closed
    # once (aiogram's session close sleeps 250 ms).
    return "asyncio"


def make_settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "twilio_from_number": None,
        "twilio_messaging_service_sid": None,
        "telegram_webhook_secret": None,
        "public_base_url": None,
    }
    return Settings(_env_file=None, **(base | values))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def sms_sender(anyio_backend, fake_twilio_server: FakeTwilio):
    settings = make_settings(**fake_twilio_server.settings_overrides(), twilio_from_number=CLINIC)
    sender = TwilioSmsSender(settings)
    yield sender
    await sender.close()


@pytest.fixture
def sms(sms_sender: TwilioSmsSender, fake_twilio: FakeTwilio) -> TwilioSmsSender:
    return sms_sender


@pytest.fixture(scope="module")
async def telegram_sender(anyio_backend, fake_telegram_server: FakeTelegram):
    sender = TelegramSender(make_settings(**fake_telegram_server.settings_overrides()))
    yield sender
    await sender.close()


@pytest.fixture
def telegram(telegram_sender: TelegramSender, fake_telegram: FakeTelegram) -> TelegramSender:
    return telegram_sender


# SMS -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sms_reaches_twilio_with_to_from_body_callback_and_basic_auth(sms, fake_twilio):
    result = await sms.send(PATIENT, "Your order shipped.", status_callback=CALLBACK)

    [request] = fake_twilio.requests
    assert (request.to, request.from_, request.body) == (PATIENT, CLINIC, "Your order shipped.")
    assert request.status_callback == CALLBACK
    assert request.messaging_service_sid is None
    assert request.auth == (fake_twilio.account_sid, fake_twilio.auth_token)
    assert result.ok and result.status == "queued"
    assert result.provider_message_id == request.sid
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34


@pytest.mark.anyio
async def test_sms_through_messaging_service_sends_service_sid_instead_of_from(fake_twilio):
    settings = make_settings(
        **fake_twilio.settings_overrides(), twilio_messaging_service_sid=SERVICE_SID
    )
    sender = TwilioSmsSender(settings)
    try:
        result = await sender.send(PATIENT, "Hi")
    finally:
        await sender.close()

    [request] = fake_twilio.requests
    assert request.messaging_service_sid == SERVICE_SID
    assert request.from_ is None
    assert request.status_callback is None
    assert result.ok and result.status == "accepted"


@pytest.mark.anyio
async def test_twilio_server_error_is_retryable(sms, fake_twilio):
    fake_twilio.fail_next(status=500, times=2)

    first = await sms.send(PATIENT, "Hi")
    second = await sms.send(PATIENT, "Hi")
    third = await sms.send(PATIENT, "Hi")

    assert not first.ok and first.retryable and first.error_code == "20500"
    assert first.permanent_reason is None
    assert second.retryable
    assert third.ok


@pytest.mark.anyio
async def test_twilio_rate_limit_is_retryable_after_its_retry_after(sms, fake_twilio):
    fake_twilio.fail_next(status=429, code=20429, retry_after=2)

    result = await sms.send(PATIENT, "Hi")

    assert not result.ok and result.retryable
    assert result.error_code == "20429"
    assert result.retry_after == 2.0


@pytest.mark.anyio
async def test_twilio_unsubscribed_recipient_is_permanently_opted_out(sms, fake_twilio):
    fake_twilio.fail_next(
        status=400, code=21610, message="Attempt to send to unsubscribed recipient"
    )

    result = await sms.send(PATIENT, "Your refill is due")

    assert not result.ok and not result.retryable
    assert result.permanent_reason == OPTED_OUT
    assert result.error_code == "21610"
    assert "unsubscribed recipient" in result.error_message
    assert "refill" not in result.error_message


@pytest.mark.anyio
@pytest.mark.parametrize("code", [21211, 21614])
async def test_twilio_bad_number_is_permanently_invalid_address(sms, fake_twilio, code):
    fake_twilio.fail_for(PATIENT, code=code)

    result = await sms.send(PATIENT, "Hi")
    other = await sms.send("+15550100124", "Hi")

    assert not result.retryable and result.permanent_reason == INVALID_ADDRESS
    assert result.error_code == str(code)
    assert other.ok


@pytest.mark.anyio
async def test_twilio_wrong_credentials_fail_without_retry(fake_twilio):
    overrides = fake_twilio.settings_overrides() | {"twilio_auth_token": "wrong"}
    sender = TwilioSmsSender(make_settings(**overrides, twilio_from_number=CLINIC))
    try:
        result = await sender.send(PATIENT, "Hi")
    finally:
        await sender.close()

    assert fake_twilio.requests[0].status_code == 401
    assert not result.ok and not result.retryable and result.error_code == "20003"


@pytest.mark.anyio
async def test_twilio_connection_refused_is_a_retryable_network_error(refused_base_url):
    settings = make_settings(
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="token",
        twilio_from_number=CLINIC,
        twilio_api_base=refused_base_url,
    )
    sender = TwilioSmsSender(settings)
    try:
        result = await sender.send(PATIENT, "Hi")
    finally:
        await sender.close()

    assert not result.ok and result.retryable
    assert result.error_code == "network"
    assert not result.maybe_accepted  # never connected: sent again without a lookup


@pytest.mark.anyio
async def test_twilio_timeout_is_a_retryable_network_error(fake_twilio):
    settings = make_settings(**fake_twilio.settings_overrides(), twilio_from_number=CLINIC)
    sender = TwilioSmsSender(settings, timeout=0.2)
    fake_twilio.stall_next(1.0)
    try:
        result = await sender.send(PATIENT, "Hi")
    finally:
        await sender.close()

    assert result.retryable and result.error_code == "network"
    assert result.maybe_accepted  # Twilio may have it: looked up before any resend


@pytest.mark.anyio
async def test_log_sms_sender_logs_size_but_never_the_body(caplog, capsys):
    caplog.set_level(logging.INFO)

    quiet = await LogSmsSender().send(PATIENT, "Your prescription shipped")
    await LogSmsSender(echo=True).send(PATIENT, "Your prescription shipped")

    assert quiet.ok and quiet.status == "logged" and quiet.provider_message_id is None
    assert "segments=1" in caplog.text
    assert "prescription" not in caplog.text and PATIENT not in caplog.text
    assert capsys.readouterr().out.count("Your prescription shipped") == 1


# Telegram --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_telegram_message_with_inline_buttons(telegram, fake_telegram):
    buttons = [[{"text": "Track", "data": "track:1"}, {"text": "Talk to staff", "data": "human"}]]

    result = await telegram.send(str(CHAT), "<b>Shipped</b> &amp; on its way", buttons=buttons)

    [call] = fake_telegram.sent(CHAT)
    assert call.params["text"] == "<b>Shipped</b> &amp; on its way"
    assert call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Track", "callback_data": "track:1"},
                {"text": "Talk to staff", "callback_data": "human"},
            ]
        ]
    }
    assert result.ok and result.status == "sent"
    assert result.provider_message_id == str(call.result["message_id"])


@pytest.mark.anyio
async def test_telegram_contact_request_is_a_one_time_reply_keyboard(telegram, fake_telegram):
    buttons = [[{"text": "Share my phone number", "request_contact": True}]]

    result = await telegram.send(str(CHAT), "Please share your number", buttons=buttons)

    [call] = fake_telegram.sent(CHAT)
    assert call.params["reply_markup"] == {
        "keyboard": [[{"text": "Share my phone number", "request_contact": True}]],
        "one_time_keyboard": True,
        "resize_keyboard": True,
    }
    assert result.ok


@pytest.mark.anyio
async def test_telegram_flood_limit_is_retryable_after_retry_after(telegram, fake_telegram):
    fake_telegram.fail_next(429, retry_after=1, method="sendMessage")

    result = await telegram.send(str(CHAT), "Hi")

    assert not result.ok and result.retryable
    assert (result.error_code, result.retry_after) == ("429", 1.0)


@pytest.mark.anyio
async def test_telegram_blocked_bot_is_permanent(telegram, fake_telegram):
    fake_telegram.fail_for_chat(CHAT, 403, description="Forbidden: bot was blocked by the user")

    result = await telegram.send(str(CHAT), "Hi")

    assert not result.ok and not result.retryable
    assert result.permanent_reason == BLOCKED and result.error_code == "403"


@pytest.mark.anyio
async def test_telegram_unknown_chat_is_permanent_chat_not_found(telegram, fake_telegram):
    fake_telegram.fail_next(400, description="Bad Request: chat not found")

    result = await telegram.send("999", "Hi")

    assert not result.retryable and result.permanent_reason == CHAT_NOT_FOUND


@pytest.mark.anyio
async def test_telegram_unescaped_html_is_a_permanent_bad_request(telegram, fake_telegram):
    result = await telegram.send(str(CHAT), "dose <5mg")

    assert not result.ok and not result.retryable and result.permanent_reason is None
    assert result.error_code == "400" and "can't parse entities" in result.error_message


@pytest.mark.anyio
async def test_telegram_server_error_is_retryable(telegram, fake_telegram):
    fake_telegram.fail_next(500)

    result = await telegram.send(str(CHAT), "Hi")

    assert result.retryable and result.error_code == "500"


@pytest.mark.anyio
async def test_telegram_connection_refused_is_a_retryable_network_error(refused_base_url):
    settings = make_settings(telegram_bot_token="123:abc", telegram_api_base=refused_base_url)
    sender = TelegramSender(settings)
    try:
        result = await sender.send(str(CHAT), "Hi")
    finally:
        await sender.close()

    assert result.retryable and result.error_code == "network"


@pytest.mark.anyio
async def test_telegram_timeout_is_a_retryable_network_error(fake_telegram):
    sender = TelegramSender(make_settings(**fake_telegram.settings_overrides()), timeout=0.2)
    fake_telegram.stall_next(1.0, method="sendMessage")
    try:
        result = await sender.send(str(CHAT), "Hi")
    finally:
        await sender.close()

    assert result.retryable and result.error_code == "network"


@pytest.mark.anyio
async def test_set_webhook_registers_public_url_with_secret(fake_telegram):
    settings = make_settings(
        **fake_telegram.settings_overrides(),
        public_base_url="https://clinic.example/",
        telegram_webhook_secret="s3cret-token_1",
    )

    url = await set_webhook(settings)

    assert url == "https://clinic.example/webhooks/telegram"
    assert fake_telegram.webhook["url"] == url
    assert fake_telegram.webhook["secret_token"] == "s3cret-token_1"
    assert fake_telegram.webhook["allowed_updates"] == ["message", "callback_query"]


@pytest.mark.anyio
async def test_set_webhook_names_the_missing_settings(fake_telegram):
    settings = make_settings(**fake_telegram.settings_overrides())

    with pytest.raises(ValueError, match="PUBLIC_BASE_URL, TELEGRAM_WEBHOOK_SECRET"):
        await set_webhook(settings)
    assert fake_telegram.calls == []


@pytest.mark.anyio
async def test_fake_telegram_serves_pushed_updates_to_a_real_bot(fake_telegram):
    bot = build_bot(make_settings(**fake_telegram.settings_overrides()))
    fake_telegram.push_text(CHAT, "where is my rx")
    try:
        [update] = await bot.get_updates(timeout=1)
        empty = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    finally:
        await bot.session.close()

    assert update.message.text == "where is my rx" and update.message.chat.id == CHAT
    assert empty == []


def test_fake_update_builders_are_valid_telegram_updates():
    contact = Update.model_validate(contact_update(CHAT, "+15550100123", update_id=1))
    callback = Update.model_validate(callback_update(CHAT, "track:1", update_id=2))

    assert contact.message.contact.phone_number == "+15550100123"
    assert contact.message.contact.user_id == contact.message.from_user.id
    assert callback.callback_query.data == "track:1"


# SMS encoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("Mañana" + "a" * 154, ("GSM-7", 1)),  # ñ is in the GSM-7 basic set
        ("más", ("UCS-2", 1)),  # á is not
        ("á" * 70, ("UCS-2", 1)),
        ("á" * 71, ("UCS-2", 2)),
        ("€" * 80, ("GSM-7", 1)),  # extension characters cost two septets
        ("€" + "a" * 159, ("GSM-7", 2)),
        ("a" * 152 + "€" + "a" * 10, ("GSM-7", 2)),  # the escape pair moves whole to part 2
        ("it’s", ("UCS-2", 1)),  # a curly apostrophe forces UCS-2
        ("", ("GSM-7", 1)),
    ],
)
def test_sms_segments(body, expected):
    assert sms_segments(body) == expected
