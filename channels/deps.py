"""FastAPI dependencies: settings, the request's transaction, the API key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from status.db import Database
from status.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


def get_session(db: Database = Depends(get_database)) -> Iterator[Session]:
    """The request owns the transaction: committed when the handler returns, else rolled back."""
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


async def require_api_key(request: Request) -> None:
    # async: a few comparisons, not worth a hop to a worker thread
    check_api_key(request)


def check_api_key(request: Request) -> None:
    """`Authorization: Bearer <API_KEY>`, else 401 saying what is wrong. A hot route calls it
    itself instead of as a dependency (FastAPI's dependency solving costs more than this)."""
    settings: Settings = request.app.state.settings
    if not settings.api_key:
        raise HTTPException(
            401,
            "API_KEY is not configured on this server, so the API refuses every call",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401, "missing bearer token: send 'Authorization: Bearer <API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    if not secrets.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "Bearer"})


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
