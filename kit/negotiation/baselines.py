"""The baselines NCN is compared with: no negotiation, consultancy and debate (METHODS §1).

Every method starts from the same step: each agent answers the topic alone, with the same
prompt and seed as in every other method, so all methods share their initial answers (the
engine sends a repeated request once) and differ only in what follows.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from kit.engine import Need, Program, Reply, ask, ask_parsed
from kit.metrics.text import degenerate, readable
from kit.negotiation.guidelines import parse_opinion
from kit.negotiation.prompts import (
    READABLE_NOTE,
    agrees,
    answer_prompt,
    consultancy_prompt,
    debate_final_prompt,
    debate_turn_prompt,
    who,
)
from kit.negotiation.protocol import Context


def ask_readable(
    ctx: Context, trace: dict[str, Any], items: Sequence[tuple[int, str, int, str]], stage: str
) -> Generator[Need, Reply, list[str]]:
    """Texts for ``items`` = (agent index, prompt, round, role), stripped; a degenerate reply
    (``kit.metrics.text.degenerate``: empty, markup, repetition) is re-asked with a new seed and a note
    like an unparseable one, up to ``max_retries`` times, then kept as written and recorded in
    ``trace["failures"]`` (``stage``, its raw text, the reason as ``kind``) — the evaluations leave it out."""

    def maker(i: int, prompt: str, round_: int, role: str):
        def make(attempt: int):
            return ctx.request(
                ctx.spec.agents[i],
                prompt + READABLE_NOTE if attempt else prompt,
                round_,
                f"{role}/retry{attempt}" if attempt else role,
            )

        return make

    found = yield from ask_parsed([maker(*item) for item in items], readable, ctx.params.max_retries)
    trace["retries"] += sum(r.attempts - 1 for r in found)
    for (i, _, round_, _), r in zip(items, found):
        if r.value is None:
            trace["failures"].append(
                {"stage": stage, "agent": i, "raw": r.raw, "round": round_, "kind": degenerate(r.raw)}
            )
    trace["parse_failures"] = len(trace["failures"])
    return [r.raw.strip() if r.value is None else r.value for r in found]


def initial_answers(ctx: Context, trace: dict[str, Any]) -> Generator[Need, Reply, list[str]]:
    """Step 0 of every method: each agent's independent answer, recorded in ``trace["initial"]``."""
    topic = ctx.spec.topic.text
    responses = yield from ask_readable(
        ctx,
        trace,
        [(i, answer_prompt(agent, topic), 0, "answer") for i, agent in enumerate(ctx.spec.agents)],
        "answer",
    )
    trace["initial"] = [{"response": r, "opinion": parse_opinion(r), "guideline": None} for r in responses]
    return responses


def no_negotiation(ctx: Context) -> Program:
    """``"none"``: the initial answers are the final statements."""
    trace = ctx.trace()
    responses = yield from initial_answers(ctx, trace)
    return ctx.finish(trace, responses)


def consultancy(ctx: Context) -> Program:
    """Each side answers, reads the OTHER side's answer, and revises once; the revisions are final.

    The anchor's code never showed a side the other's answer, so its "revision" was a second
    independent answer; here the answers are exchanged, as the method describes.
    """
    trace = ctx.trace()
    a, b = ctx.spec.agents
    topic, words = ctx.spec.topic.text, ctx.params.statement_words
    first = yield from initial_answers(ctx, trace)
    revised = yield from ask_readable(
        ctx,
        trace,
        [
            (0, consultancy_prompt(topic, first[0], who(b), first[1], words), 1, "revise"),
            (1, consultancy_prompt(topic, first[1], who(a), first[0], words), 1, "revise"),
        ],
        "statement",
    )
    # one exchange is the whole protocol: no stopping rule, so ``converged`` stays false
    trace["rounds"] = [{"round": 1, "statements": revised}]
    return ctx.finish(trace, revised)


def debate(ctx: Context) -> Program:
    """Alternating turns (A, then B, each seeing the transcript) until both end a round with AGREE.

    The transcript opens with both initial answers. After each full round the two latest turns
    are checked with :func:`kit.negotiation.prompts.agrees`; both agreeing ends the debate
    (``converged``), else it stops after ``max_rounds``. Then each side writes a final answer of at
    most ``statement_words`` words.
    """
    trace = ctx.trace()
    agents = ctx.spec.agents
    names = [who(agent) for agent in agents]
    topic = ctx.spec.topic.text
    first = yield from initial_answers(ctx, trace)
    turns = list(zip(names, first))
    for round_ in range(1, ctx.params.max_rounds + 1):
        said = []
        for i, agent in enumerate(agents):
            prompt = debate_turn_prompt(topic, names[1 - i], turns)
            (text,) = yield from ask([ctx.request(agent, prompt, round_, "turn")])
            turns.append((names[i], text))
            said.append(text)
        agree = [agrees(text) for text in said]
        trace["rounds"].append({"round": round_, "statements": said, "agree": agree})
        if all(agree):
            trace["converged"] = True
            break
    final_round = ctx.params.max_rounds + 1  # shared by every job, so all final answers batch together
    finals = yield from ask_readable(
        ctx,
        trace,
        [
            (i, debate_final_prompt(topic, turns, ctx.params.statement_words), final_round, "final")
            for i in range(len(agents))
        ],
        "statement",
    )
    return ctx.finish(trace, finals)
