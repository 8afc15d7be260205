"""Notebook 04 · finetuning on negotiation data: does it reduce cultural distance, at what cost?

Builds preference and SFT records from notebook 02's traces (``kit.train.records``), trains one
LoRA adapter per method with trl (``kit.train.trainers``), then compares the base model and each
adapter on cultural distance over held-out topics (``kit.evals.distance``), GlobalOpinionQA
alignment on notebook 01's held-out questions (``kit.evals.survey``) and capability kept
(``kit.evals.capability``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kit import plots
from kit.data import goqa_split, load_moralchoice
from kit.data.topics import heldout_topics
from kit.evals.capability import capability_table
from kit.evals.distance import BASE, distance_summary, distance_table, persona
from kit.evals.survey import alignment_table
from kit.files import read_json
from kit.lessons import negotiation
from kit.train.records import preference_records, sft_records, split_records
from kit.train.recipes import TRAINERS
from kit.train.trainers import train
from kit.values import make_value_detector

log = logging.getLogger(__name__)

TrainingData = dict[str, tuple[list[dict], list[dict], dict]]


def traces(session) -> list[dict]:
    found = session.records(negotiation.STORE).to_list()
    if not found:
        raise ValueError("no traces yet: run notebook 02 with the same params first")
    return found


def training_records(session, trace_list: list[dict]) -> TrainingData:
    """Per method: (train, eval, counts); preference pairs for DPO/SimPO/ORPO, reasoning for SFT."""
    p = session.params
    f = p.finetune
    out = {}
    for method in f.methods:
        build = preference_records if TRAINERS.get(method).preference else sft_records
        records, counts = build(trace_list, require_converged=f.require_converged)
        train_records, evaluation = split_records(records, f.eval_fraction, p.seed)
        out[method] = (train_records, evaluation, counts)
    return out


def funnel(data: TrainingData) -> pd.DataFrame:
    return pd.DataFrame({m: {"train": len(tr), "eval": len(ev), **counts} for m, (tr, ev, counts) in data.items()}).T


def train_all(session, data: TrainingData) -> dict[str, Path]:
    """One LoRA adapter per method; a method with no training records is skipped (and said so)."""
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


def models(adapters: dict[str, Path]) -> dict[str, str | None]:
    """The compared models: the base (no adapter) and each trained adapter."""
    return {BASE: None, **{m: str(a) for m, a in adapters.items()}}


def loss_figure(session, adapters: dict[str, Path]) -> None:
    """Training loss per method, from each trainer's saved log history."""
    with plots.figure(session.figure_paths("04_loss_curves.png"), figsize=(7, 3.8)) as (_, ax):
        for method in adapters:
            history = read_json(session.run_dir / "train" / method / "log_history.json", [])
            steps = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
            if steps:
                ax.plot(*zip(*steps), marker="o", label=method)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("LoRA finetuning on negotiation data")
        ax.legend()


def cultural_distance(session, compared: dict[str, str | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-topic distances and their summary (with the reduction against the base) on held-out topics."""
    p = session.params
    heldout = heldout_topics(p.data, p.negotiation.topics, p.finetune.heldout_topics, p.seed)
    detector = make_value_detector(p.negotiation.value_judge, backend=session.backend, embedder=session.embedder,
                                   seed=p.seed)
    with session.timed("cultural distance"):
        distances = distance_table(session.backend, detector, compared, p.negotiation.pairs, heldout,
                                   p.negotiation.turn_tokens)
    return distances, distance_summary(distances)


def distance_figure(session, summary: pd.DataFrame) -> None:
    """Cultural distance per culture pair, base model vs each finetuned adapter."""
    pairs = [c for c in summary.columns if c not in ("mean", "reduction %")]
    ax = summary[pairs].T.plot.bar(figsize=(7, 3.8), rot=0)
    ax.set_ylabel("value distance (Euclidean, 10 Schwartz values)")
    ax.set_title("Cultural distance before and after finetuning")
    plots.save(ax.figure, session.figure_paths("04_cultural_distance.png"))


def goqa_alignment(session, compared: dict[str, str | None]) -> pd.DataFrame:
    """GlobalOpinionQA alignment of each model, asked as each culture, on notebook 01's held-out questions."""
    p = session.params
    agent_set = session.agents()
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    held_out = agent_set.test_items(test)
    personas = [persona(c, a, m) for m, a in compared.items() for c in agent_set.countries]
    with session.timed("GlobalOpinionQA alignment"):
        return alignment_table(session.backend, personas, [it for c in agent_set.countries for it in held_out[c]],
                               n_boot=p.n_boot, seed=p.seed)


def capability(session, compared: dict[str, str | None]) -> pd.DataFrame:
    """MoralChoice low-ambiguity accuracy and neutral-text perplexity per model."""
    p = session.params
    scenarios = load_moralchoice(p.data.moralchoice_path, ambiguity="low")[: p.finetune.capability_items]
    with session.timed("capability"):
        return capability_table(session.backend, compared, scenarios)


def key_numbers(data: TrainingData, adapters: dict[str, Path], distance: pd.DataFrame, alignment: pd.DataFrame,
                kept: pd.DataFrame) -> dict:
    return {
        "n_trained": len(adapters),
        "trained": sorted(adapters),
        "records": {m: len(tr) for m, (tr, _, _) in data.items()},
        "distance_mean": {m: round(float(v), 4) for m, v in distance["mean"].items()},
        "distance_reduction_pct": {m: None if pd.isna(v) else round(float(v), 2) for m, v in distance["reduction %"].items()},
        "goqa_js_similarity": {m: round(float(v), 2) for m, v in alignment.groupby("agent")["js_similarity"].mean().items()},
        "moralchoice_low_accuracy": kept["moralchoice_low_accuracy"].round(4).to_dict(),
        "neutral_ppl": kept["neutral_ppl"].round(3).to_dict(),
    }
