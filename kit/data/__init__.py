"""Data sets the kit reads: GlobalOpinionQA, MoralChoice, topic lists, the culture maps, and their splits."""

from __future__ import annotations

from .countries import base_country, normalize_country, resolve_country
from .cultures import NCN_ZONES, PALETTE_CONTINENTS, PALETTE_COUNTRIES, continent_of
from .goqa import (
    OpinionItem,
    by_country,
    countries,
    country_labels,
    load_goqa,
    option_labels,
    question_id,
    questions,
    render_prompt,
    resolve_countries,
)
from .moralchoice import MoralScenario, load_moralchoice
from .splits import SurveySplits, assert_disjoint, first_by_hash, goqa_split, split_questions, survey_splits
from .topics import Topic, load_topics

__all__ = [
    "NCN_ZONES",
    "PALETTE_CONTINENTS",
    "PALETTE_COUNTRIES",
    "MoralScenario",
    "OpinionItem",
    "SurveySplits",
    "Topic",
    "assert_disjoint",
    "base_country",
    "by_country",
    "continent_of",
    "countries",
    "country_labels",
    "first_by_hash",
    "goqa_split",
    "load_goqa",
    "load_moralchoice",
    "load_topics",
    "normalize_country",
    "option_labels",
    "question_id",
    "questions",
    "render_prompt",
    "resolve_countries",
    "resolve_country",
    "split_questions",
    "survey_splits",
]
