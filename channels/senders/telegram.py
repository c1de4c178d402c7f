"""Telegram through the real aiogram `Bot`, pointed at `TELEGRAM_API_BASE`."""

from __future__ import annotations

import re

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from channels.senders.base import BLOCKED, CHAT_NOT_FOUND, Origin, SendResult
from status.settings import Settings

WEBHOOK_PATH = "/webhooks/telegram"
ALLOWED_UPDATES = ["message", "callback_query"]
DEFAULT_TIMEOUT = 15.0
MAX_CALLBACK_DATA_BYTES = 64
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup


def build_bot(
    settings: Settings, *, timeout: float | None = None, token: str | None = None
) -> Bot:
    """An aiogram Bot for `settings` (or a clinic's own `token`; HTML parse mode); the caller
    closes `bot.session`."""
    token = token or settings.telegram_bot_token
    if not token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    api = TelegramAPIServer.from_base(settings.telegram_api_base)
    session = (
        AiohttpSession(api=api) if timeout is None else AiohttpSession(api=api, timeout=timeout)
    )
    return Bot(
        token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_reply_markup(buttons: list[list[dict]] | None) -> Markup | None:
    """Rows of `{"text", "data"}` (or `{"text", "url"}`) become an inline keyboard; a row set
    holding a `{"text", "request_contact": True}` becomes a one-time reply keyboard."""
    if not buttons:
        return None
    if any(button.get("request_contact") for row in buttons for button in row):
        return ReplyKeyboardMarkup(
            keyboard=[
                [
                    KeyboardButton(
                        text=button["text"], request_contact=button.get("request_contact") or None
                    )
                    for button in row
                ]
                for row in buttons
            ],
            one_time_keyboard=True,
            resize_keyboard=True,
        )
    return InlineKeyboardMarkup(
        inline_keyboard=[[_inline_button(button) for button in row] for row in buttons]
    )


def _inline_button(button: dict) -> InlineKeyboardButton:
    if button.get("url"):
        return InlineKeyboardButton(text=button["text"], url=button["url"])
    data = button.get("data")
    if not data or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        raise ValueError(f"callback data must be 1-64 bytes, got {data!r}")
    return InlineKeyboardButton(text=button["text"], callback_data=data)


def _chat_id(address: str) -> int | str:
    try:
        return int(address)
    except ValueError:
        return address  # "@channelusername"


class TelegramSender:
    """Sends with the Bot API, as the clinic's own bot; never raises for a provider or network
    error."""

    channel = "telegram"

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._settings = settings
        self._timeout = timeout
        self._bots: dict[str, Bot] = {}

    @property
    def bot(self) -> Bot:
        """The environment's (the default clinic's) bot."""
        return self.bot_for(self._settings.telegram_bot_token)

    def bot_for(self, token: str | None) -> Bot:
        token = token or self._settings.telegram_bot_token
        if not token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        if token not in self._bots:
            self._bots[token] = build_bot(self._settings, timeout=self._timeout, token=token)
        return self._bots[token]

    async def send(
        self,
        address: str,
        body: str,
        *,
        buttons: list[list[dict]] | None = None,
        status_callback: str | None = None,
        origin: Origin | None = None,
    ) -> SendResult:
        """`body` is HTML already escaped by the caller; `status_callback` does not apply."""
        markup = build_reply_markup(buttons)
        bot = self.bot_for(origin.telegram_token if origin is not None else None)
        try:
            message = await bot.send_message(_chat_id(address), body, reply_markup=markup)
        except TelegramAPIError as exc:
            return telegram_error_result(exc)
        except ClientDecodeError as exc:  # a proxy's HTML error page, say
            return SendResult(
                ok=False, error_code="bad_response", error_message=exc.message, retryable=True
            )
        return SendResult(ok=True, provider_message_id=str(message.message_id), status="sent")

    async def close(self) -> None:
        for bot in self._bots.values():
            await bot.session.close()
        self._bots.clear()


def telegram_error_result(exc: TelegramAPIError) -> SendResult:
    """Classify an aiogram error: retry later, give up for good, and why."""
    description = exc.message
    if isinstance(exc, TelegramRetryAfter):
        return SendResult(
            ok=False,
            error_code="429",
            error_message=description,
            retryable=True,
            retry_after=float(exc.retry_after),
        )
    if isinstance(exc, TelegramForbiddenError):
        return SendResult(
            ok=False, error_code="403", error_message=description, permanent_reason=BLOCKED
        )
    if isinstance(exc, TelegramBadRequest):
        reason = CHAT_NOT_FOUND if "chat not found" in description.lower() else None
        return SendResult(
            ok=False, error_code="400", error_message=description, permanent_reason=reason
        )
    if isinstance(exc, TelegramServerError):
        return SendResult(ok=False, error_code="500", error_message=description, retryable=True)
    if isinstance(exc, TelegramEntityTooLarge):  # a subclass of the network error, but final
        return SendResult(ok=False, error_code="413", error_message=description)
    if isinstance(exc, TelegramNetworkError):
        return SendResult(ok=False, error_code="network", error_message=description, retryable=True)
    code = {TelegramUnauthorizedError: "401", TelegramNotFound: "404"}.get(type(exc), "error")
    return SendResult(ok=False, error_code=code, error_message=description)


async def set_webhook(settings: Settings, path: str = WEBHOOK_PATH) -> str:
    """Register `{PUBLIC_BASE_URL}{path}` with the secret token; return the URL. A clinic's own
    bot (its settings, `clinics.settings_for`) registers `/webhooks/telegram/{slug}`."""
    missing = [
        name
        for name, value in (
            ("PUBLIC_BASE_URL", settings.public_base_url),
            ("TELEGRAM_BOT_TOKEN", settings.telegram_bot_token),
            ("TELEGRAM_WEBHOOK_SECRET", settings.telegram_webhook_secret),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"set {', '.join(missing)} before registering the Telegram webhook")
    secret = settings.telegram_webhook_secret or ""
    if not _SECRET_TOKEN.fullmatch(secret):
        raise ValueError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )
    url = f"{(settings.public_base_url or '').rstrip('/')}{path}"
    if not url.startswith("https://"):
        raise ValueError(f"Telegram only calls HTTPS webhooks; PUBLIC_BASE_URL gives {url}")
    bot = build_bot(settings)
    try:
        await bot.set_webhook(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
    finally:
        await bot.session.close()
    return url
