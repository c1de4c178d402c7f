"""`/simulator` (demo mode only): a phone in the browser, chatting through the same engine.

The simulated phone is the patient's own number: what the bot sends it by SMS (proactive updates
in log mode) appears in the same thread as the replies, the way the patient's phone would show.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from bot.inbound import Inbound
from bot.messages import Message
from bot.render import environment
from status import limits
from status.db import utcnow
from status.patients import Patient

router = APIRouter(prefix="/simulator", include_in_schema=False)  # demo mode only
CHANNEL = "simulator"
THREAD_CHANNELS = (CHANNEL, "sms")


def _demo_only(request: Request) -> None:
    if not request.app.state.settings.demo_mode:
        raise HTTPException(404, "the simulator only runs in demo mode (patient-status demo)")


class Say(BaseModel):
    phone: str = Field(min_length=5, max_length=20)
    text: str = Field(min_length=1, max_length=1600)


@router.get("", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    _demo_only(request)
    with request.app.state.db.session() as session:
        people = session.scalars(select(Patient).order_by(Patient.id)).all()
        choices = [
            {"phone": p.phone, "name": p.display_name, "language": p.language,
             "dob": p.date_of_birth.strftime("%m/%d/%Y")}
            for p in people
        ]  # fmt: skip
    html = (
        environment()
        .get_template("simulator/index.html")
        .render(patients=choices, clinic=request.app.state.settings.clinic_name)
    )
    return HTMLResponse(html)


@router.post("/api/send")
async def send(request: Request, body: Say) -> dict:
    _demo_only(request)
    runtime = request.app.state.runtime
    inbound = Inbound(CHANNEL, limits.scrub(body.phone), limits.scrub(body.text), None, utcnow())

    def turn() -> int:
        with request.app.state.db.session() as session:
            return len(runtime.engine.handle(session, inbound).replies)

    replies = await asyncio.to_thread(turn)
    runtime.notify()
    return {"replies": replies}


@router.get("/api/messages")
def messages(request: Request, phone: str, after: int = 0) -> dict:
    _demo_only(request)
    phone, after = limits.scrub(phone)[:64], min(max(after, 0), limits.MAX_INT32)
    with request.app.state.db.read_session() as session:
        query = (
            select(Message)
            .where(
                Message.address == phone,
                Message.channel.in_(THREAD_CHANNELS),
                Message.id > after,
                or_(Message.channel == CHANNEL, Message.direction == "out"),
            )
            .order_by(Message.id)
            .limit(200)
        )
        return {
            "messages": [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "kind": m.kind,
                    "channel": m.channel,
                    "body": m.body,
                    "status": m.status,
                    "at": m.created_at.isoformat(),
                }
                for m in session.scalars(query)
                if m.direction == "in" or m.status not in ("pending", "sending")
            ]
        }
