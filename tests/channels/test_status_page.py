"""The status page over HTTP (the app on a real database): the link, the date of birth, the
page, its actions once per tap, and what nobody sees before verification."""

from __future__ import annotations

import logging
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from bot.conversations import Conversation
from bot.handoffs import Handoff
from bot.inbound import Inbound
from bot.inbox import InboxMessage
from bot.messages import Direction, Message
from status import alerts, clock, links, patients
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.links import StatusLink
from status.refills import Refill
from status.timeline import TimelineEntry
from tests.builders import appointment_event
from tests.conftest import on_both_databases
from tests.fakes.server import BackgroundServer
from tests.harness import phi_in
from tests.staff.conftest import API_HEADERS, MARIA, app, log_in, staff_settings  # noqa: F401

# What must not appear before verification: Maria's name, medicine, pharmacy, tracking, DOB.
PHI = ["Maria", "Lopez", "Semaglutide", "Harbor Mail", "1Z999AA", "1985", "03/14", "+15550100001"]


def make_link(site) -> tuple[str, str]:
    """(url, token) from the API, as the clinic's systems would ask."""
    response = site.client.post("/api/patients/demo-maria/status-link", headers=API_HEADERS)
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    return url, url.rsplit("/s/", 1)[1]


def field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def verify(site, token: str, dob: str = "03/14/1985"):
    form = site.client.get(f"/s/{token}")
    return site.client.post(
        f"/s/{token}", data={"date_of_birth": dob, "csrf_token": field(form.text, "csrf_token")},
        follow_redirects=False,
    )  # fmt: skip


def maria_id(site) -> int:
    with site.db.session() as session:
        return patients.by_source_id(session, DEFAULT_ID, "demo-maria").id


@on_both_databases
def test_link_then_date_of_birth_then_the_whole_picture(app, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    url, token = make_link(app)
    assert url.startswith("https://clinic.example/s/") and len(token) == 22
    assert not any(word.lower() in url.lower() for word in [*PHI, "demo-maria"])
    before = app.client.get(f"/s/{token}")
    assert before.status_code == 200
    assert 'name="date_of_birth"' in before.text and f'action="/s/{token}"' in before.text
    assert not phi_in(before.text, PHI)
    headers = before.headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-robots-tag"] == "noindex, nofollow"
    assert headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert '<meta name="robots" content="noindex, nofollow">' in before.text
    assert "http" not in re.sub(r'https://clinic\.example|href="tel:[^"]*"', "", before.text)

    response = verify(app, token)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "ps_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=strict" in cookie and f"Path=/s/{token}" in cookie
    page = app.client.get(f"/s/{token}")
    assert page.status_code == 200
    for fact in ["Semaglutide 0.5 mg", "Harbor Mail Pharmacy", "Shipped", "UPS 1Z999AA10123456784",
                 "https://www.ups.com/track?tracknum=1Z999AA10123456784", "Refills left: 2",
                 "Next refill", "all paid up", "Next renewal", "auto-renew is on",
                 "With the carrier", "On its way to you."]:  # fmt: skip
        assert fact in page.text, fact
    # What the product logs (the test client's own request log is not the product's).
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records
                       if not r.name.startswith("httpx"))  # fmt: skip
    assert "/s/{token}" in logged  # the route is logged as its template
    assert token not in logged and not phi_in(logged, ["Maria", "1985"])


def test_three_wrong_dates_of_birth_lock_the_link_and_tell_staff(app):  # noqa: F811
    _url, token = make_link(app)
    assert "Tries left: 2" in verify(app, token, "01/01/1990").text
    assert "Tries left: 1" in verify(app, token, "1990-02-02").text
    locked = verify(app, token, "March 3 1970")
    assert locked.status_code == 423
    assert "This link is locked" in locked.text and "Maria" not in locked.text
    with app.db.session() as session:
        handoff = session.scalars(select(Handoff)).one()
        assert handoff.reason == "verification_locked"
        assert handoff.summary == "three wrong dates of birth on the status page"
    reopened = app.client.get(f"/s/{token}")  # no form any more, and no way in
    assert reopened.status_code == 423 and 'name="date_of_birth"' not in reopened.text
    # A date it cannot read is not a wrong try.
    _url, other = make_link(app)
    assert "couldn&#39;t read that date" in verify(app, other, "soon").text
    with app.db.session() as session:
        assert links.find(session, other).failed_tries == 0


@on_both_databases
def test_three_tries_are_the_addresses_not_each_links(app):  # noqa: F811
    """Two wrong dates on one link, then a new link: the third wrong date locks, the right
    date on yet another link is refused, and the conversation is locked as in SMS."""
    _url, first = make_link(app)
    assert "Tries left: 2" in verify(app, first, "01/01/1990").text
    assert "Tries left: 1" in verify(app, first, "02/02/1990").text
    _url, second = make_link(app)
    locked = verify(app, second, "03/03/1990")
    assert locked.status_code == 423 and "This link is locked" in locked.text
    _url, third = make_link(app)
    refused = verify(app, third)  # the right date, on a link made after the lock
    assert refused.status_code == 423 and "ps_session" not in refused.headers.get("set-cookie", "")
    with app.db.session() as session:
        [handoff] = session.scalars(select(Handoff)).all()
        assert handoff.reason == "verification_locked"
        conv = session.get(Conversation, handoff.conversation_id)
        assert conv.locked_at is not None and conv.failed_verifications == 3
        # ...and asking the bot for a new link gets none: staff hold the conversation now
        engine = app.client.app.state.runtime.engine
        asked = Inbound("sms", MARIA, "send me everything", received_at=utcnow())
        replies = [r.body for r in engine.handle(session, asked).replies]
        assert replies and not any("/s/" in body for body in replies)


@on_both_databases
def test_dates_sent_all_at_once_get_three_tries_between_them(app):  # noqa: F811
    """Twelve wrong dates posted at the same moment to a real server: three are compared (two
    answered "tries left", the third locks), the other nine refused, and then the right date
    does not get in."""
    _url, token = make_link(app)
    server = BackgroundServer(app.client.app, name="status-page").start()
    try:
        with httpx.Client(base_url=server.base_url) as client:
            form = client.get(f"/s/{token}")
            csrf = field(form.text, "csrf_token")
            # the device cookie is Secure (the public URL is https): sent by hand over http
            device = {"Cookie": f"ps_device={form.cookies['ps_device']}"}

            def post(dob: str) -> httpx.Response:
                data = {"date_of_birth": dob, "csrf_token": csrf}
                return client.post(f"/s/{token}", data=data, headers=device)

            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(post, [f"01/{day:02d}/1990" for day in range(1, 13)]))
            right = post("03/14/1985")
    finally:
        server.stop()
    assert Counter(a.status_code for a in answers) == {422: 2, 423: 10}
    assert right.status_code == 423 and "ps_session" not in right.headers.get("set-cookie", "")
    with app.db.session() as session:
        link = links.find(session, token)
        assert link.failed_tries == 3 and link.locked_at is not None
        assert session.scalars(select(Handoff)).one().reason == "verification_locked"


@on_both_databases
def test_a_link_made_or_revoked_by_the_api_is_so_when_the_answer_arrives(app):  # noqa: F811
    """The API commits before it answers: a new link opens at once, and a revoked one is shut
    at once (the transaction used to end after the answer was sent)."""
    server = BackgroundServer(app.client.app, name="status-api").start()
    opened, shut = Counter(), Counter()
    try:
        # the clinic's system and the patient's phone: two clients, two connections
        with (
            httpx.Client(base_url=server.base_url, headers=API_HEADERS) as clinic,
            httpx.Client(base_url=server.base_url) as phone,
        ):
            for _ in range(25):
                made = clinic.post("/api/patients/demo-maria/status-link")
                assert made.status_code == 201, made.text
                path = "/s/" + made.json()["url"].rsplit("/s/", 1)[1]
                opened[phone.get(path).status_code] += 1
                revoked = clinic.delete("/api/patients/demo-maria/status-links")
                assert revoked.json() == {"revoked": 1}
                shut[phone.get(path).status_code] += 1
    finally:
        server.stop()
    assert (opened, shut) == ({200: 25}, {410: 25})


@pytest.mark.clock
def test_expired_revoked_and_tampered_links_get_a_plain_page(app):  # noqa: F811
    _url, token = make_link(app)
    start = utcnow()
    with clock.use(lambda: start + timedelta(hours=72, minutes=1)):
        expired = app.client.get(f"/s/{token}")
    assert expired.status_code == 410 and "This link has expired" in expired.text
    _url, token2 = make_link(app)
    with app.db.session() as session:
        links.revoke(links.find(session, token2), utcnow())
    revoked = app.client.get(f"/s/{token2}")
    assert revoked.status_code == 410 and "turned this link off" in revoked.text
    tampered = app.client.get(f"/s/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}")
    assert tampered.status_code == 404 and "link doesn&#39;t work" in tampered.text
    for response in (expired, revoked, tampered):
        assert not phi_in(response.text, PHI)
        assert 'name="date_of_birth"' not in response.text
        assert response.headers["cache-control"] == "no-store"


@on_both_databases
def test_a_double_tap_requests_one_refill_and_it_is_on_the_timeline(app):  # noqa: F811
    _url, token = make_link(app)
    verify(app, token)
    page = app.client.get(f"/s/{token}").text
    form = page.split('id="refill-form"')[1]
    data = {"csrf_token": field(form, "csrf_token"), "nonce": field(form, "nonce")}
    first = app.client.post(f"/s/{token}/refill", data=data, follow_redirects=False)
    again = app.client.post(f"/s/{token}/refill", data=data, follow_redirects=False)
    assert first.headers["location"] == f"/s/{token}?done=refill"
    assert again.headers["location"] == f"/s/{token}?done=again"
    assert "Refill requested" in app.client.get(first.headers["location"]).text
    refills = app.rows(Refill, Refill.origin == "patient")
    assert len(refills) == 1 and refills[0].status == "requested"
    entries = app.rows(TimelineEntry, TimelineEntry.patient_id == maria_id(app))
    summaries = [e.summary for e in entries]
    assert "patient asked for a refill by the status page" in summaries


def test_posts_without_the_csrf_token_or_session_change_nothing(app):  # noqa: F811
    _url, token = make_link(app)
    refused = app.client.post(f"/s/{token}/refill", data={"nonce": "n" * 16},
                              follow_redirects=False)  # fmt: skip
    assert refused.status_code == 303 and refused.headers["location"] == f"/s/{token}"
    verify(app, token)
    forged = app.client.post(f"/s/{token}/refill", data={"nonce": "n" * 16, "csrf_token": "x"})
    assert forged.status_code == 403 and "reload the page" in forged.text
    assert app.rows(Refill, Refill.origin == "patient") == []
    dob = app.client.post(f"/s/{token}", data={"date_of_birth": "03/14/1985"})
    assert dob.status_code == 403


@on_both_databases
def test_confirm_an_appointment_and_message_the_clinic_into_the_same_thread(app):  # noqa: F811
    app.events(appointment_event(patient_id="demo-maria", appointment_id="appt-m",
                                 starts_at=(utcnow() + timedelta(days=3)).isoformat(),
                                 occurred_at=utcnow().isoformat(),
                                 join_url="https://visit.example/j/maria"))  # fmt: skip
    _url, token = make_link(app)
    verify(app, token)
    page = app.client.get(f"/s/{token}").text
    assert "https://visit.example/j/maria" in page and "Dr. Chen" in page
    form = page.split('id="appt-1"')[1]
    data = {"csrf_token": field(form, "csrf_token"), "nonce": field(form, "nonce"),
            "appointment_id": "appt-m", "choice": "confirm"}  # fmt: skip
    assert app.client.post(f"/s/{token}/appointment", data=data).status_code == 200
    app.client.post(f"/s/{token}/appointment", data=data)
    after = app.client.get(f"/s/{token}").text
    assert "Confirmed" in after and 'value="confirm"' not in after
    confirmed = app.rows(TimelineEntry, TimelineEntry.kind == "patient_action",
                         TimelineEntry.entity_source_id == "appt-m")  # fmt: skip
    assert len(confirmed) == 1

    form = after.split('id="message-form"')[1]
    data = {"csrf_token": field(form, "csrf_token"), "nonce": field(form, "nonce"),
            "text": "Can I take it with food?"}  # fmt: skip
    sent = app.client.post(f"/s/{token}/message", data=data, follow_redirects=False)
    app.client.post(f"/s/{token}/message", data=data)
    assert sent.headers["location"] == f"/s/{token}?done=message"
    assert app.count(InboxMessage) == 1
    app.turns()
    [stored] = app.rows(Message, Message.direction == Direction.IN)
    assert (stored.body, stored.channel, stored.address) == ("Can I take it with food?", "sms",
                                                            MARIA)  # fmt: skip
    [handoff] = app.rows(Handoff)
    assert handoff.reason == "page_message" and stored.handoff_id == handoff.id
    replies = app.rows(Message, Message.direction == Direction.OUT, Message.kind == "reply")
    assert replies == []  # the page said "sent"; a person answers in the thread


def test_alert_choices_on_the_page(app):  # noqa: F811
    _url, token = make_link(app)
    verify(app, token)
    form = app.client.get(f"/s/{token}").text.split('id="alerts-form"')[1]
    data = {"csrf_token": field(form, "csrf_token"), "nonce": field(form, "nonce"),
            "topics": ["shipping", "appointments"], "only_urgent": "1"}  # fmt: skip
    app.client.post(f"/s/{token}/alerts", data=data)
    with app.db.session() as session:
        topics, only_urgent = alerts.muted_topics(session, DEFAULT_ID, maria_id(app))
    assert {t.value for t in topics} == {"billing", "refills", "delays"} and only_urgent


def test_staff_make_a_link_in_the_console(app):  # noqa: F811
    csrf = log_in(app.client)
    maria = maria_id(app)
    made = app.client.post("/staff/patients/demo-maria/status-link", data={"csrf_token": csrf})
    assert made.status_code == 201
    url = re.search(r"<code>(https://[^<]+/s/[^<]+)</code>", made.text).group(1)
    token = url.rsplit("/s/", 1)[1]
    with app.db.session() as session:
        link = links.find(session, token)
        assert link.created_by.startswith("staff:") and link.patient_id == maria
        assert session.scalars(select(StatusLink.token_hash)).all() == [links.token_hash(token)]


def test_unknown_patient_gets_404_for_a_link(app):  # noqa: F811
    response = app.client.post("/api/patients/nobody/status-link", headers=API_HEADERS)
    assert response.status_code == 404 and "nobody" in response.json()["detail"]
    assert app.client.post("/api/patients/demo-maria/status-link").status_code == 401
