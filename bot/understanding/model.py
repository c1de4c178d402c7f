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
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import joblib
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from bot.understanding import training
from bot.understanding.normalize import default_normalizer

log = logging.getLogger("patient_status.nlu")

ARTIFACT_DIR = Path(__file__).parent / "artifacts"  # gitignored; NLU_MODEL_DIR overrides
FORMAT = 2  # bump when the features or the stored object change


@dataclass(frozen=True)
class Prediction:
    intent: str
    intent_probability: float
    risk: str
    risk_probability: float  # probability of `risk`
    emergency_probability: float
    possible_probability: float


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


@dataclass
class Models:
    features: FeatureUnion
    intent: CalibratedClassifierCV
    risk: CalibratedClassifierCV
    fingerprint: str

    def predict(self, text: str) -> Prediction:
        x = self.features.transform([prepare(text)])
        intent_p = self.intent.predict_proba(x)[0]
        risk_p = self.risk.predict_proba(x)[0]
        i = int(intent_p.argmax())
        r = int(risk_p.argmax())
        risks = dict(zip(self.risk.classes_, risk_p, strict=True))
        return Prediction(
            intent=str(self.intent.classes_[i]),
            intent_probability=float(intent_p[i]),
            risk=str(self.risk.classes_[r]),
            risk_probability=float(risk_p[r]),
            emergency_probability=float(risks.get("emergency", 0.0)),
            possible_probability=float(risks.get("possible", 0.0)),
        )


def train() -> Models:
    rows = training.build_corpus()
    features = _features()
    x = features.fit_transform([prepare(r.text) for r in rows])
    intent = _classifier().fit(x, [r.intent for r in rows])
    risk = _classifier().fit(x, [str(r.risk) for r in rows])
    return Models(features, intent, risk, fingerprint())


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
