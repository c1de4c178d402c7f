"""Canned replies: a starting point staff pick from a list and edit before sending.

No medication names and no amounts: the staff member adds the specifics the patient needs.
"""

from __future__ import annotations

CANNED_REPLIES: list[tuple[str, str]] = [
    ("Looking into it", "Hi {first_name}, this is {staff} at {clinic}. I'm looking into this now "
     "and will get back to you shortly."),
    ("With the pharmacy", "Your prescription is with the pharmacy. They usually process it within "
     "1-2 business days, and we'll text you as soon as it ships."),
    ("Shipping update", "Your order has shipped. You can follow it with the tracking link we sent "
     "you; reply here if it hasn't arrived by the estimated date."),
    ("Payment link", "To update your card securely, please use the link we sent you. Please don't "
     "text card numbers."),
    ("Provider reviewing", "Your provider is reviewing your request. We'll let you know as soon as "
     "there's a decision."),
    ("Call us", "It's easier to sort this out by phone. Please call us at {support_phone} during "
     "clinic hours."),
    ("All set", "You're all set. If anything else comes up, just reply here. Take care!"),
]  # fmt: skip


def canned_replies(*, first_name: str | None, staff: str, clinic: str, phone: str) -> list[dict]:
    first = first_name or "there"
    return [
        {
            "label": label,
            "text": text.format(first_name=first, staff=staff, clinic=clinic, support_phone=phone),
        }
        for label, text in CANNED_REPLIES
    ]
