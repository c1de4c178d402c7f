"""Login throttling: failures in a row per account and per client address, and growing locks.

After STAFF_LOGIN_FAILURES wrong passwords in a row for an account (four times as many from one
address, which a clinic's staff may share), that key is locked for STAFF_LOCK_MINUTES; every
further failure doubles the lock, up to STAFF_LOCK_MAX_MINUTES. While locked, even the right
password is refused and the login page says until when. A success clears the account's count;
`patient-status staff unlock --email E` lifts a lock at once. Times come from the app's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from channels.staff.models import LoginThrottle
from status.db import insert_ignore
from status.settings import Settings

ADDRESS_FACTOR = 4  # an address may fail this many times more than one account


@dataclass(frozen=True)
class Keys:
    account: str
    address: str


def keys(email: str, address: str | None) -> Keys:
    return Keys(f"account:{email.strip().lower()[:255]}", f"address:{(address or '?')[:64]}")


def locked_until(session: Session, login: Keys, now: datetime) -> datetime | None:
    """The latest lock still running on the account or the address, if any."""
    query = select(LoginThrottle.locked_until).where(
        LoginThrottle.key.in_([login.account, login.address]),
        LoginThrottle.locked_until > now,
    )
    return max(session.scalars(query), default=None)


def _lock(failures: int, threshold: int, settings: Settings) -> timedelta | None:
    if failures < threshold:
        return None
    minutes = settings.staff_lock_minutes * 2 ** min(failures - threshold, 20)
    return timedelta(minutes=min(minutes, settings.staff_lock_max_minutes))


def record_failure(session: Session, login: Keys, now: datetime, settings: Settings) -> None:
    threshold = max(settings.staff_login_failures, 1)
    for key, limit in ((login.account, threshold), (login.address, threshold * ADDRESS_FACTOR)):
        insert_ignore(
            session,
            LoginThrottle.__table__,
            {"key": key, "failures": 0, "last_failure_at": now, "locked_until": None},
        )
        query = select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
        row = session.scalars(query).one()
        row.failures += 1
        row.last_failure_at = now
        lock = _lock(row.failures, limit, settings)
        if lock is not None:
            row.locked_until = now + lock
    session.flush()


def record_success(session: Session, login: Keys) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == login.account))


def unlock(session: Session, email: str) -> bool:
    """Lift the account's lock and forget its failures; True when there was something to lift."""
    key = keys(email, None).account
    return session.execute(delete(LoginThrottle).where(LoginThrottle.key == key)).rowcount > 0
