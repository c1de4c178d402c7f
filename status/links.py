"""Status-page links: a random token that stands for one patient, stored only as its hash.

The token in the URL carries nothing about the patient (22 random characters); the row says
whose it is, until when it works, whether staff revoked it and how many wrong dates of birth
it has seen. Three wrong tries lock it (as a conversation is locked) and staff are told.
Each action taken on the page is recorded once per form (`record_action`): a double tap, a
reload or a replayed POST finds its nonce already there and does nothing again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, insert_ignore
from status.patients import Patient

MAX_TRIES = 3
TOKEN_BYTES = 16  # 22 URL-safe characters
MAX_TOKEN = 64  # anything longer is not one of ours (checked before hashing or querying)
_PENDING = "status_links.unflushed"  # session.info: the links `issue` left to the next flush


class LinkState(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # never issued, or altered
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"  # three wrong dates of birth


class StatusLink(Base):
    __tablename__ = "status_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))  # the patient's clinic
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))  # "bot", "api", "staff:3", "proactive"
    revoked_at: Mapped[datetime | None]
    failed_tries: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None]
    # the caregiver it was made for (None: the patient); they verify with the patient's DOB
    caregiver_id: Mapped[int | None] = mapped_column(
        ForeignKey("caregivers.id", ondelete="CASCADE")
    )

    # A patient's links made since a time: every turn's opening read and every piece of news
    # asks whether one was (`bot/turn/opening.py`, `issued_since`); a clinic keeps a link a
    # patient a day, so without it that question read the clinic's whole history.
    __table_args__ = (Index("ix_status_links_patient_id_created_at", "patient_id", "created_at"),)

    def state(self, now: datetime) -> LinkState:
        if self.revoked_at is not None:
            return LinkState.REVOKED
        if self.locked_at is not None:
            return LinkState.LOCKED
        if self.expires_at <= now:
            return LinkState.EXPIRED
        return LinkState.OK


class PageAction(Base):
    """One action taken on the page, keyed by the form's nonce: done once, whatever the taps."""

    __tablename__ = "status_page_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    link_id: Mapped[int] = mapped_column(ForeignKey("status_links.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("link_id", "nonce"),)


@dataclass(frozen=True)
class Issued:
    link: StatusLink
    token: str  # shown once: only its hash is stored


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue(
    session: Session,
    patient: Patient,
    *,
    hours: float,
    now: datetime,
    created_by: str,
    caregiver_id: int | None = None,
    flush: bool = True,
) -> Issued:
    """A new link. `flush=False` leaves its INSERT to the caller's next flush (a worker's batch
    of turns writes once; `pending_since` tells a later turn of the batch that it was made)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = StatusLink(
        clinic_id=patient.clinic_id, patient_id=patient.id, token_hash=token_hash(token),
        created_at=now, expires_at=now + timedelta(hours=hours), created_by=created_by[:64],
        failed_tries=0, caregiver_id=caregiver_id,
    )  # fmt: skip
    session.add(link)
    if flush:
        session.flush()
    else:
        session.info.setdefault(_PENDING, []).append(link)
    return Issued(link, token)


def pending_since(session: Session, since: datetime) -> set[tuple[int, int | None]]:
    """(patient id, caregiver id or None) of each link this session issued with `flush=False`
    since then and not revoked: what `issued_since` finds of them once they are written."""
    made: list[StatusLink] = session.info.get(_PENDING, [])
    return {
        (link.patient_id, link.caregiver_id)
        for link in made
        if link.created_at >= since and link.revoked_at is None
    }


def url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/s/{token}"


def find(session: Session, token: str) -> StatusLink | None:
    """The link a page address stands for, in whichever clinic made it (the token alone is
    the secret; the link names its clinic and patient)."""
    if not token or len(token) > MAX_TOKEN:
        return None
    return session.scalars(
        select(StatusLink).where(StatusLink.token_hash == token_hash(token))
    ).one_or_none()


def by_id(session: Session, clinic_id: int, link_id: int) -> StatusLink | None:
    link = session.get(StatusLink, link_id)
    return link if link is not None and link.clinic_id == clinic_id else None


def for_patient(session: Session, clinic_id: int, patient_id: int) -> list[StatusLink]:
    query = select(StatusLink).where(
        StatusLink.clinic_id == clinic_id, StatusLink.patient_id == patient_id
    )
    return list(session.scalars(query.order_by(StatusLink.id.desc())))


def working(session: Session, clinic_id: int, patient_id: int, now: datetime) -> list[StatusLink]:
    """The patient's links that still open a page (not revoked, locked or expired)."""
    query = select(StatusLink).where(
        StatusLink.clinic_id == clinic_id,
        StatusLink.patient_id == patient_id,
        StatusLink.revoked_at.is_(None),
        StatusLink.locked_at.is_(None),
        StatusLink.expires_at > now,
    )
    return list(session.scalars(query.order_by(StatusLink.id.desc())))


def revoke(link: StatusLink, now: datetime) -> None:
    if link.revoked_at is None:
        link.revoked_at = now


def revoke_all(session: Session, clinic_id: int, patient_id: int, now: datetime) -> int:
    """Revoke every working link of the patient (a lost phone, a wrong recipient); how many."""
    found = working(session, clinic_id, patient_id, now)
    for link in found:
        revoke(link, now)
    return len(found)


def wrong_try(link: StatusLink, now: datetime, taken: int) -> bool:
    """Count a wrong date of birth on the link; `taken`: the tries its address has taken, this
    one included (`conversations.take_verification_try`). True when that was the last: the
    link is locked."""
    link.failed_tries = StatusLink.failed_tries + 1  # in the statement: tries race
    if taken >= MAX_TRIES:
        link.locked_at = now
        return True
    return False


def record_action(session: Session, link: StatusLink, nonce: str, kind: str, now: datetime) -> bool:
    """True the first time this form's nonce is seen for the link; False for a repeat."""
    return insert_ignore(
        session,
        PageAction.__table__,
        {
            "clinic_id": link.clinic_id,
            "link_id": link.id,
            "nonce": nonce[:64],
            "kind": kind,
            "created_at": now,
        },
    )


def issued_since(
    session: Session,
    clinic_id: int,
    patient_id: int,
    since: datetime,
    *,
    caregiver_id: int | None = None,
) -> bool:
    """Whether a link for this patient (and this caregiver, or the patient) was made since."""
    query = select(StatusLink.id).where(
        StatusLink.clinic_id == clinic_id,
        StatusLink.patient_id == patient_id,
        StatusLink.created_at >= since,
        StatusLink.revoked_at.is_(None),
        StatusLink.caregiver_id.is_(None)
        if caregiver_id is None
        else StatusLink.caregiver_id == caregiver_id,
    )
    return session.scalars(query.limit(1)).first() is not None
