"""A fake Telegram Bot API that records every call, serves pushed updates and fails on demand.

The real aiogram `Bot` talks to it when `TELEGRAM_API_BASE` points here.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import BackgroundServer, FakeProvider

BOT_ID = 7000000001
BOT_TOKEN = f"{BOT_ID}:AAFakeTokenForTests_0123456789abcdefgh"
BOT_USERNAME = "HarborHealthBot"
MAX_TEXT_LENGTH = 4096

DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
}

# How form-encoded values are typed back (aiogram sends everything as strings, objects as JSON).
_JSON_FIELDS = {
    "allowed_updates",
    "caption_entities",
    "commands",
    "entities",
    "link_preview_options",
    "media",
    "reply_markup",
    "reply_parameters",
    "results",
    "scope",
}
_INT_FIELDS = {
    "chat_id",
    "cache_time",
    "from_chat_id",
    "limit",
    "max_connections",
    "message_id",
    "message_thread_id",
    "offset",
    "reply_to_message_id",
    "timeout",
    "user_id",
}
_BOOL_FIELDS = {
    "disable_notification",
    "disable_web_page_preview",
    "drop_pending_updates",
    "protect_content",
    "show_alert",
}
_HTML_TAGS = {
    "a",
    "b",
    "blockquote",
    "code",
    "del",
    "em",
    "i",
    "ins",
    "pre",
    "s",
    "span",
    "strike",
    "strong",
    "tg-emoji",
    "tg-spoiler",
    "u",
}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*)?>")


@dataclass(frozen=True)
class TelegramError:
    error_code: int
    description: str
    retry_after: int | None = None
    method: str | None = None  # None: whichever method comes next

    @classmethod
    def build(
        cls,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        method: str | None = None,
    ) -> TelegramError:
        if error_code == 429 and retry_after is None:
            retry_after = 1
        default = DESCRIPTIONS.get(error_code, f"Error {error_code}")
        return cls(
            error_code=error_code,
            description=description or default.format(retry_after=retry_after),
            retry_after=retry_after,
            method=method,
        )

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body

    def matches(self, method: str) -> bool:
        return self.method is None or self.method.lower() == method.lower()


@dataclass(frozen=True)
class TelegramCall:
    """One Bot API call as the fake received it, and what it answered."""

    method: str
    params: dict[str, Any]
    token: str
    status_code: int
    response: dict[str, Any] = field(repr=False)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")


class FakeTelegram(FakeProvider):
    def __init__(self, token: str = BOT_TOKEN, *, max_poll_seconds: float = 0.5) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.other_bots: set[str] = set()  # more bots' tokens (other clinics' own bots)
        self.max_poll_seconds = max_poll_seconds
        self._lock = threading.Condition()
        self._calls: list[TelegramCall] = []
        self._scripted: deque[TelegramError] = deque()
        self._by_chat: dict[int | str, TelegramError] = {}
        self._stalls: deque[tuple[float, str | None]] = deque()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 100_000
        self._next_message_id = 1
        self._webhook: dict[str, Any] = {}
        self.app = Starlette(
            routes=[Route("/bot{token}/{method}", self._call, methods=["GET", "POST"])]
        )
        self._server = BackgroundServer(self.app, name="fake-telegram")

    def settings_overrides(self) -> dict[str, str]:
        """Keyword arguments for `Settings(...)` pointing the real aiogram Bot at this fake."""
        return {"telegram_bot_token": self.token, "telegram_api_base": self.base_url}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._scripted.clear()
            self._by_chat.clear()
            self._stalls.clear()
            self._updates.clear()
            self._webhook = {}
            self._next_message_id = 1
            self.other_bots.clear()

    # programming ---------------------------------------------------------------------------

    def fail_next(
        self,
        error_code: int = 500,
        *,
        description: str | None = None,
        retry_after: int | None = None,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls (of `method`, or of any method) with an error.

        `fail_next(429)` carries `parameters.retry_after` (1 by default); 403 defaults to
        "Forbidden: bot was blocked by the user", 400 to "Bad Request: chat not found".
        """
        error = TelegramError.build(error_code, description, retry_after, method)
        with self._lock:
            self._scripted.extend([error] * times)

    def stall_next(self, seconds: float, *, method: str | None = None, times: int = 1) -> None:
        """Hold the next `times` calls (of `method`) for `seconds` before answering."""
        with self._lock:
            self._stalls.extend([(seconds, method)] * times)

    def fail_for_chat(
        self, chat_id: int | str, error_code: int = 403, *, description: str | None = None
    ) -> None:
        """Every call addressed to `chat_id` fails this way until `reset()`."""
        with self._lock:
            self._by_chat[_as_int(chat_id)] = TelegramError.build(error_code, description)

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; an `update_id` is assigned when missing."""
        with self._lock:
            if "update_id" not in update:
                update = {"update_id": self._allocate_update_id(), **update}
            self._updates.append(update)
            self._lock.notify_all()
        return update

    def push_text(self, chat_id: int, text: str, **user: Any) -> dict[str, Any]:
        return self.push_update(text_update(chat_id, text, **user))

    def push_contact(self, chat_id: int, phone_number: str, **user: Any) -> dict[str, Any]:
        return self.push_update(contact_update(chat_id, phone_number, **user))

    def push_callback(
        self, chat_id: int, data: str, *, message_id: int = 1, **user: Any
    ) -> dict[str, Any]:
        return self.push_update(
            callback_update(chat_id, data, message_id=message_id, bot_id=self.bot_id, **user)
        )

    # inspection ----------------------------------------------------------------------------

    @property
    def calls(self) -> list[TelegramCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[TelegramCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def sent(self, chat_id: int | str | None = None) -> list[TelegramCall]:
        """Successful sendMessage calls, optionally to one chat."""
        return [
            c
            for c in self.calls_to("sendMessage")
            if c.ok and (chat_id is None or c.params.get("chat_id") == _as_int(chat_id))
        ]

    @property
    def webhook(self) -> dict[str, Any]:
        """What setWebhook registered: url, secret_token, allowed_updates, ... ({} if none)."""
        with self._lock:
            return dict(self._webhook)

    def wait_for(
        self, count: int, *, method: str | None = None, timeout: float = 2.0
    ) -> list[TelegramCall]:
        """Block until `count` calls (of `method`, if given) were recorded."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                matching = [
                    c for c in self._calls if method is None or c.method.lower() == method.lower()
                ]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"fake Telegram got {len(matching)} {method or 'calls'}, expected {count}"
                    )
                self._lock.wait(remaining)

    # the API -------------------------------------------------------------------------------

    async def _call(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        method = request.path_params["method"]
        params = await _read_params(request)
        await self._stall(method)

        status_code, payload = self._check(token, method, params)
        if status_code == 200:
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                status_code, payload = 404, TelegramError.build(404).payload()
            else:
                result = handler(params)
                if asyncio.iscoroutine(result):
                    result = await result
                status_code, payload = result

        with self._lock:
            self._calls.append(TelegramCall(method, params, token, status_code, payload))
            self._lock.notify_all()
        return JSONResponse(payload, status_code=status_code)

    async def _stall(self, method: str) -> None:
        with self._lock:
            index = next(
                (
                    i
                    for i, (_, only) in enumerate(self._stalls)
                    if only is None or only.lower() == method.lower()
                ),
                None,
            )
            if index is None:
                return
            seconds = self._stalls[index][0]
            del self._stalls[index]
        await asyncio.sleep(seconds)

    def _check(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict]:
        if token != self.token and token not in self.other_bots:
            return 401, TelegramError.build(401).payload()
        with self._lock:
            for index, error in enumerate(self._scripted):
                if error.matches(method):
                    del self._scripted[index]
                    return error.error_code, error.payload()
            chat_error = self._by_chat.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat_error is not None:
            return chat_error.error_code, chat_error.payload()
        return 200, {}

    def _bad_request(self, problem: str) -> tuple[int, dict]:
        return 400, TelegramError.build(400, f"Bad Request: {problem}").payload()

    def _m_getme(self, params: dict[str, Any]) -> tuple[int, dict]:
        return _ok(self._bot_user() | {"can_join_groups": True, "supports_inline_queries": False})

    def _m_sendmessage(self, params: dict[str, Any]) -> tuple[int, dict]:
        text = str(params.get("text", ""))
        if "chat_id" not in params:
            return self._bad_request("chat_id is empty")
        if not text.strip():
            return self._bad_request("message text is empty")
        if params.get("parse_mode", "").upper() == "HTML":
            problem = _html_problem(text)
            if problem:
                return self._bad_request(f"can't parse entities: {problem}")
            text = html.unescape(_TAG.sub("", text))
        if len(text) > MAX_TEXT_LENGTH:
            return self._bad_request("message is too long")
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
        message = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": _chat(params["chat_id"]),
            "date": int(time.time()),
            "text": text,
        }
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return _ok(message)

    def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> tuple[int, dict]:
        if "inline_message_id" in params:
            return _ok(True)
        if "chat_id" not in params or "message_id" not in params:
            return self._bad_request("message identifier is not specified")
        message: dict[str, Any] = {
            "message_id": params["message_id"],
            "from": self._bot_user(),
            "chat": _chat(params["chat_id"]),
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "text": "",
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return _ok(message)

    def _m_answercallbackquery(self, params: dict[str, Any]) -> tuple[int, dict]:
        if not params.get("callback_query_id"):
            return self._bad_request("query is too old and response timeout expired")
        return _ok(True)

    def _m_sendchataction(self, params: dict[str, Any]) -> tuple[int, dict]:
        return _ok(True)

    def _m_setwebhook(self, params: dict[str, Any]) -> tuple[int, dict]:
        url = params.get("url", "")
        if not url:
            with self._lock:
                self._webhook = {}
            return _ok(True, "Webhook is already deleted")
        if not str(url).startswith("https://"):
            return self._bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self._webhook = dict(params)
        return _ok(True, "Webhook was set")

    def _m_deletewebhook(self, params: dict[str, Any]) -> tuple[int, dict]:
        with self._lock:
            had = bool(self._webhook)
            self._webhook = {}
            if params.get("drop_pending_updates"):
                self._updates.clear()
        return _ok(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _m_getwebhookinfo(self, params: dict[str, Any]) -> tuple[int, dict]:
        with self._lock:
            hook, pending = dict(self._webhook), len(self._updates)
        info: dict[str, Any] = {
            "url": hook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if hook:
            info["max_connections"] = hook.get("max_connections", 40)
            info["ip_address"] = "127.0.0.1"
            if hook.get("allowed_updates") is not None:
                info["allowed_updates"] = hook["allowed_updates"]
        return _ok(info)

    async def _m_getupdates(self, params: dict[str, Any]) -> tuple[int, dict]:
        with self._lock:
            if self._webhook:
                return 409, TelegramError.build(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                ).payload()
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        wait = min(float(params.get("timeout") or 0), self.max_poll_seconds)
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or time.monotonic() >= deadline:
                return _ok(ready)
            await asyncio.sleep(0.02)

    # helpers -------------------------------------------------------------------------------

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Harbor Health",
            "username": BOT_USERNAME,
        }

    def _allocate_update_id(self) -> int:
        self._next_update_id += 1
        return self._next_update_id


# update builders (also for posting straight to the app's webhook) ------------------------------


def _user(chat_id: int, first_name: str = "Maria", user_id: int | None = None) -> dict[str, Any]:
    return {
        "id": user_id or chat_id,
        "is_bot": False,
        "first_name": first_name,
        "language_code": "en",
    }


def text_update(
    chat_id: int,
    text: str,
    *,
    update_id: int | None = None,
    message_id: int = 1,
    first_name: str = "Maria",
    user_id: int | None = None,
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "message": {
            "message_id": message_id,
            "from": _user(chat_id, first_name, user_id),
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "date": int(time.time()),
            "text": text,
        }
    }
    return update if update_id is None else {"update_id": update_id, **update}


def contact_update(
    chat_id: int,
    phone_number: str,
    *,
    update_id: int | None = None,
    message_id: int = 1,
    first_name: str = "Maria",
    user_id: int | None = None,
) -> dict[str, Any]:
    """A contact shared through a request_contact button (the contact is the sender's own)."""
    sender = _user(chat_id, first_name, user_id)
    update: dict[str, Any] = {
        "message": {
            "message_id": message_id,
            "from": sender,
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "date": int(time.time()),
            "contact": {
                "phone_number": phone_number,
                "first_name": first_name,
                "user_id": sender["id"],
            },
        }
    }
    return update if update_id is None else {"update_id": update_id, **update}


def callback_update(
    chat_id: int,
    data: str,
    *,
    update_id: int | None = None,
    message_id: int = 1,
    query_id: str | None = None,
    bot_id: int = BOT_ID,
    first_name: str = "Maria",
    user_id: int | None = None,
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "callback_query": {
            "id": query_id or f"{chat_id}{message_id}{int(time.time() * 1000)}",
            "from": _user(chat_id, first_name, user_id),
            "chat_instance": str(chat_id * 7),
            "data": data,
            "message": {
                "message_id": message_id,
                "from": {"id": bot_id, "is_bot": True, "first_name": "Harbor Health"},
                "chat": {"id": chat_id, "type": "private", "first_name": first_name},
                "date": int(time.time()),
                "text": "…",
            },
        }
    }
    return update if update_id is None else {"update_id": update_id, **update}


# request parsing ---------------------------------------------------------------------------------


async def _read_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {
        key: _typed(key, value) for key, value in request.query_params.items()
    }
    if request.method != "POST":
        return params
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if body:
            params.update(json.loads(body))
        return params
    form = await request.form()
    for key, value in form.items():
        params[key] = _typed(key, value) if isinstance(value, str) else value.filename
    return params


def _typed(key: str, value: str) -> Any:
    if key in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _INT_FIELDS:
        return _as_int(value)
    if key in _BOOL_FIELDS:
        return value.lower() == "true"
    return value


def _as_int(value: int | str) -> int | str:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _chat(chat_id: int | str) -> dict[str, Any]:
    if isinstance(chat_id, int) and chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Maria"}
    if isinstance(chat_id, int):
        return {"id": chat_id, "type": "supergroup", "title": "Clinic staff"}
    return {"id": -1001000000000, "type": "channel", "title": str(chat_id), "username": chat_id}


def _html_problem(text: str) -> str | None:
    """What Telegram would say about text that is not valid for parse_mode=HTML, or None."""
    position = 0
    while (start := text.find("<", position)) != -1:
        match = _TAG.match(text, start)
        if match is None or match.group(2).lower() not in _HTML_TAGS:
            name = match.group(2) if match else text[start + 1 : start + 2]
            offset = len(text[:start].encode("utf-8"))
            return f'Unsupported start tag "{name}" at byte offset {offset}'
        position = match.end()
    return None


def _ok(result: Any, description: str | None = None) -> tuple[int, dict]:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return 200, body
