"""Staff passwords (argon2) and accounts."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from channels.staff.models import Role, StaffUser, by_email, join
from channels.staff.security import end_sessions
from status import clinics, limits
from status.clinics import Clinic
from status.db import utcnow

_hasher = PasswordHasher()
MIN_PASSWORD = 10


class StaffError(ValueError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: StaffUser, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def add_staff(
    session: Session,
    email: str,
    name: str,
    role: str,
    password: str,
    *,
    clinic: Clinic | None = None,
    platform_admin: bool | None = None,
) -> StaffUser:
    """Create (or reset) a login, a member of `clinic` (the default one) with `role` there."""
    email = email.strip().lower()
    if "@" not in email or len(email) > limits.EMAIL or limits.unstorable(email):
        raise StaffError(f"{email!r} is not an email address")
    if role not in {r.value for r in Role}:
        raise StaffError("role must be agent or admin")
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"the password must have at least {MIN_PASSWORD} characters")
    user = by_email(session, email)
    if user is None:
        user = StaffUser(
            email=email, name=name.strip(), role=role, password_hash=hash_password(password)
        )
        session.add(user)
    else:  # re-running the command resets the password and role, and ends every session
        user.name, user.role, user.password_hash, user.active = (
            name.strip(),
            role,
            hash_password(password),
            True,
        )
        end_sessions(session, user.id, utcnow())
    if platform_admin is not None:
        user.platform_admin = platform_admin
    session.flush()
    join(session, user, clinic or clinics.default(session), role)
    session.flush()
    return user
