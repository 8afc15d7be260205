"""Notebook 32 · every method on held-out dilemmas: Collective Agency, conflict resolution, capability kept.

The untrained policy, the single-agent GRPO policy, the self-play GRPO policy (Collective Agency alone, as the
paper trains it) and its ``self_play_grpo+joint`` ablation each talk every held-out dilemma through with
themselves (``kit.selfplay.evaluation``); the evaluation judge (``models.selfplay_eval_judge``, else the reward
judge — and the table says so) scores each joint solution and a trivial one. Self-play GRPO is compared with each
other method paired on the same dilemmas. Every method is also asked once in the single-agent baseline's own
format (one solution from the dilemma and both stances), so the baseline is not judged only in a dialogue it never
trained on.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from kit.evals.capability import capability_kept
from kit.lessons import negotiation
from kit.lessons.selfplay_data import capability_ids
from kit.lessons.selfplay_training import trained_ids
from kit.llm.base import GenParams
from kit.metrics.alignment import bootstrap_ci, paired_verdicts
from kit.reporting import plots
from kit.run import seeds
from kit.selfplay import dilemmas as sd
from kit.selfplay.dialogue import Dialogue
from kit.selfplay.evaluation import (
    METHODS,
    TRIVIAL_ROW,
    dialogues,
    judge_missing,
    methods_json,
    score_rows,
    single_answers,
    single_rows,
    summary,
)
from kit.selfplay.ncn_study import consensus_rows, policy_traces, starts
from kit.session import in_stage
from kit.values import make_value_detector

NOTEBOOK = "32_selfplay_table"


def held_out(found: list[sd.Dilemma], n: int) -> list[sd.Dilemma]:
    return [d for d in found if d.split == "test"][:n]


def overlap(session, found: list[sd.Dilemma]) -> dict[str, int]:
    return sd.overlap(found, capability_ids(session), trained_ids(session))


def eval_judge(session):
    """(the evaluation judge's backend, its name, whether it is the judge the policies were trained on)."""
    p = session.params
    return (
        session.role_backend("selfplay_eval_judge"),
        session.role_name("selfplay_eval_judge"),
        p.role_model("selfplay_eval_judge") == p.role_model("selfplay_judge"),
    )


def judge_line(session) -> str:
    _, name, same = eval_judge(session)
    return f"evaluation judge: {name}" + (
        " — the judge the policies were trained on as their reward (no other "
        "is named in models.selfplay_eval_judge): its scores grade its own reward"
        if same
        else " (not the reward judge)"
    )


@in_stage("32", "held-out dialogues and NCN study")
def evaluate(session, dilemmas: list[sd.Dilemma], adapters: dict[str, str | None]):
    """(dialogues per method, one score row per method and dilemma)."""
    sp = session.params.selfplay
    played = {
        m: d
        for part in session.each_row(
            "dialogues",
            adapters,
            lambda one: dialogues(
                session.backend,
                dilemmas,
                one,
                sp.max_turns,
                sp.turn_tokens,
                sp.turn_words,
                session.embedder,
                sp.agree_cosine,
                sp.eval_temperature,
                session.params.seed,
            ),
        )
        for m, d in part.items()
    }
    with session.timed("judge and acceptance"):
        rows = score_rows(
            session.backend, eval_judge(session)[0], dilemmas, played, sp.turn_words, sp.judge_min_mass
        )
    return played, rows


@in_stage("32", "held-out dialogues and NCN study")
def capability(session, adapters: dict[str, str | None]) -> pd.DataFrame:
    return capability_kept(session, NOTEBOOK, adapters, session.params.selfplay.capability_items, "untrained")


def table(session, rows: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    p = session.params
    return summary(rows, kept, p.n_boot, seeds.derive(p.seed, "bootstrap")).reindex(
        [m for m in (*METHODS, TRIVIAL_ROW) if m in set(rows["method"])]
    )


def paired(session, rows: pd.DataFrame, method: str = "self_play_grpo") -> pd.DataFrame:
    """``method`` minus each other method on the same dilemmas, for CA and resolution: mean, 95 % interval, verdict."""
    p = session.params
    seed = seeds.derive(p.seed, "bootstrap")
    out = [
        v
        for score in ("collective_agency", "resolved", "rel_logppl")
        for v in paired_verdicts(
            rows[rows["method"] != TRIVIAL_ROW] if score != "collective_agency" else rows,
            method,
            score,
            p.n_boot,
            seed,
            min_items=p.verdicts.min_items,
            direction="lower" if score == "rel_logppl" else "higher",
        )
    ]
    return pd.DataFrame(out).set_index(["score", "against"])


@in_stage("32", "held-out dialogues and NCN study")
def single_answer(session, dilemmas: list[sd.Dilemma], adapters: dict[str, str | None]) -> pd.DataFrame:
    """Every method asked once in the single-agent baseline's format, judged by the evaluation judge: one row per
    method and dilemma (``kit.selfplay.evaluation.single_rows``)."""
    sp = session.params.selfplay
    with session.timed("single-answer mode"):
        answers = single_answers(session.backend, dilemmas, adapters, sp.turn_words, sp.turn_tokens)
        return single_rows(eval_judge(session)[0], dilemmas, answers, sp.judge_min_mass)


def single_table(
    session, rows: pd.DataFrame, method: str = "single_agent_grpo"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The single-answer mode per method (CA with a 95 % interval, the share that stated a solution) and ``method``
    paired against each other method on CA (``verdicts.min_items``)."""
    p = session.params
    seed = seeds.derive(p.seed, "bootstrap")
    out = []
    for m, g in rows.groupby("method", sort=False):
        values = g["collective_agency"].dropna().to_numpy(float)
        low, high = bootstrap_ci(values, n_boot=p.n_boot, seed=seed) if len(values) else (np.nan, np.nan)
        out.append(
            {
                "method": m,
                "n": len(g),
                "collective_agency": values.mean() if len(values) else np.nan,
                "collective_agency_low": low,
                "collective_agency_high": high,
                "stated_rate": float(g["stated"].mean()),
                "judge_missing": int(g["collective_agency"].isna().sum()),
            }
        )
    vs = pd.DataFrame(
        paired_verdicts(rows, method, "collective_agency", p.n_boot, seed, min_items=p.verdicts.min_items)
        if method in set(rows["method"])
        else []
    )
    return pd.DataFrame(out).set_index("method"), vs


def table_figure(session, t: pd.DataFrame) -> None:
    with plots.figure(session.figure_paths("32_selfplay_table.png"), 1, 2, figsize=(10, 3.6)) as (fig, axes):
        for ax, score, label in zip(
            axes,
            ("resolution_rate", "collective_agency"),
            ("resolution rate (both sides state one agreeing solution)", "Collective Agency (1–5)"),
        ):
            err = [t[score] - t[f"{score}_low"], t[f"{score}_high"] - t[score]]
            ax.bar(t.index, t[score], yerr=np.nan_to_num(err), capsize=4, color="#4c72b0")
            ax.set_ylim(*((0, 1) if score == "resolution_rate" else (1, 5)))
            ax.set_title(label, fontsize=10)
            ax.tick_params(axis="x", rotation=15)
        fig.suptitle("Self-play on held-out dilemmas (95 % bootstrap intervals)")


def transcript(d: sd.Dilemma, dialogue: Dialogue) -> str:
    names = {"a": d.a.name, "b": d.b.name}
    lines = [f"{names[t.speaker]}: {' '.join(t.text.split())[:260]}" for t in dialogue.turns]
    verdict = "resolved" if dialogue.resolved else "not resolved"
    return "\n".join(lines) + f"\n[{verdict} after {len(dialogue.turns)} turns]"


def dialogue_figure(session, d: sd.Dilemma, before: Dialogue, after: Dialogue) -> None:
    with plots.figure(session.figure_paths("32_dialogue_before_after.png"), 1, 2, figsize=(13, 5)) as (
        fig,
        axes,
    ):
        for ax, title, dlg in zip(axes, ("untrained", "self-play GRPO"), (before, after)):
            ax.axis("off")
            printable = "".join(ch for ch in transcript(d, dlg) if ch.isprintable() or ch == "\n")
            body = "\n".join(textwrap.fill(line, 70) for line in printable.splitlines())
            ax.text(0, 1, body, fontsize=7, va="top", family="monospace", transform=ax.transAxes)
            ax.set_title(title)
        fig.suptitle(textwrap.fill(f"{d.id}: {d.text}", 150), fontsize=8)


@in_stage("32", "held-out dialogues and NCN study")
def ncn_study(session, adapters: dict[str, str | None]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every negotiation method of notebook 02 and every self-play policy on the study's topics and pairs,
    evaluated alike (``kit.selfplay.ncn_study``) and saved for the consensus board; and the count of study
    topics a policy trained on (left out for every method)."""
    p, sp = session.params, session.params.selfplay
    agent_by_country, traces = negotiation.study_traces(session)
    trained = trained_ids(session)
    # a topic counts as seen under its own id or its source-prefixed one (how dilemma ids are written)
    seen = {
        t["topic"]["id"]
        for t in traces
        if {t["topic"]["id"], f"{t['topic']['source']}:{t['topic']['id']}"} & trained
    }
    study = [t for t in traces if t["topic"]["id"] not in seen]

    def params_for(turn: int) -> GenParams:
        return GenParams(
            temperature=sp.eval_temperature,
            max_new_tokens=sp.turn_tokens,
            seed=seeds.derive(p.seed, "selfplay-ncn", turn) if sp.eval_temperature else None,
        )

    opening = starts(study)
    played = [
        t
        for part in session.each_row(
            "talk the study's topics through",
            adapters,
            lambda one: policy_traces(
                session.backend,
                opening,
                one,
                sp.max_turns,
                params_for,
                sp.turn_words,
                session.embedder,
                sp.agree_cosine,
            ),
        )
        for t in part
    ]
    detector = make_value_detector(
        p.negotiation.value_judge,
        backend=session.role_backend("value_judge"),
        embedder=session.embedder,
        seed=p.seed,
    )
    with session.timed("consensus evaluation"):
        rows = consensus_rows(
            session.backend,
            eval_judge(session)[0],
            detector,
            agent_by_country,
            study + played,
            sp.judge_min_mass,
        )
    session.save_scores(NOTEBOOK, "consensus", rows.to_dict("records"))
    return rows, {"study_topics_in_selfplay_training": len(seen), "dialogues_per_policy": len(opening)}


def key_numbers(
    session,
    t: pd.DataFrame,
    compared: pd.DataFrame,
    rows: pd.DataFrame,
    counts: dict,
    study: pd.DataFrame,
    study_counts: dict,
    single: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> dict:
    by = study.groupby("method", sort=False)
    _, name, same = eval_judge(session)

    def num(x):
        return None if pd.isna(x) else round(float(x), 4)

    single_part = (
        {}
        if single is None
        else {
            "single_answer": {
                m: {"collective_agency": num(r["collective_agency"]), "stated_rate": num(r["stated_rate"])}
                for m, r in single[0].iterrows()
            },
            "single_agent_vs": {r["against"]: r["verdict"] for _, r in single[1].iterrows()},
        }
    )
    return {
        "methods": methods_json(t),
        "n_dilemmas": int(rows["id"].nunique()),
        "overlap": counts,
        "rewards": {
            "self_play_grpo": session.params.selfplay.rewards,
            "self_play_grpo+joint": session.params.selfplay.ablation_rewards,
        },
        **single_part,
        "judge": session.role_name("selfplay_judge"),
        "eval_judge": {"name": name, "is_reward_judge": same},
        "judge_missing": judge_missing(rows),
        "self_play_vs": {f"{s}:{o}": v for (s, o), v in compared["verdict"].items()},
        "ncn_study": {
            "counts": study_counts,
            "collective_agency": {
                m: round(float(v), 4) for m, v in by["collective_agency"].mean().dropna().items()
            },
            "resolution_rate": {
                m: round(float(v), 4)
                for m, v in study["resolved"]
                .astype(float)
                .groupby(study["method"], sort=False)
                .mean()
                .dropna()
                .items()
            },
        },
    }
