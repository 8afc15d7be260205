"""Data sets the kit reads: GlobalOpinionQA, MoralChoice, topic lists, and the culture maps."""

from __future__ import annotations

from .countries import base_country, normalize_country, resolve_country
from .cultures import NCN_ZONES, PALETTE_CONTINENTS, PALETTE_COUNTRIES, continent_of
from .goqa import (
    OpinionItem,
    by_country,
    countries,
    load_goqa,
    option_labels,
    question_id,
    questions,
    render_prompt,
)
from .moralchoice import MoralScenario, load_moralchoice
from .split import assert_disjoint, hash_unit, split_questions
from .topics import Topic, load_topics

__all__ = [
    "NCN_ZONES",
    "PALETTE_CONTINENTS",
    "PALETTE_COUNTRIES",
    "MoralScenario",
    "OpinionItem",
    "Topic",
    "assert_disjoint",
    "base_country",
    "by_country",
    "continent_of",
    "countries",
    "hash_unit",
    "load_goqa",
    "load_moralchoice",
    "load_topics",
    "normalize_country",
    "option_labels",
    "question_id",
    "questions",
    "render_prompt",
    "resolve_country",
    "split_questions",
]
