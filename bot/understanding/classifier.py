"""Intent classification: rules first, then key nouns and the fuzzy catalogue, per clause.

Pipeline for one message (see docs/nlu.md):

1. normalise (case, accents, emoji, shorthand and misspellings, spelling correction);
2. carrier keywords, exact (STOP, START, HELP...): the answer, confidence 1;
3. emergency rules over the whole message: emergency is then always the primary intent
   (`intent`) and the first of `intents`, the other request after it;
4. split into clauses on punctuation and conjunctions ("and", "also", "y", "tambien"...), and
   where a question starts mid-sentence in a run-on ("where is my package can someone call me");
5. per clause: plain-language consent requests ("stop texting me") are rules; otherwise every
   intent is scored from weighted keywords and patterns plus the nearest catalogue examples
   (rapidfuzz), and the clause takes the best intent if its confidence clears the threshold;
6. the message's intents are the clauses' distinct intents in the order written; greeting and
   thanks are dropped when anything substantive is there, except a courtesy in a clause of its
   own before one request ("hi, where is my package": greeting, shipment_tracking; the
   request stays the primary intent); nothing clear -> unknown.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import yaml
from rapidfuzz import fuzz
from rapidfuzz.process import extract

from bot.intents import SOCIAL_INTENTS, Intent, primary
from bot.understanding.emergency import emergency_match
from bot.understanding.keywords import (
    KeywordSentences,
    carrier_keyword,
    consent_request,
    keyword_sentences,
)
from bot.understanding.normalize import (
    CATALOGUE_DIR,
    Normalizer,
    Speller,
    default_normalizer,
)
from bot.understanding.red_flags import guard_words
from bot.understanding.red_flags import literal_words as red_flag_words
from bot.understanding.risk import Risk, RiskReason
from bot.understanding.risk_rules import possible_match
from bot.understanding.triggers import Present, TriggerIndex, pattern_triggers

CATALOGUE_FILES = ("en.yaml", "es.yaml")

# Tuned on tests/data/nlu_eval.jsonl and checked on the holdouts (figures in docs/nlu.md).
THRESHOLD = 0.40  # a clause below this says nothing we can act on
SECONDARY_THRESHOLD = 0.50  # a second intent in the same message must be clearer still
MAX_WORDS_AFTER_GREETING = 2  # more unexplained words than this and it is not just a greeting
FUZZY_WEIGHT = 3.0  # what a perfect match with a catalogue example is worth, in keyword points
FUZZY_FLOOR = 60.0  # rapidfuzz similarity below which an example says nothing
STRENGTH_SCALE = 4.0  # keyword points at which confidence reaches ~0.63 before the margin
RUN_ONS = True  # split voice-to-text run-ons (`RUN_ON_STARTS`)
BACKSTORY_FACTOR = 0.7  # a clause telling what already happened, next to a request

# "I completed my consultation on Monday. Has the prescription been written yet?": a clause that
# reports something done (first person, past tense) is backstory when another clause asks
# something, so it must be clearer than usual to become an intent of its own.
_BACKSTORY = re.compile(
    r"^((so|well|ok|okay|hey|hi|hello|and|but|yes|um|uh|hmm)\s+)*"
    r"(i|we)\s+(already\s+|just\s+|finally\s+|recently\s+)?"
    r"(completed|did|had|finished|submitted|filled|placed|ordered|started|spoke|talked|saw|"
    r"went|was told|were told|signed up|got|received|sent|called|moved|paid|took|switched|"
    r"am on|have been on|am taking|take)\b"
    r"|^(ya\s+)?(complete|hice|tuve|termine|llene|mande|envie|pague|pedi|empece|hable|me dijeron)\b"
)

# "my payment failed, can i use another card", "me rechazaron la tarjeta, ya tengo otra": a
# failed payment told beside a request to change the card is why the card changes, one request
# (as the blind writers label it, 41 of 53 times); asked about ("declined, why?", "cuanto
# debo?") it stays a billing question.
_FAILED_PAYMENT = re.compile(
    r"\b(payments?|cards?|charges?|pagos?|tarjetas?|cobros?)\b.{0,25}?\b(failed|fails|declined|"
    r"declining|declines|decline|bounced|didnt go through|rejected|rechaz\w*|no paso|fallo)\b"
    r"|\b(declined|rechaz\w*|fallo|failed)\b.{0,15}?\b(payments?|cards?|pagos?|tarjetas?)\b"
    r"|^(it\s+)?(got\s+)?(declined|rechazad[oa]|failed)\b"
)
_ASKS_WHY = re.compile(
    r"\b(why|how much|how come|what happened|what was|por que|cuanto|que paso|como que)\b"
)

# "my dad collapsed and isnt breathing please get someone": beside an emergency, asking for a
# person to call or come is a second request (the emergency's hand-off answers it), as the blind
# writers label it; "call 911" is not one.
_PLEA_FOR_A_PERSON = re.compile(
    r"\b(get|send|have)\s+(someone|somebody|a nurse|a doctor|a person)\b"
    r"|\b(someone|somebody|a nurse|a doctor|a person|anyone)\s+(please\s+)?(call|text)\s+me\b"
    r"|\b(call|text)\s+me\s+(back|please|asap|now|right now)\b"
    r"|\b(que\s+)?(alguien|una enfermera|un doctor)\s+(me\s+)?(llame|marque|hable)\b"
    r"|\bllamenme\b|\bmarquenme\b"
)

CONJUNCTIONS = frozenset(
    {"and", "also", "plus", "n", "but", "then", "y", "tambien", "ademas", "pero", "luego", "btw"}
)
# "talk to someone about my bill" is two requests: a person, and the bill. After one of these
# verbs in the same clause, "about" starts a new clause.
CONTACT_VERBS = frozenset(
    {"talk", "speak", "chat", "call", "hablar", "platicar", "comunicarme", "llamar", "llamen"}
)
# ...and so does "para" (what for): "quiero hablar con alguien para cambiar mi cita"
TOPIC_WORDS = frozenset({"about", "regarding", "concerning", "sobre", "acerca", "para"})
# Voice-to-text run-ons ("where is my package can someone call me"): a question or a request
# starting mid-sentence starts a new clause when at least three words stand on either side,
# unless the word before it leads into it ("tell me when", "i want to know where", "quiero
# saber cuando"); "what do i do" stays with what it asks about ("he isn't breathing what do
# i do" is no question about next steps).
RUN_ON_STARTS: dict[str, frozenset[str]] = {
    "where": frozenset({"is", "are", "s", "did", "does"}),
    "when": frozenset({"is", "will", "does", "do", "can", "are", "did", "should", "would"}),
    "can": frozenset({"i", "you", "someone", "somebody", "u", "we", "a"}),
    "could": frozenset({"you", "i", "someone", "somebody", "u"}),
    "how": frozenset({"do", "much", "long", "can", "does", "many", "soon"}),
    "what": frozenset({"is", "do", "does", "time", "are", "should", "happens"}),
    "why": frozenset({"was", "is", "did", "am", "are", "do", "does", "has", "have", "were"}),
    "do": frozenset({"i", "you"}),
    "is": frozenset({"my", "there", "it"}),
    "did": frozenset({"you", "my", "the"}),
    "i": frozenset({"need", "want"}),
    "cuando": frozenset(),  # any next word
    "donde": frozenset(),
    "necesito": frozenset(),
    "quiero": frozenset(),
    "pueden": frozenset(),
    "cuanto": frozenset(),
}
RUN_ON_LEADS = frozenset(
    {
        "to", "know", "me", "tell", "ask", "asking", "wondering", "wonder", "sure", "if",
        "not", "see", "check", "confirm", "let", "idea", "clue", "understand", "explain",
        "remember", "forgot", "curious", "out", "whether", "and", "or", "about", "on", "of",
        "is", "that", "so", "because", "say", "says", "said", "where", "when", "what", "how",
        "why", "saber", "digan", "diga", "dime", "ver", "preguntar", "pregunto", "que", "se",
        "sabe", "sabes", "si", "no", "y", "o", "porque", "decir", "dicen", "dijeron",
        "te", "le", "les", "nos", "lo", "la", "cuando", "donde", "como", "do", "does",
        "did", "anything", "something", "there", "thing", "things", "exactly", "can", "before",
        "after", "until", "till",
    }
)  # fmt: skip


RUN_ON_SIDE = 3  # words on either side of a run-on split, at least


def _run_on_start(words: Sequence[str], start: int, at: int) -> bool:
    nexts = RUN_ON_STARTS.get(words[at])
    if nexts is None or words[at - 1] in RUN_ON_LEADS or at - start < RUN_ON_SIDE:
        return False
    rest = words[at : at + RUN_ON_SIDE + 1]
    if len(rest) < RUN_ON_SIDE or rest == ["what", "do", "i", "do"]:
        return False
    return not nexts or words[at + 1] in nexts


_SPANISH_SIGNS = re.compile(r"[¿¡ñáéíóú]")
_STEM_OR_ESCAPE = re.compile(r"[a-z]*\\w[*+?]?|\\[a-zA-Z]")
_WORD = re.compile(r"[a-z]{5,}")


@dataclass(frozen=True)
class ClauseReading:
    text: str  # the clause's normalised words
    intent: str
    confidence: float


@dataclass(frozen=True)
class Classification:
    intent: str
    intents: list[str] = field(default_factory=list)
    confidence: float = 0.0
    language: str = "en"
    risk: str = Risk.NONE
    risk_reason: str = ""  # the category and the words that fired, e.g. 'self_harm: "..."'
    # how each clause read on its own, in written order (for the learned model's second look)
    clauses: tuple[ClauseReading, ...] = field(default=(), compare=False, repr=False)

    def as_json(self, text: str) -> dict[str, Any]:
        return {
            "text": text,
            "intent": self.intent,
            "intents": list(self.intents),
            "confidence": round(self.confidence, 3),
            "risk": str(self.risk),
            "risk_reason": self.risk_reason,
        }


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    intent: Intent
    weight: float
    triggers: tuple[frozenset[str], frozenset[str]] | None  # see pattern_triggers


@dataclass(frozen=True)
class Clause:
    raw: tuple[str, ...]  # normalised words
    words: tuple[str, ...]  # the same words after spelling correction

    def texts(self) -> tuple[str, ...]:
        raw, corrected = " ".join(self.raw), " ".join(self.words)
        return (raw,) if raw == corrected else (raw, corrected)


@dataclass(frozen=True)
class ClauseResult:
    intent: Intent
    confidence: float
    words: tuple[str, ...]


class Catalogue:
    """The catalogues loaded, normalised and indexed once."""

    def __init__(self, normalizer: Normalizer, documents: list[dict[str, Any]]) -> None:
        self.normalizer = normalizer
        self.keywords: dict[tuple[str, ...], list[tuple[Intent, float]]] = defaultdict(list)
        self.patterns: list[Pattern] = []
        self.examples: list[str] = []
        self.example_intents: list[Intent] = []
        self.index: dict[str, list[int]] = defaultdict(list)
        self.markers: dict[str, frozenset[str]] = {}
        self.greeting_words: set[str] = set()
        stopwords: set[str] = set()
        known: set[str] = set(normalizer.vocabulary)
        targets: Counter[str] = Counter()
        explicit_markers: dict[str, set[str]] = {}
        language_words: dict[str, set[str]] = defaultdict(set)

        for doc in documents:
            explicit_markers[doc["language"]] = set(_strings(doc["markers"]))
            stopwords.update(_strings(doc["stopwords"]))
        self.stopwords = frozenset(stopwords)

        for doc in documents:
            seen_words = language_words[doc["language"]]
            for name, spec in doc["intents"].items():
                intent = Intent(name)
                keywords = spec.get("keywords") or {}
                for phrase, weight in zip(_strings(list(keywords)), keywords.values(), strict=True):
                    words = tuple(normalizer.words(phrase))
                    self.keywords[words].append((intent, float(weight)))
                    if intent is Intent.GREETING:
                        self.greeting_words.update(words)
                    targets.update(words)
                    seen_words.update(words)
                for source, weight in spec.get("patterns") or []:
                    self.patterns.append(
                        Pattern(re.compile(source), intent, float(weight), pattern_triggers(source))
                    )
                    targets.update(_literal_words(source))
                for example in _strings(spec.get("examples") or []):
                    words = tuple(normalizer.words(example))
                    known.update(words)
                    seen_words.update(words)
                    content = self.content(words)
                    if not content:
                        continue
                    position = len(self.examples)
                    self.examples.append(" ".join(content))
                    self.example_intents.append(intent)
                    for word in set(content):
                        self.index[word].append(position)
        # A language's markers: its listed words, plus every catalogue word only it uses.
        shared = set.intersection(*language_words.values()) if len(language_words) > 1 else set()
        for language, listed in explicit_markers.items():
            others = set().union(*(m for lang, m in explicit_markers.items() if lang != language))
            self.markers[language] = frozenset(
                listed | (language_words[language] - shared - others)
            )
        for markers in self.markers.values():
            known.update(markers)
        known.update(self.stopwords)
        known.update(guard_words())
        emergency_words = _emergency_words()
        targets.update(emergency_words)
        targets.update(_consent_words())
        self.max_keyword = max(len(k) for k in self.keywords)
        self.speller = Speller(known, targets, guarded=emergency_words)
        # a clause runs only the patterns whose trigger words it has (`pattern_triggers`)
        self.pattern_index = TriggerIndex.build(p.triggers for p in self.patterns)

    def content(self, words: list[str] | tuple[str, ...]) -> list[str]:
        return [w for w in words if w not in self.stopwords]

    def language(self, text: str, words: Sequence[str]) -> str:
        es = sum(1 for w in words if w in self.markers["es"])
        en = sum(1 for w in words if w in self.markers["en"])
        if _SPANISH_SIGNS.search(text.lower()):
            es += 1
        return "es" if es > en else "en"

    def score(self, words: tuple[str, ...]) -> dict[Intent, float]:
        """Keyword points per intent for one clause."""
        scores: dict[Intent, float] = defaultdict(float)
        seen: set[tuple[str, ...]] = set()
        i = 0
        while i < len(words):
            for n in range(min(self.max_keyword, len(words) - i), 0, -1):
                key = words[i : i + n]
                hits = self.keywords.get(key)
                if hits:
                    if key not in seen:
                        seen.add(key)
                        for intent, weight in hits:
                            scores[intent] += weight
                    i += n
                    break
            else:
                i += 1
        text = " ".join(words)
        for k in self.pattern_index.candidates(Present(words)):
            pattern = self.patterns[k]
            if pattern.regex.search(text):
                scores[pattern.intent] += pattern.weight
        for intent, similarity in self.nearest_examples(words).items():
            scores[intent] += FUZZY_WEIGHT * (similarity - FUZZY_FLOOR) / (100.0 - FUZZY_FLOOR)
        return scores

    def nearest_examples(self, words: tuple[str, ...]) -> dict[Intent, float]:
        """Best rapidfuzz similarity per intent among examples sharing a word with the clause."""
        content = self.content(words)
        candidates = sorted({j for w in content for j in self.index.get(w, ())})
        if not candidates:
            return {}
        query = " ".join(content)
        choices = [self.examples[j] for j in candidates]
        best: dict[Intent, float] = {}
        by_set = extract(query, choices, scorer=fuzz.token_set_ratio, processor=None, limit=None)
        by_sort = {
            k: s
            for _, s, k in extract(
                query, choices, scorer=fuzz.token_sort_ratio, processor=None, limit=None
            )
        }
        for _, set_score, k in by_set:
            similarity = (set_score + by_sort.get(k, 0.0)) / 2
            if similarity <= FUZZY_FLOOR:
                continue
            intent = self.example_intents[candidates[k]]
            if similarity > best.get(intent, 0.0):
                best[intent] = similarity
        return best


def _strings(items: list[Any]) -> list[str]:
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"catalogue word {item!r} is not a string: quote it in the YAML")
        out.append(item)
    return out


def _emergency_words() -> list[str]:
    """Words the emergency rules read: phrase rules and red-flag terms (spelling targets)."""
    with open(CATALOGUE_DIR / "emergency.yaml", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    sources = list(data["terms"].values())
    sources += [p for rule in data["rules"] for p in rule.get("any", []) + rule.get("all", [])]
    return [w for source in sources for w in _literal_words(source)] + red_flag_words()


def _consent_words() -> list[str]:
    with open(CATALOGUE_DIR / "consent.yaml", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return [w for patterns in data.values() for p in patterns for w in _literal_words(p)]


# ---------------------------------------------------------------- reading regex sources


def _literal_words(regex_source: str) -> list[str]:
    """Plain words of five letters or more inside a regex ("stems\\w*" and escapes left out)."""
    return _WORD.findall(_STEM_OR_ESCAPE.sub(" ", regex_source))


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The catalogue, loaded once per process."""
    documents = []
    for name in CATALOGUE_FILES:
        with open(CATALOGUE_DIR / name, encoding="utf-8") as f:
            documents.append(yaml.safe_load(f))
    return Catalogue(default_normalizer(), documents)


def _confidence(ranked: list[tuple[Intent, float]]) -> float:
    top = ranked[0][1]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    if top <= 0:
        return 0.0
    strength = 1.0 - math.exp(-top / STRENGTH_SCALE)
    margin = (top - max(second, 0.0)) / top
    return strength * (0.6 + 0.4 * margin)


# "ty for the tracking!", "gracias por la informacion": a clause thanking for something is
# thanks, whatever it thanks for (that was given already; the clause asks for nothing).
_THANKS_FOR = re.compile(
    r"^((ok|okay|oh|and|well|hey|hi|hello)\s+)*"
    r"(thanks|thank you|thank u|many thanks|gracias|muchas gracias|mil gracias)\s+"
    r"((so|very)\s+much\s+|a lot\s+|again\s+|muchas\s+)?(for|4|por)\b"
)
THANKS_FOR_CONFIDENCE = 0.9


def classify_clause(cat: Catalogue, clause: Clause) -> ClauseResult:
    for text in clause.texts():
        consent = consent_request(text)
        if consent is not None:
            return ClauseResult(consent, 0.95, clause.words)
    if _THANKS_FOR.search(" ".join(clause.raw)):
        return ClauseResult(Intent.THANKS, THANKS_FOR_CONFIDENCE, clause.words)
    scores = cat.score(clause.words)
    if not scores:
        return ClauseResult(Intent.UNKNOWN, 0.0, clause.words)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    substantive = [kv for kv in ranked if kv[0] not in SOCIAL_INTENTS]
    if substantive and _confidence(substantive) >= THRESHOLD:
        ranked = substantive
    if ranked[0][0] is Intent.GREETING:
        # "hey can you tell me a fun fact" is not a greeting: it is a greeting and then
        # something we did not understand.
        other = [w for w in cat.content(clause.words) if w not in cat.greeting_words]
        if len(other) > MAX_WORDS_AFTER_GREETING:
            return ClauseResult(Intent.UNKNOWN, 0.0, clause.words)
    return ClauseResult(ranked[0][0], _confidence(ranked), clause.words)


def split_clauses(cat: Catalogue, text: str) -> list[Clause]:
    """Clauses on sentence punctuation and conjunctions, normalised and spell-corrected."""
    clauses: list[Clause] = []
    for chunk in cat.normalizer.clauses(text):
        raw = cat.normalizer.words(chunk)
        corrected = cat.speller.correct(raw)
        start = 0
        contact = False
        for end, word in enumerate([*corrected, "and"]):
            if word in CONJUNCTIONS or (contact and word in TOPIC_WORDS):
                if end > start:
                    clauses.append(Clause(tuple(raw[start:end]), tuple(corrected[start:end])))
                start = end + 1
                contact = False
            elif RUN_ONS and end < len(raw) and _run_on_start(raw, start, end):
                clauses.append(Clause(tuple(raw[start:end]), tuple(corrected[start:end])))
                start = end
                contact = word in CONTACT_VERBS
            elif word in CONTACT_VERBS:
                contact = True
    return clauses


def _dampen_backstory(results: list[ClauseResult]) -> list[ClauseResult]:
    """Backstory clauses count for less, but only when another clause asks something itself."""
    backstory = [bool(_BACKSTORY.search(" ".join(r.words))) for r in results]
    if not any(backstory) or not any(
        not told
        and r.intent not in SOCIAL_INTENTS
        and r.intent is not Intent.UNKNOWN
        and r.confidence >= THRESHOLD
        for r, told in zip(results, backstory, strict=True)
    ):
        return results
    return [
        ClauseResult(r.intent, r.confidence * BACKSTORY_FACTOR, r.words) if told else r
        for r, told in zip(results, backstory, strict=True)
    ]


def _fold_failed_payment(results: list[ClauseResult]) -> list[ClauseResult]:
    """A failed payment told (not asked about) beside a request to change the card is part of
    that request (`_FAILED_PAYMENT`)."""
    if not any(
        r.intent is Intent.UPDATE_PAYMENT_METHOD and r.confidence >= THRESHOLD for r in results
    ):
        return results
    return [
        ClauseResult(Intent.UPDATE_PAYMENT_METHOD, 0.0, r.words)
        if r.intent is Intent.BILLING and failed_payment_told(" ".join(r.words))
        else r
        for r in results
    ]


def failed_payment_told(clause: str) -> bool:
    """A clause (normalised words) telling of a failed payment without asking about it."""
    return bool(_FAILED_PAYMENT.search(clause)) and not _ASKS_WHY.search(clause)


def _emergency_match(clause: Clause) -> tuple[str, str] | None:
    for text in clause.texts():
        found = emergency_match(text)
        if found is not None:
            return found
    return None


def _is_emergency(clause: Clause) -> bool:
    return _emergency_match(clause) is not None


def _possible_match(clause: Clause) -> tuple[str, str] | None:
    for text in clause.texts():
        found = possible_match(text)
        if found is not None:
            return found
    return None


def classify(text: str) -> Classification:
    """Understand one patient message. See the module docstring for the order of the rules."""
    keywords = keyword_sentences(text)
    if keywords is not None:
        return with_keywords(classify(keywords.rest) if keywords.rest else None, keywords)
    cat = catalogue()
    clauses = split_clauses(cat, text)
    whole = Clause(
        tuple(w for c in clauses for w in c.raw), tuple(w for c in clauses for w in c.words)
    )
    language = cat.language(text, whole.words)
    keyword = carrier_keyword(text)
    if keyword is not None:
        return Classification(str(keyword), [str(keyword)], 1.0, language)

    # Emergency rules read the whole message as written, conjunctions included ("i want to
    # sleep and never wake up" must not lose its "and").
    full = cat.normalizer.words(text)
    full_clause = Clause(tuple(full), tuple(cat.speller.correct(full)))
    emergency_found = _emergency_match(full_clause)
    emergency = emergency_found is not None
    # The clauses that are an emergency on their own (read as such, not as a request).
    flagged = [emergency and _is_emergency(clause) for clause in clauses]
    results = [
        classify_clause(cat, clause)
        for clause, is_emergency in zip(clauses, flagged, strict=True)
        if not is_emergency
    ]
    results = _fold_failed_payment(_dampen_backstory(results))
    readings = iter(results)
    clause_readings = tuple(
        ClauseReading(" ".join(clause.raw), str(Intent.EMERGENCY), 1.0)
        if is_emergency
        else _reading(clause, next(readings))
        for clause, is_emergency in zip(clauses, flagged, strict=True)
    )
    found = [r for r in results if r.intent is not Intent.UNKNOWN and r.confidence >= THRESHOLD]
    if not found and len(clauses) > 1 and not emergency:
        result = classify_clause(cat, whole)
        results.append(result)
        if result.intent is not Intent.UNKNOWN and result.confidence >= THRESHOLD:
            found.append(result)

    substantive = [r for r in found if r.intent not in SOCIAL_INTENTS]
    if len(substantive) > 1:
        # Several clauses: each must be clear on its own, so a line of backstory ("since my
        # visit...") does not become the primary intent; if none is, keep the clearest.
        clear = [r for r in substantive if r.confidence >= SECONDARY_THRESHOLD]
        chosen = clear or [max(substantive, key=lambda r: r.confidence)]
    else:
        chosen = substantive or found
    intents: list[str] = []
    for result in chosen:
        if str(result.intent) not in intents:
            intents.append(str(result.intent))

    if emergency:
        # The emergency is the primary intent, so it comes first wherever it was written
        # ("where is my refill? also my chest hurts": emergency, refill), as the people who
        # wrote the blind sets put it (82 of 85 two-intent emergencies); the other request
        # follows; a courtesy beside it is dropped ("hi, my chest hurts": emergency).
        others = [i for i in intents if i != Intent.EMERGENCY and i not in SOCIAL_INTENTS]
        # What is clinical beside an emergency is most often a symptom of it ("chest pain into
        # my jaw and sweating bad, also why was i charged twice"): the emergency's answer and
        # its clinical hand-off cover it, so another request comes first.
        others.sort(key=lambda i: i == Intent.CLINICAL_QUESTION)
        if not others and _PLEA_FOR_A_PERSON.search(" ".join(full)):
            others = [str(Intent.HUMAN)]
        intents = [str(Intent.EMERGENCY), *others]
        reason = str(RiskReason(*emergency_found)) if emergency_found else ""
        return Classification(
            str(Intent.EMERGENCY), intents, 1.0, language, Risk.EMERGENCY, reason, clause_readings
        )
    possible = _possible_match(full_clause)
    risk = Risk.POSSIBLE if possible else Risk.NONE
    reason = str(RiskReason(*possible)) if possible else ""
    if not intents:
        best = max((r.confidence for r in results), default=0.0)
        return Classification(
            str(Intent.UNKNOWN),
            [str(Intent.UNKNOWN)],
            1.0 - best,
            language,
            risk,
            reason,
            clause_readings,
        )
    return with_courtesy(
        Classification(
            intents[0], intents, chosen[0].confidence, language, risk, reason, clause_readings
        )
    )


def with_keywords(rest: Classification | None, keywords: KeywordSentences) -> Classification:
    """A message with carrier keywords as sentences of their own ("ok thanks. STOP"): the
    keywords' intents beside what the rest of it says (`rest`), in the order written; STOP is
    honoured before anything (the engine acts on an opt_out anywhere in `intents`), an
    emergency stays first (its answer comes first), and HELP beside a request or an emergency
    is a plea, not the keyword ("Help! my package never arrived" asks about the package, as
    Twilio reads HELP only as a whole message). Two intents at most: a courtesy gives way to a
    keyword."""
    said = [i for i in (rest.intents if rest else []) if i != Intent.UNKNOWN]
    before, after = list(keywords.before), list(keywords.after)
    if any(i not in SOCIAL_INTENTS for i in said):
        before, after = (
            [i for i in before if i != Intent.HELP],
            [i for i in after if i != Intent.HELP],
        )
    intents = [str(i) for i in before] + said + [str(i) for i in after]
    if Intent.EMERGENCY in intents:
        intents.remove(Intent.EMERGENCY)
        intents = [str(Intent.EMERGENCY), *intents]
    intents = list(dict.fromkeys(intents))
    if len(intents) > 2:
        intents = [i for i in intents if i not in SOCIAL_INTENTS][:2]
    language = rest.language if rest else "en"
    if rest is None:
        return Classification(intents[0], intents, 1.0, language)
    return replace(rest, intent=primary(intents), intents=intents, confidence=1.0, clauses=())


def with_courtesy(c: Classification) -> Classification:
    """A greeting or thanks written as its own clause before one request ("hi, where is my
    package", "thanks! also when is my refill", "hola buenas, quiero cambiar mi cita") comes
    first in `intents`, in the order written; the request stays the primary `intent`, the
    thing the engine answers. A courtesy word that leads into the sentence ("hi is my rx
    ready") is no clause of its own: just the request. Never beside an emergency or two
    requests (two intents at most)."""
    first = c.clauses[0] if len(c.clauses) > 1 else None
    if (
        first is None
        or first.intent not in SOCIAL_INTENTS
        or first.confidence < THRESHOLD
        or len(c.intents) != 1
        or c.intent in (*SOCIAL_INTENTS, Intent.UNKNOWN, Intent.EMERGENCY)
    ):
        return c
    return replace(c, intents=[first.intent, c.intent])


def without_courtesy(c: Classification) -> Classification:
    """`c` without the courtesy `with_courtesy` put before its request."""
    if c.intents[0] in SOCIAL_INTENTS and c.intent not in SOCIAL_INTENTS:
        return replace(c, intents=c.intents[1:])
    return c


def _reading(clause: Clause, result: ClauseResult) -> ClauseReading:
    return ClauseReading(" ".join(clause.raw), str(result.intent), result.confidence)
