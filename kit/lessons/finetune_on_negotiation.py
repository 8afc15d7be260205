"""Notebook 04 · finetuning on negotiation data: does it reduce cultural distance, at what cost?

Builds preference and SFT records from the study's traces of each source method in
``finetune.from_methods`` (``kit.train.records``; ``ncn_release:<method>`` reads the NCN paper's own
transcripts, each zone speaking as the kit's culture its agent was named after), trains one LoRA adapter per (source, method)
with trl (``kit.train.trainers``), then compares the base model and each adapter on cultural
distance over held-out topics (``kit.evals.distance``), GlobalOpinionQA alignment on notebook
01's held-out questions beside the three references, paired against the base model
(``kit.evals.survey``, ``kit.evals.references``), how differently each model still answers as each
culture, and capability kept (``kit.evals.capability``). Before anything trains, the leak counts are
computed and must all be 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kit.data import OpinionItem, Topic, goqa_split
from kit.data.leaks import assert_no_leaks, leak_counts
from kit.data.topics import heldout_topics
from kit.evals.capability import capability_kept, capability_numbers
from kit.evals.distance import BASE, distance_summary, distance_table, persona
from kit.evals.references import table_rows
from kit.evals.survey import answer_rows
from kit.lessons import negotiation
from kit.metrics.alignment import (
    REFERENCES,
    between_culture_distance,
    prior_check,
    reference_comparison,
    score_table,
)
from kit.negotiation.ncn_release import training_traces
from kit.negotiation.run import resolve_pairs
from kit.reporting import curves, plots
from kit.run import seeds
from kit.session import in_stage
from kit.train.records import TrainingSet, source_folder, training_sets
from kit.train.trainers import train
from kit.values import make_value_detector

log = logging.getLogger(__name__)
NOTEBOOK = "04_finetune_on_negotiation"

TrainingData = dict[tuple[str, str], TrainingSet]


def model_name(source: str, method: str) -> str:
    """How tables name an adapter: the training method and the negotiation method its data came from."""
    return f"{method}@{source}"


def traces(session) -> list[dict]:
    """The study's traces of the current plan (notebook 02), and the NCN release's transcripts of every
    ``ncn_release:<method>`` source in ``finetune.from_methods`` (``kit.negotiation.ncn_release``), less any
    whose topic is held out here."""
    released, counts = training_traces(session.params)
    if counts["read"]:
        print(
            f"NCN release: {counts['read']} transcripts read, {counts['dropped_heldout']} left out as held-out topics"
        )
    return negotiation.study_traces(session)[1] + released


def training_records(session, trace_list: list[dict]) -> TrainingData:
    """Per (source, method): (train, eval, counts) — the same data ``python -m kit train`` builds."""
    return training_sets(trace_list, session.params.finetune, session.params.seed)


def funnel(data: TrainingData) -> pd.DataFrame:
    return pd.DataFrame(
        {
            model_name(*key): {"train": len(tr), "eval": len(ev), **counts}
            for key, (tr, ev, counts) in data.items()
        }
    ).T


def heldout(session) -> list[Topic]:
    """Topics of the held-out pool: never negotiated in this study."""
    p = session.params
    return heldout_topics(p.data, p.negotiation.topics, p.finetune.heldout_topics, p.seed)


def goqa_test_items(session) -> dict[str, list[OpinionItem]]:
    """Notebook 01's held-out GlobalOpinionQA items, per country of the stored agents."""
    p = session.params
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    return session.agents().test_items(test)


def leaks(session, trace_list: list[dict], data: TrainingData, heldout_list: list[Topic]) -> dict[str, int]:
    """The leak counts of this finetuning (``kit.data.leaks.leak_counts``); stops the notebook with
    one clear line unless all are 0."""
    p = session.params
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    prompts = [
        m["content"]
        for tr, ev, _ in data.values()
        for r in tr + ev
        for m in (r["prompt"] if "prompt" in r else r["messages"])
        if m["role"] == "user"
    ]
    trained_on = {
        t["topic"]["id"]: Topic(t["topic"]["id"], t["topic"]["text"], t["topic"]["source"])
        for t in trace_list
        if t.get("origin")
    }  # the release's topics train too
    counts = leak_counts(
        negotiation.topics(session) + list(trained_on.values()), heldout_list, trace_list, prompts, test
    )
    assert_no_leaks(counts)
    return counts


@in_stage("04", "finetune")
def train_all(session, data: TrainingData) -> dict[str, Path]:
    """One LoRA adapter per (source, method) in ``train/<source>/<method>`` (``source_folder``); empty sets are
    skipped (and said so)."""
    p = session.params
    adapters = {}
    for (source, method), (train_records, eval_records, counts) in data.items():
        name = model_name(source, method)
        if not train_records:
            log.warning("%s: no training records after filtering (%s); skipped", name, counts)
            continue
        with session.timed(f"train {name}", row=name):
            result = train(
                method,
                train_records,
                eval_records,
                p.model.ref,
                session.run_dir / "train" / source_folder(source) / method,
                p.finetune,
                p.seed,
            )
        adapters[name] = result.adapter_dir
    return adapters


def models(adapters: dict[str, Path]) -> dict[str, str | None]:
    """The compared models: the base (no adapter) and each trained adapter."""
    return {BASE: None, **{m: str(a) for m, a in adapters.items()}}


def curves_figure(session, adapters: dict[str, Path]) -> None:
    """Training (and evaluation) loss per adapter, from each trainer's log history (``kit.reporting.curves``)."""
    curves.figure(
        session.figure_paths("04_training_curves.png"),
        curves.training_curves(adapters),
        "LoRA finetuning on negotiation data",
    )


@in_stage("04", "distance, alignment and capability")
def cultural_distance(
    session, compared: dict[str, str | None], heldout_list: list[Topic]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-topic distances and their summary (with the reduction against the base) on held-out topics."""
    p = session.params
    detector = make_value_detector(
        p.negotiation.value_judge,
        backend=session.role_backend("value_judge"),
        embedder=session.embedder,
        seed=p.seed,
    )
    distances = pd.concat(
        session.each_row(
            "cultural distance",
            compared,
            lambda one: distance_table(
                session.backend, detector, one, resolve_pairs(p), heldout_list, p.negotiation.turn_tokens
            ),
        ),
        ignore_index=True,
    )
    return distances, distance_summary(distances, n_boot=p.n_boot, seed=seeds.derive(p.seed, "bootstrap"))


def distance_figure(session, summary: pd.DataFrame) -> None:
    """Cultural distance per culture pair, base model vs each finetuned adapter."""
    pairs = [
        c for c in summary.columns if c not in ("mean", "n", "reduction %", "reduction_low", "reduction_high")
    ]
    if summary[pairs].dropna(how="all").empty:
        plots.placeholder(
            session.figure_paths("04_cultural_distance.png"),
            "Cultural distance before and after finetuning",
            "no distance: the value judge read no held-out statement",
        )
        return
    ax = summary[pairs].T.plot.bar(figsize=(8, 3.8), rot=0)
    ax.set_ylabel("value distance (Euclidean, 10 Schwartz values)")
    ax.set_title("Cultural distance before and after finetuning")
    ax.legend(fontsize=7)
    plots.save(ax.figure, session.figure_paths("04_cultural_distance.png"))


@in_stage("04", "distance, alignment and capability")
def goqa_alignment(session, compared: dict[str, str | None]) -> tuple[pd.DataFrame, list[dict]]:
    """GlobalOpinionQA alignment of each model, asked as each culture, on notebook 01's held-out questions,
    beside the four references on the same (country, question) pairs (the entropy-matched one from the base
    model's answers; ``evals.min_label_mass`` applied): (per agent and country table, score rows). The answers
    are saved for the cross-method board."""
    p = session.params
    held_out = goqa_test_items(session)
    items = [it for its in held_out.values() for it in its]
    rows = [
        r
        for part in session.each_row(
            "GlobalOpinionQA alignment",
            compared,
            lambda one: answer_rows(
                session.backend, [persona(c, a, m) for m, a in one.items() for c in held_out], items
            ),
        )
        for r in part
    ]
    session.save_scores(NOTEBOOK, "alignment", rows)
    rows = table_rows(p, rows, BASE)
    table = score_table(rows, n_boot=p.n_boot, seed=seeds.derive(p.seed, "bootstrap"))
    # the table says when its strongest reference is not the stronger bar on these rows
    table.attrs["neighbour_prior"] = prior_check(
        rows, "js_similarity", p.n_boot, seeds.derive(p.seed, "bootstrap"), p.verdicts.min_items
    )
    if table.attrs["neighbour_prior"]["line"]:
        print(table.attrs["neighbour_prior"]["line"])
    return table, rows


def paired_with_base(
    session, rows: list[dict], adapters: dict[str, Path], metric: str = "js_similarity"
) -> pd.DataFrame:
    """Each adapter against the base model and the references, paired on the (country, question) rows both
    answered (95 % cluster-bootstrap intervals over questions)."""
    p = session.params
    return reference_comparison(
        rows,
        list(adapters),
        [BASE, *REFERENCES],
        metric,
        n_boot=p.n_boot,
        seed=seeds.derive(p.seed, "bootstrap"),
        min_items=p.verdicts.min_items,
    )


def culture_fidelity(rows: list[dict], compared: dict[str, str | None]) -> pd.DataFrame:
    """Between-culture distance of each model's survey answers (and of the gold answers on the same
    questions): finetuning that brings cultures together by ignoring the culture shows here as a drop."""
    table = between_culture_distance([r for r in rows if r["agent"] in compared]).set_index("agent")
    return table.reindex([m for m in compared if m in table.index])


def capability(session, compared: dict[str, str | None]) -> pd.DataFrame:
    """lm-eval's capability tasks (``capability.tasks``) per model, each with its standard error and paired change
    against the base (``kit.evals.capability``)."""
    return capability_kept(session, NOTEBOOK, compared, session.params.finetune.capability_items, BASE)


def key_numbers(
    data: TrainingData,
    adapters: dict[str, Path],
    distance: pd.DataFrame,
    alignment: pd.DataFrame,
    paired: pd.DataFrame,
    fidelity: pd.DataFrame,
    kept: pd.DataFrame,
    leak: dict[str, int],
) -> dict:
    def rounded(v) -> float | None:
        return None if pd.isna(v) else round(float(v), 2)

    means = alignment.groupby("agent")[["js_similarity", "js_similarity_e"]].mean()
    vs_base = paired[paired["reference"] == BASE].set_index("kind")
    return {
        "n_trained": len(adapters),
        "trained": sorted(adapters),
        "records": {model_name(*key): len(tr) for key, (tr, _, _) in data.items()},
        "subsampled_from": {
            model_name(*key): c["subsampled_from"]
            for key, (_, _, c) in data.items()
            if "subsampled_from" in c
        },
        "leaks": leak,
        "distance_mean": {m: round(float(v), 4) for m, v in distance["mean"].items()},
        "distance_items": int(distance["n"].iloc[0]) if len(distance) else 0,
        "distance_reduction_pct": {m: rounded(v) for m, v in distance["reduction %"].items()},
        "distance_reduction_ci": {
            m: [rounded(r["reduction_low"]), rounded(r["reduction_high"])]
            for m, r in distance.iterrows()
            if m != BASE
        },
        "js_similarity": {
            **{m: round(float(v), 2) for m, v in means["js_similarity"].items()},
            "paired": vs_base["verdict"].to_dict(),
            "paired_diff": {
                m: [rounded(r["diff"]), rounded(r["ci_low"]), rounded(r["ci_high"])]
                for m, r in vs_base.iterrows()
            },
        },
        "js_similarity_e": {m: round(float(v), 2) for m, v in means["js_similarity_e"].items()},
        "missing_answers": {
            m: int(v) for m, v in alignment.groupby("agent")["missing"].sum().items() if m not in REFERENCES
        },
        "neighbour_prior_vs_other_countries": alignment.attrs.get("neighbour_prior", {}).get("verdict"),
        "between_culture_items": int(fidelity["n"].max()) if len(fidelity) else 0,
        "between_culture_distance": {m: rounded(v) for m, v in fidelity["model_distance"].items()},
        "between_culture_gold": rounded(fidelity["gold_distance"].mean()) if len(fidelity) else None,
        "moralchoice_low_accuracy": kept["moralchoice_low_accuracy"].round(4).to_dict(),
        "moralchoice_correct": kept["correct"].to_dict(),
        "moralchoice_items": int(kept["items"].iloc[0]),
        "capability": capability_numbers(kept),
        "moralchoice_letter_mass": kept["letter_mass"].round(4).to_dict(),
        "neutral_ppl": kept["neutral_ppl"].round(3).to_dict(),
    }
