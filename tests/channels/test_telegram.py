"""Telegram end to end: webhook in (parsed by aiogram), the real aiogram Bot out to a fake API."""

from __future__ import annotations

from bot.inbox import InboxMessage
from bot.messages import Message
from bot.receipts import Receipt
from channels import telegram_links
from status import clinics, patients
from status.clinics import DEFAULT_ID
from status.db import utcnow
from tests.builders import patient_event
from tests.fakes.telegram_server import callback_update, contact_update, text_update

CHAT = 424242


def link_maria(app) -> str:
    with app.db.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
        return telegram_links.create_token(session, app.settings.secret_key, maria, utcnow())


def sent_texts(fake_telegram, chat=CHAT):
    return [call.params["text"] for call in fake_telegram.sent(chat)]


def test_wrong_or_missing_secret_is_401_and_nothing_stored(app):
    assert app.telegram(text_update(CHAT, "hi", update_id=1), secret="nope").status_code == 401
    response = app.client.post("/webhooks/telegram", json=text_update(CHAT, "hi", update_id=2))
    assert response.status_code == 401
    assert app.count(Receipt) == 0
    assert app.count(Message) == 0


def test_malformed_update_is_refused_with_a_reason(app):
    response = app.telegram({"message": {"text": "no update id"}})
    assert response.status_code == 400
    assert "update_id" in response.json()["detail"]


def test_an_update_breaking_telegrams_schema_is_refused_naming_the_field_not_the_text(app):
    update = text_update(CHAT, "Maria Lopez 03/14/1985", update_id=3)
    update["message"]["chat"]["id"] = "abc"
    response = app.telegram(update)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "message.chat.id" in detail
    assert "Maria" not in detail and "1985" not in detail
    assert app.count(InboxMessage) == 0


def test_an_update_of_a_kind_aiogram_does_not_know_is_stored_silently_not_dumped(app, recwarn):
    """aiogram warns about such an update with the whole update in the warning, which goes to
    stderr, message text and all: it is passed over before aiogram sees it."""
    words = "Mariaqa Lopezqa 03/14/1985"
    response = app.telegram({"update_id": 4, "future_thing": {"text": words}})
    assert response.status_code == 200
    app.drain()
    assert not [w for w in recwarn if words in str(w.message)]
    assert app.count(Message) == 0
    assert [row.outcome for row in app.rows(InboxMessage)] == ["silent"]


def test_group_chats_and_other_bots_are_never_answered(app, fake_telegram):
    """The bot added to a group, or another bot writing: an answer would carry a patient's
    information where others read it."""
    token = link_maria(app)
    group = text_update(-2001, f"/start {token}", update_id=5)
    group["message"]["chat"] = {"id": -2001, "type": "group", "title": "family"}
    bot = text_update(CHAT, "where is my prescription", update_id=6)
    bot["message"]["from"]["is_bot"] = True
    for update in (group, bot):
        assert app.telegram(update).status_code == 200
    app.drain()
    assert fake_telegram.sent(-2001) == [] and fake_telegram.sent(CHAT) == []
    assert [row.outcome for row in app.rows(InboxMessage)] == ["silent", "silent"]


def test_deep_link_connects_the_chat_then_verifies_before_facts(app, fake_telegram):
    token = link_maria(app)
    assert app.telegram(text_update(CHAT, f"/start {token}", update_id=10)).status_code == 200
    app.drain()
    [welcome] = sent_texts(fake_telegram)
    assert "You're connected, Maria" in welcome and "date of birth" in welcome
    app.telegram(text_update(CHAT, "03/14/1985", update_id=11))
    app.drain()
    answer = sent_texts(fake_telegram)[-1]
    assert "verified" in answer
    with app.db.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
        assert (maria.telegram_chat_id, maria.preferred_channel) == (str(CHAT), "telegram")


def test_deep_link_is_single_use(app, fake_telegram):
    token = link_maria(app)
    app.telegram(text_update(CHAT, f"/start {token}", update_id=20))
    app.telegram(text_update(999, f"/start {token}", update_id=21))
    app.drain()
    assert "expired or was already used" in sent_texts(fake_telegram, 999)[0]
    markup = fake_telegram.sent(999)[0].params["reply_markup"]
    assert markup["keyboard"][0][0]["request_contact"] is True


def test_tampered_deep_link_is_refused(app, fake_telegram):
    token = link_maria(app)
    forged = token[:16] + ("A" if token[16] != "A" else "B") + token[17:]
    app.telegram(text_update(CHAT, f"/start {forged}", update_id=30))
    app.drain()
    assert "expired or was already used" in sent_texts(fake_telegram)[0]


def test_shared_contact_of_the_sender_links_the_chat(app, fake_telegram):
    app.telegram(text_update(CHAT, "/start", update_id=40))
    app.telegram(contact_update(CHAT, "15550100003", update_id=41))
    app.drain()
    first, second = sent_texts(fake_telegram)
    assert "Share my phone number" in first
    assert "You're connected, Aisha" in second
    with app.db.session() as session:
        assert patients.by_telegram_chat(session, DEFAULT_ID, str(CHAT))[0].first_name == "Aisha"


def test_someone_elses_contact_is_not_accepted(app, fake_telegram):
    update = contact_update(CHAT, "15550100003", update_id=50)
    update["message"]["contact"]["user_id"] = 5555  # a contact card forwarded, not the sender's
    app.telegram(update)
    app.drain()
    assert "your own number" in sent_texts(fake_telegram)[0]
    with app.db.session() as session:
        assert patients.by_telegram_chat(session, DEFAULT_ID, str(CHAT)) == []


def test_duplicate_update_id_gets_one_reply(app, fake_telegram):
    app.telegram(text_update(CHAT, "hello", update_id=60))
    second = app.telegram(text_update(CHAT, "hello", update_id=60))
    app.drain()
    assert second.json()["outcome"] == "duplicate"
    assert len(fake_telegram.sent(CHAT)) == 1


def test_buttons_answer_like_the_question_they_name(app, fake_telegram):
    app.telegram(contact_update(CHAT, "+15550100003", update_id=70))
    app.telegram(text_update(CHAT, "07/23/1991", update_id=71))
    app.telegram(callback_update(CHAT, "ask:billing", update_id=72))
    app.drain()
    answer = sent_texts(fake_telegram)[-1]
    assert "didn't go through" in answer and "https://pay.example/update" in answer
    assert fake_telegram.calls_to("answerCallbackQuery")


def test_greeting_offers_buttons_for_common_questions(app, fake_telegram):
    app.telegram(contact_update(CHAT, "+15550100003", update_id=80))
    app.telegram(text_update(CHAT, "07/23/1991", update_id=81))
    app.telegram(text_update(CHAT, "hi", update_id=82))
    app.drain()
    markup = fake_telegram.sent(CHAT)[-1].params["reply_markup"]
    datas = [button["callback_data"] for row in markup["inline_keyboard"] for button in row]
    assert "ask:prescription_status" in datas and "ask:human" in datas


def test_patient_names_in_html_are_escaped_for_telegram(app, fake_telegram):
    with app.db.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
        maria.first_name = "Ma<b>ria"
    token = link_maria(app)
    app.telegram(text_update(CHAT, f"/start {token}", update_id=95))
    app.drain()
    assert "Ma&lt;b&gt;ria" in sent_texts(fake_telegram)[0]


def test_polling_mode_processes_updates_like_the_webhook(app, fake_telegram):
    import asyncio

    from channels.telegram import poll

    fake_telegram.push_text(CHAT, "/start")

    async def run_until_received() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poll(app.runtime, stop, timeout=1))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if app.count(InboxMessage):
                break
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    app.client.portal.call(run_until_received)
    app.drain()
    assert fake_telegram.calls_to("deleteWebhook")
    assert "Share my phone number" in sent_texts(fake_telegram)[0]


def test_the_api_makes_a_deep_link_that_connects_the_patient(app, fake_telegram):
    headers = {"Authorization": "Bearer test-api-key"}
    response = app.client.post("/api/patients/demo-emily/telegram-link", headers=headers)
    assert response.status_code == 201
    url = response.json()["url"]
    assert url.startswith("https://t.me/HarborHealthBot?start=")
    app.telegram(text_update(CHAT, "/start " + url.split("start=")[1], update_id=300))
    app.drain()
    assert "You're connected, Emily" in sent_texts(fake_telegram)[0]
    missing = app.client.post("/api/patients/nobody/telegram-link", headers=headers)
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    assert app.client.post("/api/patients/demo-emily/telegram-link").status_code == 401


def test_no_deep_link_for_a_clinic_without_a_bot(app):
    """A link to no bot ("https://t.me/None?...") would reach the patient and lead nowhere."""
    with app.db.session() as session:
        glow = clinics.add(session, "glow", "Glow Skin", twilio_from_numbers=["+15550109100"])
        key = clinics.rotate_key(session, glow)
    headers = {"Authorization": f"Bearer {key}"}
    patient = patient_event("glow-ana", first_name="Ana", occurred_at=utcnow().isoformat())
    assert app.client.post("/events", json=patient, headers=headers).status_code == 202
    response = app.client.post("/api/patients/glow-ana/telegram-link", headers=headers)
    assert response.status_code == 409
    assert "not set up for this clinic" in response.json()["detail"]
    assert app.count(telegram_links.TelegramLinkToken) == 0
