"""Correctly signed but malformed webhooks: a 4xx naming the field, or the message stored with the
odd bytes replaced; never a 5xx, never a message silently lost."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.messages import Message
from bot.receipts import Receipt
from bot.understanding.extract import parse_dob
from bot.understanding.redact import DOB_REDACTED, redact_card_numbers, redact_dates_of_birth
from channels.telegram import parse_update
from channels.twilio_sms import parse_form, parse_inbound, parse_status
from status import clock as product_clock
from status import demo, limits
from tests.conftest import count_fuzzed, on_both_databases
from tests.fakes.telegram_server import text_update
from tests.harness import TELEGRAM_SECRET

MARIA = demo.DEMO_PATIENTS[0][3]
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)


def inbound_bodies(app) -> list[str]:
    return [m.body for m in app.rows(Message, Message.direction == "in")]


@on_both_databases
def test_sms_with_a_nul_byte_is_stored_with_it_replaced(app):
    response = app.sms("where is\x00 my rx", sid="SM" + "a" * 32)
    assert response.status_code == 200
    assert inbound_bodies(app) == ["where is\ufffd my rx"]


@on_both_databases
@pytest.mark.parametrize("num_media", ["abc", "1.5", "1e3", "30000000", "-1", "٣"])
def test_sms_with_a_malformed_media_count_is_kept(app, num_media):
    response = app.sms("hello", NumMedia=num_media, MediaUrl0="https://media.example/1")
    assert response.status_code == 200
    [message] = app.rows(Message, Message.direction == "in")
    assert message.body == "hello"
    assert message.media == ["https://media.example/1"]


@on_both_databases
def test_sms_with_an_oversized_message_sid_is_refused_naming_it(app):
    response = app.sms("hello", sid="SM" + "9" * 100)
    assert response.status_code == 400
    assert "MessageSid" in response.json()["detail"]
    assert str(limits.PROVIDER_ID) in response.json()["detail"]
    assert app.count(Receipt) == 0


def test_status_callback_with_an_oversized_sid_is_refused(app):
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": "SM" + "1" * 200, "MessageStatus": "delivered"}
    url = app.settings.public_base_url + "/webhooks/twilio/status"
    signature = RequestValidator(app.settings.twilio_auth_token).compute_signature(url, params)
    response = app.client.post(
        "/webhooks/twilio/status", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 400
    assert "MessageSid" in response.json()["detail"]


@on_both_databases
def test_telegram_update_with_a_nul_byte_is_stored_with_it_replaced(app):
    response = app.telegram(text_update(4242, "hi\x00 there", update_id=77))
    assert response.status_code == 200
    assert response.json()["outcome"] == "queued"  # stored at once; the worker answers it
    assert inbound_bodies(app) == ["hi\ufffd there"]


def test_telegram_update_nested_thousands_deep_is_refused_not_a_500(app):
    deep = "[" * 5000 + "]" * 5000
    body = '{"update_id": 5, "message": {"text": "hi", "extra": ' + deep + "}}"
    response = app.client.post(
        "/webhooks/telegram",
        content=body.encode(),
        headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
    )
    assert response.status_code == 422
    assert "levels deep" in response.json()["detail"]
    assert app.count(Receipt) == 0


# --- the parsers, as pure functions, under hypothesis -------------------------------------------

FORM_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=200) | st.text(
    max_size=20
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(max_size=2000),
    sid=st.text(max_size=100),
    sender=st.text(max_size=40) | st.sampled_from([MARIA, "+15550100001", "5550100001"]),
    num_media=st.text(max_size=12),
    media=st.dictionaries(
        st.sampled_from([f"MediaUrl{i}" for i in range(12)]), st.text(max_size=600), max_size=12
    ),
)
def test_twilio_parser_gives_a_storable_message_or_names_the_field(
    body, sid, sender, num_media, media
):
    form = {"MessageSid": sid, "From": sender, "Body": body, "NumMedia": num_media, **media}
    try:
        inbound = parse_inbound(form, NOW)
    except limits.LimitExceeded as exc:
        assert exc.field in {"MessageSid", "From"}
        return
    assert not limits.unstorable(inbound.text)
    assert len(inbound.text) <= limits.MESSAGE_BODY
    assert len(inbound.provider_id) <= limits.PROVIDER_ID
    assert len(inbound.media) <= limits.MAX_MEDIA
    assert all(len(url) <= limits.URL and not limits.unstorable(url) for url in inbound.media)
    assert inbound.text == limits.scrub(body[: limits.MESSAGE_BODY])


@settings(max_examples=200, deadline=None)
@given(
    sid=st.text(max_size=100),
    status=st.text(max_size=12) | st.sampled_from(["delivered", "failed", "SENT"]),
    code=st.text(max_size=12),
)
def test_twilio_status_parser_never_raises_anything_else(sid, status, code):
    try:
        parsed_sid, parsed_status, parsed_code = parse_status(
            {"MessageSid": sid, "MessageStatus": status, "ErrorCode": code}
        )
    except limits.LimitExceeded as exc:
        assert exc.field in {"MessageSid", "MessageStatus", "ErrorCode"}
        return
    assert parsed_sid == sid and len(parsed_sid) <= limits.PROVIDER_ID
    assert parsed_code is None or parsed_code.isdigit()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    update=st.dictionaries(st.text(max_size=12), JSON, max_size=6),
    update_id=JSON | st.integers(min_value=-(2**70), max_value=2**70),
)
def test_telegram_parser_gives_a_storable_update_or_a_reason(update, update_id):
    body = json.dumps({**update, "update_id": update_id}).encode()
    try:
        parsed = parse_update(body)
    except ValueError:  # LimitExceeded included: the route answers 4xx
        return
    assert isinstance(parsed["update_id"], int)
    assert not limits.unstorable(
        json.dumps(parsed, ensure_ascii=False).encode("utf-8", "replace").decode()
    )


@pytest.mark.fuzz
@on_both_databases
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.text(max_size=300), num_media=st.text(max_size=10))
def test_signed_sms_of_any_text_is_answered_without_a_5xx(app, body, num_media):
    response = app.sms(body, NumMedia=num_media)
    count_fuzzed(app.db, response.status_code)
    assert response.status_code == 200
    # Kept as sent, less what is never kept: card numbers and dates of birth.
    today = product_clock.now().date()
    text = limits.scrub(body)
    kept = redact_dates_of_birth(redact_card_numbers(text)[0], today)
    stored = inbound_bodies(app)[-1]
    answering_the_dob_question = stored == DOB_REDACTED and parse_dob(text, today) is not None
    assert stored == kept or answering_the_dob_question


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=&+%; \x00\u00e9\u4e2d", max_size=30), st.text(max_size=30))
def test_the_sms_webhooks_form_reader_reads_what_parse_qsl_reads(raw, text):
    for body in (raw.encode(), urlencode({"Body": text, text: raw}).encode()):
        expected = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        assert parse_form(body) == expected
