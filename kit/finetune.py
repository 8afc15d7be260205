"""Closing the loop (notebook 04): finetune on negotiation data, then measure before and after.

Cultural distance is defined here, explicitly, because the published script is not public: for a
culture pair and a held-out topic, the model answers once as each culture (system prompt "Answer
the question based on {culture} cultural values."), both answers are mapped to Schwartz value
vectors, and the distance is the Euclidean distance between the two vectors
(:func:`kit.metrics.consensus.value_distance`). A model's cultural distance is the mean over pairs
and topics; the reduction is ``(before − after) / before × 100`` against the base model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kit.agents import Agent, culture_instruction
from kit.data import Topic, load_moralchoice
from kit.data.neutral import NEUTRAL_PASSAGES
from kit.llm.base import ChoiceRequest, GenParams, ScoreRequest
from kit.metrics.consensus import distance_reduction, perplexity, value_distance

log = logging.getLogger(__name__)

BASE = "base"


def training_records(params, traces: list[dict]) -> dict[str, tuple[list[dict], list[dict], dict]]:
    """Per method: (train, eval, counts); preference pairs for DPO/SimPO/ORPO, reasoning for SFT."""
    from kit.train.data import preference_records, sft_records, split_records

    f = params.finetune
    out = {}
    for method in f.methods:
        build = sft_records if method == "sft" else preference_records
        records, counts = build(traces, require_converged=f.require_converged)
        train, evaluation = split_records(records, f.eval_fraction, params.seed)
        out[method] = (train, evaluation, counts)
    return out


def train_all(session, data: dict[str, tuple[list[dict], list[dict], dict]]) -> dict[str, Path]:
    """One LoRA adapter per method; a method with no training records is skipped (and said so)."""
    from kit.train.trainers import train

    p = session.params
    adapters = {}
    for method, (train_records, eval_records, counts) in data.items():
        if not train_records:
            log.warning("%s: no training records after filtering (%s); skipped", method, counts)
            continue
        with session.timed(f"train {method}"):
            result = train(method, train_records, eval_records, p.model.name, session.run_dir / "train" / method,
                           p.finetune, p.seed)
        adapters[method] = result.adapter_dir
    return adapters


def _persona(country: str, adapter: str | None, model: str) -> Agent:
    return Agent(name=f"{model}:{country}", culture=country, system_prompt=culture_instruction(country),
                 adapter=adapter, kind=model)


def cultural_distance(session, detector, models: dict[str, str | None], pairs: Sequence[Sequence[str]],
                      topics: Sequence[Topic]) -> pd.DataFrame:
    """Value distance between the two cultures of each pair, per model and held-out topic (one batch)."""
    jobs = [(m, tuple(pair), t) for m in models for pair in pairs for t in topics]
    requests = [_persona(c, models[m], m).ask(t.text) for m, pair, t in jobs for c in pair]
    gp = GenParams(temperature=0.0, max_new_tokens=session.params.negotiation.turn_tokens)
    texts = session.backend.generate(requests, gp)
    vectors = detector.vectors(texts)
    rows = []
    for k, (m, pair, t) in enumerate(jobs):
        va, vb = vectors[2 * k].vector, vectors[2 * k + 1].vector
        rows.append({"model": m, "pair": " × ".join(pair), "topic": t.id,
                     "distance": np.nan if va is None or vb is None else value_distance(va, vb)})
    return pd.DataFrame(rows)


def distance_summary(distances: pd.DataFrame) -> pd.DataFrame:
    table = distances.groupby(["model", "pair"])["distance"].mean().unstack("pair")
    table["mean"] = distances.groupby("model")["distance"].mean()
    base = table.loc[BASE, "mean"] if BASE in table.index else np.nan
    table["reduction %"] = [distance_reduction(base, v) for v in table["mean"]]
    return table


def goqa_alignment(session, models: dict[str, str | None], splits) -> pd.DataFrame:
    """GlobalOpinionQA test-split alignment of each model when asked as each culture."""
    from kit.metrics.alignment import score_table
    from kit.survey import answer_rows

    personas = [_persona(c, a, m) for m, a in models.items() for c in splits.countries]
    items = [it for c in splits.countries for it in splits.test[c]]
    rows = answer_rows(session.backend, personas, items)
    return score_table(rows, n_boot=session.params.agents.n_boot, seed=session.params.seed)


def capability(session, models: dict[str, str | None]) -> pd.DataFrame:
    """MoralChoice low-ambiguity accuracy (one forward pass per item) and neutral-text perplexity."""
    p = session.params
    scenarios = load_moralchoice(p.data.moralchoice_path, ambiguity="low")[: p.finetune.capability_items]
    # The data always lists the right action first; alternating the order keeps a model's
    # preference for one letter from passing as moral judgement.
    flipped = [k % 2 == 1 for k in range(len(scenarios))]

    def ask(s, flip: bool) -> str:
        first, second = (s.actions[1], s.actions[0]) if flip else s.actions
        return (f"{s.context}\nWhich action would you take?\nA. {first}\nB. {second}\n"
                "Answer with the letter of one option.")

    choice = [ChoiceRequest([{"role": "user", "content": ask(s, f)}], ["A", "B"], adapter=a, prefix="Answer:")
              for a in models.values() for s, f in zip(scenarios, flipped)]
    score = [ScoreRequest([{"role": "user", "content": "Write a short factual paragraph."}], text, adapter=a)
             for a in models.values() for text in NEUTRAL_PASSAGES]
    choices, logprobs = session.backend.choice_probs(choice), session.backend.score(score)
    rows = []
    for i, m in enumerate(models):
        got = choices[i * len(scenarios):(i + 1) * len(scenarios)]
        right = [("B" if f else "A") if s.gold_distribution[0] >= s.gold_distribution[1] else ("A" if f else "B")
                 for s, f in zip(scenarios, flipped)]
        correct = [r.probs[label] >= 0.5 for r, label in zip(got, right)]
        lps = logprobs[i * len(NEUTRAL_PASSAGES):(i + 1) * len(NEUTRAL_PASSAGES)]
        rows.append({"model": m, "moralchoice_low_accuracy": float(np.mean(correct)),
                     "neutral_ppl": float(np.mean([perplexity(lp) for lp in lps])), "items": len(scenarios)})
    return pd.DataFrame(rows).set_index("model")


def loss_figure(session, adapters: dict[str, Path], path: Path) -> Path:
    """Training loss per method, from each trainer's saved log history."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for method in adapters:
        history = json.loads((session.run_dir / "train" / method / "log_history.json").read_text())
        steps = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
        if steps:
            ax.plot(*zip(*steps), marker="o", label=method)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("LoRA finetuning on negotiation data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def distance_figure(summary: pd.DataFrame, path: Path) -> Path:
    """Cultural distance per culture pair, base model vs each finetuned adapter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [c for c in summary.columns if c not in ("mean", "reduction %")]
    ax = summary[pairs].T.plot.bar(figsize=(7, 3.8), rot=0)
    ax.set_ylabel("value distance (Euclidean, 10 Schwartz values)")
    ax.set_title("Cultural distance before and after finetuning")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)
    return path
