"""User-turn prompts of every negotiation step; the agent's system prompt comes from ``Agent.messages``.

Each prompt names its output format. Guidelines are asked for as one JSON object, with labelled
lines ("Title: … Reason: … Description: …") as the fallback ``parse_guidelines`` also reads.
Every function returns plain text, so a prompt can be read, diffed and cached as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from kit.agents import Agent, culture_instruction
from kit.data import base_country
from kit.negotiation.guidelines import Guideline, format_guidelines

GUIDELINE_FORMAT = (
    "Reply with one JSON object only:\n"
    '{"title": "<at most 5 words>", "reason": "<why it matters to you, one sentence>", '
    '"description": "<what it asks of people, one or two sentences>"}\n'
    "If you cannot write JSON, write three labelled lines instead:\nTitle: …\nReason: …\nDescription: …"
)
# ``guideline_format: fields`` (small models): the guideline as plain prose first, then its title
# and reason asked for separately — no format to follow, so nothing a small model can break.
DESCRIPTION_FORMAT = (
    "Reply with the guideline itself only: one or two sentences saying what it asks of people."
)
RETRY_NOTE = "\n\nYour previous reply could not be read. Follow the reply format exactly."
READABLE_NOTE = "\n\nYour previous reply was empty or repeated itself. Answer in plain sentences."
AGREE_MARKER = "AGREE"

KIND_INSTRUCTIONS = {
    "counter": (
        "Analyse the weaknesses of the other side's top guidelines and propose one counter-proposal: "
        "a guideline that answers those weaknesses while staying true to your values."
    ),
    "gap": (
        "Find an aspect of the topic that your guidelines leave uncovered and propose one guideline "
        "that fills that gap."
    ),
    "innovative": (
        "Propose one innovative guideline that neither side has considered yet and that both sides "
        "could accept."
    ),
}


def who(agent: Agent) -> str:
    """How prompts name an agent: its country (not the survey sample label), else its name."""
    return base_country(agent.culture) if agent.culture else agent.name


def answer_prompt(agent: Agent, topic: str) -> str:
    """The first, independent answer (every method's step 0; NCN's opinion)."""
    instruction = (
        culture_instruction(agent.culture) if agent.culture else "Answer the question from your own values."
    )
    return f"{topic}\n\n{instruction} Answer in 2-3 sentences."


def guideline_prompt(topic: str, opinion: str, fmt: str = GUIDELINE_FORMAT) -> str:
    """NCN's initial guideline, distilled from the agent's own first answer."""
    return (
        f"Topic: {topic}\n\nYour opinion: {opinion}\n\n"
        f"Write the one guideline that captures what matters most to you on this topic.\n{fmt}"
    )


def title_prompt(description: str) -> str:
    return f"Guideline: {description}\n\nGive this guideline a title of at most 5 words. Reply with the title only."


def reason_prompt(topic: str, description: str) -> str:
    return (
        f"Topic: {topic}\n\nGuideline: {description}\n\n"
        "In one sentence, why does this guideline matter to you? Reply with that sentence only."
    )


def position_prompt(topic: str, pool: Sequence[Guideline], weights: Sequence[float]) -> str:
    """NCN step 1: the agent states its position from its weighted guideline pool."""
    return (
        f"Topic: {topic}\n\nYour guidelines, with the weight you currently give each:\n"
        f"{format_guidelines(pool, weights)}\n\n"
        "State your current position on the topic in 2-3 sentences, led by your most weighted guidelines. "
        "Reply with the position only."
    )


def candidate_prompt(
    topic: str,
    opinion: str,
    pool: Sequence[Guideline],
    weights: Sequence[float],
    other: str,
    other_position: str,
    other_top: Sequence[Guideline],
    kind: str,
    index: int,
    count: int,
    fmt: str = GUIDELINE_FORMAT,
) -> str:
    """NCN step 2, the best-response oracle: one candidate guideline of ``kind`` (counter, gap, innovative)."""
    if kind not in KIND_INSTRUCTIONS:
        raise ValueError(f"candidate kind {kind!r} is unknown; use one of {tuple(KIND_INSTRUCTIONS)}")
    numbered = (
        f" This is proposal {index + 1} of {count} of this kind: make it distinct from the others."
        if count > 1
        else ""
    )
    return (
        f"Topic: {topic}\n\nYour opinion: {opinion}\n\nYour guidelines, with their weights:\n"
        f"{format_guidelines(pool, weights)}\n\n"
        f"The other side ({other}) says: {other_position}\n\nTheir most weighted guidelines:\n"
        f"{format_guidelines(other_top)}\n\n{KIND_INSTRUCTIONS[kind]}{numbered}\n{fmt}"
    )


def ncn_statement_prompt(
    topic: str,
    pool: Sequence[Guideline],
    weights: Sequence[float],
    other: str,
    other_pool: Sequence[Guideline],
    other_weights: Sequence[float],
    words: int,
) -> str:
    """NCN's end: a consensus statement from both final weighted pools."""
    return (
        f"Topic: {topic}\n\nThe negotiation has ended.\n\nYour guidelines and their weights:\n"
        f"{format_guidelines(pool, weights)}\n\nThe guidelines of the other side ({other}) and their weights:\n"
        f"{format_guidelines(other_pool, other_weights)}\n\n"
        f"Write a consensus statement on the topic that both sides could accept, in at most {words} words. "
        "Reply with the statement only."
    )


def transcript(turns: Sequence[tuple[str, str]]) -> str:
    """``[speaker] text`` lines of a debate so far."""
    return "\n\n".join(f"[{speaker}] {text.strip()}" for speaker, text in turns)


def debate_turn_prompt(topic: str, other: str, turns: Sequence[tuple[str, str]]) -> str:
    """One debate turn, written after reading the whole transcript."""
    return (
        f"Topic: {topic}\n\nYou are debating this topic with a representative of {other}. The debate so far:\n\n"
        f"{transcript(turns)}\n\n"
        "Reply to the other side in 2-4 sentences: defend what matters to your culture and look for common "
        f"ground. If both sides now share a position you accept, end your reply with a last line holding "
        f"only the word {AGREE_MARKER}."
    )


def debate_final_prompt(topic: str, turns: Sequence[tuple[str, str]], words: int) -> str:
    """The debate's end: each side's final answer, in the light of the whole debate."""
    return (
        f"Topic: {topic}\n\nThe debate:\n\n{transcript(turns)}\n\n"
        f"The debate has ended. Write your final answer to the topic, taking the debate into account, "
        f"in at most {words} words. Reply with the answer only."
    )


def consultancy_prompt(topic: str, own_answer: str, other: str, other_answer: str, words: int) -> str:
    """Consultancy's one revision, written after reading the other side's answer."""
    return (
        f"Topic: {topic}\n\nYour answer: {own_answer.strip()}\n\nThe answer of a representative of {other}: "
        f"{other_answer.strip()}\n\nRevise your answer in the light of theirs, in at most {words} words. "
        "Reply with the revised answer only."
    )


def agrees(text: str) -> bool:
    """Whether a debate turn ends with the agreement marker after a readable statement.

    The rule: the last non-empty line, with everything but letters removed and upper-cased, is
    ``AGREE``, ``IAGREE`` or ``WEAGREE`` (so "AGREE", "**Agree.**", "I agree!" count, while
    "I do not agree" or an "agree" inside a sentence does not), and the lines before it read as a
    statement (``kit.metrics.text.degenerate``): a bare marker, or markup and a marker, is no agreement
    to anything, and a debate does not converge on it.
    """
    from kit.metrics.text import degenerate

    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    letters = "".join(ch for ch in lines[-1] if ch.isalpha()).upper()
    return (
        letters in (AGREE_MARKER, "I" + AGREE_MARKER, "WE" + AGREE_MARKER)
        and degenerate("\n".join(lines[:-1])) is None
    )
