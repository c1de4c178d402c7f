"""Staff logins and the audit trail of what they viewed and sent."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import clinics
from status.clinics import Clinic
from status.db import Base, utcnow


class Role(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # The role in the clinic the login was made for (kept for older tools); what counts is the
    # role in each clinic (`Membership`), or `platform_admin`, which sees every clinic.
    role: Mapped[str] = mapped_column(String(16), default=Role.AGENT)
    platform_admin: Mapped[bool] = mapped_column(default=False)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class Membership(Base):
    """A staff member works for a clinic, with a role there."""

    __tablename__ = "staff_memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16), default=Role.AGENT)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("staff_id", "clinic_id"),)


class StaffSession(Base):
    """A console login, held server-side: the cookie carries only its random token (hashed here),
    so logging out, a password change or an idle half hour ends it for good."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class LoginThrottle(Base):
    """Failed logins in a row for one account (`account:<email>`) or one client address
    (`address:<ip>`), and until when that key may not log in."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # "staff:3", "api", "system"
    action: Mapped[str] = mapped_column(String(32))  # viewed, replied, noted, took, resolved
    patient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    handoff_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


def by_email(session: Session, email: str) -> StaffUser | None:
    query = select(StaffUser).where(StaffUser.email == email.strip().lower())
    return session.scalars(query).one_or_none()


def audit(
    session: Session,
    action: str,
    *,
    clinic_id: int,
    staff_id: int | None = None,
    actor: str | None = None,
    patient_id: int | None = None,
    handoff_id: int | None = None,
    detail: str = "",
) -> None:
    session.add(
        AuditEntry(
            clinic_id=clinic_id,
            staff_id=staff_id,
            actor=actor or (f"staff:{staff_id}" if staff_id else "system"),
            action=action,
            patient_id=patient_id,
            handoff_id=handoff_id,
            detail=detail,
        )
    )


def by_id(session: Session, staff_id: int) -> StaffUser | None:
    return session.get(StaffUser, staff_id)


def names(session: Session, ids: set[int | None]) -> dict[int, str]:
    """Staff id -> display name, for the ids given (None and unknown ids are left out)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    query = select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(wanted))
    return {row.id: row.name for row in session.execute(query)}


def active_staff(session: Session) -> list[StaffUser]:
    query = select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.name)
    return list(session.scalars(query))


def recent_audit(
    session: Session,
    clinic_ids: Collection[int],
    *,
    limit: int = 200,
    staff_id: int | None = None,
) -> list[AuditEntry]:
    """These clinics' audit entries, newest first."""
    query = select(AuditEntry).where(AuditEntry.clinic_id.in_(list(clinic_ids)))
    if staff_id is not None:
        query = query.where(AuditEntry.staff_id == staff_id)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def patient_source_ids(session: Session, ids: set[int | None]) -> dict[int, str]:
    """Patient id -> the clinic's own patient id, for linking audit rows to patient pages."""
    from status.patients import Patient

    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    query = select(Patient.id, Patient.source_id).where(Patient.id.in_(wanted))
    return {row.id: row.source_id for row in session.execute(query)}


def memberships(session: Session, user: StaffUser) -> list[tuple[Clinic, str]]:
    """(clinic, role) for each clinic this person works for; every clinic, as admin, for a
    platform admin."""
    if user.platform_admin:
        return [(clinic, Role.ADMIN) for clinic in clinics.all_clinics(session)]
    query = (
        select(Clinic, Membership.role)
        .join(Membership, Membership.clinic_id == Clinic.id)
        .where(Membership.staff_id == user.id)
        .order_by(Clinic.id)
    )
    return [(clinic, role) for clinic, role in session.execute(query)]


def member_clinic_ids(session: Session, user: StaffUser) -> list[int]:
    """The clinics this person is a member of (a platform admin's reach is not membership)."""
    query = select(Membership.clinic_id).where(Membership.staff_id == user.id)
    return list(session.scalars(query.order_by(Membership.clinic_id)))


def join(session: Session, user: StaffUser, clinic: Clinic, role: str) -> None:
    """Make `user` a member of `clinic` with `role` (or change their role there)."""
    found = session.scalars(
        select(Membership).where(Membership.staff_id == user.id, Membership.clinic_id == clinic.id)
    ).one_or_none()
    if found is None:
        session.add(Membership(staff_id=user.id, clinic_id=clinic.id, role=role))
    else:
        found.role = role
