"""Understanding patient messages: carrier keywords, emergencies, intents, language."""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bot.intents import Intent
from bot.understanding import Classification, classify, model, pipeline
from bot.understanding.classifier import catalogue
from bot.understanding.classifier import classify as classify_rules
from bot.understanding.evaluate import evaluate_file, format_report, load_examples, run_classify
from bot.understanding.normalize import CATALOGUE_DIR, Normalizer, normalize
from bot.understanding.pipeline import DEFAULT
from bot.understanding.triggers import Present

DATA = Path(__file__).resolve().parents[1] / "data"
EVAL_FILE = DATA / "nlu_eval.jsonl"

# Measured on tests/data/nlu_eval.jsonl: 1.000 (docs/nlu.md). The floor leaves room for a
# catalogue change that trades one message for several others; it is not a target.
ACCURACY_FLOOR = 0.97

# The other labelled sets and their floors, a little below what was measured after tuning
# (docs/nlu.md, "Measured"): the regression set (0.991), the first honest holdout (0.991; 0.906
# when first run, before any change) and the second (0.995; 0.922 when first run).
LABELLED_SETS = {
    "nlu_eval.jsonl": ACCURACY_FLOOR,
    "nlu_regression.jsonl": 0.97,
    "nlu_holdout.jsonl": 0.97,
    "nlu_holdout2.jsonl": 0.97,
    # Emergency probes written from triage red-flag lists (docs/nlu.md, "Red flags"): the
    # first measured 0.727 / 0.639 emergency recall untuned; the floors are for everything
    # else in them (tricky non-emergencies, figures of speech), after tuning 0.971 / 0.938.
    "nlu_emergency_fresh.jsonl": 0.95,
    "nlu_emergency_fresh2.jsonl": 0.92,
}


def test_intent_names_are_the_contract():
    assert {str(i) for i in Intent} == {
        "prescription_status", "shipment_tracking", "refill", "billing",
        "update_payment_method", "cancel_subscription", "appointment", "reschedule",
        "next_steps", "human", "clinical_question", "emergency", "greeting", "thanks", "help",
        "opt_out", "opt_in", "unknown",
    }  # fmt: skip


# ---------------------------------------------------------------- carrier keywords


def _spellings(word: str) -> list[str]:
    return [word, word.lower(), word.capitalize() + ".", f" {word}!! ", f"{word}\n", f"'{word}'"]


@pytest.mark.parametrize(
    "keyword", ["STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"]
)
def test_opt_out_keyword_alone_is_opt_out_whatever_its_case_and_punctuation(keyword):
    for text in _spellings(keyword):
        result = classify(text)
        assert (result.intent, result.intents, result.confidence) == ("opt_out", ["opt_out"], 1.0)


@pytest.mark.parametrize("keyword", ["START", "UNSTOP"])
def test_opt_in_keyword_alone_is_opt_in(keyword):
    for text in _spellings(keyword):
        assert classify(text).intent == "opt_in"


@pytest.mark.parametrize("keyword", ["HELP", "INFO"])
def test_help_keyword_alone_is_help(keyword):
    for text in _spellings(keyword):
        assert classify(text).intent == "help"


@pytest.mark.parametrize(
    "text",
    [
        "stop texting me",
        "please don't text me anymore",
        "no more messages",
        "unsubscribe me",
        "take me off your list",
        "stop sending me these reminders",
        "I do not want to receive text messages",
        "opt me out",
        "STOP STOP STOP",
        "stop please",
        "dejen de mandarme mensajes",
        "no me manden más mensajes",
        "ya no quiero recibir mensajes",
        "borren mi número",
    ],
)
def test_plain_request_to_stop_texting_is_opt_out(text):
    assert classify(text).intent == "opt_out"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("cancel my subscription", "cancel_subscription"),
        ("cancel my plan", "cancel_subscription"),
        ("CANCEL MY PLAN", "cancel_subscription"),
        ("pause my membership", "cancel_subscription"),
        ("stop my subscription", "cancel_subscription"),
        ("end my membership today", "cancel_subscription"),
        ("unsubscribe me from the membership", "cancel_subscription"),
        # ("stop charging my card" alone is billing for most blind writers, 4 of 6)
        ("stop my monthly plan", "cancel_subscription"),
        ("stop the autoship", "cancel_subscription"),
        ("quiero cancelar mi suscripción", "cancel_subscription"),
        ("quiero dar de baja mi suscripción", "cancel_subscription"),
        ("cancel my appointment", "reschedule"),
        ("CANCEL my appt", "reschedule"),
        ("need to move my visit", "reschedule"),
        ("quiero cancelar mi cita", "reschedule"),
        ("my nose won't stop bleeding", "emergency"),
        ("can i stop taking my meds", "clinical_question"),
        ("I quit smoking, does that change my dose", "clinical_question"),
        ("stop charging me twice", "billing"),
        ("END of the month is when i get paid, can i pay then", "billing"),
        ("quit sending me the wrong meds", "prescription_status"),
        ("dont text me my tracking number, email it", "shipment_tracking"),
        ("start my refill", "refill"),
        ("info on my order", "prescription_status"),
        ("help me find my tracking number", "shipment_tracking"),
    ],
)
def test_requests_about_plans_visits_and_care_are_never_opt_out(text, intent):
    result = classify(text)
    assert result.intent == intent
    assert "opt_out" not in result.intents


def test_plain_opt_out_keeps_the_other_request_in_order():
    assert classify("cancel my plan and stop texting me").intents == [
        "cancel_subscription",
        "opt_out",
    ]


# ---------------------------------------------------------------- emergencies


@pytest.mark.parametrize(
    "text",
    [
        "chest hurts and left arm numb",
        "cant breath",
        "chest pian",
        "I CAN'T BREATHE",
        "feels like someone is sitting on my chest",
        "tight feeling in my chest and my jaw hurts",
        "my throat is closing",
        "lips swelling up after the shot",
        "i think this is anaphylaxis",
        "accidentally took 3 doses today",
        "took the entire box of pills",
        "i want to die",
        "thinking about killing myself",
        "i've been cutting myself again",
        "nobody would miss me if i was gone",
        "she's seizing",
        "my dad collapsed in the kitchen",
        "i keep passing out",
        "one side of his face is drooping",
        "her speech is slurred all of a sudden",
        "left side feels numb and weak",
        "bleeding won't stop after the injection",
        "throwing up blood",
        "HELP I CANT BREATHE",
        "my lips are turning blue",
        "my toddler swallowed one of my pills",
        "me duele el pecho",
        "no puedo respirar",
        "se me cierra la garganta",
        "tomé demasiadas pastillas",
        "quiero morirme",
        "me quiero matar",
        "tengo pensamientos suicidas",
        "siento que me voy a desmayar",
        "mi esposo está convulsionando",
        "se me están hinchando los labios",
        "me quiero quitar la vida",
        "me duele mucho el chest",
        "i cant respirar",
        # worded far from the usual phrases (written after the first holdouts; docs/nlu.md)
        "there's a weird squeezing feeling in my chest that goes to my neck",
        "i feel an intense pressure behind my breastbone",
        "it feels like my chest is on fire",
        "pain going down my left arm and into my jaw",
        "every breath is a struggle",
        "i feel like i'm drowning, cant get air",
        "my lungs won't fill",
        "my son's lips are gray and he's breathing funny",
        "my face blew up after the injection",
        "covered in hives and my throat feels scratchy",
        "i gave myself 3 shots by mistake",
        "did two injections instead of one",
        "i doubled up on my insulin and i'm shaky",
        "i OD'd on my meds",
        "i swallowed the rest of the bottle",
        "my 2yo swallowed a pill off the floor",
        "i just want to sleep forever",
        "i want out of this life",
        "everyone would be happier if i was gone",
        "i'm not going to be around much longer",
        "i just want to unalive myself",
        "one side of my face feels heavy and my speech is off",
        "my dad is talking gibberish",
        "my arm suddenly feels like dead weight",
        "sudden double vision and my arm is weak",
        "he went limp and won't come to",
        "my brother is shaking and not responding",
        "i keep losing consciousness",
        "throwing up what looks like coffee grounds",
        "my stool is black and i feel weak",
        "i'm bleeding through every towel",
        "the pain in my stomach is unbearable",
        "sharp pain in my belly that goes through to my back",
        "my blood sugar is 38",
        "call the paramedics",
        "i need to go to the er",
        "siento que se me cierra el pecho",
        "no me entra el aire",
        "mi bebé tiene los labios morados",
        "me tomé un montón de pastillas",
        "me tomé like 20 pills",
        "mi hijo se tomó medio frasco de jarabe",
        "quiero dormir y no despertar nunca",
        "ya no quiero existir",
        "me quiero ir de este mundo",
        "mi papá tiene la boca chueca",
        "se me durmió la mitad de la cara",
        "no siento la pierna derecha",
        "de repente no veo de un ojo",
        "mi hermano está temblando y no responde",
        "se privó mi mamá",
        "me desvanecí",
        "vomité sangre",
        "me estoy desangrando",
        "necesito ir a urgencias",
    ],
)
def test_emergency_is_recognised_in_either_language_however_it_is_worded(text):
    result = classify(text)
    assert result.intent == "emergency"
    assert result.intents[0] == "emergency"


def test_emergency_rules_skipped_by_their_trigger_words_could_not_have_matched():
    """The trigger index only saves time: the answer is the one running every rule gives."""
    from bot.understanding.emergency import _pattern_rule, _rules

    rules, negation = _rules()

    def run_every_rule(text: str) -> str | None:
        for rule in rules:
            if rule.also and not all(e.pattern.search(text) for e in rule.also):
                continue
            for expression in rule.alternatives:
                for match in expression.pattern.finditer(text):
                    if rule.negatable and negation.search(text, 0, match.start()):
                        continue
                    return rule.name
        return None

    texts = [normalize(r["text"]) for name in LABELLED_SETS for r in load_examples(DATA / name)]
    assert [(_pattern_rule(t) or (None,))[0] for t in texts] == [run_every_rule(t) for t in texts]


def test_red_flag_index_gives_the_answer_trying_every_term_and_rule_gives():
    from bot.understanding.red_flags import red_flags

    flags = red_flags()
    terms = [t for ts in (*flags.by_word.values(), *flags.by_stem.values()) for t in ts]
    terms += flags.numeric

    def every_hit(words: list[str]) -> dict:
        found: dict = {}
        for i in range(len(words)):
            for term in terms:
                end = term.match(words, i)
                if end > 0 and words[i] != "_":
                    for g in term.groups:
                        found.setdefault(g, []).append((i, end))
        return found

    def satisfied(rule, found: dict, words: list[str]) -> bool:
        for combo in itertools.product(*(found[g] for g in rule.groups)):
            starts = [s for s, _ in combo]
            if len(set(combo)) < len(combo):
                continue
            if rule.window is not None and max(starts) - min(starts) > rule.window:
                continue
            if rule.negatable and flags.negated(words, min(starts)):
                continue
            return True
        return False

    def every_rule(words: list[str]) -> str | None:
        found = every_hit(words)
        for rule in flags.rules:
            if all(g in found for g in rule.groups) and satisfied(rule, found, words):
                return rule.name
        return None

    texts = [normalize(r["text"]) for name in LABELLED_SETS for r in load_examples(DATA / name)]
    texts = [flags.unguarded(t) for t in texts[::3]]  # a third: trying every term is slow
    for text in texts:
        words = text.split()
        assert {g: sorted(h) for g, h in flags.hits(words).items()} == {
            g: sorted(h) for g, h in every_hit(words).items()
        }, text
    assert [flags.first_rule(t.split()) for t in texts] == [every_rule(t.split()) for t in texts]


def test_emergency_is_the_primary_intent_even_when_written_after_another_request():
    result = classify("where is my refill? also my chest hurts really bad")
    assert result.intent == "emergency"
    # the primary intent first, the other request after it (as the blind sets' writers put it)
    assert result.intents == ["emergency", "refill"]


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # voice-to-text run-ons: a question starting mid-sentence starts a clause
        ("where is my package can someone call me", ["shipment_tracking", "human"]),
        ("my card expired i need to update it", ["update_payment_method"]),
        # ...but not where the words before lead into it, nor "what do i do" after an emergency
        ("can you tell me when my refill ships", ["refill"]),
        ("my husband isnt breathing what do i do", ["emergency"]),
    ],
)
def test_run_ons_split_where_a_new_question_starts(text, intents):
    assert classify_rules(text).intents == intents


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("is it normal to feel a bit nauseous", "clinical_question"),
        ("no chest pain or anything, just wondering if fatigue is normal", "clinical_question"),
        ("no me duele el pecho, solo tengo una pregunta sobre la dosis", "clinical_question"),
        ("the pharmacy is killing me with these delays, where is my prescription", None),
        ("im dying to know when my package arrives", "shipment_tracking"),
        ("this bill is killing me", "billing"),
        ("you took 150 out twice this month, i want my money back", "billing"),
        ("my daughter took my car to get the pills", None),
        ("i have terrible cramps, is that from the meds?", "clinical_question"),
        ("i hit my head on the cabinet lol where is my package", "shipment_tracking"),
        ("mi azúcar está en 110", "clinical_question"),
        ("el doctor no responde mis mensajes", None),
        # spelling correction never turns an everyday word into an emergency word
        ("no puedo ir el lunes, ¿me cambian la cita?", "reschedule"),  # lunes is not lungs
        ("i heard the shot hurts, is that true?", None),  # heard is not heart
        ("my breath smells bad lately, is that the medication?", None),
    ],
)
def test_figures_of_speech_and_denials_are_not_emergencies(text, intent):
    result = classify(text)
    assert result.intent != "emergency"
    if intent:
        assert result.intent == intent


# ---------------------------------------------------------------- red flags (red_flags.yaml)


@pytest.mark.parametrize(
    "text",
    [
        # figures of speech about money, waiting, the service
        "this wait is killing me, any news on my order",
        "i'm dying to know when my box gets here",
        "nearly had a heart attack when i opened the invoice",
        "casi me da un infarto cuando vi la factura",
        "this delay is giving me a heart attack",
        "that price makes me want to die lol",
        "esta espera me está matando",
        "i almost fainted at the price, is there a coupon",
        "choking on the cost of this, any payment plans?",
        "i passed out samples at work, can i get referral credit",
        "the box collapsed in the mail, can you resend",
        # past history, medication names, questions about a condition
        "I had a stroke in 2015, is semaglutide safe for me",
        "my husband had a heart attack years ago, can he join too",
        "tuvo un derrame cerebral hace años, ¿puede tomar esto?",
        "refill for my seizure medication please",
        "my blood pressure pills havent arrived",
        "what are the symptoms of an allergic reaction to this shot",
        "how do i avoid an overdose with the pen",
        "what should i do if i get low blood sugar",
        # everyday words near emergency words
        "i work in the ER, can i book an evening visit",
        "i was accidentally charged twice",
        "it took more than a week for my meds to arrive",
        "i can't swallow the pills, they're too big",
        "the doctor isn't responding to my messages",
        "my daughter took my car to pick up the pills",
        "i can't talk right now, text me",
        "ya no aguanto más la espera, ¿cuándo llega?",
        "no quiero seguir con la suscripción",
        "i can't take this anymore, your app keeps crashing",
        "a little short of breath climbing stairs, normal?",
        "i'm confused about my bill, can someone call",
        "no chest pain, just a quick dosing question",
        "i dont have a fever or a stiff neck, just a cold",
        "i'm gonna die of boredom waiting for this",
        # a child taking their own medicine, a food, acne, a period
        "my son took his medication this morning, when is the refill",
        "mi hija se tomó su medicina, ¿cuándo llega la próxima caja?",
        "my kid ate all the cookies lol",
        "my face is breaking out, can i get a stronger cream",
        "a lot of bleeding during my period, is that the shots",
        "my wife isn't answering her phone, can you update her card",
        # exercise, embarrassment, tiredness, prices said to the clinic (Set O's risk file)
        "I overdid it at the gym and I'm sore, can I still do my shot tonight",
        "ya me quiero morir de la pena, me equivoqué de dirección en el pedido jaja",
        "estoy muerta de cansancio de tanto esperar el paquete",
        "me vas a matar con estos precios",
        "me están matando con tanto cobro, qué es este cargo",
        "I'll die of old age before this prescription gets approved lmao",
        "overdose on paperwork lol. what's still pending on my account",
        "can you deliver when nobody is home, i'm planning to be out",
    ],
)
def test_red_flag_guards_keep_figures_of_speech_and_history_out(text):
    assert classify(text).intent != "emergency"


@pytest.mark.parametrize(
    "text",
    [
        # the same words, meant: a guard blanks only the figurative words
        "my chest is killing me",
        "i think my husband is having a heart attack",
        "i had a stroke in 2015 and now my face is drooping again",
        "the bill can wait, i cant breathe",
        "nearly fainted at the pharmacy and now my chest hurts",
        "i can't take it anymore",
        "ya no aguanto más",
        "he's not responding to me at all, he's on the floor",
        "i think i overdid it with the insulin, shaky and sweaty",
        "mi esposo me va a matar, tiene un cuchillo",
        "me quiero morir de la pena desde que murió mi mamá",
        # C-SSRS plan with its time and no one there, a passive wish, method, a burden ending
        "tengo el plan listo, el sábado en el lago cuando nadie esté",
        "been planning it for weeks. sunday when everyone is at church",
        "a veces pienso que sería mejor no despertar",
        "its ok i wont be a burden much longer",
        "just want you guys to know i appreciate everything. please tell dr patel thanks. goodbye",
        "me metí a la bañera con el secador enchufado en la mano",
    ],
)
def test_red_flag_guards_keep_real_emergencies(text):
    assert classify(text).intent == "emergency"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        # one new wording per category; the rule name is what engine.py reads (crisis: 988)
        ("my sternum feels like a vise is on it", "chest_pain"),
        ("can't get air in even lying still", "breathing"),
        ("her mouth is sagging on the left and her arm went weak", "stroke"),
        ("after the new pills my lips and eyelids puffed up", "allergy"),
        ("the cut keeps bleeding through every bandage", "bleeding"),
        ("my brother dropped to the ground and isnt responding", "fainting"),
        ("my daughter's body went stiff and started shaking", "seizure"),
        ("i took a whole bottle of my sleeping pills", "overdose"),
        ("my toddler chewed through a bottle of my vitamins", "child_poisoning"),
        ("i keep thinking everyone would be happier without me", "self_harm"),
        ("quisiera desaparecer para siempre", "self_harm"),
        ("my meter reads 38 and im shaking", "vital_signs"),
        ("sugar dangerously low and i'm confused", "low_blood_sugar"),
        ("breath smells like nail polish and cant stop vomiting", "high_blood_sugar"),
        ("belly pain shooting through to my back since my shot", "severe_pain"),
        ("haven't peed since yesterday and keep vomiting", "dehydration"),
        ("103 fever and my neck is too stiff to look down", "fever"),
        ("20 weeks pregnant and bleeding", "pregnancy"),
    ],
)
def test_red_flag_categories(text, rule):
    from bot.understanding.emergency import emergency_rule

    assert classify(text).intent == "emergency"
    name = emergency_rule(normalize(text))
    assert name is not None
    if rule in ("self_harm", "overdose", "child_poisoning"):
        assert name == rule  # the engine's crisis answer depends on it


def test_fresh_emergency_sets_are_large_enough_to_mean_something():
    fresh = load_examples(DATA / "nlu_emergency_fresh.jsonl")
    fresh2 = load_examples(DATA / "nlu_emergency_fresh2.jsonl")
    assert sum(r["intent"] == "emergency" for r in fresh) >= 150
    assert sum(r["intent"] != "emergency" for r in fresh) >= 100
    assert sum(r["intent"] == "emergency" for r in fresh2) >= 80
    assert sum(r["intent"] != "emergency" for r in fresh2) >= 50


def test_red_flag_terms_are_not_copied_from_labelled_messages():
    """Rules cover categories and synonyms; a whole test message is never a term."""
    from bot.understanding.red_flags import red_flags

    flags = red_flags()
    phrases = {
        " ".join(t[1] for t in term.tokens if t[0] == "w")
        for terms in (*flags.by_word.values(), *flags.by_stem.values())
        for term in terms
        if len(term.tokens) >= 4
    }
    messages = {normalize(r["text"]) for name in LABELLED_SETS for r in load_examples(DATA / name)}
    assert phrases & messages == set()


# ---------------------------------------------------------------- intents


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("rx?", "prescription_status"),
        ("wheres my rx", "prescription_status"),
        ("has the doctor signed off on my medication", "prescription_status"),
        ("tracking number pls", "shipment_tracking"),
        ("ups says delivered but nothing here", "shipment_tracking"),
        ("when will my meds get here", "shipment_tracking"),
        ("running low on pills", "refill"),
        ("what do i owe", "billing"),
        ("i was charged twice", "billing"),
        ("my card got declined??", "billing"),
        ("i got a new card, how do i update it", "update_payment_method"),
        ("skip next month", "cancel_subscription"),
        ("when is my appointment", "appointment"),
        ("when do i see the doctor", "appointment"),
        ("i need to reschedule", "reschedule"),
        ("what do i need to do", "next_steps"),
        ("why is it stuck", "next_steps"),
        ("talk to a person", "human"),
        ("can a nurse call me", "human"),
        ("can i take ibuprofen with this", "clinical_question"),
        ("cuánto debo tomar", "clinical_question"),
        ("cuánto debo", "billing"),
        ("hi", "greeting"),
        ("hola", "greeting"),
        ("thanks!", "thanks"),
        ("ok", "thanks"),
        ("what can you do", "help"),
        ("what's the wifi password", "unknown"),
        ("lol", "unknown"),
        ("", "unknown"),
    ],
)
def test_intent_of_typical_messages(text, intent):
    assert classify(text).intent == intent


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("perscription status?", "prescription_status"),
        ("refil pls", "refill"),
        ("wheres my pakage", "shipment_tracking"),
        ("apointment time?", "appointment"),
        ("i was chrged twice", "billing"),
        ("cancle my subscribtion", "cancel_subscription"),
        ("how much do i ow", "billing"),
        ("resched pls", "reschedule"),
        ("u guys got my rx or wat", "prescription_status"),
    ],
)
def test_misspellings_and_shorthand_are_understood(text, intent):
    assert classify(text).intent == intent


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        ("where is my rx and what do i owe", ["prescription_status", "billing"]),
        ("what do i owe and where is my rx", ["billing", "prescription_status"]),
        ("i need a refill, also when is my next appt", ["refill", "appointment"]),
        ("dónde está mi receta y cuánto debo", ["prescription_status", "billing"]),
        ("cancel my appointment and my subscription", ["reschedule", "cancel_subscription"]),
    ],
)
def test_two_requests_are_both_returned_in_the_order_written(text, intents):
    result = classify(text)
    assert result.intents == intents
    assert result.intent == intents[0]


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("hi where is my order", "shipment_tracking"),
        ("hi is my rx ready", "prescription_status"),
        ("hey can u check on my order", "prescription_status"),
        ("hola cuanto debo", "billing"),
    ],
)
def test_a_courtesy_word_leading_into_the_request_gives_only_the_request(text, intent):
    assert classify(text).intents == [intent]


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        ("hi, where is my package", ["greeting", "shipment_tracking"]),
        ("hello? my meds??", ["greeting", "prescription_status"]),
        ("buenos días, dónde está mi receta", ["greeting", "prescription_status"]),
        ("thanks! and when is my next refill", ["thanks", "refill"]),
        ("hola buenas, quiero cambiar mi cita", ["greeting", "reschedule"]),
        ("ok got it. and how do I change my card", ["thanks", "update_payment_method"]),
    ],
)
def test_a_courtesy_in_its_own_clause_comes_first_and_the_request_stays_primary(text, intents):
    result = classify(text)
    assert result.intents == intents
    assert result.intent == intents[1]


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # two intents at most: the two requests
        ("hi, where is my rx and what do i owe", ["prescription_status", "billing"]),
        # an emergency is first and primary
        ("hi, my chest hurts really bad", ["emergency"]),
    ],
)
def test_a_courtesy_clause_gives_way_to_two_requests_and_to_an_emergency(text, intents):
    assert classify(text).intents == intents


def test_a_line_of_backstory_the_model_reads_nothing_in_is_not_a_second_request():
    text = "my video call dropped halfway, can we pick another time"
    rules = classify_rules(text)
    assert rules.intents == ["appointment", "reschedule"]
    p = model.models().predict(text)
    assert p.intent == "reschedule"

    def read_with(appointment: float) -> list[str]:
        # the model's whole-message P(appointment) set around the bar, the rest as it read
        probabilities = {**p.intent_probabilities, "appointment": appointment}
        reading = replace(p, intent_probabilities=probabilities)
        clauses = [model.models().predict(c.text) for c in rules.clauses]
        return pipeline.decide(rules, reading, DEFAULT, clauses).intents

    assert read_with(DEFAULT.backstory_below / 2) == ["reschedule"]
    assert read_with(0.5) == ["appointment", "reschedule"]


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # backstory ("I completed...", "I'm on...") does not outrank the question asked
        (
            "I completed my consultation on Monday. Has the prescription been written yet?",
            ["prescription_status"],
        ),
        (
            "I had surgery last week and I'm on pain meds now, is it safe to keep taking my shot?",
            ["clinical_question"],
        ),
        # "talk to someone about X" is two requests
        ("i want to talk to a person about my bill", ["human", "billing"]),
        ("quiero hablar con alguien sobre un cobro", ["human", "billing"]),
        # "then" joins two requests
        ("update my card then send my refill", ["update_payment_method", "refill"]),
    ],
)
def test_backstory_and_joined_requests(text, intents):
    assert classify(text).intents == intents


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("cancel the refill", "cancel_subscription"),
        ("hold my next shipment", "cancel_subscription"),
        ("don't send next month's box", "cancel_subscription"),
        ("no quiero el próximo envío", "cancel_subscription"),
        ("is my refill in the mail", "shipment_tracking"),
        ("when does my plan renew", "billing"),
        ("can I switch to a different credit card", "update_payment_method"),
        ("stop sending me these", "opt_out"),
        ("basta de mensajes", "opt_out"),
        ("quisiera sacar turno con el médico", "reschedule"),
        ("¿Podemos pasar la cita al viernes?", "reschedule"),
        ("¿Sabéis algo de mi receta?", "prescription_status"),
        ("¿cómo sigue el proceso?", "next_steps"),
        ("side efects?", "clinical_question"),
        ("what time is it", "unknown"),
    ],
)
def test_wordings_the_first_catalogue_missed(text, intent):
    result = classify(text)
    assert result.intent == intent
    if intent != "opt_out":
        assert "opt_out" not in result.intents


@pytest.mark.parametrize(
    "text, intent",
    [
        # asking for help and nothing else: what the service can do is the answer (the rules
        # used to read "thanks for the help" in it)
        ("can you help me", "help"),
        ("Can u help me please?", "help"),
        ("i need assistance", "help"),
        ("how can you help me", "help"),
        ("me puedes ayudar?", "help"),
        ("alguien me puede ayudar", "help"),
        # help *with* something is that something, never the HELP keyword's reply
        ("i need help with my order", "prescription_status"),
        ("can you help me with my bill", "billing"),
        ("can you help me find my package", "shipment_tracking"),
        ("necesito ayuda con mi receta", "prescription_status"),
    ],
)
def test_asking_for_help_and_asking_for_help_with_something(text, intent):
    result = classify(text)
    assert result.intent == intent
    assert "opt_out" not in result.intents


def test_greetings_alone_are_kept_in_order():
    assert classify("hi, thanks").intents == ["greeting", "thanks"]


@pytest.mark.parametrize(
    "text",
    ["donde esta mi receta", "cuánto debo", "quiero hablar con una persona", "hola", "gracias"],
)
def test_spanish_messages_are_spanish(text):
    assert classify(text).language == "es"


@pytest.mark.parametrize("text", ["where is my rx", "ok", "3/14/85", "👍", "STOP"])
def test_english_or_languageless_messages_are_english(text):
    assert classify(text).language == "en"


def test_classification_as_json_rounds_confidence():
    result = Classification("billing", ["billing"], 0.87654, "en")
    assert result.as_json("what do i owe") == {
        "text": "what do i owe",
        "intent": "billing",
        "intents": ["billing"],
        "confidence": 0.877,
        "risk": "none",
        "risk_reason": "",
    }


def test_unknown_is_less_confident_than_a_clear_request():
    assert classify("what do i owe").confidence > 0.6
    assert classify("what's the wifi password").intent == "unknown"


# ---------------------------------------------------------------- the evaluation set


@pytest.fixture(scope="module")
def report():
    return evaluate_file(EVAL_FILE)


def test_evaluation_set_is_large_and_covers_every_intent():
    rows = load_examples(EVAL_FILE)
    assert len(rows) >= 600
    counts = {str(i): sum(r["intent"] == i for r in rows) for i in Intent}
    assert min(counts.values()) >= 20
    assert counts["emergency"] >= 50


def test_evaluation_accuracy_stays_above_the_floor(report):
    assert report.accuracy >= ACCURACY_FLOOR, format_report(report)


def test_evaluation_finds_every_emergency(report):
    assert report.emergency_recall == 1.0, report.missed_emergencies


def test_evaluation_has_no_false_opt_out(report):
    assert report.false_opt_outs == []


def test_evaluation_scores_the_primary_intent_of_a_courtesy_label(tmp_path):
    labelled = tmp_path / "pairs.tsv"
    labelled.write_text(
        "text\tintents\nhi, where is my package\tgreeting,shipment_tracking\n", encoding="utf-8"
    )
    result = evaluate_file(labelled)
    assert (result.accuracy, result.multi_accuracy) == (1.0, 1.0)
    assert result.per_intent and result.score("shipment_tracking").support == 1


@pytest.fixture(scope="module", params=sorted(LABELLED_SETS))
def labelled(request):
    return request.param, evaluate_file(DATA / request.param)


def test_every_labelled_set_stays_above_its_floor(labelled):
    name, result = labelled
    assert result.accuracy >= LABELLED_SETS[name], format_report(result)


def test_every_labelled_set_finds_every_emergency(labelled):
    _, result = labelled
    assert result.emergency_total > 0
    assert result.emergency_recall == 1.0, result.missed_emergencies


def test_no_labelled_set_has_a_false_opt_out(labelled):
    _, result = labelled
    assert result.false_opt_outs == []


def test_holdouts_are_large_enough_to_mean_something():
    assert len(load_examples(DATA / "nlu_holdout.jsonl")) >= 500
    assert len(load_examples(DATA / "nlu_holdout2.jsonl")) >= 150
    assert sum(r["intent"] == "emergency" for r in load_examples(DATA / "nlu_holdout.jsonl")) >= 60


def test_report_names_the_measures(report):
    text = format_report(report)
    for heading in (
        "accuracy",
        "two-intent exact",
        "emergency recall",
        "false emergencies",
        "false opt_out",
        "unknown",
    ):
        assert heading in text


def test_catalogue_examples_are_not_copied_from_the_evaluation_set():
    # (The holdouts share a few short everyday phrases with examples written long before them,
    # "delivery date?", "hey hey": docs/nlu.md. Fixes for them went into keywords and patterns.)
    evaluation = {normalize(r["text"]) for r in load_examples(EVAL_FILE)}
    copied = []
    for name in ("en.yaml", "es.yaml"):
        data = yaml.safe_load((CATALOGUE_DIR / name).read_text(encoding="utf-8"))
        for spec in data["intents"].values():
            copied += [e for e in spec.get("examples") or [] if normalize(str(e)) in evaluation]
    assert copied == []


def test_catalogues_name_only_known_intents_and_repeat_no_keyword():
    class StrictLoader(yaml.SafeLoader):
        pass

    def no_duplicates(loader, node, deep=False):
        keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate key near {node.start_mark}"
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicates)
    for path in sorted(CATALOGUE_DIR.glob("*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
        for name in (data.get("intents") or {}) if isinstance(data, dict) else ():
            assert name in {str(i) for i in Intent}
    assert len(catalogue().examples) > 400


# ---------------------------------------------------------------- command-line loop


def test_classify_command_writes_one_json_line_per_message():
    out = io.StringIO()
    run_classify(io.StringIO("wheres my rx\n\n  \ndónde está mi receta\nSTOP\n"), out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["intent"] for line in lines] == ["prescription_status"] * 2 + ["opt_out"]
    assert lines[1]["text"] == "dónde está mi receta"
    assert "dónde" in out.getvalue()  # not escaped
    assert set(lines[0]) == {"text", "intent", "intents", "confidence", "risk", "risk_reason"}
    assert lines[0]["risk"] == "none"


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        ("ok thanks. STOP", ["thanks", "opt_out"]),
        ("START. when is my next appointment", ["opt_in", "appointment"]),
        ("STOP. Y quiero saber por qué me cobraron", ["opt_out", "billing"]),
        ("hi. where is my package. STOP", ["shipment_tracking", "opt_out"]),
        ("stop the automated texts, just have a real person call me", ["opt_out", "human"]),
        ("STOP. i took all my pills and i want to die", ["emergency", "opt_out"]),
        # HELP beside an emergency is a plea, not the keyword
        ("i took all my pills and i want to die. help", ["emergency"]),
        # ... and beside a request: the request is answered, not the HELP text
        ("Help! my package never arrived", ["shipment_tracking"]),
        ("where is my refill?? HELP", ["refill"]),
        ("thanks. HELP", ["thanks", "help"]),
        # a keyword inside a sentence is a word of it; CANCEL beside other words names the plan
        ("STOP charging me twice", ["billing"]),
        ("stop my subscription", ["cancel_subscription"]),
        ("cancel my appointment", ["reschedule"]),
        ("the pharmacy stopped my order", ["prescription_status"]),
        ("can you stop the shipment", ["cancel_subscription"]),
    ],
)
def test_a_carrier_keyword_written_as_a_sentence_of_its_own_is_read_in_written_order(text, intents):
    assert classify(text).intents == intents


def test_cancel_as_a_sentence_beside_other_words_names_the_plan_not_the_texts():
    result = classify("im done. cancel. no I dont want a discount")
    assert result.intent == "cancel_subscription" and "opt_out" not in result.intents


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # a clause thanking for something is thanks, not what it thanks for
        (
            "thank you for the tracking link! can i take advil with my shot",
            ["thanks", "clinical_question"],
        ),
        ("gracias por la informacion. cuando llega mi paquete", ["thanks", "shipment_tracking"]),
        # beside an emergency, what is clinical is most often a symptom of it: another request first
        (
            "crushing chest pain and sweating a lot, also why did you charge me twice",
            ["emergency", "billing"],
        ),
        # a contact verb and what for
        ("necesito hablar con alguien para cancelar mi cita", ["human", "reschedule"]),
        # the familiar imperative asks to stop texting as the formal one does
        ("deja de enviarme mensajes por favor", ["opt_out"]),
    ],
)
def test_two_intent_kinds_both_readers_missed(text, intents):
    assert classify(text).intents == intents


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # a failed payment told beside a request to change the card is why it changes
        ("my payment failed, can i fix it with another card", ["update_payment_method"]),
        ("declined again?? ugh. how do I fix it", ["update_payment_method"]),
        ("me rechazaron el pago, quiero poner otra tarjeta", ["update_payment_method"]),
        # ...asked about, it stays a billing question
        ("my card got declined, why", ["billing"]),
        (
            "my card was declined, how much do i owe and can i use a different card",
            ["billing", "update_payment_method"],
        ),
        ("my card was declined and i need my refill", ["billing", "refill"]),
    ],
)
def test_a_failed_payment_told_before_a_new_card_is_one_request(text, intents):
    assert classify(text).intents == intents


@pytest.mark.parametrize(
    ("text", "risk"),
    [
        # thanks for everything with a goodbye: a check-in, not the 911 script, and not nothing
        ("gracias por todo, adiós", "possible"),
        # ...and alone, or with a plain see-you, a courtesy
        ("thanks for everything", "none"),
        ("gracias por todo doctora, nos vemos en la próxima cita", "none"),
    ],
)
def test_a_goodbye_with_thanks_for_everything_gets_a_check_in(text, risk):
    result = classify(text)
    assert result.risk == risk and "emergency" not in result.intents, result


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # "btw" joins two requests; Caribbean greetings are greetings
        ("where's my package btw when is my refill", ["shipment_tracking", "refill"]),
        ("Klk mi gente! cuánto me van a cobrar el mes que viene", ["greeting", "billing"]),
        ("Qué bolá. ¿A qué hora es mi cita?", ["greeting", "appointment"]),
        # beside an emergency, a request both readers see, though neither surely
        ("mi papá no respira!! y necesito saber si llegó su medicina",
         ["emergency", "shipment_tracking"]),
    ],
)  # fmt: skip
def test_pairs_joined_by_btw_after_a_regional_greeting_and_beside_an_emergency(text, intents):
    assert classify(text).intents == intents


@pytest.mark.parametrize(
    ("text", "intents"),
    [
        # asking whether a machine answers is why they want a person: one request
        ("is this a bot? I need a human", ["human"]),
        ("es un robot? quiero hablar con alguien", ["human"]),
        # asking what the number is, then for a person: two (Set S's pair)
        ("what is this number? i want to talk to a person", ["help", "human"]),
    ],
)
def test_asking_if_a_bot_answers_before_asking_for_a_person(text, intents):
    assert classify(text).intents == intents


@pytest.mark.parametrize(
    "text",
    [
        "where is my prescription",
        "can i cancel my appointment for tomorrow and move it to friday",
        "mi tarjeta fue rechazada, quiero cambiar el metodo de pago",
        "refill please, and when does the package ship",
        "i want to talk to a real person about my bill",
        "blorp flurb zzz",
    ],
)
def test_a_clause_runs_exactly_the_patterns_whose_trigger_words_it_has(text: str) -> None:
    """The pattern index (`Catalogue.pattern_index`) picks the same patterns as testing
    every pattern's triggers would, in catalogue order."""
    cat = catalogue()
    present = Present(cat.normalizer.words(text))
    expected = [k for k, p in enumerate(cat.patterns) if present.has(p.triggers)]
    assert cat.pattern_index.candidates(present) == expected
    assert len(expected) < len(cat.patterns)  # the index leaves most patterns out


def test_an_ascii_emoji_entry_is_refused() -> None:
    """`prepare` skips the emoji pass for ASCII text, so an emoji entry must not be ASCII."""
    with pytest.raises(ValueError, match="ASCII"):
        Normalizer({"emoji": {":)": "happy"}})
    assert Normalizer({"emoji": {"💊": "pill"}}).prepare("my 💊?") == "my pill?"


def test_a_repeated_short_message_is_read_once_and_each_caller_gets_its_own_list() -> None:
    pipeline._remembered.cache_clear()
    first = pipeline.classify_remembered("where is my order and what do i owe")
    first.intents.append("unknown")  # a caller changing its list changes no one else's
    again = pipeline.classify_remembered("where is my order and what do i owe")
    assert again == classify("where is my order and what do i owe")
    assert again.intents == ["shipment_tracking", "billing"]
    info = pipeline._remembered.cache_info()
    assert (info.hits, info.currsize) == (1, 1)


@pytest.mark.parametrize(
    "text",
    [
        "my dob is 03/14/1985",  # a digit: a date of birth, a card, a phone number
        "card 4111 1111 1111 1111",
        "so i started the injections last month and the nausea has been bad " * 3,  # a story
    ],
)
def test_a_message_with_a_digit_or_a_long_one_is_never_kept(text: str) -> None:
    pipeline._remembered.cache_clear()
    assert pipeline.classify_remembered(text) == classify(text)
    assert pipeline._remembered.cache_info().currsize == 0


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("how many of my sleeping pills would it take to die", "emergency"),
        ("how much of this would kill someone", "emergency"),
        ("how much tylenol is deadly", "emergency"),
        ("cuantas pastillas de estas alcanza para morir", "emergency"),
        # the same shapes about a price, a plan or a delivery
        ("how much does the higher dose cost", "billing"),
        ("how much would it cost to kill my subscription", "billing"),
        ("this price would kill someone lol", "billing"),
        ("how many days would shipping take to deliver", "shipment_tracking"),
    ],
)
def test_how_much_it_takes_to_die_is_asked_about_anyone(text: str, intent: str) -> None:
    assert classify(text).intent == intent
