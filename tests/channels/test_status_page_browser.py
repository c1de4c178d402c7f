"""The status page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against the real app served by uvicorn on 127.0.0.1:
a link from an SMS, the date of birth, the page at phone and desktop width, its actions, a
message that staff then read in the console (the test runs the turn runner), and axe-core's
accessibility check in the page (axe.min.js from the axe-playwright-python dev dependency).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot import handoffs
from bot.engine import Engine
from bot.handoffs import Handoff
from bot.inbound import Inbound
from channels.app import create_app
from status import demo, links, patients
from status.clinics import DEFAULT_ID
from status.db import Database, utcnow
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.refills import Refill
from status.settings import Settings
from tests.builders import appointment_event
from tests.conftest import API_KEY
from tests.fakes.server import BackgroundServer
from tests.harness import phi_in
from tests.staff.conftest import MARIA, NURSE, make_staff

pytestmark = pytest.mark.browser

PHI = ["Maria", "Lopez", "Semaglutide", "Harbor Mail", "1Z999AA", "1985", "03/14"]
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR", "/tmp"))
LINK = re.compile(r"https?://\S+/s/[A-Za-z0-9_-]{22}")


@dataclass
class Site:
    base_url: str
    db: Database
    engine: Engine
    runtime: object  # channels.runtime.Runtime of the served app

    def run_turns(self) -> None:
        """What the worker does when woken: answer every stored message (here, in the test)."""
        # a thread of its own: Playwright's sync API keeps an event loop in this one
        worker = threading.Thread(target=asyncio.run, args=(self.runtime.turns.drain(),))
        worker.start()
        worker.join(30)

    def sms(self, phone: str, text: str) -> str:
        """The patient texts the clinic; the bot's reply."""
        with self.db.session() as session:
            turn = self.engine.handle(session, Inbound("sms", phone, text, received_at=utcnow()))
            return "\n".join(reply.body for reply in turn.replies)

    def link_by_sms(self, phone: str = MARIA) -> str:
        match = LINK.search(self.sms(phone, "can you send me everything"))
        assert match, "the bot offered no link"
        return match.group(0)

    def link_by_api(self) -> str:
        """A link as the clinic's systems make one (POST /api/patients/{id}/status-link)."""
        response = httpx.post(f"{self.base_url}/api/patients/demo-maria/status-link",
                              headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        assert response.status_code == 201, response.text
        return response.json()["url"]

    def rows(self, model, *where) -> list:
        with self.db.session() as session:
            return list(session.scalars(select(model).where(*where).order_by(model.id)))


@pytest.fixture(scope="module")
def site(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    path = tmp_path_factory.mktemp("status-page") / "site.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    settings = Settings(
        _env_file=None, database_url=db.url, api_key=API_KEY, secret_key="browser-test-secret",
        quiet_hours="off", notify_delay_seconds=0, sms_keyword_replies="app",
    )  # fmt: skip
    with db.session() as session:
        demo.seed(session)
        apply_events(session, parse_events([appointment_event(
            patient_id="demo-maria", appointment_id="appt-maria",
            starts_at=(utcnow() + timedelta(days=3)).isoformat(),
            occurred_at=(utcnow() - timedelta(days=1)).isoformat(),
            join_url="https://visit.example/j/maria",
        )]))  # fmt: skip
        make_staff(session, NURSE)
    app = create_app(settings, db, run_workers=False)
    server = BackgroundServer(app, name="status-page")
    server.start()
    settings.public_base_url = server.base_url  # the links the bot texts point here
    yield Site(server.base_url, db, Engine(settings), app.state.runtime)
    server.stop()
    db.dispose()


def new_page(browser, site: Site, width: int, height: int):
    context = browser.new_context(
        base_url=site.base_url, viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


@pytest.fixture(params=[(375, 740), (1280, 860)], ids=["phone", "desktop"])
def page(request, browser, site: Site) -> Iterator:
    page = new_page(browser, site, *request.param)
    yield page
    page.context.close()


def serious_violations(page) -> list[str]:
    """axe-core run in the page: the serious and critical violations, by rule and target."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.response["testEngine"]["name"] == "axe-core"  # it ran, in this page
    assert results.response["url"] == page.url
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def verify(page, dob: str = "03/14/1985") -> None:
    page.fill("#date_of_birth", dob)
    page.click("button[type=submit]")


def test_from_the_sms_link_to_the_page_and_its_actions(page, site: Site):
    from playwright.sync_api import expect

    url = site.link_by_sms()
    response = page.goto(url)
    assert response.headers["cache-control"] == "no-store"
    expect(page.locator("h1")).to_have_text("Confirm it's you")
    source = page.content()
    assert not phi_in(source, PHI)  # nothing of hers before the DOB
    assert serious_violations(page) == []
    verify(page)
    expect(page.locator("#prescriptions")).to_contain_text("Semaglutide 0.5 mg")
    expect(page.locator("#prescriptions")).to_contain_text("Harbor Mail Pharmacy")
    expect(page.locator("#shipments")).to_contain_text("UPS 1Z999AA10123456784")
    expect(page.locator("#billing")).to_contain_text("You're all paid up.")
    expect(page.locator("#appointments")).to_contain_text("Dr. Chen")
    expect(page.locator("#now")).to_contain_text("With the carrier")
    assert serious_violations(page) == []

    if page.locator("#refill-form").count():  # the first width asks; the second finds it asked
        before = len(site.rows(Refill, Refill.origin == "patient"))
        form = {
            name: page.locator(f"#refill-form input[name={name}]").get_attribute("value")
            for name in ("csrf_token", "nonce")
        }
        page.click("#request-refill")
        expect(page.locator("#done")).to_have_text(
            "Refill requested. Your provider will review it."
        )
        assert len(site.rows(Refill, Refill.origin == "patient")) == before + 1
        # The same form sent again (a double tap that got through): done once, said so.
        again = page.context.request.post(page.url.split("?")[0] + "/refill", form=form)
        assert again.url.endswith("?done=again") and "That was already done." in again.text()
        assert len(site.rows(Refill, Refill.origin == "patient")) == before + 1

    expect(page.locator("#request-refill")).to_have_count(0)  # a refill is in progress now
    expect(page.locator("#prescriptions .refill")).to_contain_text("Refill: Requested")

    confirm = page.locator("#appointments button.confirm")
    if confirm.count():  # the first width confirms; the second finds it confirmed
        confirm.click()
        expect(page.locator("#done")).to_have_text("Your appointment is confirmed.")
    expect(page.locator("#appointments")).to_contain_text("Confirmed")
    width = page.viewport_size["width"]
    page.screenshot(path=str(SHOTS / f"status-page-{width}.png"), full_page=True)


def console(browser, site: Site):
    """The nurse, logged in to the console on a desktop."""
    desk = new_page(browser, site, 1280, 860)
    desk.goto("/staff/login")
    desk.fill("#email", NURSE[0])
    desk.fill("#password", NURSE[3])
    desk.click("button[type=submit]")
    desk.wait_for_url("**/staff")
    return desk


def test_a_message_from_the_page_reaches_staff_in_the_console(browser, site: Site):
    from playwright.sync_api import expect

    phone = new_page(browser, site, 375, 740)
    phone.goto(site.link_by_sms())
    verify(phone)
    phone.fill("#message-text", "Can I take it with food? (from the page)")
    phone.click("#send-message")
    expect(phone.locator("#done")).to_contain_text("Sent.")
    phone.context.close()
    site.run_turns()

    desk = console(browser, site)
    row = desk.locator("#queue-rows tr", has_text="Maria Lopez")
    expect(row).to_contain_text("wrote to the clinic on the status page", timeout=15_000)
    row.locator("a.who").click()
    expect(desk.locator("#thread")).to_contain_text("Can I take it with food? (from the page)")
    expect(desk.locator("#writer")).to_contain_text("the patient")
    desk.context.close()


def test_staff_revoke_a_link_in_the_console_and_the_page_no_longer_opens(browser, site: Site):
    from playwright.sync_api import expect

    url = site.link_by_api()
    with site.db.session() as session:
        link_id = links.find(session, url.rsplit("/s/", 1)[1]).id
    phone = new_page(browser, site, 375, 740)
    phone.goto(url)
    verify(phone)
    expect(phone.locator("h1")).not_to_have_text("This link was turned off")

    desk = console(browser, site)
    desk.goto("/staff/patients/demo-maria")
    desk.get_by_role("button", name=f"Revoke link #{link_id}").click()
    expect(desk.locator("body")).to_contain_text(f"Status link #{link_id} revoked")
    expect(desk.get_by_role("button", name=f"Revoke link #{link_id}")).to_have_count(0)
    desk.context.close()

    phone.reload()
    expect(phone.locator("h1")).to_have_text("This link was turned off")
    phone.context.close()


def test_expired_revoked_and_tampered_links_show_what_to_do(page, site: Site):
    from playwright.sync_api import expect

    url = site.link_by_api()
    token = url.rsplit("/s/", 1)[1]
    page.goto(url[:-2] + ("xx" if not url.endswith("xx") else "yy"))
    expect(page.locator("h1")).to_have_text("This link doesn't work")
    with site.db.session() as session:
        links.revoke(links.find(session, token), utcnow())
    page.goto(url)
    expect(page.locator("h1")).to_have_text("This link was turned off")
    with site.db.session() as session:
        [maria] = patients.by_phone(session, DEFAULT_ID, MARIA)
        issued = links.issue(session, maria, hours=1, now=utcnow() - timedelta(hours=2),
                             created_by="test")  # fmt: skip
    page.goto(f"/s/{issued.token}")
    expect(page.locator("h1")).to_have_text("This link has expired")
    assert 'Text us "details"' in page.inner_text("main")
    assert not phi_in(page.content(), PHI)
    assert serious_violations(page) == []


def test_three_wrong_dates_of_birth_lock_the_link(page, site: Site):
    from playwright.sync_api import expect

    page.goto(site.link_by_api())
    verify(page, "01/01/1990")
    expect(page.locator("[role=alert]")).to_contain_text("Tries left: 2")
    assert serious_violations(page) == []
    verify(page, "02/02/1990")
    expect(page.locator("[role=alert]")).to_contain_text("Tries left: 1")
    verify(page, "03/03/1990")
    expect(page.locator("h1")).to_have_text("This link is locked")
    # staff are told: on Maria's open hand-off (the page message opened one), or a new one
    locked = [h for h in site.rows(Handoff) if "verification_locked" in h.reasons]
    [handoff] = [h for h in locked if h.status == "open"]
    assert "three wrong dates of birth on the status page" in handoff.summary
    # the tries were the phone's, so its conversation is locked too, until staff have checked
    # who it is and resolve the hand-off (the next test starts from there)
    with site.db.session() as session:
        handoff = session.get(Handoff, handoff.id)
        handoffs.resolve_and_return(
            session, handoff, staff_id=None, note="called her", now=utcnow()
        )
