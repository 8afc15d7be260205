"""Nash Consensus Negotiation as a protocol (an engine program): PSRO over natural-language guidelines (METHODS §1).

Steps of one job (each ``yield`` is one engine step, shared with every other job of the run):

0. each agent answers the topic (its opinion, shared with the baselines), then distils one
   guideline from it (re-asked up to ``max_retries`` times; never readable → the job fails);
   the opinions and guidelines are embedded.
1. each round, each agent states its position from its weighted pool;
2. the best-response oracle: each agent proposes ``n_counter`` counter-proposals, ``n_gap``
   gap-fillers and ``n_innovative`` innovative guidelines, one request each, at temperatures
   spread evenly from ``temperature_low`` to ``temperature_high``; unreadable ones are re-asked
   (only those), then dropped and counted;
3. the candidates of both agents are embedded together and scored
   ``U = α·Consist + β·Accept + γ·Nov`` against the round's starting pools and weights; each
   agent's best joins its pool;
4. the meta-game over the two pools is solved for a Nash equilibrium: the new weights;
5. from round 2 on, the job stops when both agents' best utility moved by less than ε in
   absolute value (``utility.converged``), else after ``max_rounds``; then each agent writes a
   consensus statement of at most ``statement_words`` words (longer ones are cut, and marked).

An agent without a readable candidate in a round keeps its pool; its best utility is ``None``,
and the stopping test waits for two rounds in which both agents had one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import asdict
from typing import Any

import numpy as np

from kit.engine import Need, Parsed, Program, Reply, ask, ask_parsed, embed
from kit.negotiation.baselines import ask_readable, initial_answers
from kit.negotiation.guidelines import Guideline, parse_description, parse_guidelines, parse_plain_field
from kit.negotiation.meta_solver import solve_bimatrix
from kit.negotiation.prompts import (
    DESCRIPTION_FORMAT,
    GUIDELINE_FORMAT,
    RETRY_NOTE,
    candidate_prompt,
    guideline_prompt,
    ncn_statement_prompt,
    position_prompt,
    reason_prompt,
    title_prompt,
    who,
)
from kit.negotiation.protocol import Context
from kit.negotiation.utility import PARTS, UtilityWeights, converged, payoff_matrices, utility_matrix

TOP_OPPONENT_GUIDELINES = 3  # how many of the opponent's most weighted guidelines the oracle sees
TITLE_TOKENS, REASON_TOKENS = 16, 48  # the short fields of ``guideline_format: fields``


def candidate_slots(
    n_counter: int, n_gap: int, n_innovative: int, low: float, high: float
) -> list[tuple[str, int, float]]:
    """``(kind, index within kind, temperature)`` of every candidate, temperatures evenly from low to high."""
    kinds = [
        (kind, i)
        for kind, n in (("counter", n_counter), ("gap", n_gap), ("innovative", n_innovative))
        for i in range(n)
    ]
    temperatures = np.linspace(low, high, len(kinds)) if len(kinds) > 1 else np.array([low] * len(kinds))
    # Rounded so equal settings give equal GenParams (and cache keys) on every platform.
    return [(kind, i, round(float(t), 4)) for (kind, i), t in zip(kinds, temperatures)]


def first_guideline(text: str) -> Guideline | None:
    """The first guideline in a reply, or ``None`` when none can be read."""
    found = parse_guidelines(text)
    return found[0] if found else None


def _retry(text: str, role: str, attempt: int) -> tuple[str, str]:
    """A retry changes both the prompt and the seed, so greedy decoding does not repeat itself."""
    return (text + RETRY_NOTE, f"{role}/retry{attempt}") if attempt else (text, role)


def ask_guidelines(
    ctx: Context, items: list[tuple[int, Callable[[str], str], str, float | None]], round_: int, topic: str
) -> Generator[Need, Reply, list[Parsed[Guideline]]]:
    """Guidelines for ``items`` = (agent index, prompt given a format, role, temperature), batched.

    ``guideline_format: json`` asks for the whole guideline in one structured reply.
    ``fields`` asks for the description as plain prose (retried while unreadable), then the title
    and reason of every readable one in one further step; a title that comes back empty falls back
    to the description's first five words.
    """
    p, agents = ctx.params, ctx.spec.agents

    def maker(i: int, prompt: Callable[[str], str], role: str, temperature: float | None, fmt: str):
        def make(attempt: int):
            text, r = _retry(prompt(fmt), role, attempt)
            return ctx.request(agents[i], text, round_, r, temperature)

        return make

    if p.guideline_format == "json":
        return (
            yield from ask_parsed(
                [maker(*item, GUIDELINE_FORMAT) for item in items], first_guideline, p.max_retries
            )
        )
    found = yield from ask_parsed(
        [maker(*item, DESCRIPTION_FORMAT) for item in items], parse_description, p.max_retries
    )
    ready = [(k, items[k], r.value) for k, r in enumerate(found) if r.value]
    texts = yield from ask(
        [
            ctx.request(agents[i], title_prompt(d), round_, f"{role}/title", max_new_tokens=TITLE_TOKENS)
            for _, (i, _, role, _), d in ready
        ]
        + [
            ctx.request(
                agents[i], reason_prompt(topic, d), round_, f"{role}/reason", max_new_tokens=REASON_TOKENS
            )
            for _, (i, _, role, _), d in ready
        ]
    )
    out = list(found)
    for n, (k, _, description) in enumerate(ready):
        title = " ".join(parse_plain_field(texts[n], 1).split()[:5]) or " ".join(description.split()[:5])
        guideline = Guideline(
            title=title, reason=parse_plain_field(texts[len(ready) + n], 1), description=description
        )
        out[k] = Parsed(guideline, found[k].raw, found[k].attempts)
    return out


def _top(pool: list[Guideline], weights: np.ndarray, k: int) -> list[Guideline]:
    order = sorted(range(len(pool)), key=lambda j: (-weights[j], j))
    return [pool[j] for j in order[:k]]


def ncn(ctx: Context) -> Program:
    """One NCN negotiation; returns its trace (see ``kit.negotiation.trace``)."""
    p = ctx.params
    agents = ctx.spec.agents
    topic = ctx.spec.topic.text
    names = [who(agent) for agent in agents]
    weights_uv = UtilityWeights(p.weights.alpha, p.weights.beta, p.weights.gamma)
    trace = ctx.trace()

    responses = yield from initial_answers(ctx, trace)
    opinions = [entry["opinion"] for entry in trace["initial"]]

    initial = yield from ask_guidelines(
        ctx,
        [
            (
                i,
                lambda fmt, i=i: guideline_prompt(topic, opinions[i] or responses[i].strip(), fmt),
                "guideline",
                None,
            )
            for i in range(2)
        ],
        0,
        topic,
    )
    trace["retries"] += sum(result.attempts - 1 for result in initial)
    for i, result in enumerate(initial):
        if result.value is None:
            trace["failures"].append(
                {"stage": "guideline", "agent": i, "raw": result.raw, "round": 0, "kind": None}
            )
        else:
            trace["initial"][i]["guideline"] = asdict(result.value)
    trace["parse_failures"] = len(trace["failures"])
    if any(f["stage"] == "guideline" for f in trace["failures"]):
        trace["failed"] = True
        return ctx.finish(trace, ["", ""])

    pools: list[list[Guideline]] = [[result.value] for result in initial]
    # An agent that gave no opinion text is held to its own guideline instead.
    anchor_texts = [opinions[i] or pools[i][0].text for i in range(2)]
    vectors = yield from embed(anchor_texts + [pools[0][0].text, pools[1][0].text])
    opinion_emb = [vectors[0], vectors[1]]
    pool_emb = [vectors[2:3], vectors[3:4]]
    weights = [np.ones(1), np.ones(1)]
    slots = candidate_slots(p.n_counter, p.n_gap, p.n_innovative, p.temperature_low, p.temperature_high)
    prev_best: tuple[float | None, float | None] | None = None

    for round_ in range(1, p.max_rounds + 1):
        positions = yield from ask(
            [
                ctx.request(agents[i], position_prompt(topic, pools[i], weights[i]), round_, "position")
                for i in range(2)
            ]
        )

        # the prompts read this round's positions and weights: asked (and re-asked) before the round ends
        def candidate_item(i: int, kind: str, index: int, temperature: float, count: int):
            def prompt(fmt: str) -> str:
                return candidate_prompt(
                    topic,
                    opinions[i] or responses[i].strip(),
                    pools[i],
                    weights[i],  # noqa: B023
                    names[1 - i],
                    positions[1 - i],  # noqa: B023
                    _top(pools[1 - i], weights[1 - i], TOP_OPPONENT_GUIDELINES),  # noqa: B023
                    kind,
                    index,
                    count,
                    fmt,
                )

            return i, prompt, f"{kind}{index}", temperature

        counts = {"counter": p.n_counter, "gap": p.n_gap, "innovative": p.n_innovative}
        owners = [(i, slot) for i in range(2) for slot in slots]
        results = yield from ask_guidelines(
            ctx,
            [candidate_item(i, kind, index, t, counts[kind]) for i, (kind, index, t) in owners],
            round_,
            topic,
        )
        trace["retries"] += sum(result.attempts - 1 for result in results)
        kept: list[list[tuple[tuple[str, int, float], Guideline]]] = [[], []]
        for (i, slot), result in zip(owners, results):
            if result.value is None:
                trace["failures"].append(
                    {"stage": "candidate", "agent": i, "raw": result.raw, "round": round_, "kind": slot[0]}
                )
            else:
                kept[i].append((slot, result.value))

        texts = [guideline.text for i in range(2) for _, guideline in kept[i]]
        vectors = (yield from embed(texts)) if texts else np.zeros((0, pool_emb[0].shape[1]))
        split = np.split(vectors, [len(kept[0])])
        candidates: list[list[dict[str, Any]]] = [[], []]
        chosen: list[dict[str, Any] | None] = [None, None]
        best: list[float | None] = [None, None]
        additions: list[np.ndarray | None] = [None, None]
        for i in range(2):
            if not kept[i]:
                continue
            # Scored against the pools and weights the round started with, for both agents alike.
            parts = utility_matrix(split[i], opinion_emb[i], pool_emb[1 - i], weights[1 - i], pool_emb[i])
            totals = parts @ weights_uv.vector
            for ((kind, _, temperature), guideline), row, total in zip(kept[i], parts, totals):
                candidates[i].append(
                    {
                        "kind": kind,
                        **asdict(guideline),
                        "temperature": temperature,
                        **{name: float(v) for name, v in zip(PARTS, row)},
                        "total": float(total),
                    }
                )
            pick = int(np.argmax(totals))
            chosen[i], best[i] = {**candidates[i][pick], "index": pick}, float(totals[pick])
            additions[i] = split[i][pick : pick + 1]
        for i in range(2):
            if chosen[i] is not None:
                pools[i].append(kept[i][chosen[i]["index"]][1])
                pool_emb[i] = np.vstack([pool_emb[i], additions[i]])

        A, B = payoff_matrices(pool_emb[0], pool_emb[1], opinion_emb[0], opinion_emb[1], weights_uv)
        equilibrium = solve_bimatrix(A, B)
        weights = [np.asarray(equilibrium.row, float), np.asarray(equilibrium.col, float)]
        trace["rounds"].append(
            {
                "round": round_,
                "statements": positions,
                "candidates": candidates,
                "chosen": chosen,
                "best_utility": best,
                "pools": [[g.title for g in pool] for pool in pools],
                "weights": [w.tolist() for w in weights],
                "payoffs": [np.asarray(A, float).tolist(), np.asarray(B, float).tolist()],
                "nash_gap": float(equilibrium.nash_gap),
                "solver": equilibrium.method,
            }
        )
        new_best = (best[0], best[1])
        if (
            prev_best is not None
            and None not in prev_best
            and None not in new_best
            and converged(prev_best, new_best, p.epsilon)
        ):  # type: ignore[arg-type]
            trace["converged"] = True
            break
        prev_best = new_best

    trace["parse_failures"] = len(trace["failures"])
    final_round = p.max_rounds + 1  # shared by every job, so all statements batch together
    statements = yield from ask_readable(
        ctx,
        trace,
        [
            (
                i,
                ncn_statement_prompt(
                    topic, pools[i], weights[i], names[1 - i], pools[1 - i], weights[1 - i], p.statement_words
                ),
                final_round,
                "statement",
            )
            for i in range(2)
        ],
        "statement",
    )
    return ctx.finish(trace, statements)
