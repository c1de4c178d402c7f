"""Single-use deep-link tokens that tie a Telegram chat to a patient."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, utcnow
from status.patients import Patient


class TelegramLinkToken(Base):
    __tablename__ = "telegram_link_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_chat: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- tokens -------------------------------------------------------------------------------------
# Telegram's start parameter allows 64 characters of [A-Za-z0-9_-]: a random nonce plus an HMAC
# of it, both base64url without padding, fixed lengths so no separator is needed.


LINK_TTL = timedelta(days=7)
_NONCE_BYTES, _SIG_BYTES = 12, 15  # 16 + 20 characters


class LinkError(ValueError):
    """The link is unknown, tampered with, expired or already used."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sign(secret: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"tg-link:{nonce}".encode(), hashlib.sha256).digest()
    return _b64(digest[:_SIG_BYTES])


def create_token(session: Session, secret: str, patient: Patient, now) -> str:
    nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
    session.add(TelegramLinkToken(nonce=nonce, patient_id=patient.id, expires_at=now + LINK_TTL))
    session.flush()
    return nonce + _sign(secret, nonce)


def deep_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username}?start={token}"


def redeem(session: Session, secret: str, token: str, chat_id: str, now) -> Patient:
    """Single use: links `chat_id` to the token's patient, or raises LinkError."""
    nonce, signature = token[:16], token[16:]
    if len(token) != 36 or not hmac.compare_digest(signature, _sign(secret, nonce)):
        raise LinkError("not a valid link")
    query = select(TelegramLinkToken).where(TelegramLinkToken.nonce == nonce)
    row = session.scalars(query.with_for_update()).one_or_none()
    if row is None:
        raise LinkError("unknown link")
    if row.used_at is not None:
        raise LinkError("link already used")
    if row.expires_at <= now:
        raise LinkError("link expired")
    row.used_at = now
    row.used_by_chat = chat_id
    patient = session.get(Patient, row.patient_id)
    patient.telegram_chat_id = chat_id
    patient.preferred_channel = "telegram"
    return patient
