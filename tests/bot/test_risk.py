"""Graded risk: possible risk gets a warm check-in and an urgent review; figures of speech
about bills and waiting are answered as what they are; emergencies keep their script."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from bot.handoffs import Handoff
from bot.messages import Message
from bot.understanding import classify, vitals
from bot.understanding.classifier import classify as classify_rules
from bot.understanding.model import Prediction
from bot.understanding.normalize import normalize
from bot.understanding.pipeline import DEFAULT, counted_dose, decide
from tests.conftest import on_both_databases

MARIA, LUIS = "+15550100001", "+15550100004"


def rows(database, model, *where):
    with database.session() as session:
        return list(session.scalars(select(model).where(*where)))


# ------------------------------------------------------------------ conversations


@on_both_databases
def test_possible_risk_gets_a_warm_check_in_and_an_urgent_review(phone, clinic):
    # ("...tonight" adds a time: with the model's reading that is an emergency, 911/988)
    reply = phone(MARIA).say("i dont feel safe with myself")
    assert "988" in reply and "care team" in reply
    assert "911" in reply  # if in danger now
    assert "date of birth" not in reply and "prescription" not in reply
    [handoff] = rows(clinic, Handoff)
    assert (handoff.reason, handoff.priority, handoff.queue) == (
        "possible_risk",
        "urgent",
        "clinical",
    )
    # Staff see why it fired: the category and the words.
    assert "possible.safety" in handoff.summary
    assert "dont feel safe" in handoff.summary


def test_possible_risk_check_in_in_spanish(phone, clinic):
    reply = phone(LUIS).say("no estoy bien, tengo miedo de lo que pueda hacer")
    assert "988" in reply and "equipo de salud" in reply
    assert rows(clinic, Handoff)[0].priority == "urgent"


def test_spanish_check_in_for_a_spanish_message_from_an_english_patient(phone):
    reply = phone(MARIA).say("me siento muy vacía y sin esperanza")
    assert "988" in reply and "Gracias por contarnos" in reply


@pytest.mark.parametrize(
    "text",
    [
        "this bill is killing me, why is it so high",
        "i almost had a heart attack when i saw the charge",
        "este cobro me va a matar, por qué tan caro",
        "I'm suffocating under these bills. What's my balance?",
    ],
)
def test_figure_of_speech_about_a_bill_is_answered_as_billing(phone, clinic, text):
    maria = phone(MARIA)
    ask = maria.say(text)
    assert "911" not in ask and "988" not in ask
    assert "date of birth" in ask or "fecha de nacimiento" in ask  # billing facts: verify first
    answer = maria.say("03/14/1985")
    assert "paid" in answer or "pag" in answer  # the billing answer
    assert rows(clinic, Handoff) == []


def test_overdose_by_a_child_gets_the_emergency_script(phone, clinic):
    reply = phone(MARIA).say("my 3 year old got into my purse and ate like 6 of my pills")
    assert "911" in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.reason, handoff.priority) == ("emergency", "urgent")


def test_self_harm_while_a_handoff_is_open_still_gets_answered(phone, clinic):
    maria = phone(MARIA)
    assert "member of our team" in maria.say("can i talk to a real person")
    assert maria.say("where is my prescription") == ""  # staff own the conversation
    crisis = maria.say("honestly i just dont even want to be alive anymore")
    assert "988" in crisis
    check_in = maria.say("i feel so empty and numb lately")
    assert "988" in check_in
    [handoff] = rows(clinic, Handoff)
    assert handoff.priority == "urgent"
    assert "possible_risk" in handoff.reasons and "emergency" in handoff.reasons
    assert "possible.dark_mood" in handoff.summary


def test_possible_risk_after_stop_still_gets_the_check_in(phone, clinic):
    maria = phone(MARIA)
    maria.say("STOP")
    assert maria.say("where is my prescription") == ""
    reply = maria.say("not doing ok, i'm scared of what i might do")
    assert "988" in reply
    [sent] = rows(clinic, Message, Message.template == "risk_checkin")
    assert sent.kind == "system"  # not cancelled by the opt-out at send time
    assert rows(clinic, Handoff)[0].priority == "urgent"


def test_self_harm_after_stop_gets_the_crisis_line(phone, clinic):
    maria = phone(MARIA)
    maria.say("STOP")
    assert "988" in maria.say("i wrote goodbye letters to my kids and im at the bridge")


# ------------------------------------------------------------------ understanding


@pytest.mark.parametrize(
    "text",
    [
        "i dont want to be alive",
        "i seriously dont even want to be alive",
        "honestly i literally just dont want to live anymore",
        "I can't keep living like this",
        "im at the train tracks",
        "estoy parada en el puente",
        "sorry, im not ok, i might do something stupid tonight",
        "i took 15 tylenol an hour ago",
        "my husband swallowed 20 of his sleeping pills",
        "my dad collapsed and isn't breathing",
        "mi hijo se tomó 10 pastillas de mi medicina",
        "ya de verdad no quiero vivir",
    ],
)
def test_emergency_survives_filler_tense_and_person(text):
    result = classify(text)
    assert (result.intent, result.risk) == ("emergency", "emergency"), result


@pytest.mark.parametrize(
    "text",
    [
        "I'd never hurt myself, just asking about the dose",
        "i would never kill myself, what are the side effects of a higher dose",
        "nunca me haría daño, solo pregunto por la dosis",
        "im not suicidal, i just want to cancel my plan",
    ],
)
def test_denied_self_harm_is_not_an_emergency(text):
    result = classify_rules(text)
    assert result.intent != "emergency" and result.risk == "none", result


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("i dont feel safe at home tonight", "possible.safety"),
        ("i feel so empty and numb lately", "possible.dark_mood"),
        ("i would never kill myself but i feel so down", "possible.dark_mood"),
        ("ugh just kill me now", "possible.passive_wish"),
        ("i wrote a letter for my kids", "possible.preparatory"),
        ("no me siento segura esta noche", "possible.safety"),
        # hopelessness, worthlessness, burden, tired of everything: low mood below the
        # C-SSRS's first question (no wish to die, no plan): a check-in, not 911
        ("no le encuentro sentido a nada", "possible.dark_mood"),
        ("i feel hopeless lately", "possible.dark_mood"),
        ("estoy cansada de todo", "possible.dark_mood"),
        ("i feel like such a burden to my family", "possible.dark_mood"),
    ],
)
def test_possible_risk_says_which_category_and_words(text, category):
    result = classify_rules(text)
    assert result.risk == "possible", result
    assert result.risk_reason.startswith(category)
    assert '"' in result.risk_reason  # the words that fired


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("this bill is killing me", "billing"),
        ("i'm dying waiting for my package, where is it", "shipment_tracking"),
        ("the wait for this box is suffocating, any tracking", "shipment_tracking"),
        ("can ozempic cause chest pain", "clinical_question"),
        ("I'm suffocating under these bills, what's my balance", "billing"),
        ("me estoy muriendo con la espera. ya salió el envío?", "shipment_tracking"),
        ("is shortness of breath a side effect of this", "clinical_question"),
    ],
)
def test_figures_of_speech_and_questions_get_no_emergency(text, intent):
    result = classify(text)
    assert result.intent == intent and result.risk != "emergency", result
    assert "emergency" not in result.intents, result  # the engine answers any emergency intent


# ------------------------------------------------------------------ one definition of keywords


def _keyword_forms() -> list[str]:
    from bot.understanding.keywords import HELP_KEYWORDS, OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS

    forms = []
    for word in sorted(OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS):
        forms += [
            word, word.upper(), word.title(), f" {word.upper()}!! ", f"{word}.", f"{word} 2",
            f"{word.upper()}2", f"{word} {word}", f"{word} please", f"/{word}", f"{word} my plan",
        ]  # fmt: skip
    return forms + ["stop texting me", "s t o p", "cancel my appointment", "yes", "STOP 2"]


@pytest.mark.parametrize("text", _keyword_forms())
def test_engine_compliance_and_classify_agree_on_every_keyword_form(text):
    from bot import compliance

    engine_says = compliance.keyword(text)
    understood = classify(text)
    if engine_says is not None:
        assert understood.intent == engine_says and understood.confidence == 1.0
    else:  # not a bare keyword: classify must not call it one either
        assert not (understood.confidence == 1.0 and understood.intent in ("opt_in", "help"))
        if understood.intent == "opt_out":  # only a plain request about texts ("stop stop")
            assert understood.confidence < 1.0


def test_stop_two_is_one_answer_everywhere(phone, clinic):
    from bot import compliance

    assert compliance.keyword("stop 2") == classify("stop 2").intent == "opt_out"
    assert "unsubscribed" in phone(MARIA).say("stop 2")


# ------------------------------------------------------------------ rules and model together


def prediction(intent="unknown", p=0.5, emergency=0.0, possible=0.0, known=1.0) -> Prediction:
    risk = "emergency" if emergency >= 0.5 else "possible" if possible >= 0.5 else "none"
    return Prediction(intent, p, risk, max(emergency, possible), emergency, possible, known)


def test_a_sure_model_makes_an_emergency_of_what_the_rules_saw_as_possible():
    rules = classify_rules("gave away my cat and my guitar this week. i think im finally done")
    assert rules.risk == "possible"
    result = decide(rules, prediction(emergency=0.9))
    assert (result.intent, result.risk) == ("emergency", "emergency")
    assert result.risk_reason.startswith("model.emergency")
    # a fair model reading beside a rules reading of nothing gives the check-in, not 911;
    # only a model all but sure of it makes an emergency alone
    calm = classify_rules("i think im finally done with this app")
    assert calm.risk == "none"
    fair = DEFAULT.emergency_unread - 0.05
    assert decide(calm, prediction(emergency=fair)).risk == "possible"
    assert decide(calm, prediction(emergency=DEFAULT.emergency_unread)).risk == "emergency"


def test_a_question_of_its_own_after_an_emergency_is_the_second_intent():
    rules = classify_rules("i took 30 of my pills, is that going to kill me")
    assert rules.intents == ["emergency"] and len(rules.clauses) == 2
    whole = prediction("emergency", 0.9, emergency=0.97)
    sure = [prediction("emergency", 0.9, emergency=0.97), prediction("clinical_question", 0.8)]
    result = decide(rules, whole, clauses=sure)
    assert result.intents == ["emergency", "clinical_question"]
    assert result.risk == "emergency"
    unsure = [sure[0], prediction("clinical_question", DEFAULT.emergency_second - 0.1)]
    assert decide(rules, whole, clauses=unsure).intents == ["emergency"]


def test_a_rules_emergency_beside_a_request_the_model_reads_as_safe_is_lowered_one_step():
    text = "suffocating under these charges. is there any payment plan for my balance?"
    rules = classify_rules(text)
    assert rules.intent == "emergency" and "billing" in rules.intents
    # the model sees some risk, however small: lowered one step, a check-in (never silence)
    result = decide(rules, prediction("billing", 0.97, emergency=0.001, possible=0.2))
    assert (result.intent, result.risk) == ("billing", "possible")
    assert result.risk_reason.startswith("lowered")
    assert result.intents == ["billing"]  # the emergency words do not come back as a request
    # the model sees none, and reads the request the rules read too: a figure of speech,
    # answered as what it is
    result = decide(rules, prediction("billing", 0.97, emergency=0.001, possible=0.001))
    assert (result.intent, result.risk) == ("billing", "none")
    assert result.risk_reason.startswith("figure_of_speech")
    # an explicit call for help is never lowered, whatever the model reads
    alone = classify_rules("call the paramedics")
    assert decide(alone, prediction("human", 0.91, emergency=0.007)).intent == "emergency"


def test_a_second_request_the_rules_read_faintly_is_confirmed_by_the_model_on_its_clause():
    rules = classify_rules("where is my package? also I want to cancel after this one")
    assert rules.intents == ["shipment_tracking"]
    faint = rules.clauses[1].confidence  # the rules' reading of the second clause
    t = replace(DEFAULT, clause_rules=faint + 0.01)  # ...under their own bar
    clauses = [prediction("shipment_tracking", 0.9), prediction("cancel_subscription", 0.9)]
    result = decide(rules, prediction("shipment_tracking", 0.8), t, clauses)
    assert result.intents == ["shipment_tracking", "cancel_subscription"]
    unsure = [prediction("shipment_tracking", 0.9), prediction("cancel_subscription", 0.3)]
    assert decide(rules, prediction("shipment_tracking", 0.8), t, unsure).intents == [
        "shipment_tracking"
    ]


def test_a_clause_the_model_is_sure_of_outvotes_the_rules_reading_of_it():
    rules = classify_rules("pause the plan, and also I need to pick a different appointment time")
    assert rules.clauses[1].intent != "reschedule"  # the rules read "appointment" there
    clauses = [prediction("cancel_subscription", 0.94), prediction("reschedule", 0.8)]
    result = decide(rules, prediction("cancel_subscription", 0.9), clauses=clauses)
    assert result.intents == ["cancel_subscription", "reschedule"]


def test_an_emergency_only_the_model_read_names_both_911_and_988(phone, clinic):
    text = "gave away my cat and my guitar this week. i think im finally done"
    assert classify(text).risk_reason.startswith("model.emergency")
    reply = phone(MARIA).say(text)
    assert "911" in reply and "988" in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.reason, handoff.priority) == ("emergency", "urgent")


def test_a_goodbye_that_also_asks_for_no_more_texts_gets_the_crisis_line_and_the_opt_out(
    phone, clinic
):
    reply = phone(LUIS).say("che, ya está, me tiro del balcón. no me escriban más")
    assert "988" in reply and "911" in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.reason, handoff.priority) == ("emergency", "urgent")
    assert classify("che, ya está, me tiro del balcón. no me escriban más").intents == [
        "emergency",
        "opt_out",
    ]


@pytest.mark.parametrize("text", ["cancel cancel cancel", "end end"])
def test_repeated_cancel_is_not_an_opt_out(text):
    assert "opt_out" not in classify(text).intents


@pytest.mark.parametrize(
    "text",
    [
        "the noose is tied, i just wanted to say it to someone",
        "tengo la pistola cargada en la mesa",
        "tonight im ending it, sorry",
        "i wont be alive by christmas so cancel whatever",
        "survived my attempt last month and i want to try again",
        "whats a lethal dose of insulin",
        "how many of my sleeping pills would it take to not wake up",
        "mi niña estaba chupando mi parche de fentanilo",
        "me tomé dos cajas enteras de ibuprofeno",
    ],
)
def test_c_ssrs_means_timing_finality_attempt_and_lethality_are_emergencies(text):
    result = classify(text)
    assert result.intent == "emergency", result
    assert result.risk_reason  # the category and the words, for the hand-off


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("BAJA", "opt_out"),
        ("parad de mandarme mensajes", "opt_out"),
        ("unsub me please", "opt_out"),
        ("COMENZAR", "opt_in"),
        ("i hit STOP by accident, i do want the reminders", "opt_in"),
        ("your reminders are suffocating me, stop texting me", "opt_out"),
    ],
)
def test_plain_language_consent_in_both_languages(text, intent):
    result = classify(text)
    assert result.intent == intent and "emergency" not in result.intents, result


# ------------------------------------------------------------------ vital signs by their value


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("mi azucar esta en 95", True),
        ("my sugar is 110 this morning", True),
        ("bp 118/76 and pulse 72", True),
        ("my glucose is 95 mg/dL, is that ok", True),
        ("blood sugar 38", False),  # the emergency rules' hypoglycaemia
        ("sugar is 300 after dinner", False),  # high, short of an emergency: not normal either
        ("pulse 72, sugar 300", False),  # every reading must be normal
        ("i take 100 units of insulin", None),  # no reading at all
    ],
)
def test_vital_signs_are_read_by_their_value(text, normal):
    found = vitals.readings(normalize(text))
    if normal is None:
        assert found == [] and vitals.without_normal_readings(normalize(text)) is None
    else:
        assert found and all(r.normal for r in found) == normal


def test_a_normal_reading_is_judged_by_its_value_not_by_the_models_emergency_vote():
    text = "mi azucar esta en 95"
    rules = classify_rules(text)
    assert rules.risk == "none"
    # the model reads an emergency in the words of a reading; beside the reading, nothing
    words = prediction("emergency", 0.77, emergency=0.72)
    beside = prediction("unknown", 0.85, known=0.0)  # nothing but the reading was written
    assert decide(rules, words).intent == "emergency"  # the vote alone, as before
    result = decide(rules, words, beside_readings=beside)
    assert (result.intents, result.risk) == (["clinical_question"], "none")
    # what else the message says is still read by the model
    alarming = prediction("emergency", 0.8, emergency=0.9)
    assert decide(rules, words, beside_readings=alarming).intent == "emergency"


@pytest.mark.parametrize(
    ("text", "intents", "risk"),
    [
        ("mi azúcar está en 110", ["clinical_question"], "none"),
        ("mi azucar esta en 95", ["clinical_question"], "none"),
        ("my sugar is 110 this morning", ["clinical_question"], "none"),  # no greeting in it
        ("azucar esta en 40", ["emergency"], "emergency"),
        ("sugar is 450", ["emergency"], "emergency"),
    ],
)
def test_a_stated_reading_gets_the_911_script_only_outside_the_safe_range(text, intents, risk):
    result = classify(text)
    assert (result.intents, result.risk) == (intents, risk)


@pytest.mark.parametrize(
    "text",
    [
        "i took like 15 of my sleeping pills, anyway when does my refill ship lol",
        "swallowed maybe twenty of my xanax lol. is my new script approved",
        "me tome como diez pastillas de las de dormir jaja, cuando llega mi pedido",
    ],
)
def test_a_dose_counted_in_pills_is_never_lowered_however_lightly_it_is_written(text):
    rules = classify_rules(text)
    assert rules.risk == "emergency" and rules.risk_reason.startswith("overdose")
    # the model reads the light tone and sees no risk: the count of pills still wins
    request = next(i for i in rules.intents if i != "emergency")
    result = decide(rules, prediction(request, 0.97, emergency=0.001, possible=0.001))
    assert (result.intent, result.risk) == ("emergency", "emergency")


def test_a_number_of_hours_is_not_a_count_of_doses():
    assert not counted_dose('overdose: "took my pill 6"', "took my pill 6 hours late am i ok")
    assert counted_dose('overdose: "took like 15 of my"', "i took like 15 of my pills lol")
