"""Cultural distance between two cultures' answers, as a model answers once as each.

Defined here, explicitly, because the published script is not public: for a culture pair and a
topic, the model answers once as each culture (system prompt "Answer the question based on
{culture} cultural values."), both answers are mapped to Schwartz value vectors, and the distance
is the Euclidean distance between the two vectors (:func:`kit.metrics.consensus.value_distance`).
A model's cultural distance is the mean over pairs and topics every compared model answered readably;
the reduction is ``(before − after) / before × 100`` against a base model, with a bootstrap interval
over those items. A model that ignores the culture instruction would reduce it perfectly, so notebook
04 reads it beside the between-culture distance of its survey answers
(``kit.metrics.alignment.between_culture_distance``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kit.agents import Agent, culture_instruction
from kit.data import Topic
from kit.llm.base import Backend, GenParams
from kit.metrics.consensus import distance_reduction, value_distance
from kit.values import ValueDetector

BASE = "base"


def persona(country: str, adapter: str | None, model: str) -> Agent:
    """The model answering as ``country`` (the culture instruction of NCN's finetuning data)."""
    return Agent(
        name=f"{model}:{country}",
        culture=country,
        system_prompt=culture_instruction(country),
        adapter=adapter,
        kind=model,
    )


def distance_table(
    backend: Backend,
    detector: ValueDetector,
    models: dict[str, str | None],
    pairs: Sequence[Sequence[str]],
    topics: Sequence[Topic],
    max_new_tokens: int,
) -> pd.DataFrame:
    """Value distance between the two cultures of each pair, per model and topic (one generate batch)."""
    jobs = [(m, tuple(pair), t) for m in models for pair in pairs for t in topics]
    requests = [persona(c, models[m], m).ask(t.text) for m, pair, t in jobs for c in pair]
    texts = backend.generate(requests, GenParams(temperature=0.0, max_new_tokens=max_new_tokens))
    vectors = detector.vectors(texts)
    rows = []
    for k, (m, pair, t) in enumerate(jobs):
        va, vb = vectors[2 * k].vector, vectors[2 * k + 1].vector
        rows.append(
            {
                "model": m,
                "pair": " × ".join(pair),
                "topic": t.id,
                "distance": np.nan if va is None or vb is None else value_distance(va, vb),
            }
        )
    return pd.DataFrame(rows)


def distance_summary(
    distances: pd.DataFrame, base: str = BASE, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean distance per model and pair, overall, and the reduction against ``base`` with a bootstrap 95 %
    interval — all on the (pair, topic) items *every* model answered readably, so a model is not credited
    with the items another one could not be read on. ``n`` is that item count."""
    wide = distances.pivot_table(index=["pair", "topic"], columns="model", values="distance", dropna=False)
    common = wide.dropna()
    long = common.stack().rename("distance").reset_index()
    table = long.groupby(["model", "pair"])["distance"].mean().unstack("pair")
    table["mean"] = common.mean()
    table["n"] = len(common)
    table["reduction %"] = table["reduction_low"] = table["reduction_high"] = np.nan
    if base not in common or common.empty:
        return table
    idx = np.random.default_rng(seed).integers(0, len(common), size=(n_boot, len(common)))
    before = common[base].to_numpy()[idx].sum(axis=1)
    for model in table.index:
        table.loc[model, "reduction %"] = distance_reduction(common[base].mean(), common[model].mean())
        after = common[model].to_numpy()[idx].sum(axis=1)
        # a resample whose base distance is 0 has no reduction; it is left out
        some = before > 0
        draws = (before[some] - after[some]) / before[some] * 100.0
        low, high = np.quantile(draws, [0.025, 0.975]) if draws.size else (np.nan, np.nan)
        table.loc[model, ["reduction_low", "reduction_high"]] = [low, high]
    return table
