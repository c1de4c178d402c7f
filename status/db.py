"""Engine, sessions and the declarative base shared by every table."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from importlib import import_module
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import (
    JSON,
    DateTime,
    MetaData,
    Table,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import ClauseElement, FromClause
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator

from status import clock

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, from the one injectable clock (`status.clock`)."""
    return clock.now()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON, list: JSON}


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


READ_ONLY = "patient_status_read_only"


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Database errors must not carry row values (names, dates of birth) into logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # A deferred BEGIN that later writes can fail at once with "database is locked" when
        # another writer got there first, so write transactions take the lock up front; reads
        # (`Database.read_session`) begin deferred and run beside a writer, as WAL allows.
        event.listen(engine, "begin", _sqlite_begin)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(
            dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
        ) -> None:
            dbapi_connection.isolation_level = None

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class DatabaseUnavailable(Exception):
    """The database can't be reached or opened; the message says why, in one line."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"cannot use the database at {safe_url(url)}: {cause}")
        self.url = url
        self.cause = cause


def cause_of(exc: BaseException) -> str:
    """The driver's own reason ("connection refused", "database \"x\" does not exist"), one
    line, instead of SQLAlchemy's wrapper and its link."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] or type(inner).__name__


class Database:
    """One engine and its session factory; the request scope or the worker owns commits."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it does not wait for (or block) writers."""
        with self.sessionmaker() as session:
            session.connection(execution_options={READ_ONLY: True})
            yield session
            session.commit()  # ends the read; unlike a rollback it keeps loaded objects usable

    @cached_property
    def autocommit_engine(self) -> Engine:
        """Connections for hot single statements (`raw_autocommit`: the status API's reads, the
        webhooks' inbox insert): autocommit (no BEGIN and COMMIT/ROLLBACK round trips on
        PostgreSQL; on SQLite a read takes no lock and a write holds it for one statement) and
        no ping at checkout (a dropped connection fails its statement instead, and
        `raw_autocommit` runs it again on a fresh one)."""
        if self.is_sqlite:
            return make_engine(self.url, pool_pre_ping=False)
        return make_engine(
            self.url, pool_pre_ping=False, isolation_level="AUTOCOMMIT", pool_size=10
        )

    def raw_autocommit(self, fn: Callable[[RawCursor], T]) -> T:
        """`fn(cursor)` on a pooled autocommit DBAPI connection (each statement its own
        transaction); run once more on a fresh connection when the database dropped the one it
        had (restart, pg_terminate_backend), so `fn` must be safe to repeat."""
        engine = self.autocommit_engine
        dbapi_error = engine.dialect.loaded_dbapi.Error
        for attempt in (1, 2):
            raw = engine.raw_connection()
            cursor = None
            try:
                cursor = raw.cursor()
                return fn(RawCursor(cursor, engine.dialect))
            except dbapi_error as exc:
                gone = engine.dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
                raw.invalidate()
                if not gone or attempt == 2:
                    raise
                engine.dispose()  # its other idle connections went with the server
            finally:
                raw.close()  # back to the pool (an invalidated one is discarded)
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Connect once; `DatabaseUnavailable` says why not."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            raise DatabaseUnavailable(self.url, cause_of(exc)) from exc

    def dispose(self) -> None:
        self.engine.dispose()
        if "autocommit_engine" in self.__dict__:
            self.autocommit_engine.dispose()


def retrying(fn: Callable[[], T], tries: int = 3) -> T:
    """Run a transaction again when the database dropped the connection under it (a restart,
    a failover, pg_terminate_backend). `fn` must be safe to repeat (insert-or-ignore)."""
    for attempt in range(tries):
        try:
            return fn()
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def insert_ignore(session: Session, table: FromClause, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; True when a row was written."""
    assert isinstance(table, Table)  # a model's `__table__`, which SQLAlchemy types as FromClause
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values).on_conflict_do_nothing()
    key = next(iter(table.primary_key.columns))
    # rowcount is unreliable here (-1 on some drivers): ask for the new row's key instead.
    return session.execute(statement.returning(key)).first() is not None


class Prepared:
    """A Core statement compiled once per dialect for `Database.raw_autocommit`: its SQL in the
    driver's own parameter style, each parameter's and each returned column's conversion (the
    ones SQLAlchemy applies), so a hot statement skips SQLAlchemy's per-execution work (~0.1 ms
    each) and reads and writes the values an ORM statement would. `statement` may be a dict of
    dialect name -> statement where the SQL differs (an upsert)."""

    def __init__(self, statement: ClauseElement | dict[str, ClauseElement]) -> None:
        self.statement = statement
        # dialect name -> (sql, constants, bind processors, parameter order, result processors)
        self._by_dialect: dict[str, tuple[Any, ...]] = {}

    def _compiled(self, dialect: Dialect) -> tuple[Any, ...]:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            statement = self.statement
            if isinstance(statement, dict):
                statement = statement[dialect.name]
            # a statement compiles with the dialect's SQL compiler (Compiled is its base)
            compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
            if "POSTCOMPILE" in compiled.string:  # IN (list) expands per execution
                raise ValueError("Prepared takes statements without an expanding IN")
            # the statement's own values (a LIMIT, a constant); the caller's replace the rest
            constants = compiled.construct_params(_check=False)
            binds = {
                name: processor
                for name, bind in compiled.binds.items()
                if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
            }
            order = list(compiled.positiontup or ()) if compiled.positional else None
            processors = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in getattr(statement, "selected_columns", ())
            ]
            found = (compiled.string, constants, binds, order, processors)
            self._by_dialect[dialect.name] = found
        return found

    def _arguments(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, Any]:
        sql, constants, binds, order, _ = self._compiled(dialect)
        values = {**constants, **params}
        for name, processor in binds.items():
            values[name] = processor(values[name])
        return sql, [values[name] for name in order] if order is not None else values

    def _converted(self, dialect: Dialect, rows: list[Any]) -> list[tuple[Any, ...]]:
        processors = self._compiled(dialect)[4]
        if not any(processors):
            return cast(list[tuple[Any, ...]], rows)  # a DB-API cursor's rows
        return [
            tuple(
                value if p is None else p(value) for p, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]

    def rows(
        self, cursor: Any, dialect: Dialect, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The statement's rows for `params`, each value converted as SQLAlchemy would."""
        cursor.execute(*self._arguments(dialect, params))
        return self._converted(dialect, cursor.fetchall())

    async def rows_async(
        self, cursor: Any, dialect: Dialect, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """`rows` on a psycopg `AsyncCursor`, the statement prepared on the server at its first
        execution on a connection (its plan kept for the connection's life)."""
        await cursor.execute(*self._arguments(dialect, params), prepare=True)
        return self._converted(dialect, await cursor.fetchall())

    async def many_async(
        self, cursor: Any, dialect: Dialect, params: Sequence[Mapping[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        """`rows_async` for each of `params`, all sent in one pipeline (one round trip)."""
        sql, found = "", []
        for one in params:
            sql, arguments = self._arguments(dialect, one)
            found.append(arguments)
        await cursor.executemany(sql, found, returning=True)
        rows = []
        while True:
            rows.append(self._converted(dialect, await cursor.fetchall()))
            if not cursor.nextset():
                return rows


class RawCursor:
    """What `Database.raw_autocommit` hands its function: runs `Prepared` statements."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def rows(self, statement: Prepared, **params: Any) -> list[tuple[Any, ...]]:
        return statement.rows(self.cursor, self.dialect, params)


class AsyncRawCursor:
    """What `AsyncReads.run` hands its function: runs `Prepared` statements, awaiting them."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    async def rows(self, statement: Prepared, **params: Any) -> list[tuple[Any, ...]]:
        return await statement.rows_async(self.cursor, self.dialect, params)

    async def many(
        self, statement: Prepared, params: Sequence[Mapping[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        return await statement.many_async(self.cursor, self.dialect, params)


class AsyncReads:
    """A few async psycopg connections for a hot read on PostgreSQL (the status API's), used
    on the event loop: no hop to a worker thread and back, no SQLAlchemy pool checkout and
    reset, autocommit (no BEGIN/COMMIT round trips), each statement prepared on the server at
    its first execution on a connection. At most `size` connections; a request that finds
    none idle waits for one. A connection the server dropped fails its statement, and `run`
    runs the read once more on a fresh one (the other idle ones are dropped with it).

    The connections belong to the event loop that opened them (an app's); `close` them when
    it stops. A read from another loop (a test client's next portal) starts afresh."""

    def __init__(self, url: str, dialect: Dialect, size: int = 8) -> None:
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.dialect = dialect
        self.size = size
        self._loop: Any = None
        self._idle: list[tuple[Any, Any]] = []  # (connection, its cursor), last returned on top
        self._open = 0
        self._waiting: deque[Any] = deque()  # futures of reads waiting for a connection

    async def run(self, fn: Callable[[AsyncRawCursor], Awaitable[T]]) -> T:
        """`fn(cursor)`; once more on a fresh connection when the database dropped the one it
        had (restart, pg_terminate_backend), so `fn` must be safe to repeat."""
        for attempt in (1, 2):
            connection, cursor = await self._acquire()
            try:
                result = await fn(AsyncRawCursor(cursor, self.dialect))
            except psycopg.Error:
                gone = connection.broken or connection.closed
                await self._release(connection, cursor, broken=True)
                if not gone or attempt == 2:
                    raise
                await self._drop_idle()  # the server dropped them too
                continue
            except Exception:  # the caller's own (a 404): raised between statements
                await self._release(connection, cursor, broken=False)
                raise
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                await self._release(connection, cursor, broken=True)
                raise
            await self._release(connection, cursor, broken=False)
            return result
        raise AssertionError("unreachable")

    async def _acquire(self) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._drop_idle()
            self._loop, self._open, self._waiting = loop, 0, deque()
        if self._idle:
            return self._idle.pop()
        if self._open < self.size:
            self._open += 1
        else:
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                found: tuple[Any, Any] | None = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed one, then cancelled
                    handed = waiter.result()
                    if handed is None:
                        self._open -= 1
                    else:
                        await self._release(*handed, broken=False)
                raise
            if found is not None:
                return found
            # a connection was discarded while we waited: its slot is ours, open one
        try:
            connection = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, prepare_threshold=0
            )
        except BaseException:
            self._open -= 1
            raise
        return connection, connection.cursor()

    async def _release(self, connection: Any, cursor: Any, *, broken: bool) -> None:
        if broken:
            self._open -= 1
            found = None
            await connection.close()
        else:
            found = (connection, cursor)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                if found is None:
                    self._open += 1  # the slot goes to the waiter, which opens a connection
                waiter.set_result(found)
                return
        if found is not None:
            self._idle.append(found)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for connection, _ in idle:
            await connection.close()

    async def close(self) -> None:
        """Close the idle connections (those in use close as they come back, see `run`)."""
        await self._drop_idle()


# Every module that declares tables, so Alembic's autogenerate and the schema test see it all.
MODEL_MODULES = [
    "status.clinics",
    "status.patients",
    "status.prescriptions",
    "status.shipments",
    "status.refills",
    "status.payments",
    "status.subscriptions",
    "status.appointments",
    "status.tasks",
    "status.read_model",
    "status.timeline",
    "status.events.store",
    "status.integrations.receipts",
    "bot.conversations",
    "bot.messages",
    "bot.receipts",
    "bot.inbox",
    "bot.handoffs",
    "bot.jobs",
    "channels.staff.models",
    "channels.telegram_links",
    "status.links",
    "status.alerts",
    "status.caregivers",
]


def load_models() -> None:
    for name in MODEL_MODULES:
        import_module(name)
