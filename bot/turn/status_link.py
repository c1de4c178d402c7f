"""The status-page link in the conversation: when the patient asks for everything or their
account, and as a "Details:" line where an SMS answer leaves details out (at most once a day,
so the thread is not full of links)."""

from __future__ import annotations

from datetime import timedelta

from bot.turn.context import TurnContext
from bot.understanding.details import asks_everything
from status import links
from status.patients import Patient

OFFER_EVERY = timedelta(hours=24)


def make(t: TurnContext, patient: Patient, created_by: str = "bot") -> str | None:
    """A new link for the patient (or for the caregiver writing); None without a public URL."""
    base = t.settings.public_base_url
    if not base:
        return None
    carer = t.caregiver
    issued = links.issue(
        t.session, patient, hours=t.settings.status_link_hours, now=t.now,
        created_by=created_by, caregiver_id=carer.id if carer else None, flush=False,
    )  # fmt: skip
    if t.opening is not None:  # what the turn read first knows of it
        t.opening.linked_since[(patient.id, carer.id if carer else None)] = True
    return links.url(base, issued.token)


def asked(t: TurnContext, patient: Patient) -> bool:
    """Step 7b: "everything", "my account", "details": the link, which asks for the DOB itself."""
    if t.inbound.origin == "page" or not asks_everything(t.text):
        return False
    if t.conv.locked_at is not None:  # no new link past a lock: the answer step says so
        return False
    url = make(t, patient)
    if url is None:
        return False
    t.conv.clear_expectation()
    t.say("status_link", url=url, hours=int(t.settings.status_link_hours))
    return True


def offer_details(t: TurnContext, patient: Patient) -> None:
    """After an SMS answer that left details out: "Details: https://…/s/…", once a day."""
    if t.inbound.channel == "telegram" or t.inbound.origin == "page":
        return
    if t.linked_since(patient, t.now - OFFER_EVERY):
        return
    url = make(t, patient)
    if url is not None:
        t.say("details_link", url=url)
