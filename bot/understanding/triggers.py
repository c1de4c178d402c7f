"""Which words a regular expression needs before it can match, so most can be skipped cheaply.

The catalogue patterns and the emergency rules are regular expressions over normalised text.
Most start with a group of plain words ("\\b(cancel\\w*|move|change)\\s+..."): a clause that
contains none of those words (or word stems) cannot match, and the pattern is not run on it.
Anything less plain gives None: the pattern is always run. Reading is conservative on purpose:
a wrong skip would be a missed intent, or a missed emergency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_PLAIN_ALTERNATIVE = re.compile(r"[a-z0-9 ]+(\\w[*+])?")
MIN_STEM = 3  # word prefixes shorter than this are not indexed (see `Present`)

Triggers = tuple[frozenset[str], frozenset[str]]


def pattern_triggers(source: str) -> Triggers | None:
    """Words (and word stems) one of which must be in a clause for the pattern to match.

    Read from the pattern's leading group ("\\b(cancel\\w*|move|change)\\s+...") or leading word;
    None when the pattern does not start with plain words (it is then always tried). Lets the
    classifier skip most patterns for a clause without running them.
    """
    if _has_top_level_alternation(source):
        return None
    rest = re.sub(r"^(\\b|\^)", "", source)
    if rest.startswith("("):
        depth, end = 0, -1
        for i, ch in enumerate(rest):
            if ch == "(" and (i == 0 or rest[i - 1] != "\\"):
                depth += 1
            elif ch == ")" and rest[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0 or rest[end + 1 : end + 2] in ("?", "*", "{"):
            return None
        alternatives = rest[1:end].removeprefix("?:").split("|")
        after = rest[end + 1 :]
    else:
        match = re.match(r"[a-z]+(\\w[*+])?", rest)
        if not match or rest[match.end() : match.end() + 1] in ("?", "*", "+", "{", "["):
            return None
        alternatives = [match.group(0)]
        after = rest[match.end() :]
    # Followed by more letters ("pass(ed|ing)?", "(black|pass)(ed)?"), each is only a stem.
    whole_word = (
        after == ""
        or after.startswith(("\\b", "\\s", "$"))
        or (after.startswith(" ") and after[1:2] not in ("?", "*", "{"))
    )
    words: set[str] = set()
    stems: set[str] = set()
    for alternative in alternatives:
        alternative = alternative.replace("\\s+", " ")
        if not _PLAIN_ALTERNATIVE.fullmatch(alternative) or not alternative.strip():
            return None
        first = alternative.split()[0]
        if first.endswith(("\\w*", "\\w+")):
            stems.add(first[:-3])
        elif " " not in alternative and alternative.endswith(("\\w*", "\\w+")):
            stems.add(alternative[:-3])
        elif " " not in alternative and not whole_word:
            stems.add(alternative)
        else:
            words.add(first)
    if any(len(stem) < MIN_STEM for stem in stems):
        return None
    return frozenset(words), frozenset(stems)


def _has_top_level_alternation(source: str) -> bool:
    depth, escaped = 0, False
    for ch in source:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
    return False


class Present:
    """The words of one text and their prefixes, to test triggers against."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = set(words)
        self.prefixes = {w[:k] for w in self.words for k in range(MIN_STEM, len(w) + 1)}

    def has(self, triggers: Triggers | None) -> bool:
        if triggers is None:
            return True
        words, stems = triggers
        return not (self.words.isdisjoint(words) and self.prefixes.isdisjoint(stems))


@dataclass(frozen=True)
class TriggerIndex:
    """Expressions (by position) indexed by the words and stems one of which each needs, so a
    text runs only those it could match instead of testing every one's triggers."""

    always: frozenset[int]  # positions with no trigger: always run
    by_word: dict[str, frozenset[int]]
    by_stem: dict[str, frozenset[int]]

    @classmethod
    def build(cls, triggers: Iterable[Triggers | None]) -> TriggerIndex:
        always: set[int] = set()
        by_word: dict[str, set[int]] = {}
        by_stem: dict[str, set[int]] = {}
        for k, needs in enumerate(triggers):
            if needs is None:
                always.add(k)
                continue
            words, stems = needs
            for w in words:
                by_word.setdefault(w, set()).add(k)
            for st in stems:
                by_stem.setdefault(st, set()).add(k)
        return cls(
            frozenset(always),
            {w: frozenset(ks) for w, ks in by_word.items()},
            {st: frozenset(ks) for st, ks in by_stem.items()},
        )

    def candidates(self, present: Present) -> list[int]:
        """The positions whose triggers the text meets, in order."""
        found = set(self.always)
        for w in present.words:
            found.update(self.by_word.get(w, ()))
        for prefix in present.prefixes:
            found.update(self.by_stem.get(prefix, ()))
        return sorted(found)
