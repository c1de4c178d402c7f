"""Alembic environment. The URL comes from the caller (`patient-status db upgrade`) or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from status.db import Base, load_models, make_engine

load_models()

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from status.settings import get_settings

    return get_settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # SQLite alters a table by copying it and dropping the old one; with foreign keys
            # on, that drop would cascade to every row pointing at it (a patient's orders).
            # The pragma only works outside a transaction, so it goes to the driver directly.
            driver = connection.connection.driver_connection
            assert driver is not None  # a connection just opened has its driver's connection
            driver.execute("PRAGMA foreign_keys=OFF")
        _run(connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
