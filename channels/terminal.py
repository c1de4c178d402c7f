"""`patient-status chat`: talk to the assistant in a terminal as the patient with a phone."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.engine import Engine
from bot.inbound import Inbound
from bot.messages import OutStatus
from status.db import Database, utcnow
from status.patients import normalize_phone
from status.settings import Settings

CHANNEL = "terminal"


def run_chat(settings: Settings, db: Database, phone: str, stdin: TextIO, stdout: TextIO) -> int:
    address = normalize_phone(phone)
    engine = Engine(settings)
    interactive = stdin.isatty()
    if interactive:
        stdout.write(f"Chatting with {settings.clinic_name} as {address}. Ctrl-D to leave.\n")
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        with db.session() as session:
            turn = engine.handle(session, Inbound(CHANNEL, address, text, received_at=utcnow()))
            for reply in turn.replies:
                # The terminal is the delivery: nothing is left for a dispatcher to send.
                reply.status = OutStatus.DELIVERED
                reply.sent_at = reply.delivered_at = utcnow()
                stdout.write(f"{settings.clinic_name}> {reply.body}\n")
            if not turn.replies:
                quiet = "(a person at the clinic has this conversation)" if turn.handoff else ""
                if quiet and interactive:
                    stdout.write(f"{quiet}\n")
        stdout.flush()
    return 0


def main_chat(settings: Settings, db: Database, phone: str) -> int:
    return run_chat(settings, db, phone, sys.stdin, sys.stdout)
