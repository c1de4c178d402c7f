"""The README's examples are true: its transcripts replay on the demo clinic (dates aside, since
the demo is seeded relative to today) and its curl event is applied, not kept as stale."""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.engine import Engine
from bot.inbound import Inbound
from channels.app import create_app
from status import clock as product_clock
from status import demo
from tests.harness import NOW, Clock

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
_DAY = r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? |(?:lun|mar|mié|mie|jue|vie|sáb|sab|dom) )?"
DATES = re.compile(
    _DAY + r"(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2}"
    r"|\d{1,2} (?:ene|feb|mar|abr|may|jun|jul|ago|sep|oct|nov|dic))\b"
)


def transcripts() -> list[tuple[str, list[tuple[str, str]]]]:
    """(phone, [(patient says, assistant answers)]) for each transcript block."""
    found = []
    for match in BLOCK.finditer(README):
        body = match.group(2)
        if not body.startswith("P: "):
            continue
        phone = re.findall(r"\+1555\d{7}", README[: match.start()])[-1]
        turns, speaker = [], None
        for line in body.splitlines():
            if line.startswith(("P: ", "A: ")):
                speaker = line[0]
                turns.append([speaker, line[3:]])
            elif line.startswith("   ") and turns:
                turns[-1][1] += " " + line.strip()
        pairs = [(p[1], a[1]) for p, a in zip(turns[::2], turns[1::2], strict=True)]
        found.append((phone, pairs))
    return found


# A status-page link is new each time: the README writes it <PUBLIC_BASE_URL>/s/<token>.
STATUS_LINK = re.compile(r"(?:https?://\S+?|<PUBLIC_BASE_URL>)/s/(?:[A-Za-z0-9_-]{22}|<token>)")


def same_words(text: str) -> str:
    return STATUS_LINK.sub("<status link>", DATES.sub("<date>", " ".join(text.split())))


def test_readme_has_the_transcripts():
    assert [phone for phone, _ in transcripts()] == ["+15550100001", "+15550100004"]


@pytest.mark.parametrize(("phone", "pairs"), transcripts())
def test_readme_transcript_replays_on_the_demo_clinic(database, settings, phone, pairs):
    clock = Clock(NOW)  # a weekday inside clinic hours
    with product_clock.use(clock):
        with database.session() as session:
            demo.seed(session, now=clock())
        engine = Engine(settings)
        for said, expected in pairs:
            clock.advance(seconds=20)
            with database.session() as session:
                turn = engine.handle(session, Inbound("terminal", phone, said, received_at=clock()))
                answer = "\n".join(reply.body for reply in turn.replies)
            assert same_words(answer) == same_words(expected), said


def readme_curl_event() -> tuple[dict, dict]:
    """The event the README posts (with $NOW as the shell would make it) and the answer it
    documents."""
    block = next(m.group(2) for m in BLOCK.finditer(README) if "curl -s -X POST" in m.group(2))
    command = block[block.index("curl -s -X POST") :].split("\n# ")[0]
    words = shlex.split(command.replace("\\\n", " ").replace('"$NOW"', "NOW_VALUE"))
    body = words[words.index("-d") + 1]
    documented = json.loads(block.split("\n# ", 1)[1].splitlines()[0])
    return body, documented


def test_readme_curl_event_is_applied_to_the_demo(database, settings):
    assert "NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)" in README
    body, documented = readme_curl_event()
    with database.session() as session:
        demo.seed(session, now=product_clock.now() - timedelta(minutes=5))
    now = product_clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")  # what `date -u` prints
    with TestClient(create_app(settings, database, run_workers=False)) as client:
        response = client.post(
            "/events",
            content=body.replace("NOW_VALUE", now),
            headers={"Authorization": f"Bearer {settings.api_key}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.json() == documented
        status = client.get(
            "/api/patients/demo-maria/status",
            headers={"Authorization": f"Bearer {settings.api_key}"},
        ).json()
    assert status["shipments"][0]["status"] == "out_for_delivery"
