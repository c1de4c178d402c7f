"""Telegram: the webhook (and a polling mode for local development), parsed with aiogram.

The webhook checks the secret, validates the update and stores it in the inbox keyed by its
`update_id` (a redelivery changes nothing), then answers. When its turn runs (channels/turns.py),
aiogram's dispatcher routes the update to a handler that only *parses* it into an action, and the
action runs in the turn's transaction. Replies leave through the outbox like every other message.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, replace
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, Update
from aiogram.types.update import UpdateTypeLookupError
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from bot import conversations, inbox, outbox
from bot.conversations import Awaiting
from bot.inbound import Inbound
from bot.messages import Kind
from bot.understanding.redact import redact_card_numbers
from channels import openapi, telegram_links
from channels.deps import read_body
from channels.senders.telegram import build_bot
from status import clinics, limits
from status import patients as patient_queries
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.patients import InvalidPhone, normalize_phone

log = logging.getLogger("patient_status.telegram")
router = APIRouter(responses=openapi.WEBHOOK)
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
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.dispatcher = build_dispatcher()
        self._bots: dict[str | None, Bot] = {}

    @property
    def bot(self) -> Bot:
        """The environment's (the default clinic's) bot."""
        return self.bot_for(None)

    def bot_for(self, token: str | None) -> Bot:
        """The bot with this token (a clinic's own), else the environment's."""
        sender = self.runtime.senders.get("telegram")
        if sender is not None and hasattr(sender, "bot_for"):
            return sender.bot_for(token)
        token = token or self.settings.telegram_bot_token
        if token not in self._bots:
            self._bots[token] = build_bot(self.settings, token=token)
        return self._bots[token]

    def token_of(self, clinic_id: int) -> str | None:
        with self.db.read_session() as session:
            return self.runtime.engine.profiles.get(session, clinic_id).settings.telegram_bot_token

    def accept(self, raw: dict, clinic_id: int = DEFAULT_ID, token: str | None = None) -> str:
        """Store one update for a clinic's bot (webhook or polling): 'queued', or 'duplicate'
        for a redelivery. Raises pydantic's ValidationError for something that is not a
        Telegram update.
        """
        update = Update.model_validate(raw, context={"bot": self.bot_for(token)})

        stored = inbox.store_now(
            self.db, self.settings.secret_key, clinic=clinic_id, source="telegram",
            provider_id=str(update.update_id), action=inbox.Action.TELEGRAM,
            channel=CHANNEL, address=chat_of(raw) or f"update:{update.update_id}",
            payload={"update": redacted(raw)},
        )  # fmt: skip
        return "queued" if stored else "duplicate"

    async def parse(self, raw: dict, token: str | None = None):
        """The action an update asks for (None: nothing we act on, e.g. an edited message)."""
        bot = self.bot_for(token)
        update = Update.model_validate(raw, context={"bot": bot})
        if not _from_a_person_in_private(update):
            return None
        return await self.dispatcher.feed_update(bot, update)

    def perform(self, session: Session, action, update_id: int, clinic_id: int = DEFAULT_ID):
        """Run an action for the clinic whose bot received it, in the caller's transaction: the
        engine's Turn, or None when the channel answered itself (linking a chat)."""
        if isinstance(action, Say):
            return self.runtime.engine.handle(session, replace(action.inbound, clinic_id=clinic_id))
        if isinstance(action, Pressed):
            return self._pressed(session, action, update_id, clinic_id)
        if isinstance(action, Start):
            return self._start(session, action, update_id, clinic_id)
        if isinstance(action, SharedContact):
            return self._contact(session, action, clinic_id)
        return None

    async def answer_pressed(self, action, token: str | None = None) -> None:
        """Stop the button's spinner (after the turn ran; a stale spinner is not worth failing)."""
        if not isinstance(action, Pressed):
            return
        try:
            await self.bot_for(token).answer_callback_query(action.query_id)
        except Exception:
            log.warning("answerCallbackQuery failed")

    # --- linking a chat to a patient ------------------------------------------------------------
    def _reply(
        self, session: Session, clinic_id: int, chat_id: str, name: str, lang: str,
        buttons=None, **ctx,
    ) -> None:
        renderer = self.runtime.engine.profiles.get(session, clinic_id).renderer
        body = renderer.render(name, lang, CHANNEL, **ctx)
        conv = conversations.get_or_create(session, clinic_id, CHANNEL, chat_id)
        outbox.enqueue(
            session, clinic_id=clinic_id, channel=CHANNEL, address=chat_id, body=body,
            kind=Kind.REPLY,
            conversation_id=conv.id, patient_id=conv.patient_id, template=name, language=lang,
            buttons=buttons or [],
        )  # fmt: skip

    def _share_phone_button(self, lang: str) -> list:
        return [[{"text": SHARE_PHONE[lang], "request_contact": True}]]

    def _start(self, session: Session, action: Start, update_id: int, clinic_id: int):
        now = utcnow()
        if action.token:
            try:
                patient = telegram_links.redeem(
                    session, self.settings.secret_key, action.token, action.chat_id, now
                )
                if patient.clinic_id != clinic_id:  # a link to another clinic's bot
                    raise telegram_links.LinkError("the link is for another clinic's bot")
            except telegram_links.LinkError as exc:
                log.info("telegram link refused", extra={"reason": str(exc)})
                self._reply(session, clinic_id, action.chat_id, "telegram_link_invalid",
                            action.lang, self._share_phone_button(action.lang))  # fmt: skip
                return
            self._linked(session, clinic_id, action.chat_id, patient, now)
            return
        if patient_queries.by_telegram_chat(session, clinic_id, action.chat_id):
            inbound = Inbound(
                CHANNEL, action.chat_id, "hi", f"start:{update_id}", now, intent_hint="greeting",
                clinic_id=clinic_id,
            )  # fmt: skip
            return self.runtime.engine.handle(session, inbound)
        self._reply(session, clinic_id, action.chat_id, "telegram_start", action.lang,
                    self._share_phone_button(action.lang))  # fmt: skip

    def _contact(self, session: Session, action: SharedContact, clinic_id: int):
        now = utcnow()
        if not action.own:
            self._reply(session, clinic_id, action.chat_id, "telegram_contact_not_own",
                        action.lang, self._share_phone_button(action.lang))  # fmt: skip
            return
        try:
            phone = normalize_phone(
                action.phone if action.phone.startswith("+") else "+" + action.phone
            )
        except InvalidPhone:
            phone = None
        people = patient_queries.by_phone(session, clinic_id, phone) if phone else []
        if not people:
            self._reply(session, clinic_id, action.chat_id, "unknown_number", action.lang)
            return
        for person in people:
            person.telegram_chat_id = action.chat_id
            person.preferred_channel = "telegram"
        if len(people) == 1:
            self._linked(session, clinic_id, action.chat_id, people[0], now)
        else:  # a family phone: the engine asks who is writing
            inbound = Inbound(
                CHANNEL, action.chat_id, "hi", None, now, intent_hint="greeting",
                clinic_id=clinic_id,
            )  # fmt: skip
            return self.runtime.engine.handle(session, inbound)
        return None

    def _linked(self, session: Session, clinic_id: int, chat_id: str, patient, now) -> None:
        conv = conversations.get_or_create(session, clinic_id, CHANNEL, chat_id)
        conv.patient_id = patient.id
        conv.bad_address = False
        if self.settings.verification == "dob":
            conv.expect(Awaiting.DOB, now, intents=[])
        self._reply(
            session, clinic_id, chat_id, "telegram_linked", patient.language,
            first_name=patient.first_name,
        )  # fmt: skip

    def _pressed(self, session: Session, action: Pressed, update_id: int, clinic_id: int):
        now = utcnow()
        provider_id = f"cb:{update_id}"
        if action.data.startswith("ask:"):
            intent = action.data.removeprefix("ask:")
            inbound = Inbound(
                CHANNEL, action.chat_id, f"[{intent}]", provider_id, now, intent_hint=intent,
                clinic_id=clinic_id,
            )  # fmt: skip
        else:  # "yes" / "no" and other plain answers
            inbound = Inbound(
                CHANNEL, action.chat_id, action.data, provider_id, now, clinic_id=clinic_id
            )
        return self.runtime.engine.handle(session, inbound)


def redacted(raw: dict) -> dict:
    """The update with card numbers removed from what the patient typed, before it is stored."""
    raw = dict(raw)
    for key in ("message", "edited_message"):
        part = raw.get(key)
        if isinstance(part, dict):
            part = raw[key] = dict(part)
            for field in ("text", "caption"):
                if isinstance(part.get(field), str):
                    part[field] = redact_card_numbers(part[field])[0]
    return raw


def chat_of(raw: dict) -> str | None:
    """The chat an update belongs to (its conversation), read from the raw JSON."""
    for key in ("message", "edited_message", "callback_query"):
        part = raw.get(key)
        if not isinstance(part, dict):
            continue
        if key == "callback_query":
            chat = (part.get("message") or {}).get("chat") or part.get("from") or {}
        else:
            chat = part.get("chat") or {}
        if isinstance(chat, dict) and chat.get("id") is not None:
            return str(chat["id"])
    return None


def scrubbed(value: Any) -> Any:
    """Every string in a parsed update with NULs and lone surrogates replaced (`limits.scrub`)."""
    if isinstance(value, str):
        return limits.scrub(value)
    if isinstance(value, dict):
        return {scrubbed(key): scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrubbed(item) for item in value]
    return value


def parse_update(body: bytes) -> dict:
    """A webhook body -> the raw update, ready for aiogram; LimitExceeded or ValueError if not.

    Size and nesting are checked before parsing; text a patient may type is kept, scrubbed.
    """
    raw = limits.load_json(body, max_bytes=limits.MAX_WEBHOOK_BODY)
    if not isinstance(raw, dict):
        raise ValueError("not a Telegram update: a JSON object is expected")
    update_id = raw.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise ValueError("not a Telegram update: update_id (integer) is required")
    if not 0 <= update_id < 2**63:
        raise limits.LimitExceeded("update_id", "must be a non-negative 64-bit integer")
    return scrubbed(raw)


def channel_of(request: Request) -> TelegramChannel:
    """The process's Telegram channel (the turn runner uses the same one)."""
    return request.app.state.runtime.telegram


def _clinic_settings(state, slug: str):
    """(clinic id, its settings) for a webhook path's slug; None: no such clinic."""
    with state.db.read_session() as session:
        clinic = clinics.by_slug(session, slug)
        if clinic is None:
            return None
        return clinic.id, state.runtime.engine.profiles.get(session, clinic.id).settings


@router.post("/webhooks/telegram")
async def telegram_webhook(request: Request) -> JSONResponse:
    """The environment's bot: the default clinic's."""
    return await clinic_telegram_webhook(clinics.DEFAULT_SLUG, request)


@router.post("/webhooks/telegram/{clinic_slug}", responses=openapi.NOT_FOUND)
async def clinic_telegram_webhook(clinic_slug: str, request: Request) -> JSONResponse:
    """A clinic's own bot, checked against that clinic's secret."""
    found = await asyncio.to_thread(_clinic_settings, request.app.state, clinic_slug)
    if found is None:
        raise HTTPException(404, f"no clinic with slug {clinic_slug[:40]!r}")
    clinic_id, settings = found
    secret = settings.telegram_webhook_secret
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    if not settings.telegram_bot_token or not secret:
        raise HTTPException(401, "Telegram is not configured for this clinic on this server")
    if not secrets.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
    body = await read_body(request, limits.MAX_WEBHOOK_BODY)
    try:
        raw = parse_update(body)
    except limits.LimitExceeded as exc:
        raise HTTPException(422, f"the update is refused: {exc}") from exc
    except ValueError as exc:
        raise HTTPException(400, f"the body is {exc}") from exc
    runtime = request.app.state.runtime
    try:
        outcome = await asyncio.to_thread(
            channel_of(request).accept, raw, clinic_id, settings.telegram_bot_token
        )
    except ValidationError as exc:
        raise HTTPException(400, f"not a Telegram update: {invalid_fields(exc)}") from exc
    if outcome == "queued":
        runtime.notify_inbox()
    return JSONResponse({"ok": True, "outcome": outcome})


def _from_a_person_in_private(update: Update) -> bool:
    """Whether the update is a person writing to the bot in a private chat: what a group says
    (the bot added to one) or another bot sends is never answered, as an answer carries the
    patient's information. An update of a kind this aiogram does not know is passed over here
    (aiogram's own warning would write the whole update, message text and all, to stderr)."""
    try:
        event = update.event
    except UpdateTypeLookupError:
        return False
    message = event.message if isinstance(event, CallbackQuery) else event
    chat = getattr(message, "chat", None)
    sender = getattr(event, "from_user", None)
    if chat is not None and chat.type != "private":
        return False
    return not (sender is not None and sender.is_bot)


def invalid_fields(exc: ValidationError, shown: int = 3) -> str:
    """Where an update breaks Telegram's schema, by field path (never the values: an update
    carries what a patient wrote)."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:shown]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


async def poll(runtime, stop: asyncio.Event, timeout: int = 25) -> None:
    """Long-polling for local development: the same processing as the webhook."""
    channel = runtime.telegram
    await channel.bot.delete_webhook(drop_pending_updates=False)
    offset = None
    while not stop.is_set():
        updates = await channel.bot.get_updates(
            offset=offset, timeout=timeout, allowed_updates=["message", "callback_query"]
        )
        for update in updates:
            offset = update.update_id + 1
            raw = update.model_dump(mode="json", exclude_none=True, by_alias=True)
            if await asyncio.to_thread(channel.accept, raw) == "queued":
                runtime.notify_inbox()
