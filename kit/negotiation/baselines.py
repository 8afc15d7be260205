"""The baselines NCN is compared with: no negotiation, consultancy and debate (METHODS §1).

Every method starts from the same step: each agent answers the topic alone, with the same
prompt and seed as in every other method, so all methods share their initial answers (the
engine sends a repeated request once) and differ only in what follows.
"""

from __future__ import annotations

from typing import Any, Generator

from kit.engine import Need, Program, Reply, ask
from kit.negotiation.guidelines import parse_opinion
from kit.negotiation.prompts import (
    agrees,
    answer_prompt,
    consultancy_prompt,
    debate_final_prompt,
    debate_turn_prompt,
    who,
)
from kit.negotiation.protocol import Context


def initial_answers(ctx: Context, trace: dict[str, Any]) -> Generator[Need, Reply, list[str]]:
    """Step 0 of every method: each agent's independent answer, recorded in ``trace["initial"]``."""
    topic = ctx.spec.topic.text
    raw = yield from ask([ctx.request(agent, answer_prompt(agent, topic), 0, "answer") for agent in ctx.spec.agents])
    responses = [r.strip() for r in raw]  # stripped like every final statement, so both score alike
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
    revised = yield from ask([
        ctx.request(a, consultancy_prompt(topic, first[0], who(b), first[1], words), 1, "revise"),
        ctx.request(b, consultancy_prompt(topic, first[1], who(a), first[0], words), 1, "revise"),
    ])
    trace["rounds"] = [{"round": 1, "statements": revised}]
    trace["converged"] = True  # one exchange is the whole protocol; there is no cap to hit
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
    finals = yield from ask([ctx.request(agent, debate_final_prompt(topic, turns, ctx.params.statement_words),
                                         final_round, "final") for agent in agents])
    return ctx.finish(trace, finals)
