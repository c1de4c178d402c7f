"""Telegram: the webhook (and a polling mode for local development), parsed with aiogram.

aiogram's dispatcher routes each update to a handler that only *parses* it into an action; the
action then runs with the receipt in one database transaction, so a redelivered update (same
`update_id`) changes nothing and a failed one leaves nothing half-done. Replies leave through the
outbox like every other message.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, Update
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from bot import conversations, outbox, receipts
from bot.conversations import Awaiting
from bot.inbound import Inbound
from bot.messages import Kind
from channels import telegram_links
from status import patients as patient_queries
from status.db import utcnow
from status.patients import InvalidPhone, normalize_phone

log = logging.getLogger("patient_status.telegram")
router = APIRouter()
CHANNEL = "telegram"
SHARE_PHONE = {"en": "Share my phone number", "es": "Compartir mi número"}


# --- actions: what an update asks us to do -------------------------------------------------------
@dataclass(frozen=True)
class Say:
    inbound: Inbound


@dataclass(frozen=True)
class Start:
    chat_id: str
    token: str | None
    lang: str


@dataclass(frozen=True)
class SharedContact:
    chat_id: str
    phone: str
    own: bool
    lang: str


@dataclass(frozen=True)
class Pressed:
    chat_id: str
    data: str
    query_id: str
    lang: str


def _lang(code: str | None) -> str:
    return "es" if (code or "").lower().startswith("es") else "en"


async def _start(message: Message, command: CommandObject) -> Start:
    lang = _lang(message.from_user.language_code if message.from_user else None)
    return Start(str(message.chat.id), command.args or None, lang)


async def _contact(message: Message) -> SharedContact:
    sender = message.from_user.id if message.from_user else None
    own = sender is not None and message.contact.user_id == sender
    lang = _lang(message.from_user.language_code if message.from_user else None)
    return SharedContact(str(message.chat.id), message.contact.phone_number, own, lang)


async def _text(message: Message) -> Say:
    return Say(
        Inbound(CHANNEL, str(message.chat.id), message.text, f"msg:{message.message_id}", utcnow())
    )


async def _media(message: Message) -> Say:
    kind = "photo" if message.photo else "document"
    file_id = message.photo[-1].file_id if message.photo else message.document.file_id
    text = message.caption or ""
    return Say(
        Inbound(
            CHANNEL,
            str(message.chat.id),
            text,
            f"msg:{message.message_id}",
            utcnow(),
            media=(f"telegram:{kind}:{file_id}",),
        )  # fmt: skip
    )


async def _pressed(query: CallbackQuery) -> Pressed:
    chat_id = str(query.message.chat.id) if query.message else str(query.from_user.id)
    return Pressed(chat_id, query.data or "", query.id, _lang(query.from_user.language_code))


def build_dispatcher() -> Dispatcher:
    """A dispatcher whose handlers turn each update into one action (a router attaches once)."""
    parser = Router(name="patient-status")
    parser.message.register(_start, CommandStart())
    parser.message.register(_contact, F.contact)
    parser.message.register(_text, F.text)
    parser.message.register(_media, F.photo | F.document)
    parser.callback_query.register(_pressed)
    dispatcher = Dispatcher()
    dispatcher.include_router(parser)
    return dispatcher


# --- running an action --------------------------------------------------------------------------
class TelegramChannel:
    def __init__(self, runtime) -> None:  # noqa: ANN001
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.dispatcher = build_dispatcher()
        self._bot: Bot | None = None

    @property
    def bot(self) -> Bot:
        sender = self.runtime.senders.get("telegram")
        if sender is not None:
            return sender.bot
        if self._bot is None:
            from channels.senders.telegram import build_bot

            self._bot = build_bot(self.settings)
        return self._bot

    async def process(self, raw: dict) -> str:
        """One update, from the webhook or from polling: 'ok', 'duplicate' or 'error'."""
        update = Update.model_validate(raw, context={"bot": self.bot})
        if await asyncio.to_thread(self._seen, update.update_id):
            return "duplicate"
        try:
            action = await self.dispatcher.feed_update(self.bot, update)
        except Exception as exc:  # noqa: BLE001 - recorded; Telegram must not redeliver forever
            return await asyncio.to_thread(self._record_error, update.update_id, exc)
        try:
            outcome = await asyncio.to_thread(self._run, update.update_id, action)
        except Exception as exc:  # noqa: BLE001
            log.exception("telegram update failed", extra={"update_id": update.update_id})
            return await asyncio.to_thread(self._record_error, update.update_id, exc)
        if isinstance(action, Pressed) and outcome != "duplicate":
            try:
                await self.bot.answer_callback_query(action.query_id)
            except Exception:  # noqa: BLE001 - a stale spinner is not worth failing over
                log.warning("answerCallbackQuery failed", extra={"update_id": update.update_id})
        self.runtime.notify()
        return outcome

    def _seen(self, update_id: int) -> bool:
        with self.db.session() as session:
            return receipts.seen(session, "telegram", str(update_id)) is not None

    def _record_error(self, update_id: int, exc: Exception) -> str:
        with self.db.session() as session:
            if receipts.record(session, "telegram", str(update_id)):
                receipt = receipts.seen(session, "telegram", str(update_id))
                receipt.error = f"{type(exc).__name__}: {exc}"[:500]
        return "error"

    def _run(self, update_id: int, action) -> str:  # noqa: ANN001
        with self.db.session() as session:
            if not receipts.record(session, "telegram", str(update_id)):
                return "duplicate"
            if isinstance(action, Say):
                self.runtime.engine.handle(session, action.inbound)
            elif isinstance(action, Pressed):
                self._pressed(session, action, update_id)
            elif isinstance(action, Start):
                self._start(session, action, update_id)
            elif isinstance(action, SharedContact):
                self._contact(session, action)
            return "ok"

    # --- linking a chat to a patient ------------------------------------------------------------
    def _reply(
        self, session: Session, chat_id: str, name: str, lang: str, buttons=None, **ctx
    ) -> None:  # noqa: ANN001
        body = self.runtime.engine.render(name, lang, CHANNEL, **ctx)
        conv = conversations.get_or_create(session, CHANNEL, chat_id)
        outbox.enqueue(
            session, channel=CHANNEL, address=chat_id, body=body, kind=Kind.REPLY,
            conversation_id=conv.id, patient_id=conv.patient_id, template=name, language=lang,
            buttons=buttons or [],
        )  # fmt: skip

    def _share_phone_button(self, lang: str) -> list:
        return [[{"text": SHARE_PHONE[lang], "request_contact": True}]]

    def _start(self, session: Session, action: Start, update_id: int) -> None:
        now = utcnow()
        if action.token:
            try:
                patient = telegram_links.redeem(
                    session, self.settings.secret_key, action.token, action.chat_id, now
                )
            except telegram_links.LinkError as exc:
                log.info("telegram link refused", extra={"reason": str(exc)})
                self._reply(session, action.chat_id, "telegram_link_invalid", action.lang,
                            self._share_phone_button(action.lang))  # fmt: skip
                return
            self._linked(session, action.chat_id, patient, now)
            return
        if patient_queries.by_telegram_chat(session, action.chat_id):
            inbound = Inbound(
                CHANNEL, action.chat_id, "hi", f"start:{update_id}", now, intent_hint="greeting"
            )
            self.runtime.engine.handle(session, inbound)
            return
        self._reply(session, action.chat_id, "telegram_start", action.lang,
                    self._share_phone_button(action.lang))  # fmt: skip

    def _contact(self, session: Session, action: SharedContact) -> None:
        now = utcnow()
        if not action.own:
            self._reply(session, action.chat_id, "telegram_contact_not_own", action.lang,
                        self._share_phone_button(action.lang))  # fmt: skip
            return
        try:
            phone = normalize_phone(
                action.phone if action.phone.startswith("+") else "+" + action.phone
            )
        except InvalidPhone:
            phone = None
        people = patient_queries.by_phone(session, phone) if phone else []
        if not people:
            self._reply(session, action.chat_id, "unknown_number", action.lang)
            return
        for person in people:
            person.telegram_chat_id = action.chat_id
            person.preferred_channel = "telegram"
        if len(people) == 1:
            self._linked(session, action.chat_id, people[0], now)
        else:  # a family phone: the engine asks who is writing
            inbound = Inbound(CHANNEL, action.chat_id, "hi", None, now, intent_hint="greeting")
            self.runtime.engine.handle(session, inbound)

    def _linked(self, session: Session, chat_id: str, patient, now) -> None:  # noqa: ANN001
        conv = conversations.get_or_create(session, CHANNEL, chat_id)
        conv.patient_id = patient.id
        conv.bad_address = False
        if self.settings.verification == "dob":
            conv.expect(Awaiting.DOB, now, intents=[])
        self._reply(
            session, chat_id, "telegram_linked", patient.language, first_name=patient.first_name
        )

    def _pressed(self, session: Session, action: Pressed, update_id: int) -> None:
        now = utcnow()
        provider_id = f"cb:{update_id}"
        if action.data.startswith("ask:"):
            intent = action.data.removeprefix("ask:")
            inbound = Inbound(
                CHANNEL, action.chat_id, f"[{intent}]", provider_id, now, intent_hint=intent
            )
        else:  # "yes" / "no" and other plain answers
            inbound = Inbound(CHANNEL, action.chat_id, action.data, provider_id, now)
        self.runtime.engine.handle(session, inbound)


def channel_of(request: Request) -> TelegramChannel:
    channel = getattr(request.app.state, "telegram", None)
    if channel is None:
        channel = request.app.state.telegram = TelegramChannel(request.app.state.runtime)
    return channel


@router.post("/webhooks/telegram")
async def telegram_webhook(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    secret = settings.telegram_webhook_secret
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    if not settings.telegram_bot_token or not secret:
        raise HTTPException(401, "Telegram is not configured on this server")
    if not secrets.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
    try:
        raw = await request.json()
    except ValueError as exc:
        raise HTTPException(400, "the body is not valid JSON") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
        raise HTTPException(400, "not a Telegram update: update_id (integer) is required")
    try:
        outcome = await channel_of(request).process(raw)
    except ValidationError as exc:
        raise HTTPException(
            400, f"not a Telegram update: {exc.error_count()} invalid field(s)"
        ) from exc
    return JSONResponse({"ok": True, "outcome": outcome})


async def poll(runtime, stop: asyncio.Event, timeout: int = 25) -> None:  # noqa: ANN001
    """Long-polling for local development: the same processing as the webhook."""
    channel = TelegramChannel(runtime)
    await channel.bot.delete_webhook(drop_pending_updates=False)
    offset = None
    while not stop.is_set():
        updates = await channel.bot.get_updates(
            offset=offset, timeout=timeout, allowed_updates=["message", "callback_query"]
        )
        for update in updates:
            offset = update.update_id + 1
            await channel.process(update.model_dump(mode="json", exclude_none=True, by_alias=True))
