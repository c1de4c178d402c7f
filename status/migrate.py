"""Schema migrations (Alembic), run by `patient-status db upgrade` and on `serve`/`demo` start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str, rev_id: str | None = None) -> None:
    """For developers: autogenerate a new migration against a database at head."""
    command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)
