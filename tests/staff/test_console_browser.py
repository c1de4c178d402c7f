"""The staff console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the real app served by uvicorn on 127.0.0.1, on a SQLite file with the demo clinic.

Screenshots of the main pages are written to a temporary folder, or to `docs/screenshots/` when
`SAVE_SCREENSHOTS=1` (that is how the ones in the docs were made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bot import handoffs
from bot.conversations import Conversation
from bot.engine import Engine
from bot.handoffs import Handoff, HandoffEntry
from bot.inbound import Inbound
from bot.messages import Message
from channels.app import create_app
from status import demo, patients
from status.db import Database, utcnow
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.settings import Settings
from tests.builders import event
from tests.conftest import API_KEY, IN_CI
from tests.fakes.server import BackgroundServer
from tests.staff.conftest import AGENT, AISHA, JAMES, MARIA, NURSE, make_staff

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LUIS, EMILY = "+15550100004", "+15550100005"
SCRIPT = "<script>window.__pwned=1</script>"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Console:
    base_url: str
    db: Database
    engine: Engine

    def say(self, phone: str, text: str) -> Handoff | None:
        """The patient texts the clinic; the open hand-off afterwards (None when there is none)."""
        with self.db.session() as session:
            self.engine.handle(session, Inbound("sms", phone, text, received_at=utcnow()))
            [patient] = patients.by_phone(session, phone)
            return handoffs.open_for_patient(session, patient.id)

    def rows(self, model, *where) -> list:  # noqa: ANN001
        from sqlalchemy import select

        with self.db.session() as session:
            return list(session.scalars(select(model).where(*where).order_by(model.id)))


@pytest.fixture(scope="module")
def console(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    path = tmp_path_factory.mktemp("console") / "console.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    settings = Settings(
        _env_file=None, database_url=db.url, api_key=API_KEY, secret_key="browser-test-secret",
        quiet_hours="off", notify_delay_seconds=0,
    )  # fmt: skip
    with db.session() as session:
        demo.seed(session)
        make_staff(session, NURSE)
        make_staff(session, AGENT)
    server = BackgroundServer(create_app(settings, db, run_workers=False), name="console")
    server.start()
    console = Console(server.base_url, db, Engine(settings))
    # A queue worth looking at: an emergency, a clinical question, a request for a person.
    console.say(AISHA, "chest pain and my left arm is numb")
    console.say(JAMES, "is this rash normal after the cream")
    yield console
    server.stop()
    db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's chromium to run the browser tests"
        if IN_CI:
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def new_page(browser, console: Console, width: int = 1280, height: int = 860):  # noqa: ANN001, ANN201
    context = browser.new_context(
        base_url=console.base_url, viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def page(browser, console: Console) -> Iterator:
    page = new_page(browser, console)
    yield page
    page.context.close()


@pytest.fixture
def phone(browser, console: Console) -> Iterator:
    page = new_page(browser, console, 375, 740)
    yield page
    page.context.close()


def log_in(page, staff: tuple[str, str, str, str] = NURSE) -> None:  # noqa: ANN001
    page.goto("/staff/login")
    page.fill("#email", staff[0])
    page.fill("#password", staff[3])
    page.click("button[type=submit]")
    page.wait_for_url("**/staff")


def test_log_in_and_see_the_queue_most_urgent_first(page, console, shots):
    from playwright.sync_api import expect

    page.goto("/staff")
    expect(page).to_have_url(f"{console.base_url}/staff/login?next=%2Fstaff")
    page.screenshot(path=shots / "login.png")
    page.fill("#email", NURSE[0])
    page.fill("#password", "wrong-password")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("Wrong email or password")
    log_in(page)
    rows = page.locator("#queue-rows tr")
    expect(rows.first).to_contain_text("Aisha Khan")
    expect(rows.first).to_contain_text("urgent")
    expect(rows.nth(1)).to_contain_text("James Carter")
    expect(page.locator("#queue-rows")).to_contain_text("due in")
    page.screenshot(path=shots / "queue.png", full_page=True)


def test_handoff_context_reply_note_and_resolve(page, console, shots):
    from playwright.sync_api import expect

    handoff = console.say(MARIA, "can I talk to a person")
    log_in(page)
    page.click(f'tr[data-handoff="{handoff.id}"] a.who')
    expect(page.locator("h1")).to_contain_text("Maria Lopez")
    expect(page.locator(".reasons")).to_contain_text("human")
    items = page.locator("#items")
    expect(items).to_contain_text("Semaglutide 0.5 mg")
    expect(items).to_contain_text("shipped")
    expect(items).to_contain_text("in transit")
    expect(page.locator("#patient")).to_contain_text("+15550100001")
    expect(page.locator("#intents")).to_contain_text("human")
    expect(page.locator("#thread")).to_contain_text("can I talk to a person")
    page.screenshot(path=shots / "handoff.png", full_page=True)

    page.select_option("#canned", label="Looking into it")
    expect(page.locator("#reply-text")).to_have_value(
        "Hi Maria, this is Demo Nurse at Harbor Health. I'm looking into this now and will get "
        "back to you shortly."
    )
    text = "Hi Maria, your order is with UPS and arrives tomorrow."
    page.fill("#reply-text", text)
    page.click("#send-reply")
    expect(page.locator("#thread .msg-staff")).to_contain_text(text)
    [sent] = console.rows(Message, Message.handoff_id == handoff.id, Message.kind == "staff")
    assert (sent.body, sent.channel, sent.address, sent.status) == (text, "sms", MARIA, "pending")

    page.fill("#note-text", "Checked UPS tracking myself.")
    page.click("#add-note")
    expect(page.locator("#thread .msg-note")).to_contain_text("Checked UPS tracking myself.")

    page.fill("#resolve-note", "Answered by text")
    page.click("#resolve")
    expect(page.locator(".resolved")).to_contain_text("Answered by text")
    expect(page.locator("#reply-form")).to_have_count(0)
    [row] = console.rows(Handoff, Handoff.id == handoff.id)
    assert row.status == "resolved" and row.first_response_at is not None
    assert console.say(MARIA, "where is my prescription") is None  # the bot has it again
    [answer] = console.rows(Message, Message.address == MARIA, Message.kind == "reply")[-1:]
    assert "date of birth" in answer.body


def test_a_new_patient_message_shows_without_a_reload(page, console):
    from playwright.sync_api import expect

    handoff = console.say(EMILY, "I want to talk to a person")
    log_in(page)
    page.goto(f"/staff/handoffs/{handoff.id}")
    expect(page.locator("#thread")).to_contain_text("I want to talk to a person")
    page.evaluate("window.__notReloaded = true")
    console.say(EMILY, "the intake form will not load on my phone")
    expect(page.locator("#thread")).to_contain_text(
        "the intake form will not load on my phone", timeout=10_000
    )
    assert page.evaluate("window.__notReloaded") is True


def test_patient_markup_is_shown_as_text_and_never_runs(page, console):
    from playwright.sync_api import expect

    handoff = console.say(LUIS, "quiero hablar con una persona <b>ya</b>")
    console.say(LUIS, f"{SCRIPT} hola?")
    log_in(page)
    expect(page.locator("#queue-rows")).to_contain_text("persona <b>ya</b>")  # the summary
    page.goto(f"/staff/handoffs/{handoff.id}")
    expect(page.locator("#thread")).to_contain_text(f"{SCRIPT} hola?")
    expect(page.locator("blockquote.summary")).to_contain_text("<b>ya</b>")
    # And through the live refresh, which swaps the thread's HTML in place.
    console.say(LUIS, '<img src="x" onerror="window.__pwned=1">')
    expect(page.locator("#thread")).to_contain_text('<img src="x" onerror="window.__pwned=1">')
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#thread script, #thread img, .summary b").count() == 0


def test_posts_without_or_with_a_wrong_csrf_token_are_refused(page, console):
    from playwright.sync_api import expect

    [handoff] = console.rows(Handoff, Handoff.patient_id.is_not(None), Handoff.priority == "urgent")
    log_in(page)
    page.goto(f"/staff/handoffs/{handoff.id}")
    page.eval_on_selector("#note-form input[name=csrf_token]", "el => el.value = 'forged'")
    page.fill("#note-text", "forged note")
    with page.expect_navigation() as refused:
        page.click("#add-note")
    assert refused.value.status == 403
    expect(page.locator("#refusal")).to_contain_text("does not match this session")

    page.goto(f"/staff/handoffs/{handoff.id}")
    page.eval_on_selector("#note-form input[name=csrf_token]", "el => el.remove()")
    page.fill("#note-text", "note without a token")
    with page.expect_navigation() as refused:
        page.click("#add-note")
    assert refused.value.status == 403
    expect(page.locator("#refusal")).to_contain_text("is missing")

    direct = page.request.post(f"/staff/handoffs/{handoff.id}/resolve", form={"note": "x"})
    assert direct.status == 403
    assert console.rows(HandoffEntry, HandoffEntry.handoff_id == handoff.id,
                        HandoffEntry.kind == "note") == []  # fmt: skip
    assert console.rows(Handoff, Handoff.id == handoff.id)[0].status == "open"


def test_phone_sized_screen_keeps_reply_and_resolve_usable(phone, console, shots):
    from playwright.sync_api import expect

    [handoff] = console.rows(Handoff, Handoff.queue == "clinical", Handoff.priority == "high")
    log_in(phone, AGENT)
    phone.screenshot(path=shots / "queue-phone.png", full_page=True)
    phone.goto(f"/staff/handoffs/{handoff.id}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    for selector in ["#reply-text", "#send-reply", "#resolve"]:
        control = phone.locator(selector)
        control.scroll_into_view_if_needed()
        expect(control).to_be_visible()
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
        assert box["height"] >= 30, selector  # big enough to tap
    phone.screenshot(path=shots / "handoff-phone.png", full_page=True)
    phone.fill("#reply-text", "A nurse will call you within the hour.")
    phone.click("#send-reply")
    expect(phone.locator("#thread .msg-staff")).to_contain_text("A nurse will call you")
    phone.click("#resolve")
    expect(phone.locator(".resolved")).to_be_visible()


def test_operations_view_renders_every_section(page, console, shots):
    from playwright.sync_api import expect

    with console.db.session() as session:
        conv = session.query(Conversation).filter_by(address=JAMES).one()
        session.add(Message(
            conversation_id=conv.id, direction="out", kind="reply", channel="sms", address=JAMES,
            body="Your prescription update", status="failed", error_code="21610",
            error_message="Attempt to send to unsubscribed recipient",
        ))  # fmt: skip
        # Waiting on the provider for 40 h: past its 24 h, so stuck.
        since = (utcnow() - timedelta(hours=40)).isoformat()
        apply_events(session, parse_events([event(
            "prescription.updated", since, prescription_id="rx-luis-2", patient_id="demo-luis",
            medication="Atorvastatin 20 mg", status="awaiting_provider",
        )]))  # fmt: skip
    console.say(JAMES, "blorp flurb zzz")
    log_in(page)
    page.click("nav >> text=Operations")
    for heading in [
        "The assistant", "Hand-offs by reason", "Where every item stands", "Prescriptions",
        "Shipments", "Payments", "Subscriptions", "Appointments", "Patient tasks", "Churn",
        "Involuntary: failed payments", "Voluntary: cancellations",
        "Messages that did not reach the patient", "Messages the assistant did not understand",
    ]:  # fmt: skip
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(page.locator("#failed")).to_contain_text("21610")
    expect(page.locator("#unknown")).to_contain_text("blorp flurb zzz")
    expect(page.locator("#kind-prescription tr.stuck")).to_contain_text("awaiting provider")
    expect(page.locator("#stuck tr.stuck")).to_contain_text("Luis Hernández")
    page.screenshot(path=shots / "ops.png", full_page=True)
