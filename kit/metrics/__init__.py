"""Pure metric functions over distributions and vectors: survey alignment (GlobalOpinionQA) and negotiation
consensus (NCN). Nothing here calls a model; ``kit.evals`` asks the models and feeds these."""

from __future__ import annotations

from kit.metrics.alignment import (
    OTHER_COUNTRIES_AGENT,
    SCORES,
    UNIFORM_AGENT,
    PairedDifference,
    argmax_agree,
    bootstrap_ci,
    js_divergence,
    js_similarity,
    other_countries_reference,
    paired_difference,
    per_question_scores,
    reference_comparison,
    s_align,
    score_table,
    uniform_reference,
)
from kit.metrics.consensus import (
    acceptance_gap,
    acceptance_ratio,
    acceptance_summary,
    distance_reduction,
    perplexity,
    value_consensus,
    value_cosine,
    value_distance,
    value_self_consistency,
    value_summary,
    value_vector,
)

__all__ = [
    "OTHER_COUNTRIES_AGENT",
    "SCORES",
    "UNIFORM_AGENT",
    "PairedDifference",
    "acceptance_gap",
    "acceptance_ratio",
    "acceptance_summary",
    "argmax_agree",
    "bootstrap_ci",
    "distance_reduction",
    "js_divergence",
    "js_similarity",
    "other_countries_reference",
    "reference_comparison",
    "paired_difference",
    "per_question_scores",
    "perplexity",
    "s_align",
    "score_table",
    "uniform_reference",
    "value_consensus",
    "value_cosine",
    "value_distance",
    "value_self_consistency",
    "value_summary",
    "value_vector",
]
