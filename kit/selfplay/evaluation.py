"""The self-play table: every method's policy talks the held-out dilemmas through, and is judged.

Each method (``untrained``: the base model; ``single_agent_grpo``; ``self_play_grpo``) plays both
personas of every held-out dilemma with its own adapter, all methods' dialogues in one set of
engine steps — sampled at ``selfplay.eval_temperature`` with one seed per turn shared by every
method (greedy decoding sends a small model into repeating loops), or greedy at 0. Per dialogue:
the judge's Collective Agency score of the joint solution (1–5; NaN when the judge put less than
``selfplay.judge_min_mass`` on the labels — counted as ``judge_missing``) and that mass, whether it was
**resolved** (both sides stated one solution, ``kit.selfplay.dialogue``), the turns used, and the
acceptance of the solution as the consensus board reads it (``kit.metrics.consensus.rel_logppl``): the
solution scored by the base model as persona a's and as persona b's reply to the dilemma, each against the
plain model on the dilemma alone (no persona), ``rel_logppl`` the mean of the two log-perplexity
differences — below 0, both personas find the solution likelier than the model does on its own. A reference row, ``trivial solution``, has the judge
score the same empty compromise (:data:`TRIVIAL`) on every dilemma: a method that does not beat it has
not been credited for its content.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.llm.base import Backend, GenParams, ScoreRequest
from kit.metrics.alignment import bootstrap_ci
from kit.metrics.consensus import perplexity, rel_logppl
from kit.run import seeds
from kit.selfplay.dialogue import Dialogue, play, setting, stated
from kit.selfplay.dilemmas import Dilemma
from kit.selfplay.judge import judgements, no_solution
from kit.selfplay.rewards import stated_solution
from kit.selfplay.training import single_prompt

METHODS = ("untrained", "single_agent_grpo", "self_play_grpo", "self_play_grpo+joint")
TRIVIAL = "Both sides should compromise."
TRIVIAL_ROW = "trivial solution"
SCORES = ("collective_agency", "resolved", "turns", "rel_logppl")


def dialogues(
    backend: Backend,
    dilemmas: list[Dilemma],
    adapters: dict[str, str | None],
    max_turns: int,
    turn_tokens: int,
    turn_words: int,
    embedder,
    agree_cosine: float,
    temperature: float = 0.0,
    seed: int = 0,
) -> dict[str, list[Dialogue]]:
    """Each method's dialogue on every dilemma (one engine run for all methods): greedy, or sampled at
    ``temperature`` with one seed per turn, the same for every method."""

    def params_for(turn: int) -> GenParams:
        return GenParams(
            temperature=temperature,
            max_new_tokens=turn_tokens,
            seed=seeds.derive(seed, "selfplay-eval", turn) if temperature else None,
        )

    games = [(d, 0, adapter) for adapter in adapters.values() for d in dilemmas]
    played = play(backend, games, max_turns, params_for, turn_words, embedder, agree_cosine)
    n = len(dilemmas)
    return {m: played[i * n : (i + 1) * n] for i, m in enumerate(adapters)}


def score_rows(
    backend: Backend,
    judge: Backend,
    dilemmas: list[Dilemma],
    by_method: dict[str, list[Dialogue]],
    turn_words: int,
    min_mass: float = 0.0,
) -> pd.DataFrame:
    """One row per (method, dilemma): CA score and the judge's label mass, resolved, turns, and the solution's
    perplexity under each persona; and one per dilemma for the trivial solution (CA only)."""
    flat = [(m, d, dlg) for m, dlgs in by_method.items() for d, dlg in zip(dilemmas, dlgs)]
    judged = judgements(
        judge,
        [d for _, d, _ in flat] + list(dilemmas),
        [dlg.solution for _, _, dlg in flat] + [TRIVIAL] * len(dilemmas),
        min_mass,
    )
    # no solution (empty, degenerate, a copy of the dilemma or a stance) has no acceptance: it is left out
    scored = [
        (i, side)
        for i, (_, d, dlg) in enumerate(flat)
        if not no_solution(d, dlg.solution)
        for side in ("a", "b", "base")
    ]

    def prompt(d: Dilemma, side: str) -> list[dict]:
        return (
            [{"role": "user", "content": f"The dilemma: {d.text}"}]
            if side == "base"
            else setting(d, side, turn_words)
        )

    logprobs = (
        backend.score([ScoreRequest(prompt(flat[i][1], side), flat[i][2].solution) for i, side in scored])
        if scored
        else []
    )
    ppl = {key: perplexity(lp) for key, lp in zip(scored, logprobs)}
    rows = []
    for i, (m, d, dlg) in enumerate(flat):
        a, b, base = (ppl.get((i, side), np.nan) for side in ("a", "b", "base"))
        rows.append(
            {
                "method": m,
                "id": d.id,
                "collective_agency": judged[i].score,
                "judge_mass": judged[i].mass,
                "resolved": float(dlg.resolved),
                "turns": len(dlg.turns),
                "ppl_a": a,
                "ppl_b": b,
                "ppl_base": base,
                "rel_logppl": rel_logppl(a, base, b, base) if np.isfinite(a) else np.nan,
                "solution": dlg.solution,
            }
        )
    rows += [
        {
            "method": TRIVIAL_ROW,
            "id": d.id,
            "collective_agency": j.score,
            "judge_mass": j.mass,
            "resolved": np.nan,
            "turns": np.nan,
            "ppl_a": np.nan,
            "ppl_b": np.nan,
            "ppl_base": np.nan,
            "rel_logppl": np.nan,
            "solution": TRIVIAL,
        }
        for d, j in zip(dilemmas, judged[len(flat) :])
    ]
    return pd.DataFrame(rows)


def single_answers(
    backend: Backend,
    dilemmas: list[Dilemma],
    adapters: dict[str, str | None],
    turn_words: int,
    turn_tokens: int,
) -> dict[str, list[str]]:
    """Each method's one answer to every dilemma in the single-agent baseline's own format (the dilemma and
    both stances, one solution after the marker: ``kit.selfplay.training.single_prompt``), greedy, one batch."""
    from kit.llm.base import ChatRequest

    keys = [(m, d) for m in adapters for d in dilemmas]
    texts = (
        backend.generate(
            [ChatRequest(single_prompt(d, turn_words), adapter=adapters[m]) for m, d in keys],
            GenParams(temperature=0.0, max_new_tokens=turn_tokens),
        )
        if keys
        else []
    )
    n = len(dilemmas)
    return {m: texts[i * n : (i + 1) * n] for i, m in enumerate(adapters)}


def single_rows(
    judge: Backend, dilemmas: list[Dilemma], answers: dict[str, list[str]], min_mass: float = 0.0
) -> pd.DataFrame:
    """One row per (method, dilemma) of the single-answer mode: the judge's CA score of the stated solution (as the
    single-agent reward reads it; no solution scores 1, a missing judgement is NaN) and whether a readable solution
    was stated after the marker (``stated``)."""
    flat = [(m, d, text) for m, texts in answers.items() for d, text in zip(dilemmas, texts)]
    judged = judgements(judge, [d for _, d, _ in flat], [stated_solution(t) for _, _, t in flat], min_mass)
    return pd.DataFrame(
        [
            {
                "method": m,
                "id": d.id,
                "collective_agency": j.score,
                "judge_mass": j.mass,
                "stated": float(stated(t) is not None),
                "answer": t,
            }
            for (m, d, t), j in zip(flat, judged)
        ],
        columns=["method", "id", "collective_agency", "judge_mass", "stated", "answer"],
    )


def judge_missing(rows: pd.DataFrame) -> dict[str, int]:
    """Per method: judgements left missing because the judge put too little mass on the labels."""
    return {m: int(g["collective_agency"].isna().sum()) for m, g in rows.groupby("method", sort=False)}


def summary(rows: pd.DataFrame, kept: pd.DataFrame | None, n_boot: int, seed: int) -> pd.DataFrame:
    """Per method: each score's mean with a 95 % bootstrap interval, and capability kept."""
    out = []
    for method, g in rows.groupby("method", sort=False):
        row = {
            "method": method,
            "n": len(g),
            "judge_missing": int(g["collective_agency"].isna().sum()),
            "judge_mass": float(g["judge_mass"].mean()) if "judge_mass" in g else np.nan,
        }
        for score in SCORES:
            values = g[score].dropna().to_numpy(dtype=float)
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) else (np.nan, np.nan)
            row |= {
                score: float(values.mean()) if len(values) else np.nan,
                f"{score}_low": low,
                f"{score}_high": high,
            }
        if kept is not None and method in kept.index:
            row |= {
                "moralchoice_low_accuracy": float(kept.loc[method, "moralchoice_low_accuracy"]),
                "neutral_ppl": float(kept.loc[method, "neutral_ppl"]),
            }
        out.append(row)
    table = (
        pd.DataFrame(out)
        .set_index("method")
        .rename(columns=lambda c: c.replace("resolved", "resolution_rate"))
    )
    return table


def methods_json(table: pd.DataFrame) -> dict:
    """The ``methods`` mapping of the unit's metrics: CA score, resolution rate, MoralChoice accuracy (and more)."""
    keys = (
        "collective_agency",
        "collective_agency_low",
        "collective_agency_high",
        "judge_missing",
        "judge_mass",
        "resolution_rate",
        "turns",
        "rel_logppl",
        "moralchoice_low_accuracy",
        "neutral_ppl",
    )

    def num(x):
        return None if not np.isfinite(x) else round(float(x), 4)

    return {m: {k: num(table.loc[m, k]) for k in keys if k in table.columns} for m in table.index}
