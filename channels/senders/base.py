"""What every channel sender promises the outbox dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

OPTED_OUT = "opted_out"
INVALID_ADDRESS = "invalid_address"
BLOCKED = "blocked"
CHAT_NOT_FOUND = "chat_not_found"

NETWORK = "network"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one provider call. `error_message` never includes the message body."""

    ok: bool
    provider_message_id: str | None = None
    status: str | None = None  # provider status, e.g. "queued"
    error_code: str | None = None  # "21610", "429", "403", "network", "500" ...
    error_message: str | None = None
    retryable: bool = False  # network errors, 5xx, Twilio 20429/429, Telegram 429
    retry_after: float | None = None  # seconds, from Telegram retry_after or Retry-After
    permanent_reason: str | None = None  # OPTED_OUT, INVALID_ADDRESS, BLOCKED, CHAT_NOT_FOUND
    # The request may have reached the provider (a timeout, a connection cut after sending):
    # it may have been accepted, so it is looked up before it is sent again.
    maybe_accepted: bool = False

    @classmethod
    def network_error(cls, exc: BaseException, *, maybe_accepted: bool = True) -> SendResult:
        detail = str(exc) or type(exc).__name__
        return cls(
            ok=False, error_code=NETWORK, error_message=detail, retryable=True,
            maybe_accepted=maybe_accepted,
        )  # fmt: skip


@dataclass(frozen=True)
class Origin:
    """Who a message is sent as: its clinic's SMS number or messaging service, its bot."""

    sms_from: str | None = None
    messaging_service_sid: str | None = None
    telegram_token: str | None = None

    def configured(self, channel: str) -> bool:
        if channel == "sms":
            return bool(self.sms_from or self.messaging_service_sid)
        if channel == "telegram":
            return bool(self.telegram_token)
        return True

    @property
    def sms_key(self) -> str:
        """What Twilio paces: the sending number (or the service, which spreads its own)."""
        return self.messaging_service_sid or self.sms_from or "*"


class Sender(Protocol):
    channel: str  # "sms" | "telegram"

    async def send(
        self,
        address: str,
        body: str,
        *,
        buttons: list[list[dict]] | None = None,
        status_callback: str | None = None,
        origin: Origin | None = None,
    ) -> SendResult: ...

    async def close(self) -> None: ...


def mask_address(address: str) -> str:
    """A phone number or chat id shortened for logs: `+15550100123` -> `+1555…23`."""
    if len(address) <= 7:
        return "…" + address[-2:]
    return f"{address[:5]}…{address[-2:]}"
