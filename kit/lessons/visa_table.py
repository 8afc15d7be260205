"""Notebook 22 · VISA on held-out items: value F1, drift, meaning kept and the alignment tax, per method.

Every method rewrites (or, for direct finetuning, answers) the same held-out items toward the same
targets in one engine step (``kit.visa.evaluation``); the evaluation detector (``visa.eval_detector``,
by default the LLM judge the trained detector imitates, so GRPO is not scored by the detector it
optimised) reads rewrites and originals. Capability is measured on the answering model of each
method. GRPO is compared with each baseline paired on the same items.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from kit.data import OpinionItem, goqa_split, load_moralchoice
from kit.data.countries import resolve_country
from kit.engine import ask, run
from kit.evals.capability import capability_kept
from kit.evals.references import table_rows
from kit.lessons import visa_detector
from kit.llm.base import ChatRequest, GenParams
from kit.metrics.alignment import (
    REFERENCES,
    paired_verdicts,
    per_question_scores,
    prior_check,
    reference_comparison,
)
from kit.reporting import plots
from kit.run import seeds
from kit.session import in_stage
from kit.values import make_value_detector
from kit.visa import corpus as vc
from kit.visa.evaluation import (
    DIAGNOSTICS,
    METHODS,
    SHIELDED,
    UNREWRITTEN,
    methods_json,
    pipeline_accuracy,
    rewrite_all,
    score_rows,
    summary,
)
from kit.visa.rewriter import rewrite_messages, targets_of
from kit.visa.survey import ORIGINAL, survey_rows
from kit.visa.targets import culture_target, opposite, sample_target
from kit.visa.translator import instruction

NOTEBOOK = "22_visa_table"


def test_items(items: list[vc.Item], n: int) -> list[vc.Item]:
    return [it for it in items if it.split == "test"][:n]


@in_stage("22", "held-out table")
def evaluate(
    session, items: list[vc.Item], adapters: dict[str, str | None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rewrites, per-item score rows) of every method with an adapter (direct finetuning may have none)."""
    p, v = session.params, session.params.visa
    used = {m: a for m, a in adapters.items() if m != "direct_finetune" or a is not None}
    targets = targets_of(items, p.seed, v.n_targeted)
    with session.timed("rewrites"):
        rewrites = rewrite_all(session.backend, used, items, targets, v.rewrite_tokens)
    path = {"path": visa_detector.trained_folder(session)} if v.eval_detector == "trained" else {}
    detector = make_value_detector(
        v.eval_detector,
        backend=session.role_backend("visa_judge"),
        embedder=session.embedder,
        seed=p.seed,
        **path,
    )
    with session.timed("evaluation detector"):
        rows = score_rows(rewrites, targets, detector, session.embedder, v.rewards, v.min_words, v.max_words)
    return rewrites, rows


def capability(session, adapters: dict[str, str | None]) -> pd.DataFrame:
    """lm-eval's capability tasks (``capability.tasks``) on the base model and every trained model (the rewriters
    and the directly finetuned one), saved for the capability board (``kit.evals.capability``)."""
    models = {"base": None, **{m: a for m, a in adapters.items() if a}}
    return capability_kept(session, NOTEBOOK, models, session.params.visa.capability_items, "base")


@in_stage("22", "held-out table")
def pipeline(session, adapters: dict[str, str | None]) -> dict[str, float]:
    """The shielded methods' MoralChoice low-ambiguity accuracy through answer → rewrite → read, on the
    capability items, each toward a target sampled by (seed, scenario id); and the unrewritten answer's."""
    p, v = session.params, session.params.visa
    scenarios = load_moralchoice(p.data.moralchoice_path, ambiguity="low")[: v.capability_items]
    targets = {s.id: sample_target(p.seed, f"pipeline:{s.id}", v.n_targeted) for s in scenarios}
    with session.timed("pipeline MoralChoice"):
        return pipeline_accuracy(
            session.backend,
            scenarios,
            targets,
            {m: adapters.get(m) for m in SHIELDED},
            v.answer_tokens,
            v.rewrite_tokens,
        )


def table(
    session, rows: pd.DataFrame, kept: pd.DataFrame, pipe: dict[str, float] | None = None
) -> pd.DataFrame:
    p = session.params
    return summary(rows, kept, p.n_boot, seeds.derive(p.seed, "bootstrap"), pipe).reindex(
        [m for m in (*METHODS, *DIAGNOSTICS) if m in set(rows["method"])]
    )


def paired(session, rows: pd.DataFrame, method: str = "grpo", score: str = "visa_composite") -> pd.DataFrame:
    """``method`` minus each other method on the same items: mean difference, 95 % bootstrap interval, verdict
    (``verdicts.min_items``). VISA's verdict reads the composite (the reward GRPO optimises, value F1 with meaning
    kept, drift and format), so the ``copy`` row — which keeps all meaning and moves nothing — is its bar."""
    p = session.params
    return pd.DataFrame(
        paired_verdicts(
            rows, method, score, p.n_boot, seeds.derive(p.seed, "bootstrap"), min_items=p.verdicts.min_items
        )
    ).set_index("against")


def table_figure(session, summary_table: pd.DataFrame) -> None:
    scores = ["value_f1", "drift", "meaning_kept"]
    with plots.figure(session.figure_paths("22_visa_table.png"), 1, 3, figsize=(11, 3.4)) as (fig, axes):
        for ax, score in zip(axes, scores):
            t = summary_table
            err = [t[score] - t[f"{score}_low"], t[f"{score}_high"] - t[score]]
            ax.bar(t.index, t[score], yerr=np.nan_to_num(err), capsize=4, color="#4c72b0")
            ax.set_title(score)
            ax.tick_params(axis="x", rotation=25)
        fig.suptitle("VISA on held-out items (95 % bootstrap intervals)")


@in_stage("22", "held-out table")
def opposite_rewrites(session, item: vc.Item, adapter: str | None) -> pd.DataFrame:
    """One held-out answer rewritten by the GRPO rewriter toward its target and toward the opposite one."""
    p, v = session.params, session.params.visa
    target = targets_of([item], p.seed, v.n_targeted)[item.id]
    params = GenParams(temperature=0.0, max_new_tokens=v.rewrite_tokens)
    pair = [target, opposite(target)]
    texts = run(
        ask([(ChatRequest(rewrite_messages(item.answer, t), adapter=adapter), params) for t in pair]),
        session.backend,
    )
    return pd.DataFrame(
        {"instruction": ["(original)"] + [instruction(t) for t in pair], "text": [item.answer, *texts]}
    )


def opposite_figure(session, example: pd.DataFrame) -> None:
    with plots.figure(session.figure_paths("22_opposite_rewrites.png"), figsize=(10, 6)) as (fig, ax):
        ax.axis("off")
        y = 1.0
        for _, r in example.iterrows():
            printable = "".join(
                ch for ch in r["text"] if ch.isprintable() or ch.isspace()
            )  # no glyph for controls
            body = textwrap.fill(" ".join(printable.split())[:600], 120)
            ax.text(0, y, r["instruction"], fontsize=9, fontweight="bold", va="top", transform=ax.transAxes)
            ax.text(0, y - 0.05, body, fontsize=8, va="top", family="monospace", transform=ax.transAxes)
            y -= 0.34
        ax.set_title("One held-out answer rewritten toward two opposite targets (GRPO rewriter)")


def country_targets(session, countries: list[str] | None = None) -> dict[str, np.ndarray]:
    """Per country of notebook 01's described agents (or of ``countries`` among them): the values the trained
    detector reads in its description, as a rewriting target. Empty when notebook 01 has not run; a
    description that expresses no value gives no target."""
    try:
        described = session.agents().of_kind("described")
    except ValueError:  # notebook 01 has not run with this profile
        return {}
    found = {}
    for country in countries if countries is not None else list(described):
        try:
            found[country] = described[resolve_country(country, list(described))]
        except ValueError:
            continue  # no described agent of that culture in this run
    detector = make_value_detector(
        "trained", embedder=session.embedder, path=visa_detector.trained_folder(session)
    )
    readings = detector.vectors([a.system_prompt for a in found.values()])
    targets = {c: culture_target(r.vector) for c, r in zip(found, readings)}
    return {c: t for c, t in targets.items() if t is not None}


@in_stage("22", "held-out table")
def culture_rewrites(session, item: vc.Item, adapter: str | None) -> pd.DataFrame:
    """The answer rewritten to speak for each of ``visa.culture_countries`` (``country_targets``)."""
    v = session.params.visa
    targets = country_targets(session, v.culture_countries)
    params = GenParams(temperature=0.0, max_new_tokens=v.rewrite_tokens)
    requests = [
        (ChatRequest(rewrite_messages(item.answer, t), adapter=adapter), params) for t in targets.values()
    ]
    texts = run(ask(requests), session.backend) if requests else []
    return pd.DataFrame(
        [{"country": c, "target": instruction(t), "rewrite": x} for (c, t), x in zip(targets.items(), texts)],
        columns=["country", "target", "rewrite"],
    )


def survey_items(session) -> list[OpinionItem]:
    """Notebook 01's held-out GlobalOpinionQA items, at most ``visa.goqa_items`` per country."""
    p = session.params
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    try:
        held_out = session.agents().test_items(test)
    except ValueError:  # notebook 01 has not run with this profile: nothing to rewrite toward
        return []
    return [it for its in held_out.values() for it in its[: p.visa.goqa_items]]


@in_stage("22", "held-out table")
def survey(
    session, items: list[OpinionItem], corpus: list[vc.Item], adapters: dict[str, str | None]
) -> tuple[list[dict], dict[str, int]]:
    """Score rows of the answer before any rewrite and after each rewriter's rewrite toward the country's
    values, on held-out GlobalOpinionQA questions (saved for the cross-method board), and the overlap
    of those questions with the rewriters' corpus (must be 0)."""
    v = session.params.visa
    targets = country_targets(session) if items else {}
    rewriters = {
        m: adapters.get(m) for m in ("prompting", "sft", "grpo") if m == "prompting" or adapters.get(m)
    }
    rows = [
        r
        for part in session.each_row(
            "GlobalOpinionQA",
            {ORIGINAL: None, **rewriters},
            lambda one: survey_rows(session.backend, items, targets, one, v.answer_tokens, v.rewrite_tokens),
        )
        for r in part
    ]
    session.save_scores(NOTEBOOK, "alignment", rows)
    return rows, {
        "corpus_questions_in_survey": vc.overlap(corpus, items, set())["goqa_test_questions"],
        "countries_without_target": len({it.country for it in items} - set(targets)),
    }


def survey_table(session, rows: list[dict], items: list[OpinionItem]) -> pd.DataFrame:
    """Each rewriter against the unrewritten answer and the four references (the entropy-matched one from the
    unrewritten answers), paired on the same questions, ``evals.min_label_mass`` applied."""
    p = session.params
    kinds = [k for k in dict.fromkeys(r["agent"] for r in rows) if k != ORIGINAL]
    if not kinds:
        return pd.DataFrame(columns=["kind", "reference", "n", "diff", "ci_low", "ci_high", "verdict"])
    scored = table_rows(p, rows, ORIGINAL)
    prior = prior_check(
        scored, "js_similarity", p.n_boot, seeds.derive(p.seed, "bootstrap"), p.verdicts.min_items
    )
    if prior["line"]:  # the table says when its strongest reference is not the stronger bar on these rows
        print(prior["line"])
    return reference_comparison(
        scored,
        kinds,
        (ORIGINAL, *REFERENCES),
        "js_similarity",
        n_boot=p.n_boot,
        seed=seeds.derive(p.seed, "bootstrap"),
        min_items=p.verdicts.min_items,
    )


def key_numbers(
    session,
    summary_table: pd.DataFrame,
    compared: pd.DataFrame,
    rows: pd.DataFrame,
    survey_rows: list[dict],
    survey_overlap: dict[str, int],
    pipe: dict[str, float],
) -> dict:
    floored = table_rows(session.params, survey_rows, ORIGINAL) if survey_rows else []
    survey = per_question_scores(floored).groupby("agent")["js_similarity"].mean() if floored else {}
    return {
        "methods": methods_json(summary_table),
        "pipeline_unrewritten_accuracy": round(float(pipe[UNREWRITTEN]), 4),
        "n_items": int(rows["id"].nunique()),
        "unreadable": summary_table["unreadable"].to_dict(),
        "eval_detector": session.params.visa.eval_detector,
        "verdict_score": "visa_composite",
        "grpo_vs": compared["verdict"].to_dict(),
        # vacuous without a baseline: None, never True
        "grpo_beats_baselines": (
            bool((baselines["verdict"] == "better").all())
            if len(baselines := compared.drop(index=list(DIAGNOSTICS), errors="ignore"))
            else None
        ),
        "grpo_beats_copy": compared.loc["copy", "verdict"] if "copy" in compared.index else None,
        "grpo_beats_diagnostics": {d: compared.loc[d, "verdict"] for d in DIAGNOSTICS if d in compared.index},
        "neutral_ppl": summary_table["neutral_ppl"].dropna().round(3).to_dict()
        if "neutral_ppl" in summary_table
        else {},
        "goqa_js_similarity": {k: round(float(v), 2) for k, v in dict(survey).items()},
        "goqa_overlap": survey_overlap,
        "goqa_neighbour_prior_vs_other_countries": prior_check(
            floored,
            "js_similarity",
            session.params.n_boot,
            seeds.derive(session.params.seed, "bootstrap"),
            session.params.verdicts.min_items,
        )["verdict"]
        if floored
        else None,
    }
