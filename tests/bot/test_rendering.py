"""Message rendering rules: SMS short and GSM-7 where possible, no names of medicines on SMS."""

from __future__ import annotations

import pytest

from bot.render import environment
from bot.sms_text import fit_sms, sms_segments
from tests.harness import Patient

QUESTIONS = [
    "where is my prescription", "track my package", "when is my refill", "what do i owe",
    "update my card", "when is my appointment", "what do i need to do", "is nausea normal",
    "cancel my subscription", "reschedule my appointment", "hi", "help", "thanks",
]  # fmt: skip
DEMO = [
    ("+15550100001", "03/14/1985"), ("+15550100002", "11/02/1979"),
    ("+15550100003", "07/23/1991"), ("+15550100004", "30/05/1968"),
    ("+15550100005", "01/09/1995"),
]  # fmt: skip


@pytest.mark.parametrize(("phone", "dob"), DEMO)
def test_every_answer_fits_in_two_sms_segments(clinic, engine, phone, dob):
    from bot.handoffs import Handoff, resolve_and_return
    from status.db import utcnow

    patient = Patient(clinic, engine, phone)
    for question in QUESTIONS:
        body = patient.say(question)
        if "date of birth" in body or "fecha de nacimiento" in body:
            body = patient.say(dob)
        with clinic.session() as session:  # staff hand back, so the bot keeps answering
            for handoff in session.query(Handoff).filter(Handoff.status == "open"):
                resolve_and_return(session, handoff, staff_id=None, note=None, now=utcnow())
        encoding, segments = sms_segments(body)
        assert segments <= 2, f"{question!r} -> {segments} {encoding} segments: {body}"
        for medicine in ("Semaglutide", "Tretinoin", "Metformin", "Lisinopril"):
            assert medicine not in body


def test_spanish_sms_always_folds_the_letters_gsm7_lacks():
    short = "¡Listo! Pedí su resurtido. ¿Algo más? Le escribiré mañana."
    assert fit_sms(short) == "¡Listo! Pedi su resurtido. ¿Algo mas? Le escribiré mañana."
    long = (
        "Su próxima cita es una videollamada con la Dra. Ana Patel el miércoles a las 15:30. " * 2
    )
    folded = fit_sms(long)
    assert sms_segments(folded) == ("GSM-7", 2)
    assert "proxima" in folded  # ó is not in GSM-7
    assert "miércoles" in folded  # é is: kept


def test_a_character_with_no_fold_keeps_the_message_as_written():
    body = "Pedí su resurtido 💊"
    assert fit_sms(body) == body


@pytest.mark.parametrize(
    ("reason", "en", "es"),
    [
        ("card_declined", "card declined", "tarjeta rechazada"),
        ("stolen_card", "card declined", "tarjeta rechazada"),  # never "stolen" to the patient
        ("expired_card", "card expired", "tarjeta vencida"),
        ("insufficient_funds", "insufficient funds", "fondos insuficientes"),
        ("some_new_code", "some new code", "some new code"),  # unknown codes: at least words
        ("card expired", "card expired", "card expired"),  # the clinic's own words, as written
        ("Your card was declined.", "Your card was declined.", "Your card was declined."),
    ],
)
def test_a_processors_decline_code_reads_as_words_in_the_patients_language(reason, en, es):
    env = environment()
    for lang, expected in (("en", en), ("es", es)):
        text = env.get_template(f"messages/{lang}/notify_payment_failed.j2").render(
            item={"amount_cents": 19900, "currency": "usd", "failure_reason": reason,
                  "payment_url": "https://pay.example/u", "next_retry_at": None},
            payment_url="https://pay.example/u", tz="America/New_York",
        )  # fmt: skip
        assert f"({expected})" in text
        assert "_" not in text.split("(")[1].split(")")[0]
