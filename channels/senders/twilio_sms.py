"""SMS through Twilio's Messages API (the real async twilio client), or to the log."""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from bot.sms_text import sms_segments
from channels.senders.base import INVALID_ADDRESS, OPTED_OUT, Origin, SendResult, mask_address
from status.settings import Settings

logger = logging.getLogger(__name__)

TWILIO_API_BASE = "https://api.twilio.com"
DEFAULT_TIMEOUT = 10.0

OPTED_OUT_CODES = frozenset({21610})
INVALID_ADDRESS_CODES = frozenset({21211, 21614})
RATE_LIMIT_CODES = frozenset({429, 20429})

# Headers of the last Twilio response seen by the current task (TwilioRestException drops them,
# and a 429 may carry Retry-After).
_response_headers: ContextVar[Mapping[str, str] | None] = ContextVar(
    "twilio_response_headers", default=None
)


class TwilioApiHttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client, sending to `api_base` instead of the hard-coded twilio.com host.

    The twilio library builds absolute `https://api.twilio.com/...` URLs; this rewrites the
    scheme, host and port (keeping the path) when another base is configured. It also applies
    the client timeout, which the stock async client ignores (it would wait forever).
    """

    def __init__(self, api_base: str = TWILIO_API_BASE, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(timeout=timeout)
        base = api_base.rstrip("/")
        self.api_base = None if base == TWILIO_API_BASE else base

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        if self.api_base is None or not (parts.hostname or "").endswith("twilio.com"):
            return url
        base = urlsplit(self.api_base)
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:  # aiohttp deprecates its BasicAuth; send the header ourselves
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        response = await super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout or self.timeout,
            allow_redirects=allow_redirects,
        )
        _response_headers.set(response.headers)
        return response


class TwilioSmsSender:
    """Sends with `create_async` on the event loop; never raises for a provider or network error."""

    channel = "sms"

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not settings.sms_enabled:
            raise ValueError(
                "Twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER "
                "or TWILIO_MESSAGING_SERVICE_SID"
            )
        self._settings = settings
        self._timeout = timeout
        self._http: TwilioApiHttpClient | None = None
        self._client: Client | None = None

    def _get_client(self) -> Client:
        # Built on first use: the aiohttp session must be created inside the running loop.
        if self._client is None:
            self._http = TwilioApiHttpClient(self._settings.twilio_api_base, timeout=self._timeout)
            self._client = Client(
                self._settings.twilio_account_sid,
                self._settings.twilio_auth_token,
                http_client=self._http,
            )
        return self._client

    def _sender_params(self, origin: Origin | None) -> dict[str, Any]:
        """The clinic's sender (`origin`), else the environment's (the default clinic's)."""
        if origin is not None and origin.configured("sms"):
            if origin.messaging_service_sid:
                return {"messaging_service_sid": origin.messaging_service_sid}
            return {"from_": origin.sms_from}
        if self._settings.twilio_messaging_service_sid:
            return {"messaging_service_sid": self._settings.twilio_messaging_service_sid}
        return {"from_": self._settings.twilio_from_number}

    async def send(
        self,
        address: str,
        body: str,
        *,
        buttons: list[list[dict]] | None = None,
        status_callback: str | None = None,
        origin: Origin | None = None,
    ) -> SendResult:
        client = self._get_client()
        _response_headers.set(None)
        try:
            message = await client.messages.create_async(
                to=address,
                body=body,
                status_callback=status_callback,
                **self._sender_params(origin),
            )
        except TwilioRestException as exc:
            return twilio_error_result(exc.status, exc.code, exc.msg, _retry_after())
        except TwilioServiceException as exc:
            detail = f"{exc.title}: {exc.detail}" if exc.detail else exc.title
            return twilio_error_result(exc.status, exc.code, detail, _retry_after())
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("twilio send to %s failed: %r", mask_address(address), exc)
            # Never connected: Twilio cannot have it. Anything later (a timeout, a connection
            # cut mid-request) may have been accepted.
            unsent = isinstance(exc, aiohttp.ClientConnectorError)
            return SendResult.network_error(exc, maybe_accepted=not unsent)
        return SendResult(ok=True, provider_message_id=message.sid, status=message.status)

    async def find_sent(self, address: str, body: str, since: datetime) -> list[str]:
        """Sids of messages Twilio has to `address` with this body, sent since `since`'s date
        (newest first): how a send whose acceptance we never recorded is found again."""
        client = self._get_client()
        found = await client.messages.list_async(
            to=address, date_sent_after=since - timedelta(days=1), limit=50
        )
        return [m.sid for m in found if (m.body or "") == body]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None


def twilio_error_result(
    status: int, code: int | None, message: str, retry_after: float | None = None
) -> SendResult:
    """Classify a Twilio API error: retry later, give up for good, and why."""
    permanent_reason = None
    if code in OPTED_OUT_CODES:
        permanent_reason = OPTED_OUT
    elif code in INVALID_ADDRESS_CODES:
        permanent_reason = INVALID_ADDRESS
    retryable = status >= 500 or status in RATE_LIMIT_CODES or code in RATE_LIMIT_CODES
    return SendResult(
        ok=False,
        error_code=str(code or status),
        error_message=message,
        retryable=retryable,
        retry_after=retry_after if retryable else None,
        permanent_reason=permanent_reason,
    )


def _retry_after() -> float | None:
    headers = _response_headers.get()
    value = headers.get("Retry-After") if headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date; the dispatcher's own backoff will do
        return None


class LogSmsSender:
    """SMS in log mode (no Twilio credentials): logs the recipient and size, never the body.

    With `echo=True` (the demo) the body is printed to stdout so a person can read the reply.
    """

    channel = "sms"

    def __init__(self, *, echo: bool = False, stream: TextIO | None = None) -> None:
        self.echo = echo
        self._stream = stream

    async def send(
        self,
        address: str,
        body: str,
        *,
        buttons: list[list[dict]] | None = None,
        status_callback: str | None = None,
        origin: Origin | None = None,
    ) -> SendResult:
        encoding, segments = sms_segments(body)
        logger.info(
            "[sms log] to=%s segments=%d encoding=%s", mask_address(address), segments, encoding
        )
        if self.echo:
            print(f"[sms to {address}] {body}", file=self._stream or sys.stdout, flush=True)
        return SendResult(ok=True, status="logged")

    async def close(self) -> None:
        return None
