"""Human values: Schwartz's ten values, and detectors that read them from text (LLM judge, embedding proxy)."""

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

__all__ = ["DETECTORS", "SCHWARTZ_VALUES", "VALUE_DEFINITIONS", "VALUE_POLES", "EmbeddingValueDetector",
           "LLMValueJudge", "ValueDetector", "ValueResult", "judge_prompt", "make_value_detector", "parse_value_json"]
