"""Text normalisation for how patients text: case, accents, emoji, shorthand, misspellings.

The shorthand and misspelling table is data (`catalogue/normalize.yaml`). Everything the
classifier compares (catalogue phrases, keywords, incoming messages) goes through the same
`Normalizer`, so a catalogue entry written as "wheres my rx" and a message "Where's my RX??"
meet as "where is my prescription".
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz.distance import OSA
from rapidfuzz.process import extract

CATALOGUE_DIR = Path(__file__).parent / "catalogue"

_APOSTROPHES = re.compile(r"['’‘`´]")
_REPEATS = re.compile(r"([a-z])\1{2,}")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Clause boundaries: sentence punctuation, commas and dots that are not inside a number.
_BOUNDARY = re.compile(r"[!?;\n\r()]+|(?<!\d)[.,:]+|[.,:]+(?!\d)")
_SYMBOL_AND = re.compile(r"\s*[&+]\s*")
# Endings of inflected words, English and Spanish (see `Speller.guarded`).
# ("-ous", "-us", "-is", "-ss" are not plurals: "unconsious" may still become "unconscious".)
_INFLECTED = re.compile(r"(ing|ed|es|(?<![uis])s|ly|ar|er|ir|ado|ada|ido|ida|ando|iendo|aba|ia)$")


def strip_accents(text: str) -> str:
    if text.isascii():  # nothing to decompose (most messages)
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class Normalizer:
    """Applies the shorthand table; built once from `normalize.yaml`."""

    def __init__(self, table: dict[str, Any]) -> None:
        for section in table.values():
            for key, value in (section or {}).items():
                if not isinstance(key, str) or not isinstance(value, str):
                    # YAML reads a bare yes/no/on/off as a boolean
                    raise ValueError(f"normalize.yaml: quote {key!r}: {value!r}")
        self.emoji: dict[str, str] = table.get("emoji") or {}
        if any(emo.isascii() for emo in self.emoji):  # `prepare` looks for them in other text
            raise ValueError("normalize.yaml: an emoji entry is plain ASCII; put it in tokens")
        self.phrases: dict[tuple[str, ...], list[str]] = {}
        for src, dst in (table.get("phrases") or {}).items():
            self.phrases[tuple(self._raw_words(src))] = self._raw_words(dst)
        self.max_phrase = max((len(k) for k in self.phrases), default=1)
        self.tokens: dict[str, list[str]] = {
            src: self._raw_words(dst) for src, dst in (table.get("tokens") or {}).items()
        }
        self.vocabulary = {w for words in self.tokens.values() for w in words} | {
            w for words in self.phrases.values() for w in words
        }

    @staticmethod
    def _raw_words(text: str) -> list[str]:
        return _NON_WORD.sub(" ", strip_accents(text.lower())).split()

    def prepare(self, text: str) -> str:
        """Lower-case, map meaningful emoji, strip accents and apostrophes; keep punctuation."""
        text = text.lower()
        if not text.isascii():  # the emoji are not
            for emo, repl in self.emoji.items():
                if emo in text:
                    text = text.replace(emo, repl)
            text = strip_accents(text)
        text = _APOSTROPHES.sub("", text)
        return _SYMBOL_AND.sub(" and ", text)

    def clauses(self, text: str) -> list[str]:
        """Split prepared text on sentence punctuation (conjunctions are split later, on words)."""
        return [c for c in _BOUNDARY.split(self.prepare(text)) if c.strip()]

    def words(self, text: str) -> list[str]:
        """Words of (prepared or raw) text with phrase and token rewrites applied."""
        raw = _NON_WORD.sub(" ", _REPEATS.sub(r"\1", self.prepare(text))).split()
        out: list[str] = []
        i = 0
        while i < len(raw):
            for n in range(min(self.max_phrase, len(raw) - i), 1, -1):
                repl = self.phrases.get(tuple(raw[i : i + n]))
                if repl is not None:
                    out.extend(repl)
                    i += n
                    break
            else:
                out.extend(self.tokens.get(raw[i], (raw[i],)))
                i += 1
        return out

    def normalize(self, text: str) -> str:
        return " ".join(self.words(text))


class Speller:
    """Corrects a misspelt word to the nearest catalogue keyword (one edit, two for long words).

    Only words of five letters or more that appear nowhere in the catalogue are corrected, only
    towards keywords (so "perscripton" becomes "prescription" but an everyday word the catalogue
    happens not to use is left alone), and only to a keyword that starts with the same letter (or
    with its second letter, for a swapped pair).
    """

    def __init__(self, known: set[str], targets: Counter[str], guarded: Iterable[str] = ()) -> None:
        self.known = known | set(targets)
        self.targets = targets
        # Words an emergency rule reads: an inflected everyday word ("drooping", "lunes",
        # "works") is not corrected into one of them ("drowning", "lungs", "words").
        self.guarded = frozenset(guarded)
        self.by_letter: dict[str, list[str]] = {}
        for word in targets:
            if len(word) >= 4 and word.isalpha():
                self.by_letter.setdefault(word[0], []).append(word)
        self.correct_word = lru_cache(maxsize=8192)(self._correct_word)

    def _correct_word(self, word: str) -> str:
        if len(word) < 5 or word in self.known or not word.isalpha():
            return word
        max_edits = 1 if len(word) < 8 else 2
        pool = self.by_letter.get(word[0], []) + self.by_letter.get(word[1], [])
        pool = [w for w in pool if abs(len(w) - len(word)) <= max_edits]
        found = extract(word, pool, scorer=OSA.distance, score_cutoff=max_edits, limit=8)
        # A keyword that is the word with a prefix added is another word, not a fix
        # ("authorized" is not a misspelt "unauthorized"); a dropped last letter is a typo.
        found = [f for f in found if not (f[0].endswith(word) and len(f[0]) - len(word) >= 2)]
        if _INFLECTED.search(word):  # a plural may still become its singular
            found = [
                f for f in found if f[0] not in self.guarded or word in (f[0] + "s", f[0] + "es")
            ]
        if not found:
            return word
        # Ties: same first letter, then same last letter (endings carry the grammar: "efects"
        # is "effects", not "efecto"), then the more common keyword.
        best = min(
            found,
            key=lambda f: (f[1], f[0][0] != word[0], f[0][-1] != word[-1], -self.targets[f[0]]),
        )
        return best[0]

    def correct(self, words: Iterable[str]) -> list[str]:
        return [self.correct_word(w) for w in words]


@lru_cache(maxsize=1)
def default_normalizer() -> Normalizer:
    with open(CATALOGUE_DIR / "normalize.yaml", encoding="utf-8") as f:
        return Normalizer(yaml.safe_load(f))


def normalize(text: str) -> str:
    """The message as the classifier sees it: "Where's my RX??" -> "where is my prescription"."""
    return default_normalizer().normalize(text)
