"""The staff console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the real app served by uvicorn on 127.0.0.1, on a SQLite file with the demo clinic.

Screenshots of the main pages are written to a temporary folder, or to `docs/screenshots/` when
`SAVE_SCREENSHOTS=1` (that is how the ones in the docs were made).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import handoffs
from bot.conversations import Conversation
from bot.engine import Engine
from bot.handoffs import Handoff, HandoffEntry
from bot.inbound import Inbound
from bot.messages import Message
from channels.app import create_app
from status import demo, patients
from status.clinics import DEFAULT_ID
from status.db import Database, utcnow
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.settings import Settings
from tests.builders import event
from tests.conftest import API_KEY
from tests.fakes.server import BackgroundServer
from tests.staff.conftest import AGENT, AISHA, JAMES, MARIA, NURSE, make_staff

pytestmark = pytest.mark.browser

LUIS, EMILY, FAMILY = "+15550100004", "+15550100005", "+15550100006"
# Our own timestamps as code writes them: none may reach a page's text.
RAW_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T|\b)")
WORDED = re.compile(
    r"^(Today|Yesterday|Tomorrow|(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [A-Z][a-z]{2} \d{1,2}(, \d{4})?)"
    r"( \d{1,2}:\d{2} (AM|PM))?$"
)
SCRIPT = "<script>window.__pwned=1</script>"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Console:
    base_url: str
    db: Database
    engine: Engine
    zone: ZoneInfo  # the clinic's

    def say(self, phone: str, text: str, ago: timedelta = timedelta(0)) -> Handoff | None:
        """The patient (or a stranger) texts the clinic, `ago` before now; the open hand-off
        afterwards (None when there is none)."""
        with self.db.session() as session:
            turn = self.engine.handle(
                session, Inbound("sms", phone, text, received_at=utcnow() - ago)
            )
            people = patients.by_phone(session, DEFAULT_ID, phone)
            patient_id = people[0].id if len(people) == 1 else None
            return handoffs.find_open(session, patient_id, turn.inbound.conversation_id)

    def rows(self, model, *where) -> list:
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
    console = Console(server.base_url, db, Engine(settings), ZoneInfo(settings.clinic_timezone))
    # A queue worth looking at: an emergency nobody answered within its 5 min target (it came
    # 20 min ago), a clinical question, a request for a person.
    console.say(AISHA, "chest pain and my left arm is numb", ago=timedelta(minutes=20))
    console.say(JAMES, "is this rash normal after the cream")
    # Answers to the bot's own questions: a choice on a shared phone, dates of birth, a yes.
    for phone, text in [
        (FAMILY, "is my prescription ready?"), (FAMILY, "2"), (FAMILY, "12/01/2004"),
        (LUIS, "cuando me toca el resurtido"), (LUIS, "30/05/1968"), (LUIS, "si"),
    ]:  # fmt: skip
        console.say(phone, text)
    yield console
    server.stop()
    db.dispose()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def new_page(browser, console: Console, width: int = 1280, height: int = 860):
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


def log_in(page, staff: tuple[str, str, str, str] = NURSE) -> None:
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
    expect(page.locator(".reasons")).to_contain_text("Why: asked for a person")
    expect(page.locator(".reasons")).not_to_contain_text("human")
    expect(page.locator("#timeline")).to_contain_text("hand-off opened: asked for a person")
    items = page.locator("#items")
    expect(items).to_contain_text("Semaglutide 0.5 mg")
    expect(items).to_contain_text("shipped")
    expect(items).to_contain_text("in transit")
    expect(page.locator("#patient")).to_contain_text("+15550100001")
    expect(page.locator("#intents li").first).to_have_text(
        re.compile(
            r"^“can I talk to a person” → asks for a person \(\d+%\) Today \d{1,2}:\d\d [AP]M$"
        )
    )
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
            clinic_id=DEFAULT_ID,
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
    # Answers to the bot's questions carry no intent of their own, yet are no misses.
    answers = ["[date of birth]", "2", "si"]
    stored = console.rows(Message, Message.direction == "in", Message.body.in_(answers))
    assert {m.body for m in stored} == set(answers) and {m.intent for m in stored} == {"unknown"}
    listed = page.locator("#unknown td.body").all_inner_texts()
    assert "blorp flurb zzz" in listed and not set(listed) & set(answers), listed
    expect(page.locator("#by-reason")).to_contain_text("asked for a person")
    expect(page.locator("#by-reason")).to_contain_text("clinical question")
    expect(page.locator("#by-reason")).not_to_contain_text("_")
    expect(page.locator("#kind-prescription tr.stuck")).to_contain_text("awaiting provider")
    expect(page.locator("#stuck tr.stuck")).to_contain_text("Luis Hernández")


# --- what a nurse reads: times, lateness, reasons, what the bot understood, the ops layout ------


def open_details(page) -> str:
    """The page's text as a person reads it, folded sections opened."""
    page.eval_on_selector_all("details", "els => els.forEach(e => e.open = true)")
    return page.inner_text("body")


def local_clock(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def assert_times_in_words(page, where: str) -> None:
    text = open_details(page)
    raw = RAW_TIME.search(text)
    assert raw is None, f"{where}: raw time {text[max(raw.start() - 60, 0) : raw.end() + 30]!r}"
    shown = page.eval_on_selector_all(
        "main time", "els => els.map(e => [e.textContent.trim(), e.getAttribute('datetime')])"
    )
    assert shown, f"{where}: no times shown"
    for words, exact in shown:
        assert exact and datetime.fromisoformat(exact), f"{where}: {words!r} keeps no exact time"
        age = re.fullmatch(r"(just now|(in )?\d+ (s|min|h|d)( \d+ (min|h))?( ago)?)", words)
        assert WORDED.match(words) or age, f"{where}: {words!r}"


def test_every_page_shows_times_in_words_in_the_clinics_zone(page, console):
    handoff = console.say(EMILY, "can someone call me about my visit")
    log_in(page)
    assert_times_in_words(page, "queue")
    page.goto(f"/staff/handoffs/{handoff.id}")
    assert_times_in_words(page, "hand-off")
    opened = page.locator(".owner-line time").first
    day = "Today" if handoff.created_at.astimezone(console.zone).date() == (
        utcnow().astimezone(console.zone).date()
    ) else "Yesterday"  # fmt: skip
    assert opened.inner_text() == f"{day} {local_clock(handoff.created_at, console.zone)}"
    assert opened.get_attribute("datetime") == handoff.created_at.isoformat()
    assert re.fullmatch(
        r"(just now|\d+ s ago|\d+ min ago)", page.locator(".owner-line time").nth(1).inner_text()
    )
    assert "at hand-off" in page.inner_text("details.raw summary")
    page.goto("/staff/patients/demo-emily")
    assert_times_in_words(page, "patient")
    # Emily's visit is 26 hours away: tomorrow in the clinic's zone, or the day after when
    # the clock there is past 10 PM. The item says which, in words.
    expect_visit = page.locator("#items tr", has_text="appointment")
    starts = datetime.fromisoformat(expect_visit.locator("time").first.get_attribute("datetime"))
    local = starts.astimezone(console.zone)
    today = utcnow().astimezone(console.zone).date()
    ahead = (local.date() - today).days
    year = f", {local.year}" if local.year != today.year else ""
    day = "Tomorrow" if ahead == 1 else f"{local:%a}, {local:%b} {local.day}{year}"
    assert ahead in (1, 2)
    assert f", at {day} {local_clock(starts, console.zone)}" in expect_visit.inner_text(), (
        expect_visit.inner_text()
    )
    page.goto("/staff/ops")
    assert_times_in_words(page, "ops")
    page.goto("/staff/audit")
    assert_times_in_words(page, "audit")


def test_an_urgent_handoff_past_its_first_reply_target_reads_late(page, console, shots):
    from playwright.sync_api import expect

    [late] = console.rows(Handoff, Handoff.patient_id.is_not(None), Handoff.priority == "urgent")
    fresh = console.say("+15550100901", "my chest hurts and my left arm is numb")
    assert fresh.priority == "urgent"  # inside its 5 min target
    log_in(page)
    late_row = page.locator(f'tr[data-handoff="{late.id}"]')
    fresh_row = page.locator(f'tr[data-handoff="{fresh.id}"]')
    expect(late_row.locator(".late-tag")).to_have_text("late")
    expect(late_row.locator("td[data-label='First reply']")).to_have_text(
        re.compile(r"^late by 1[5-9] min$")
    )
    expect(fresh_row.locator("td[data-label='First reply']")).to_have_text(
        re.compile(r"^due in [1-5] min|^due in \d+ s")
    )
    expect(fresh_row).not_to_contain_text("late")
    page.goto(f"/staff/handoffs/{late.id}")
    expect(page.locator(".handoff-head .sla-line")).to_have_text(
        re.compile(r"^first reply: late by 1[5-9] min$")
    )
    expect(page.locator(".reasons")).to_contain_text("Why: emergency")
    page.goto(f"/staff/handoffs/{fresh.id}")
    expect(page.locator(".handoff-head .sla-line")).to_have_text(
        re.compile(r"^first reply: due in")
    )
    expect(page.locator(".handoff-head")).not_to_contain_text("late")


def test_operations_tables_are_never_cut_off_on_a_laptop_or_a_phone(browser, console, shots):
    for width, height, shot in [(1366, 768, "ops.png"), (375, 740, "ops-phone.png")]:
        page = new_page(browser, console, width, height)
        log_in(page)
        page.goto("/staff/ops")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        cut = page.eval_on_selector_all(
            "#states .kind, #states table, main .block",
            "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className)",
        )
        assert cut == [], f"{width} px: {cut}"
        stuck = page.locator("#states td[data-label=Stuck]")
        assert stuck.count() >= 7
        for i in range(stuck.count()):
            box = stuck.nth(i).bounding_box()
            assert box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width
        if width == 1366:
            headers = page.locator("#states th", has_text="Stuck")
            assert all(headers.nth(i).is_visible() for i in range(headers.count()))
            tops = {
                round(page.locator(f"#kind-{k}").bounding_box()["y"])
                for k in ("prescription", "shipment")
            }
            assert len(tops) == 1  # side by side: two tables across on a laptop
        page.screenshot(path=shots / shot, full_page=True)
        page.context.close()


def test_staff_of_another_clinic_get_404_and_a_member_of_two_switches_in_one_click(
    browser, console
):
    """Isolation in the browser: Glow's agent cannot open the default clinic's hand-off or
    patient; a platform admin sees both clinics and switches with one click."""
    from channels.staff.auth import add_staff
    from status import clinics

    handoff = console.say(EMILY, "can I speak to a person please")
    assert handoff is not None
    glow_agent = ("gia@glow.example", "Gia Glow", "agent", "glow-password")
    boss = ("boss@platform.example", "Pat Platform", "admin", "platform-password")
    with console.db.session() as session:
        glow = clinics.by_slug(session, "glow") or clinics.add(session, "glow", "Glow Skin")
        add_staff(session, *glow_agent, clinic=glow)
        add_staff(session, *boss, platform_admin=True)
    page = new_page(browser, console)
    try:
        log_in(page, glow_agent)
        response = page.goto(f"/staff/handoffs/{handoff.id}")
        assert response.status == 404
        assert f"There is no hand-off #{handoff.id}." in page.inner_text("main")
        assert page.goto("/staff/patients/demo-emily").status == 404
        page.goto("/staff")
        assert page.locator(f'a[href="/staff/handoffs/{handoff.id}"]').count() == 0
    finally:
        page.context.close()
    page = new_page(browser, console)
    try:
        log_in(page, boss)
        assert page.locator(f'a[href="/staff/handoffs/{handoff.id}"]').count() >= 1
        page.click("button.clinic-choice[value=glow]")
        page.wait_for_url("**/staff")
        assert "Now showing Glow Skin." in page.inner_text("body")
        assert page.locator(f'a[href="/staff/handoffs/{handoff.id}"]').count() == 0
        assert page.goto("/staff/patients/demo-emily").status == 404
    finally:
        page.context.close()
