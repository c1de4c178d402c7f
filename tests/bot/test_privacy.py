"""A date of birth typed in any state of a conversation is read, never kept: a scan of every
table afterwards finds none of the forms the patients typed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from bot.handoffs import Handoff
from status.db import Base
from tests.conftest import on_both_databases
from tests.harness import Patient

MARIA, JAMES, EMILY, FAMILY = "+15550100001", "+15550100002", "+15550100005", "+15550100006"


def every_stored_value(database) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every non-null value in every table."""
    found = []
    with database.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is not None:
                        found.append((table.name, column, str(value)))
    return found


@on_both_databases
def test_no_typed_date_of_birth_is_kept_anywhere(phone, clinic, engine):
    typed = []

    def say(person: Patient, message: str, dob: str) -> str:
        typed.append(dob)
        return person.say(message)

    # Verifying.
    maria = phone(MARIA)
    maria.say("wheres my rx")
    say(maria, "3/14/85", "3/14/85")
    # A blocked prescription asked about in the same breath as the date of birth.
    james = phone(JAMES)
    james.say("why hasnt my medication shipped")
    say(james, "11/02/1979 why is it on hold", "11/02/1979")
    # While a hand-off owns the conversation.
    emily = phone(EMILY)
    emily.say("can i talk to a real person")
    say(emily, "my birthday is January 9, 1995 if you need it", "January 9, 1995")
    emily.clock += timedelta(hours=1)
    say(emily, "dob 01/09/1995 still waiting", "01/09/1995")
    # On a shared phone, before saying who is writing.
    family = phone(FAMILY)
    family.say("is my prescription ready?")
    say(family, "17 de septiembre de 1982", "17 de septiembre de 1982")
    # From a number we do not know, asking for a person.
    stranger = phone("+15559990000")
    say(stranger, "i need a person, my dob is 1970-05-05", "1970-05-05")
    # After STOP.
    aisha = phone("+15550100003")
    aisha.say("STOP")
    say(aisha, "07/23/1991 is my birthday why did you text me", "07/23/1991")

    leaks = [(t, c, v) for (t, c, v) in every_stored_value(clinic) for dob in typed if dob in v]
    assert leaks == []
    with clinic.session() as session:
        summaries = [h.summary for h in session.scalars(select(Handoff))]
    assert any("[date of birth]" in s for s in summaries)
    assert "[date of birth]" in " ".join(v for (_, _, v) in every_stored_value(clinic))
    with clinic.session() as session:  # the scan read real rows, not an empty database
        assert session.execute(text("SELECT count(*) FROM messages")).scalar() > 10


def test_dates_that_cannot_be_a_birthday_are_kept(phone, clinic):
    maria = phone(MARIA)
    maria.say("wheres my rx")
    maria.say("3/14/85")
    maria.say("can i talk to a real person")
    maria.say("i was charged twice on 11/17/2026")
    bodies = [v for (t, c, v) in every_stored_value(clinic) if (t, c) == ("messages", "body")]
    assert "i was charged twice on 11/17/2026" in bodies


def test_a_hand_off_after_verifying_quotes_the_question_not_the_date(phone, clinic):
    """James's prescription is blocked: he asks, we ask his date of birth, he gives it, and
    the hand-off staff read quotes his question (it used to read "[date of birth]")."""
    james = phone(JAMES)
    james.say("why hasnt my medication shipped")
    james.say("11/02/1979")
    with clinic.session() as session:
        [handoff] = session.scalars(select(Handoff)).all()
    assert "why hasnt my medication shipped" in handoff.summary
    assert "[date of birth]" not in handoff.summary

