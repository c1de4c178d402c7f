"""The learned second opinion: word and character n-grams, calibrated probabilities.

Two linear models over the same features, trained on the corpus of `training.py`:
an intent model (the first intent written) and a risk model (none / possible / emergency).
`patient-status nlu train` writes both to one artifact (`ARTIFACT`, gitignored, named by a
fingerprint of the corpus so a changed corpus is never served by a stale model); the app loads
it at start, and trains it in-process (logging a line) when it is missing, so a fresh clone
always works.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from bot.understanding import training
from bot.understanding.normalize import default_normalizer

log = logging.getLogger("patient_status.nlu")

_KEY_HELD = re.compile(r"\b(\w)\1{2,}\b")
ARTIFACT_DIR = Path(__file__).parent / "artifacts"  # gitignored; NLU_MODEL_DIR overrides
FORMAT = 4  # bump when the features or the stored object change


@dataclass(frozen=True)
class Prediction:
    intent: str
    intent_probability: float
    risk: str
    risk_probability: float  # probability of `risk`
    emergency_probability: float
    possible_probability: float
    known_words: float = 1.0  # share of the message's words the model saw in training
    # P(intent) for every intent (whole-message reading: does it carry this request at all?)
    intent_probabilities: Mapping[str, float] = field(
        default_factory=dict, compare=False, repr=False
    )

    def probability(self, intent: str) -> float:
        return self.intent_probabilities.get(intent, 0.0)


def prepare(text: str) -> str:
    """The text the model reads: the rules' normalisation (shorthand, accents, case)."""
    return " ".join(default_normalizer().words(text))


def _features() -> FeatureUnion:
    return FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=60000
                ),
            ),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=100000
                ),
            ),
        ]
    )


def _classifier() -> CalibratedClassifierCV:
    return CalibratedClassifierCV(LinearSVC(C=0.5), cv=3, method="sigmoid")


def fingerprint() -> str:
    digest = hashlib.sha256(f"{FORMAT}|{sklearn.__version__}|{training.SEED}".encode())
    for path in [*training.corpus_files(), Path(training.__file__)]:
        digest.update(path.read_bytes())
    for path in sorted((Path(__file__).parent / "catalogue").glob("normalize.yaml")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def artifact_dir() -> Path:
    return Path(os.environ.get("NLU_MODEL_DIR") or ARTIFACT_DIR)


def default_path() -> Path:
    return artifact_dir() / f"nlu-{fingerprint()}.joblib"


Features = tuple[np.ndarray, np.ndarray]  # one message: (column indices, TF-IDF values)


@dataclass
class Linear:
    """A calibrated linear classifier as plain arrays.

    The same arithmetic as `CalibratedClassifierCV(LinearSVC, method="sigmoid")` (one-vs-rest
    scores, a sigmoid per class, normalised, averaged over the folds), without scikit-learn's
    per-call input validation, which costs ~20x the arithmetic for one short message.
    """

    classes: list[str]
    folds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # W (d x k), c, a, b

    @classmethod
    def of(cls, fitted: CalibratedClassifierCV) -> Linear:
        folds = []
        for member in fitted.calibrated_classifiers_:
            svc = member.estimator
            a = np.array([cal.a_ for cal in member.calibrators], dtype=np.float64)
            b = np.array([cal.b_ for cal in member.calibrators], dtype=np.float64)
            w = np.ascontiguousarray(svc.coef_.T, dtype=np.float32)
            folds.append((w, svc.intercept_.astype(np.float64), a, b))
        return cls([str(c) for c in fitted.classes_], folds)

    def __post_init__(self) -> None:
        # The folds side by side (d x folds*k): one gather and one product per message, not one
        # per fold; numpy's per-call overhead, not the arithmetic, is what a short message costs.
        self._w = np.ascontiguousarray(np.hstack([w for w, _, _, _ in self.folds]))
        self._c, self._a, self._b = (
            np.concatenate([fold[i] for fold in self.folds]) for i in (1, 2, 3)
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def proba(self, x: Features) -> np.ndarray:
        indices, values = x
        scores = values @ self._w[indices] + self._c
        p = (1.0 / (1.0 + np.exp(self._a * scores + self._b))).reshape(len(self.folds), -1)
        s = p.sum(axis=1, keepdims=True)
        p = np.divide(p, s, out=np.full_like(p, 1.0 / p.shape[1]), where=s > 0)
        return np.asarray(p.sum(axis=0) / len(self.folds))


@dataclass
class Models:
    vectorizers: list[TfidfVectorizer]
    intent: Linear
    risk: Linear
    fingerprint: str

    def __post_init__(self) -> None:
        self._tables = []
        offset = 0
        for v in self.vectorizers:
            self._tables.append((v.build_analyzer(), v.vocabulary_, v.idf_, offset))
            offset += len(v.vocabulary_)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_tables"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def features(self, text: str) -> Features:
        """The TF-IDF row of `TfidfVectorizer.transform` (sublinear tf, l2 per vectorizer,
        side by side), as (column indices, values), computed directly for one message."""
        prepared = prepare(text)
        all_indices: list[np.ndarray] = []
        all_values: list[np.ndarray] = []
        for analyze, vocabulary, idf, offset in self._tables:
            counts = Counter(map(vocabulary.get, analyze(prepared)))  # counted in C
            counts.pop(None, None)  # tokens the vocabulary does not have
            if not counts:
                continue
            indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (1.0 + np.log(tf)) * idf[indices]
            values /= np.sqrt(values @ values)
            all_indices.append(indices + offset)
            all_values.append(values)
        if not all_indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(all_indices), np.concatenate(all_values)

    def known_words(self, text: str) -> float:
        """How much of the message the model has words for (its first table is the words).
        Gibberish ("blorp flurb zzz") is read by character n-grams alone, where a probability
        says more about spelling than meaning."""
        analyze, vocabulary, _, _ = self._tables[0]
        # A key held down ("zzzz qqq") is no word, even where the shorthand table would make
        # one of it ("q" -> que).
        typed = _KEY_HELD.sub(" ", text)
        words = [token for token in analyze(prepare(typed)) if " " not in token]
        if not words:
            return 0.0
        return sum(1 for word in words if word in vocabulary) / len(words)

    def predict(self, text: str) -> Prediction:
        x = self.features(text)
        intent_p = self.intent.proba(x)
        risk_p = self.risk.proba(x)
        i = int(intent_p.argmax())
        r = int(risk_p.argmax())
        risks = dict(zip(self.risk.classes, risk_p, strict=True))
        return Prediction(
            intent=str(self.intent.classes[i]),
            intent_probability=float(intent_p[i]),
            risk=str(self.risk.classes[r]),
            risk_probability=float(risk_p[r]),
            emergency_probability=float(risks.get("emergency", 0.0)),
            possible_probability=float(risks.get("possible", 0.0)),
            known_words=self.known_words(text),
            intent_probabilities=dict(zip(self.intent.classes, intent_p.tolist(), strict=True)),
        )


def train(rows: Sequence[training.Row] | None = None) -> Models:
    """Fit both models on the corpus (or on `rows`, for cross-validation in `tune.py`)."""
    rows = training.build_corpus() if rows is None else rows
    features = _features()
    x = features.fit_transform([prepare(r.text) for r in rows])
    intent = _classifier().fit(x, [r.intent for r in rows])
    risk = _classifier().fit(x, [str(r.risk) for r in rows])
    vectorizers = [vectorizer for _, vectorizer in features.transformer_list]
    return Models(vectorizers, Linear.of(intent), Linear.of(risk), fingerprint())


def train_and_save(path: Path | None = None) -> Path:
    path = path or default_path()
    models = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        joblib.dump(models, tmp.name)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
    for old in path.parent.glob("nlu-*.joblib"):
        if old != path and old.name != path.name:
            old.unlink(missing_ok=True)
    return path


def load(path: Path) -> Models:
    models = joblib.load(path)
    if not isinstance(models, Models):
        raise TypeError(f"{path} is not an NLU artifact")
    return models


@lru_cache(maxsize=1)
def models() -> Models:
    """The artifact for the current corpus; trained here (and saved if possible) when missing."""
    path = default_path()
    if path.exists():
        return load(path)
    log.warning(
        "nlu model %s missing: training it in-process (run `patient-status nlu train`)", path
    )
    try:
        train_and_save(path)
        return load(path)
    except OSError:
        log.warning("nlu model: could not write %s, keeping it in memory", path)
        return train()
