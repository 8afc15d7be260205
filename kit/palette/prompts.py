"""Every prompt of Cultural Palette (unit 1x), written for the kit after the structure of the paper's
Appendix A (data synthesis) and §4.2 (the meta agent), plus the baselines' prompts.

Each function returns a request; the texts are plain so they can be read, diffed and cached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kit.data import OpinionItem, base_country
from kit.data.cultures import PALETTE_CONTINENTS
from kit.llm.base import ChatRequest, ChoiceRequest, Message

CONTINENTS = tuple(PALETTE_CONTINENTS)  # Africa, America, Asia, Europe, Oceania
ANSWER_INSTRUCTION = "Answer with the letter of one option."

# Hofstede's six dimensions, the review grid of the cross-continent feedback step.
HOFSTEDE = {
    "Power Distance": "how power is shared between leaders, elders and ordinary people",
    "Individualism": "individual choice versus collective, family and community well-being",
    "Masculinity": "competition and achievement versus care, cooperation and harmony",
    "Uncertainty Avoidance": "how change, risk and the unknown are met, and what traditions protect",
    "Long-Term Orientation": "preserving traditions versus adapting quickly to the present",
    "Indulgence": "how openly enjoyment, celebration and expression are lived",
}
_DIMENSION_NAMES = {
    "Power Distance": r"power[\s-]*distance|pdi",
    "Individualism": r"individualism(?:\s*(?:vs\.?|versus)\s*collectivism)?|idv",
    "Masculinity": r"masculinity(?:\s*(?:vs\.?|versus)\s*femininity)?|mas",
    "Uncertainty Avoidance": r"uncertainty[\s-]*avoidance|uai",
    "Long-Term Orientation": r"long[\s-]*term(?:\s*(?:vs\.?|versus)\s*short[\s-]*term)?(?:\s*orientation)?|lto",
    "Indulgence": r"indulgence(?:\s*(?:vs\.?|versus)\s*restraint)?|ivr",
}
_LINE = re.compile(r"^[\s>#*_\-•\d.)]*(?P<name>{names})\b[^:\n]*?[*_]*\s*[:：]\s*(?P<text>.*)$")
_DIMENSION_LINES = {d: re.compile(_LINE.pattern.format(names=n), re.I) for d, n in _DIMENSION_NAMES.items()}
_CONFUSION_LINE = re.compile(_LINE.pattern.format(names=r"confusions?|confused"), re.I)


def system(continent: str) -> Message:
    """The continent agent's system turn: data synthesis, preference records and drafts share it."""
    return {
        "role": "system",
        "content": (
            f"You are a knowledgeable assistant specialising in {continent}: its geography, cultures, history "
            f"and current affairs. Answer with respect for the diversity of cultures within {continent}."
        ),
    }


# --- data synthesis (Appendix A: continent-aware response, cross-continent feedback, aggregation) ---


def response_request(continent: str, query: str) -> ChatRequest:
    """Step 1: the continent-aware response to a user query."""
    return ChatRequest(
        [
            system(continent),
            {
                "role": "user",
                "content": (
                    f"{query}\n\nAnswer from the perspective of {continent}: name what in its cultures, traditions and "
                    f"history bears on the question, without assumptions or stereotypes. Answer in three to five "
                    f"sentences."
                ),
            },
        ]
    )


def feedback_request(reviewer: str, continent: str, query: str, response: str) -> ChatRequest:
    """Step 2: ``reviewer`` reviews ``continent``'s response along Hofstede's six dimensions and says
    where it is confused with the reviewer's own culture."""
    grid = "\n".join(
        f"{name}: <does the response reflect {continent} on {about}?>" for name, about in HOFSTEDE.items()
    )
    return ChatRequest(
        [
            system(reviewer),
            {
                "role": "user",
                "content": (
                    f'A response written from the perspective of {continent} to the question "{query}":\n\n{response}\n\n'
                    f"Review it. Does it keep {continent}'s perspective clear, or does it carry cultural markers of "
                    f"{reviewer}, your own region? Give one line per Hofstede dimension, then one line saying where the "
                    f"response is confused with {reviewer}'s culture:\n{grid}\nConfusions: <what belongs to {reviewer}, "
                    f"not {continent}, or 'none'>"
                ),
            },
        ]
    )


@dataclass(frozen=True)
class Feedback:
    """A readable review as written, and what it says per Hofstede dimension and about confusions."""

    review: str
    dimensions: dict[str, str]
    confusions: str


def parse_feedback(text: str, min_dimensions: int = 4, min_words: int = 1) -> Feedback | None:
    """The review with its line per Hofstede dimension (any usual spelling or abbreviation) and its
    confusions line; ``None`` when fewer than ``min_dimensions`` dimensions carry a note or the review
    has fewer than ``min_words`` words (``min_dimensions=0`` accepts prose reviews, for small models)."""
    found: dict[str, str] = {}
    confusions = ""
    for line in text.splitlines():
        for name, pattern in _DIMENSION_LINES.items():
            match = pattern.match(line)
            if match and name not in found and match["text"].strip(" *_"):
                found[name] = match["text"].strip(" *_")
                break
        else:
            match = _CONFUSION_LINE.match(line)
            if match and not confusions:
                confusions = match["text"].strip(" *_")
    if len(found) < min_dimensions or len(text.split()) < min_words:
        return None
    return Feedback(text.strip(), {name: found[name] for name in HOFSTEDE if name in found}, confusions)


def aggregate_request(
    continent: str, query: str, response: str, reviews: Sequence[tuple[str, Feedback]]
) -> ChatRequest:
    """Step 3: the continent's response improved with every review it got."""
    feedback = "\n\n".join(f"Review by {reviewer}:\n{review.review}" for reviewer, review in reviews)
    return ChatRequest(
        [
            system(continent),
            {
                "role": "user",
                "content": (
                    f"Question: {query}\n\nBase response:\n{response}\n\nReview feedback:\n{feedback}\n\n"
                    f"Improve the base response with every suggestion of the feedback: keep what is specific to "
                    f"{continent}'s cultures, history and values and remove what belongs to other regions. Reply with the "
                    f"improved response only, in three to five sentences."
                ),
            },
        ]
    )


def record_prompt(continent: str, query: str) -> list[Message]:
    """The prompt of a preference record: the continent's system turn and the user query."""
    return [system(continent), {"role": "user", "content": query}]


# --- the meta agent (§4.2: cultural draft, self-regulated aggregation, final decision) ------------


def _question(item: OpinionItem) -> str:
    return item.prompt.removesuffix("Answer:").rstrip()


def draft_request(continent: str, country: str, item: OpinionItem, adapter: str | None = None) -> ChatRequest:
    """Stage 1: a continent agent's draft on a survey question, from ``country``'s perspective."""
    name = base_country(country)
    return ChatRequest(
        [
            system(continent),
            {
                "role": "user",
                "content": (
                    f"{_question(item)}\n\nIn two or three sentences, say which answer a person from {name} would most "
                    f"likely choose and why, drawing on {name}'s culture, traditions and history as seen from "
                    f"{continent}. If an option clashes with that culture, rule it out."
                ),
            },
        ],
        adapter=adapter,
    )


def regulate_request(country: str, item: OpinionItem, drafts: Sequence[tuple[str, str]]) -> ChatRequest:
    """Stage 2: the meta agent distils the drafts into what fits ``country``."""
    name = base_country(country)
    notes = "\n\n".join(f"[{continent}] {draft.strip()}" for continent, draft in drafts)
    return ChatRequest(
        [
            {
                "role": "system",
                "content": (
                    f"You are an expert cultural analyst. You synthesise drafts about {name} written from several "
                    f"continents into a faithful account of {name}'s cultural attributes, free of bias or stereotype."
                ),
            },
            {
                "role": "user",
                "content": (
                    f"{_question(item)}\n\nDrafts:\n{notes}\n\nIn three sentences, state what in {name}'s culture "
                    f"decides how people there answer this question. Reply with those sentences only."
                ),
            },
        ]
    )


def decision_request(
    country: str, item: OpinionItem, memory: str | None, labels: Sequence[str], adapter: str | None = None
) -> ChoiceRequest:
    """Stage 3: the meta agent's answer, as option probabilities, given its memory (``None``: none)."""
    name = base_country(country)
    context = f"Memory:\n{memory.strip()}\n\n" if memory else ""
    return ChoiceRequest(
        [
            {
                "role": "system",
                "content": (
                    f"You are a knowledgeable assistant about {name}. Select the single most appropriate answer for a "
                    f"person from {name}."
                ),
            },
            {"role": "user", "content": f"{context}{_question(item)}\n{ANSWER_INSTRUCTION}"},
        ],
        labels,
        adapter=adapter,
        prefix="Answer:",
    )


def persona_choice(
    country: str, item: OpinionItem, labels: Sequence[str], adapter: str | None = None, context: str = ""
) -> ChoiceRequest:
    """Prompting (and every model asked as a country): the country named, its context considered."""
    name = base_country(country)
    return ChoiceRequest(
        [
            {
                "role": "system",
                "content": (
                    f"You are a knowledgeable assistant about {name}. Consider {name}'s cultural, historical and social "
                    f"context."
                ),
            },
            {"role": "user", "content": f"{context}{_question(item)}\n{ANSWER_INSTRUCTION}"},
        ],
        labels,
        adapter=adapter,
        prefix="Answer:",
    )


# --- Modular Pluralism (Feng et al. 2024): community comments, then the base model answers ------


def comment_request(continent: str, item: OpinionItem, adapter: str | None = None) -> ChatRequest:
    """A community model's comment on a question (no answer), from its continent's perspective."""
    return ChatRequest(
        [
            system(continent),
            {
                "role": "user",
                "content": (
                    f"{item.question}\n\nWrite a short passage (two or three sentences) on the perspectives people in "
                    f"{continent} bring to this question. Do not answer it."
                ),
            },
        ],
        adapter=adapter,
    )


def comments_context(comments: Sequence[tuple[str, str]]) -> str:
    return "Perspectives:\n" + "\n".join(f"[{c}] {text.strip()}" for c, text in comments) + "\n\n"
