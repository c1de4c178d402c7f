"""Natural-language understanding: what a patient's message asks for (see docs/nlu.md)."""

from bot.understanding.classifier import Classification
from bot.understanding.pipeline import classify, classify_remembered

__all__ = ["Classification", "classify", "classify_remembered"]
