"""FastAPI dependencies: settings, the request's transaction, the API key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from status import clinics
from status.clinics import DEFAULT_ID
from status.db import Database
from status.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


def get_session(db: Database = Depends(get_database)) -> Iterator[Session]:
    """The request owns the transaction: committed when the handler returns, else rolled back.
    Routes take it with `scope="function"`, so the commit is done before the answer is sent: a
    client told 201 or "revoked" finds it so at once, and a failed commit answers 500."""
    with db.session() as session:
        yield session


def get_read_session(db: Database = Depends(get_database)) -> Iterator[Session]:
    """For GET routes: reads that never wait behind a write on SQLite."""
    with db.read_session() as session:
        yield session


def require_metrics_token(request: Request, settings: Settings = Depends(get_settings)) -> None:
    """METRICS_TOKEN set: /metrics wants `Authorization: Bearer <METRICS_TOKEN>`."""
    if not settings.metrics_token:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given, settings.metrics_token.encode()
    ):
        raise HTTPException(
            401,
            "send 'Authorization: Bearer <METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request) -> int:
    """The clinic whose key this is: `API_KEY` is the default clinic's, `clinic key SLUG`
    gives each clinic one (stored hashed). Every read and write of the call stays in it."""
    keyed = api_key(request)
    if keyed.clinic_id is not None:
        return keyed.clinic_id  # the environment's key: a comparison, no thread, no read
    clinic_id = await run_in_threadpool(_clinic_of_key, request.app.state.db, keyed)
    if clinic_id is None:
        raise wrong_api_key(request)
    return clinic_id


def api_key(request: Request) -> clinics.KeyedClinic:
    """`Authorization: Bearer <key>`: the default clinic for the environment's `API_KEY`, else
    the hash of what may be a clinic's key, for the caller to look up (`require_api_key`; the
    status API's route does it in its read). 401 saying what is wrong; no I/O, so a hot route
    calls it itself instead of as a dependency (FastAPI's dependency solving costs more)."""
    return keyed_clinic(request.app.state.settings, request.headers.get("authorization", ""))


def keyed_clinic(settings: Settings, authorization: str) -> clinics.KeyedClinic:
    """`api_key` from the `Authorization` header's value (plain ASGI routes read it
    themselves)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401, "missing bearer token: send 'Authorization: Bearer <API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    token = token.strip()
    if settings.api_key and secrets.compare_digest(token.encode(), settings.api_key.encode()):
        return clinics.KeyedClinic(clinic_id=DEFAULT_ID)
    key_hash = clinics.key_hash(token)
    if key_hash is None:
        raise wrong_key(settings)  # not one `clinic key` made: no database read for a guess
    return clinics.KeyedClinic(key_hash=key_hash)


def wrong_api_key(request: Request) -> HTTPException:
    return wrong_key(request.app.state.settings)


def wrong_key(settings: Settings) -> HTTPException:
    detail = "wrong API key" if settings.api_key else (
        "API_KEY is not configured on this server and no clinic's key "
        "(patient-status clinic key SLUG) matches, so the API refuses the call"
    )  # fmt: skip
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _clinic_of_key(db: Database, keyed: clinics.KeyedClinic) -> int | None:
    return db.raw_autocommit(lambda reader: clinics.read_clinic_of_key(reader, keyed))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
