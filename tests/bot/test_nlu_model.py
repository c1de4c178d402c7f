"""The learned second opinion: `patient-status nlu train` writes an artifact the app loads."""

from __future__ import annotations

from click.testing import CliRunner

from bot.understanding import model, pipeline
from bot.understanding.classifier import classify as classify_rules
from channels.cli import main


def test_nlu_train_writes_an_artifact_that_classify_loads_and_uses(tmp_path, monkeypatch):
    monkeypatch.setenv("NLU_MODEL_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["nlu", "train"])
    assert result.exit_code == 0, result.output
    [artifact] = tmp_path.glob("nlu-*.joblib")
    assert f"wrote {artifact}" in result.output
    loaded = model.load(artifact)
    assert loaded.fingerprint == model.fingerprint()

    model.models.cache_clear()
    try:
        assert model.models().fingerprint == loaded.fingerprint
        # A message the rules cannot place: the model's answer is what classify returns.
        text = "aceptan fsa"  # "do you take FSA cards": billing
        assert classify_rules(text).intent == "unknown"
        assert pipeline.classify(text).intent == loaded.predict(text).intent == "billing"
    finally:
        model.models.cache_clear()
