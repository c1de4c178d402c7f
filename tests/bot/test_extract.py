"""Answers to the assistant's own questions (date of birth, yes/no, which patient) and card
redaction."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.understanding.extract import is_no, is_yes, parse_choice, parse_dob
from bot.understanding.redact import luhn_valid, redact_card_numbers

TODAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    "text",
    [
        "03/14/1985",
        "3/14/85",
        "1985-03-14",
        "March 14 1985",
        "14 March 1985",
        "Mar 14, 1985",
        "march 14th, 1985",
        "14/03/1985",
        "14 de marzo de 1985",
        "marzo 14 de 1985",
        "my dob is 3/14/85",
        "born on 3-14-1985 thanks",
        "03141985",
        "3.14.85",
    ],
)
def test_date_of_birth_in_the_ways_patients_write_it(text):
    assert parse_dob(text, today=TODAY) == date(1985, 3, 14)


def test_ambiguous_numeric_date_is_read_month_first():
    assert parse_dob("03/04/1985", today=TODAY) == date(1985, 3, 4)


def test_day_first_only_when_the_first_number_cannot_be_a_month():
    assert parse_dob("25/12/1990", today=TODAY) == date(1990, 12, 25)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/14/85", date(1985, 3, 14)),
        ("1/1/15", date(2015, 1, 1)),
        ("12/31/99", date(1999, 12, 31)),
        ("11/21/26", date(2026, 11, 21)),
        ("11/23/26", date(1926, 11, 23)),
        ("nací el 5 de mayo del 90", date(1990, 5, 5)),
    ],
)
def test_two_digit_year_takes_the_century_that_puts_the_date_in_the_past(text, expected):
    assert parse_dob(text, today=TODAY) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2/30/1985",
        "13/13/1985",
        "3/14/2030",
        "1900-01-01",
        "hello",
        "3/14",
        "555-123-4567",
        "",
    ],
)
def test_no_date_impossible_dates_and_future_dates_give_none(text):
    assert parse_dob(text, today=TODAY) is None


def test_default_today_is_the_real_date():
    assert parse_dob("3/14/85") == date(1985, 3, 14)


@pytest.mark.parametrize(
    "text",
    ["yes", "yes pls", "Y", "yeah go ahead", "ok", "OK!", "sí", "si claro", "yup", "sure thing",
     "👍", "go ahead", "yessss", "dale", "no problem, go ahead"],
)  # fmt: skip
def test_yes_replies(text):
    assert is_yes(text)
    assert not is_no(text)


@pytest.mark.parametrize(
    "text",
    ["no", "No.", "no thanks", "nope", "nah", "not now", "not yet", "todavía no", "no gracias",
     "yes but not now"],
)  # fmt: skip
def test_no_replies(text):
    assert is_no(text)
    assert not is_yes(text)


@pytest.mark.parametrize(
    "text", ["maybe", "where is my rx", "", "can you tell me more about the refill first please"]
)
def test_replies_that_are_neither_yes_nor_no(text):
    assert not is_yes(text)
    assert not is_no(text)


OPTIONS = ["Maria Lopez", "Luis Ortega"]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("1", 0),
        ("2", 1),
        ("#2", 1),
        ("option 2", 1),
        ("the second one", 1),
        ("first", 0),
        ("luis", 1),
        ("Luis!", 1),
        ("its for maria please", 0),
        ("mraia", 0),
        ("Luis Ortega", 1),
    ],
)
def test_choice_by_number_ordinal_or_first_name(text, index):
    assert parse_choice(text, options=OPTIONS) == index


@pytest.mark.parametrize("text", ["3", "0", "nobody", "", "both"])
def test_choice_that_picks_nothing_is_none(text):
    assert parse_choice(text, options=OPTIONS) is None


def test_shared_first_name_is_settled_by_the_last_name_or_not_at_all():
    options = ["Maria Lopez", "Maria Garcia"]
    assert parse_choice("maria garcia", options=options) == 1
    assert parse_choice("maria", options=options) is None


# ---------------------------------------------------------------- card numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "my card is 4111 1111 1111 1111 exp 04/27",
            "my card is [card number removed] exp [expiry removed]",
        ),
        (
            "my card is 4111 1111 1111 1111 exp 12/27 cvv 123 pls charge it",
            "my card is [card number removed] exp [expiry removed] cvv [security code removed]"
            " pls charge it",
        ),
        (
            "vence 03/29 tarjeta 4111-1111-1111-1111 código de seguridad 456",
            "vence [expiry removed] tarjeta [card number removed] código de seguridad"
            " [security code removed]",
        ),
        ("4111-1111-1111-1111", "[card number removed]"),
        ("new card 5555555555554444 thanks", "new card [card number removed] thanks"),
        ("amex 3782 822463 10005", "amex [card number removed]"),
        ("4111 1111 1111 1111 0427 123", "[card number removed] 0427 123"),
    ],
)
def test_luhn_valid_card_numbers_are_removed(text, expected):
    assert redact_card_numbers(text) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "call me at 555-123-4567",
        "+1 (555) 010-0001",
        "tracking 9400 1000 0000 0000 0000 00",
        "1Z999AA10123456784",
        "dob 03/14/1985",
        "order 123456789012",
        "",
    ],
)
def test_other_numbers_are_left_alone(text):
    assert redact_card_numbers(text) == (text, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cvv: 1234", "cvv: [security code removed]"),
        ("CVC is 123", "CVC is [security code removed]"),
        ("the security code is 321 thanks", "the security code is [security code removed] thanks"),
        ("cvv2 123", "cvv2 [security code removed]"),
    ],
)
def test_a_security_code_is_never_kept_even_without_the_card_number(text, expected):
    # Card rules forbid storing a security code at all; the patient is told not to text one.
    assert redact_card_numbers(text) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "exp 12/27 is when my appointment is",  # an expiry label, but no card in the message
        "order 123 cvv",  # no code after the label
        "my appt is at 12/27 at 3pm",
        "i paid 123 dollars",
    ],
)
def test_short_numbers_without_a_card_or_a_code_label_are_left_alone(text):
    assert redact_card_numbers(text) == (text, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the card's digits no longer swallow the expiry's "12"; expiry and code go too
            "here is my card 4111 1111 1111 1111 12/27 123",
            "here is my card [card number removed] [expiry removed] [security code removed]",
        ),
        ("4111.1111.1111.1111", "[card number removed]"),
        ("4111/1111/1111/1111", "[card number removed]"),
        ("4111_1111_1111_1111", "[card number removed]"),
        ("５５５５５５５５５５５５４４４４", "[card number removed]"),  # full-width digits
        ("card ４１１１ １１１１ １１１１ １１１１ thanks", "card [card number removed] thanks"),
        ("٤١١١١١١١١١١١١١١١", "[card number removed]"),  # Arabic-Indic digits
        ("visa 4111111111111111 ccv 123", "visa [card number removed] ccv [security code removed]"),
        (
            "amex 378282246310005 code 1234",
            "amex [card number removed] code [security code removed]",
        ),
        ("4111 1111 1111 1111 12/2027", "[card number removed] [expiry removed]"),
        ("4111-1111-1111-1111, 12/27", "[card number removed], [expiry removed]"),
        (
            "12/27 4111 1111 1111 1111 cvv2 123",
            "[expiry removed] [card number removed] cvv2 [security code removed]",
        ),
        (
            "4111 1111 1111 1111 5555 5555 5555 4444",
            "[card number removed] [card number removed]",
        ),
        ("4111 1111 1111 1111-0427", "[card number removed]-0427"),
        ("41111111111111110427", "[card number removed] 0427"),
    ],
)
def test_card_numbers_written_other_ways_are_removed_with_their_expiry_and_code(text, expected):
    assert redact_card_numbers(text) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "call me at 555.123.4567",
        "+1.555.010.0001",
        "５５５-１２３-４５６７",  # a full-width phone number
        "dob 03/14/1985",
        "born 03/14/1985, call 555.123.4567, order 1234-5678",
        "order 1234-5678",
        "order 1234_5678/9012",
        "tracking 1Z999AA10123456784",
        "4111.1111.1111.1112",  # fails Luhn
        "door code 1234, no card",  # a bare "code" is only a card's code beside a card
        "see you 12/27 at 3pm",
    ],
)
def test_phone_numbers_dates_and_order_numbers_are_not_cards_whatever_the_separator(text):
    assert redact_card_numbers(text) == (text, False)


def test_a_date_of_birth_beside_a_card_number_is_not_taken_for_its_expiry():
    # It is left for redact_dates_of_birth, which removes it as a date of birth.
    text = "dob 03/14/1985 card 4111 1111 1111 1111"
    assert redact_card_numbers(text) == ("dob 03/14/1985 card [card number removed]", True)


@pytest.mark.parametrize(
    "text",
    [
        "here is my card 4111 1111 1111 1111 12/27 123",
        "５５５５５５５５５５５５４４４４ cvv 123",
        "4111 1111 1111 1111 5555 5555 5555 4444 0427",
        "amex 378282246310005 code 1234",
    ],
)
def test_text_redacted_before_is_kept_as_it_is_and_still_says_a_card_was_there(text):
    # The webhook redacts, then the engine redacts again and warns "never text card numbers".
    once, had_card = redact_card_numbers(text)
    assert had_card
    assert redact_card_numbers(once) == (once, True)


_PIECES = ["4111", "1111", "5555", "4444", "３", "0", "7", "12/27", "123", "cvv ", "code ", "exp "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, " ", "-", ".", "/", "_", ", "]), max_size=24))
def test_redacting_twice_is_redacting_once(pieces):
    once, had_card = redact_card_numbers("".join(pieces))
    assert redact_card_numbers(once) == (once, had_card)


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
