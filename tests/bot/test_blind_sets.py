"""The blind evaluation sets mean something only while nothing of them leaked into training.

A set under `tests/data/blind/` is either live (listed in `live.json` with how many of its
messages were already in the training corpus or the catalogue's examples when it was written:
short messages and common phrasings coincide, Set E had 167 of 923; its next run is a first
run) or retired after its one run (all of it moved into `corpus/retired_eval*.tsv`, its
first-run figures kept in docs/nlu.md). More of a live set in training than when it was
written would be tuning on the evaluation set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.understanding import training
from bot.understanding.normalize import CATALOGUE_DIR

BLIND = Path(__file__).parents[1] / "data" / "blind"


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _set_messages(path: Path) -> set[str]:
    texts = set()
    for name in ("single.tsv", "multi.tsv", "risk.tsv"):
        lines = (path / name).read_text(encoding="utf-8").splitlines()[1:]
        texts |= {_key(line.split("\t")[0]) for line in lines if line.strip()}
    return texts


def _training_messages() -> set[str]:
    texts = {_key(t) for p in training.labelled_files() for t, _, _ in training.read_tsv(p)}
    for language in training.LANGUAGES:
        catalogue = yaml.safe_load((CATALOGUE_DIR / f"{language}.yaml").read_text("utf-8"))
        for spec in (catalogue.get("intents") or {}).values():
            texts |= {_key(e) for e in (spec or {}).get("examples", [])}
    return texts


@pytest.mark.parametrize("blind_set", sorted(p.name for p in BLIND.iterdir() if p.is_dir()))
def test_a_blind_set_is_wholly_live_or_wholly_retired(blind_set):
    messages = _set_messages(BLIND / blind_set)
    in_training = messages & _training_messages()
    live = json.loads((BLIND / "live.json").read_text())
    if blind_set in live:
        assert len(in_training) <= live[blind_set], (
            f"{blind_set} is live: {len(in_training)} of its messages are in training, "
            f"{live[blind_set]} when it was written"
        )
    else:
        share = len(in_training) / len(messages)
        assert share >= 0.95, (
            f"{blind_set} is retired: only {len(in_training)} of {len(messages)} in training"
        )
