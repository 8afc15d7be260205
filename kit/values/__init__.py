"""Human values: Schwartz's ten values, and detectors that read them from text (LLM judge, embedding proxy, a trained classifier)."""

from kit.values.detectors import (
    DETECTORS,
    EmbeddingValueDetector,
    LLMValueJudge,
    ValueDetector,
    ValueResult,
    judge_prompt,
    make_value_detector,
    parse_value_json,
)
from kit.values.schwartz import SCHWARTZ_VALUES, VALUE_DEFINITIONS, VALUE_POLES
from kit.values.trained import TrainedValueDetector, agreement, confusion

__all__ = [
    "DETECTORS",
    "SCHWARTZ_VALUES",
    "VALUE_DEFINITIONS",
    "VALUE_POLES",
    "EmbeddingValueDetector",
    "LLMValueJudge",
    "TrainedValueDetector",
    "ValueDetector",
    "ValueResult",
    "judge_prompt",
    "agreement",
    "confusion",
    "make_value_detector",
    "parse_value_json",
]
