"""Red flags: emergencies recognised by clinical category rather than by wording.

The phrase rules of `emergency.yaml` catch wordings someone has written before. This layer
(`catalogue/red_flags.yaml`) describes each triage category instead: its body or system words,
its symptom words, and the shared severity, onset and inability modifiers, in English and
Spanish. A category fires when the words of one of its combinations all occur within a few
words of each other ("belly" + "pain" + "getting worse"; "lips" + "blue"; "want" + "die"), or
when a sign that is urgent by itself appears ("coffee grounds", "unresponsive", "seizure").

Terms are words and phrases over NORMALISED text (the normaliser's shorthand table applies to
them too, so "im" in the data means "i am"); `word*` is a stem, `#` any number and `#3-99` a
number in that range (digits or number words), `$` the end of the message, and a trailing
`!a|b` means the next word is not one of those ("blood !test|work" is not "blood test"). Each
term is indexed by its first word (or stem, or number), so a message costs one dictionary
look-up per word and prefix, then a check of the few terms that start there.

Before any emergency rule runs (this layer and the phrase rules), `guards` blank known figures
of speech and non-urgent contexts: "heart attack when I saw the bill", "I had a stroke in
2019", "refill for my seizure meds", "signs of an allergic reaction", "I work in the ER".
A guard blanks only the figurative words, so a real emergency in the same message still counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from typing import Any

import yaml

from bot.understanding.normalize import CATALOGUE_DIR, default_normalizer

MIN_STEM = 3
BLANK = "_"
_UNIT = r"(?=(?:yo|yr|yrs|mo|mos|wk|wks|hr|hrs|min|mins)\b)"
_UNITS = re.compile(rf"(?<=\b\d){_UNIT}|(?<=\b\d\d){_UNIT}")  # "2yo" -> "2 yo"

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "dozen": 12, "uno": 1, "una": 1, "dos": 2,
    "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8, "nueve": 9,
    "diez": 10, "doce": 12, "quince": 15, "veinte": 20, "treinta": 30,
}  # fmt: skip


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word) if len(word) <= 6 else None
    return NUMBER_WORDS.get(word)


# A term token: ("w", word) | ("s", stem) | ("n", low, high) | ("e",) the end of the message
Token = tuple[Any, ...]


@dataclass(frozen=True)
class Term:
    tokens: tuple[Token, ...]
    not_next: frozenset[str]  # the word after the term must not be one of these
    groups: tuple[int, ...]  # group ids this term belongs to

    def match(self, words: list[str], i: int) -> int:
        """End index (exclusive) of a match starting at i, or -1."""
        j = i
        for token in self.tokens:
            kind = token[0]
            if kind == "e":  # end of the message
                if j != len(words):
                    return -1
                continue
            if j >= len(words):
                return -1
            w = words[j]
            if kind == "w":
                if w != token[1]:
                    return -1
            elif kind == "s":
                if not w.startswith(token[1]):
                    return -1
            else:
                value = _number(w)
                if value is None or not token[1] <= value <= token[2]:
                    return -1
            j += 1
        if self.not_next and j < len(words) and words[j] in self.not_next:
            return -1
        return j


@dataclass(frozen=True)
class Rule:
    name: str  # the name `emergency_rule` reports
    groups: tuple[int, ...]
    window: int | None  # all hits start within this many words of each other; None: anywhere
    negatable: bool


@dataclass(frozen=True)
class Guard:
    name: str
    pattern: re.Pattern[str]


@dataclass
class RedFlags:
    group_names: list[str]
    by_word: dict[str, list[Term]]
    by_stem: dict[str, list[Term]]
    numeric: list[Term]
    rules: list[Rule]
    guards: list[Guard]
    negators: frozenset[tuple[str, ...]]
    fillers: frozenset[str]
    max_negator: int
    intensifiers: frozenset[str] = frozenset()
    rules_by_group: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Each rule is indexed by its first group: it cannot match unless that group is hit.
        index: dict[int, list[int]] = {}
        for k, rule in enumerate(self.rules):
            index.setdefault(rule.groups[0], []).append(k)
        self.rules_by_group = {g: tuple(ks) for g, ks in index.items()}

    # ------------------------------------------------------------ matching

    def hits(self, words: list[str]) -> dict[int, list[tuple[int, int]]]:
        """Every group's hits in the words, as (start, end) spans."""
        found: dict[int, list[tuple[int, int]]] = {}
        for i, w in enumerate(words):
            if w == BLANK:
                continue
            candidates = list(self.by_word.get(w, ()))
            for k in range(MIN_STEM, len(w) + 1):
                candidates.extend(self.by_stem.get(w[:k], ()))
            if self.numeric and _number(w) is not None:
                candidates.extend(self.numeric)
            for term in candidates:
                end = term.match(words, i)
                if end > 0:
                    for g in term.groups:
                        found.setdefault(g, []).append((i, end))
        return found

    def negated(self, words: list[str], start: int) -> bool:
        j = start
        skipped = 0
        while j > 0 and words[j - 1] in self.fillers and skipped < 2:
            j -= 1
            skipped += 1
        for n in range(1, self.max_negator + 1):
            if j - n >= 0 and tuple(words[j - n : j]) in self.negators:
                return True
        return False

    def first_rule(self, words: list[str]) -> str | None:
        match = self.first_match(words)
        return match[0] if match else None

    def first_match(self, words: list[str]) -> tuple[str, str] | None:
        """(rule name, the words that fired) of the first rule the words raise, else None."""
        found = self.hits(words)
        if not found:
            return None
        candidates = sorted({k for g in found for k in self.rules_by_group.get(g, ())})
        for k in candidates:
            rule = self.rules[k]
            if all(g in found for g in rule.groups):
                combo = self._satisfied(rule, found, words)
                if combo is not None:
                    start = min(s for s, _ in combo)
                    end = max(e for _, e in combo)
                    return rule.name, " ".join(words[start:end])
        return None

    def _satisfied(
        self, rule: Rule, found: dict[int, list[tuple[int, int]]], words: list[str]
    ) -> tuple[tuple[int, int], ...] | None:
        """One hit per group, distinct, within the window, not right after a denial.

        Tried from each possible first word, with only the hits inside the window from there,
        so the work stays small however long the message is. Returns the hits, else None.
        """
        lists = [found[g] for g in rule.groups]
        for first in sorted({s for hits in lists for s, _ in hits}):
            if rule.negatable and self.negated(words, first):
                continue
            last = len(words) if rule.window is None else first + rule.window
            in_range = [[h for h in hits if first <= h[0] <= last] for hits in lists]
            if not all(in_range):
                continue
            for combo in product(*in_range):
                if len(set(combo)) == len(combo) and min(s for s, _ in combo) == first:
                    return combo
        return None

    def without_intensifiers(self, text: str) -> str:
        """The text without filler and intensifier words ("i seriously dont even want...")."""
        return " ".join(w for w in text.split() if w not in self.intensifiers)

    def unguarded(self, normalized: str) -> str:
        """The text with figures of speech and non-urgent contexts blanked (see module doc)."""
        text = _UNITS.sub(" ", normalized)  # "my 2yo" -> "my 2 yo"
        for guard in self.guards:
            if guard.pattern.search(text):
                text = guard.pattern.sub(_blank_fig, text)
        return text


def _blank_fig(match: re.Match[str]) -> str:
    whole = match.group(0)
    if "fig" not in match.re.groupindex or match.group("fig") is None:
        return BLANK
    start, end = match.span("fig")
    offset = match.start()
    return whole[: start - offset] + BLANK + whole[end - offset :]


# ---------------------------------------------------------------- loading


def _parse_term(
    source: str, normalize_words: Callable[[str], list[str]]
) -> tuple[tuple[Token, ...], frozenset[str]]:
    if not isinstance(source, str):
        raise ValueError(f"red_flags.yaml: quote {source!r} (YAML read it as {type(source)})")
    not_next: frozenset[str] = frozenset()
    if "!" in source:
        source, _, rest = source.partition("!")
        not_next = frozenset(normalize_words(" ".join(rest.split("|"))))
    tokens: list[Token] = []
    plain: list[str] = []

    def flush() -> None:
        if plain:
            tokens.extend(("w", w) for w in normalize_words(" ".join(plain)))
            plain.clear()

    for raw in source.split():
        if raw == "$":
            flush()
            tokens.append(("e",))
        elif raw.startswith("#"):
            flush()
            low, high = 0, 10**6
            if len(raw) > 1:
                a, _, b = raw[1:].partition("-")
                low, high = int(a), int(b or a)
            tokens.append(("n", low, high))
        elif raw.endswith("*"):
            flush()
            stem = raw[:-1]
            if len(stem) < MIN_STEM:
                raise ValueError(f"red_flags.yaml: stem {raw!r} shorter than {MIN_STEM}")
            tokens.append(("s", stem))
        else:
            plain.append(raw)
    flush()
    if not tokens:
        raise ValueError(f"red_flags.yaml: empty term {source!r}")
    return tuple(tokens), not_next


def build(data: dict[str, Any]) -> RedFlags:
    normalizer = default_normalizer()

    def normalize_words(text: str) -> list[str]:
        return normalizer.words(text)

    group_names: list[str] = []
    group_ids: dict[str, int] = {}
    term_groups: dict[tuple[tuple[Token, ...], frozenset[str]], set[int]] = {}

    def add_group(name: str, terms: list[str]) -> None:
        gid = group_ids.setdefault(name, len(group_names))
        if gid == len(group_names):
            group_names.append(name)
        for source in terms:
            key = _parse_term(source, normalize_words)
            term_groups.setdefault(key, set()).add(gid)

    for name, terms in (data.get("modifiers") or {}).items():
        add_group(name, terms)
    categories = data["categories"]
    for category, spec in categories.items():
        for name, terms in (spec.get("terms") or {}).items():
            add_group(f"{category}.{name}", terms)
        if spec.get("alone"):
            add_group(f"{category}.alone", spec["alone"])

    def resolve(category: str, name: str) -> int:
        # a group of this category, else another category's ("breathing.air"), else shared
        for qualified in (f"{category}.{name}", name):
            if qualified in group_ids:
                return group_ids[qualified]
        raise ValueError(f"red_flags.yaml: {category}: unknown group {name!r}")

    rules: list[Rule] = []
    for category, spec in categories.items():
        rule_name = spec["rule"]
        window = spec.get("window", 6)
        negatable = bool(spec.get("negatable", False))
        if spec.get("alone"):
            rules.append(Rule(rule_name, (group_ids[f"{category}.alone"],), None, negatable))
        for when in spec.get("when") or []:
            if isinstance(when, dict):
                names, w = when["all"], when.get("window", window)
                neg = bool(when.get("negatable", negatable))
                name = when.get("rule", rule_name)
            else:
                names, w, neg, name = when, window, negatable, rule_name
            ids = tuple(resolve(category, g) for g in names)
            rules.append(Rule(name, ids, None if w == "any" else int(w), neg))

    by_word: dict[str, list[Term]] = {}
    by_stem: dict[str, list[Term]] = {}
    numeric: list[Term] = []
    for (tokens, not_next), gids in term_groups.items():
        term = Term(tokens, not_next, tuple(sorted(gids)))
        first = tokens[0]
        if first[0] == "w":
            by_word.setdefault(first[1], []).append(term)
        elif first[0] == "s":
            by_stem.setdefault(first[1], []).append(term)
        else:
            numeric.append(term)

    negators = frozenset(tuple(normalize_words(n)) for n in data["negators"])
    guards = [Guard(g["name"], re.compile(g["pattern"])) for g in data.get("guards") or []]
    return RedFlags(
        group_names,
        by_word,
        by_stem,
        numeric,
        rules,
        guards,
        negators,
        frozenset(data.get("fillers") or ()),
        max(len(n) for n in negators),
        frozenset(normalizer.normalize(w) for w in data.get("intensifiers") or ()),
    )


@lru_cache(maxsize=1)
def red_flags() -> RedFlags:
    with open(CATALOGUE_DIR / "red_flags.yaml", encoding="utf-8") as f:
        return build(yaml.safe_load(f))


def red_flag(normalized: str) -> str | None:
    """The rule name of the first red-flag category the (guarded) normalised text raises."""
    return red_flags().first_rule(normalized.split())


def literal_words() -> list[str]:
    """Plain words of five letters or more in the terms (for the spelling corrector)."""
    flags = red_flags()
    words: set[str] = set()
    for terms in (*flags.by_word.values(), *flags.by_stem.values(), flags.numeric):
        for term in terms:
            words.update(t[1] for t in term.tokens if t[0] == "w" and len(t[1]) >= 5)
    return sorted(w for w in words if w.isalpha())


def guard_words() -> list[str]:
    """Words the guards read: known to the spelling corrector, so "pasado" stays "pasado"."""
    words: set[str] = set()
    for guard in red_flags().guards:
        words.update(_GUARD_WORD.findall(_ESCAPE.sub(" ", guard.pattern.pattern)))
    return sorted(words)


_ESCAPE = re.compile(r"\\[a-zA-Z]|\?P<\w+>")
_GUARD_WORD = re.compile(r"[a-z]{5,}")
