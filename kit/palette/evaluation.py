"""Cultural Palette's Table 1, honestly: every row on the same held-out questions, with references,
intervals and paired differences; and semantic consistency against the gold responses.

``answer_all`` runs every Table 1 row (``baselines.ROWS`` and the meta agent's ``VARIANTS``) as
engine programs together: one batch per model per step across rows, countries and questions.
``kit.metrics.alignment.continent_table`` averages per continent and overall; the paired comparisons use
``kit.metrics.alignment.reference_comparison`` ("beats" only when the 95 % interval is above 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from kit.data import OpinionItem, resolve_countries, survey_splits
from kit.engine import Job, Program, ask, run_jobs
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.palette.baselines import ROWS, row_program
from kit.palette.meta_agent import VARIANTS, palette_answer
from kit.palette.prompts import CONTINENTS, record_prompt

CONSISTENCY_ROWS = ("prompted", "joint", "ties", "model_stock", "moe_routing", "moe")


def test_items(params) -> tuple[dict[str, list[OpinionItem]], list[OpinionItem]]:
    """Each palette country's held-out questions (the split every unit shares), and every country's
    answers to them (for the references)."""
    s = survey_splits(
        params.data.goqa_path,
        resolve_countries(params.palette.countries, params.data.goqa_path),
        test_fraction=params.data.test_fraction,
        split_seed=params.data.split_seed,
        min_train_items=1,
        max_train_items=1,
        max_test_items=params.palette.max_test_items,
        goqa_test_path=params.data.goqa_test_path,
    )
    if s.skipped:
        raise ValueError(f"palette countries without held-out questions: {s.skipped}")
    return s.test, s.test_all_countries


def answer_all(
    backend: Backend,
    models: Mapping[str, Backend],
    adapters: Mapping[str, str],
    items: Mapping[str, Sequence[OpinionItem]],
    palette,
    names: Sequence[str] = (*ROWS, *VARIANTS),
) -> list[dict]:
    """Score rows (``agent`` = row name) of the Table 1 rows ``names`` for every country's items."""
    pairs = [(c, it) for c, its in items.items() for it in its]
    baselines = [row for row in ROWS if row in names]
    jobs = [Job(row, row_program(row, pairs, adapters, palette.comment_tokens)) for row in baselines]
    jobs += [
        Job(
            f"{name}|{c}|{it.question_id}",
            palette_answer(variant, c, it, adapters, palette.draft_tokens, palette.regulate_tokens),
        )
        for name, variant in VARIANTS.items()
        if name in names
        for c, it in pairs
    ]
    run_jobs(jobs, backend, models=models)
    rows = [{"agent": job.id, **r} for job in jobs[: len(baselines)] for r in job.result]
    rows += [{"agent": job.id.split("|")[0], **job.result} for job in jobs[len(baselines) :]]
    return rows


def best_baseline(table: pd.DataFrame) -> str:
    """The baseline row with the highest overall mean (the palette rows and references excluded)."""
    overall = table[(table["continent"] == "overall") & table["agent"].isin(ROWS)]
    return str(overall.sort_values("mean", ascending=False)["agent"].iloc[0])


def _answers(requests: Sequence[ChatRequest], tokens: int, model: str | None) -> Program:
    return (yield from ask([(r, GenParams(max_new_tokens=tokens)) for r in requests], model=model))


def consistency(
    backend: Backend,
    models: Mapping[str, Backend],
    adapters: Mapping[str, str],
    records: Sequence[dict],
    scorer,
    tokens: int,
) -> pd.DataFrame:
    """Semantic consistency on held-out queries: each model answers as each continent, and the NLI
    scorer reads P(entailment) of its answer given that continent's gold (synthesised) response.

    Rows ``CONSISTENCY_ROWS``: the base model told the continent, the joint adapter, the two merges,
    the continent's own agent and the Cultural MoErges model. Long format: model, continent, mean, n (scored
    pairs), missing (judgements with no mass on the letters, left out: a judge's failure, not the model's).
    """
    gold = [(r["query"], c, r["final"][c]) for r in records for c in CONTINENTS if r["final"].get(c)]
    if not gold:
        return pd.DataFrame(columns=["model", "continent", "mean", "n", "missing"])

    def request(row: str, query: str, continent: str) -> ChatRequest:
        adapter = {"joint": adapters["joint"], "moe_routing": adapters[continent]}.get(row)
        return ChatRequest(record_prompt(continent, query), adapter=adapter)

    jobs = [
        Job(
            row,
            _answers(
                [request(row, q, c) for q, c, _ in gold],
                tokens,
                row if row in ("ties", "model_stock", "moe") else None,
            ),
        )
        for row in CONSISTENCY_ROWS
    ]
    run_jobs(jobs, backend, models=models)
    pairs = [(g, answer) for job in jobs for (_, _, g), answer in zip(gold, job.result)]
    entailment = iter(scorer.entailment(pairs))
    rows = [
        {"model": job.id, "continent": c, "entailment": next(entailment)} for job in jobs for _, c, _ in gold
    ]
    df = pd.DataFrame(rows)
    df["lost"] = df["entailment"].isna()
    stats = {"mean": ("entailment", "mean"), "n": ("entailment", "count"), "missing": ("lost", "sum")}
    per = df.groupby(["model", "continent"], sort=False).agg(**stats).reset_index()
    overall = df.groupby("model", sort=False).agg(**stats).reset_index()
    overall["continent"] = "overall"
    return pd.concat([per, overall])[["model", "continent", "mean", "n", "missing"]]


def wide(table: pd.DataFrame, index: str = "agent", value: str = "mean") -> pd.DataFrame:
    """Rows × (continents…, overall), as the paper prints Table 1."""
    grid = table.pivot(index=index, columns="continent", values=value)
    return grid[[c for c in (*CONTINENTS, "overall") if c in grid.columns]]
