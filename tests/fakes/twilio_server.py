"""A fake Twilio REST API (Messages only) that records every request and fails on demand.

The real `twilio.rest.Client` talks to it when `TWILIO_API_BASE` points here.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from tests.fakes.server import BackgroundServer, FakeProvider

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
API_VERSION = "2010-04-01"

ERROR_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service is unavailable. Please try again",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}
_CODE_FOR_STATUS = {401: 20003, 429: 20429, 500: 20500, 503: 20503}


@dataclass(frozen=True)
class TwilioError:
    status: int
    code: int
    message: str
    retry_after: float | None = None

    @classmethod
    def build(
        cls,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> TwilioError:
        if status is None and code is None:
            status = 500
        if code is None:
            code = _CODE_FOR_STATUS.get(status, status)  # type: ignore[arg-type]
        if status is None:
            status = next((s for s, c in _CODE_FOR_STATUS.items() if c == code), 400)
        message = message or ERROR_MESSAGES.get(code, f"Error {code}")
        return cls(status=status, code=code, message=message, retry_after=retry_after)

    def payload(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass(frozen=True)
class TwilioRequest:
    """One request as the fake received it, and what it answered."""

    method: str
    path: str
    account_sid: str
    auth: tuple[str, str] | None
    form: dict[str, str]
    status_code: int
    response: dict[str, Any] = field(repr=False)

    @property
    def to(self) -> str | None:
        return self.form.get("To")

    @property
    def from_(self) -> str | None:
        return self.form.get("From")

    @property
    def messaging_service_sid(self) -> str | None:
        return self.form.get("MessagingServiceSid")

    @property
    def body(self) -> str | None:
        return self.form.get("Body")

    @property
    def status_callback(self) -> str | None:
        return self.form.get("StatusCallback")

    @property
    def sid(self) -> str | None:
        return self.response.get("sid")


@dataclass(frozen=True)
class SignedCallback:
    """A status callback as Twilio would POST it: form params and X-Twilio-Signature."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]


class FakeTwilio(FakeProvider):
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Condition()
        self._requests: list[TwilioRequest] = []
        self._scripted: deque[TwilioError] = deque()
        self._by_recipient: dict[str, TwilioError] = {}
        self._stalls: deque[float] = deque()
        self._outage: TwilioError | None = None
        self.app = Starlette(
            routes=[
                Route(
                    "/2010-04-01/Accounts/{account_sid}/Messages.json",
                    self._create_message,
                    methods=["POST"],
                ),
                Route(
                    "/2010-04-01/Accounts/{account_sid}/Messages.json",
                    self._list_messages,
                    methods=["GET"],
                ),
            ]
        )
        self._server = BackgroundServer(self.app, name="fake-twilio")

    def settings_overrides(self) -> dict[str, str]:
        """Keyword arguments for `Settings(...)` pointing the real client at this fake."""
        return {
            "twilio_account_sid": self.account_sid,
            "twilio_auth_token": self.auth_token,
            "twilio_api_base": self.base_url,
        }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._scripted.clear()
            self._by_recipient.clear()
            self._stalls.clear()
            self._outage = None

    # programming ---------------------------------------------------------------------------

    def fail_next(
        self,
        status: int | None = None,
        *,
        code: int | None = None,
        message: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` authenticated sends with a Twilio error.

        `fail_next(status=500, times=2)`, `fail_next(status=429)` (code 20429),
        `fail_next(code=21610)` (status 400). `retry_after` adds a Retry-After header.
        """
        error = TwilioError.build(status, code, message, retry_after)
        with self._lock:
            self._scripted.extend([error] * times)

    def outage(self, status: int = 500) -> None:
        """Every send fails with `status` until `recover()` (a provider outage)."""
        with self._lock:
            self._outage = TwilioError.build(status)

    def recover(self) -> None:
        with self._lock:
            self._outage = None

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` requests for `seconds` before answering (client timeouts)."""
        with self._lock:
            self._stalls.extend([seconds] * times)

    def fail_for(
        self,
        to: str,
        *,
        code: int = 21610,
        status: int | None = None,
        message: str | None = None,
    ) -> None:
        """Every send to `to` fails with this error until `reset()` (e.g. an opted-out number)."""
        with self._lock:
            self._by_recipient[to] = TwilioError.build(status, code, message)

    # inspection ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[TwilioRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[TwilioRequest]:
        """The requests that created a message (201)."""
        return [r for r in self.requests if r.status_code == 201]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[TwilioRequest]:
        """Block until at least `count` requests were recorded; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"fake Twilio got {len(self._requests)} requests, expected {count}"
                    )
                self._lock.wait(remaining)
            return list(self._requests)

    def signed_status_callback(
        self,
        sid: str,
        status: str = "delivered",
        *,
        error_code: str | None = None,
        url: str | None = None,
    ) -> SignedCallback:
        """The delivery callback Twilio would send for message `sid`, signed with the token.

        The URL defaults to the StatusCallback given when the message was created.
        """
        created = next((r for r in self.messages if r.sid == sid), None)
        if created is None:
            raise KeyError(f"no message {sid} was created on the fake")
        target = url or created.status_callback
        if not target:
            raise ValueError(f"message {sid} was sent without a StatusCallback")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": created.to or "",
            "From": created.from_ or "",
        }
        if created.messaging_service_sid:
            params["MessagingServiceSid"] = created.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = error_code
        signature = RequestValidator(self.auth_token).compute_signature(target, params)
        return SignedCallback(url=target, params=params, headers={"X-Twilio-Signature": signature})

    # the API -------------------------------------------------------------------------------

    async def _create_message(self, request: Request) -> JSONResponse:
        form_data = await request.form()  # received, then slow: a timeout may still create it
        with self._lock:
            stall = self._stalls.popleft() if self._stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        account_sid = request.path_params["account_sid"]
        form = {key: str(value) for key, value in form_data.items()}
        auth = _basic_auth(request.headers.get("authorization"))

        error = self._error_for(account_sid, auth, form)
        if error is None:
            status_code, payload, headers = 201, self._message_payload(account_sid, form), {}
        else:
            status_code, payload = error.status, error.payload()
            headers = {"Retry-After": f"{error.retry_after:g}"} if error.retry_after else {}

        record = TwilioRequest(
            method=request.method,
            path=request.url.path,
            account_sid=account_sid,
            auth=auth,
            form=form,
            status_code=status_code,
            response=payload,
        )
        with self._lock:
            self._requests.append(record)
            self._lock.notify_all()
        return JSONResponse(payload, status_code=status_code, headers=headers)

    async def _list_messages(self, request: Request) -> JSONResponse:
        """GET Messages.json?To=...&DateSent>=...: like Twilio, DateSent filters by date only."""
        account_sid = request.path_params["account_sid"]
        if _basic_auth(request.headers.get("authorization")) != (
            self.account_sid, self.auth_token
        ) or account_sid != self.account_sid:  # fmt: skip
            return JSONResponse(TwilioError.build(401).payload(), status_code=401)
        to = request.query_params.get("To")
        since = (request.query_params.get("DateSent>") or "")[:10]
        found = [
            {**r.response, "date_sent": r.response["date_created"]}
            for r in reversed(self.messages)  # newest first, as Twilio lists them
            if (to is None or r.to == to)
            and (not since or _iso_date(r.response["date_created"]) >= since)
        ]
        page_size = int(request.query_params.get("PageSize") or 50)
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        return JSONResponse(
            {"messages": found[:page_size], "end": min(len(found), page_size) - 1,
             "first_page_uri": uri, "next_page_uri": None, "page": 0, "page_size": page_size,
             "previous_page_uri": None, "start": 0, "uri": uri}
        )  # fmt: skip

    def _error_for(
        self, account_sid: str, auth: tuple[str, str] | None, form: dict[str, str]
    ) -> TwilioError | None:
        if auth != (self.account_sid, self.auth_token) or account_sid != self.account_sid:
            return TwilioError.build(401)
        if not form.get("To"):
            return TwilioError.build(code=21604)
        if not form.get("Body") and not form.get("MediaUrl"):
            return TwilioError.build(code=21602)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return TwilioError.build(code=21603)
        with self._lock:
            if self._outage is not None:
                return self._outage
            if self._scripted:
                return self._scripted.popleft()
            return self._by_recipient.get(form["To"])

    def _message_payload(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = formatdate(usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
        # A send through a Messaging Service without From is "accepted" until a sender is picked.
        queued = bool(form.get("From"))
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if queued else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }


def _iso_date(rfc2822: str) -> str:
    return parsedate_to_datetime(rfc2822).date().isoformat()


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password
