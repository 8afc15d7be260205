"""Notebook 20 · VISA's texts, a value detector distilled from the LLM judge, and the value translator.

The corpus (``kit.visa.corpus``) is rebuilt from cached backend calls in every notebook of the
unit, so all three see the same items and nothing can be stale. The teacher (``visa.teacher``, the
LLM judge) labels every text; a logistic regression per value learns the labels of train texts from
their sentence embeddings
(``kit.values.trained``) and is scored against the teacher on test texts, beside the embedding proxy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.data import goqa_split, load_moralchoice
from kit.reporting import plots
from kit.session import in_stage
from kit.values import SCHWARTZ_VALUES, TrainedValueDetector, agreement, confusion, make_value_detector
from kit.visa import corpus as vc
from kit.visa.targets import sample_target
from kit.visa.translator import INSTRUCTION_EXAMPLES, ValueTranslator, instruction

DETECTOR_FILE = (
    "detector.json"  # the hand-off: the detector folder's content and the params it was fitted with
)
# what notebooks 21 and 22 hold that the detector does not depend on: the rewriters' training and the evaluation
NOT_THE_DETECTOR = (
    "n_boot",
    "references",
    "models.visa_judge",
    "visa.eval_detector",
    "visa.max_test_items",
    "visa.capability_items",
    "visa.goqa_items",
    "visa.culture_countries",
    "visa.n_targeted",
    "visa.translator_tokens",
    "visa.round_trip_targets",
    "visa.rewrite_tokens",
    "visa.rewards",
    "visa.reward_detector",
    "visa.nli",
    "visa.max_words",
    "visa.rewriter",
    "visa.best_of",
    "visa.sample_temperature",
    "visa.sft",
    "visa.direct",
)


def folder(session) -> Path:
    return session.run_dir / "visa"


@in_stage("20", "corpus, teacher and translator")
def corpus(session) -> tuple[list[vc.Item], list[dict]]:
    """The unit's items (question, base answer, split) and the answers dropped as too short."""
    p, v = session.params, session.params.visa
    qs = vc.questions(p.data, v.n_goqa, v.n_moralchoice, p.seed)
    with session.timed("corpus"):
        return vc.build(
            session.backend, qs, v.answer_tokens, v.min_words, p.seed, v.test_fraction, v.answer_temperature
        )


def overlap(session, items: list[vc.Item]) -> dict[str, int]:
    """Leak counts (all must be 0): train ∩ test items, GOQA test questions and capability scenarios used."""
    p = session.params
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    capability = load_moralchoice(p.data.moralchoice_path, ambiguity="low")[: p.visa.capability_items]
    counts = vc.overlap(items, test, {s.id for s in capability})
    if any(counts.values()):
        raise ValueError(f"VISA data leaks: {counts}; every count must be 0")
    return counts


def split_table(items: list[vc.Item]) -> pd.DataFrame:
    return (
        pd.DataFrame([it.as_dict() for it in items]).groupby(["source", "split"]).size().unstack(fill_value=0)
    )


def teacher(session):
    """The detector whose labels the trained one learns (``visa.teacher``)."""
    p, v = session.params, session.params.visa
    extra = {"max_retries": v.max_retries, "max_new_tokens": v.judge_tokens} if v.teacher == "llm" else {}
    return make_value_detector(
        v.teacher,
        backend=session.role_backend("visa_teacher"),
        embedder=session.embedder,
        seed=p.seed,
        **extra,
    )


@in_stage("20", "corpus, teacher and translator")
def teacher_labels(session, items: list[vc.Item]) -> tuple[pd.DataFrame, int]:
    """Every detector text with the teacher's vector (texts it could not read are left out), and how many."""
    texts = vc.detector_texts(items)
    judge = teacher(session)
    with session.timed("teacher labels"):
        results = judge.vectors([t for _, t, _ in texts])
    rows = [
        {"id": i, "text": t, "split": s, **dict(zip(SCHWARTZ_VALUES, r.vector))}
        for (i, t, s), r in zip(texts, results)
        if r.valid
    ]
    return pd.DataFrame(rows), judge.failures


@in_stage("20", "corpus, teacher and translator")
def fit_detector(session, labels: pd.DataFrame) -> TrainedValueDetector:
    """The trained detector, fitted on the judge's labels of train texts and saved in ``visa/detector``."""
    p = session.params
    train = labels[labels["split"] == "train"] if len(labels) else labels
    if len(train) < 2:
        raise ValueError(
            f"the {p.visa.teacher} teacher ({session.role_name('visa_teacher')}) read {len(train)} train "
            "text(s), too few to fit a detector on; fix: a teacher model that writes the judge's JSON "
            "(models.visa_teacher), more texts (visa.n_goqa, visa.n_moralchoice), or visa.teacher: embedding"
        )
    card = {
        "embedder": session.embedder.identity,
        "teacher": p.visa.teacher,
        "teacher_model": session.role_backend("visa_teacher").identity,
        "texts": len(labels),
    }
    detector = TrainedValueDetector.fit(
        session.embedder,
        list(train["text"]),
        train[list(SCHWARTZ_VALUES)].to_numpy(),
        c=p.visa.detector_c,
        card=card,
    )
    detector.save(folder(session) / "detector")
    from kit.run.artifacts import hand_off

    hand_off(folder(session) / DETECTOR_FILE, session.params, {"detector": folder(session) / "detector"})
    return detector


def trained_folder(session) -> str:
    """The detector folder as notebook 20 (or 21, which fits it again) recorded it, after checking it was fitted
    with these params and has not changed on disk since (``kit.run.artifacts.take_over``)."""
    from kit.run.artifacts import take_over

    found, _ = take_over(
        folder(session) / DETECTOR_FILE,
        session.params,
        "the trained value detector",
        "notebook 20 (20_value_detector)",
        NOT_THE_DETECTOR,
    )
    return found["detector"]


def detector(session) -> TrainedValueDetector:
    """The trained detector for this run: judge labels (cached) and a fit (seconds), so it is never stale."""
    items, _ = corpus(session)
    labels, _ = teacher_labels(session, items)
    return fit_detector(session, labels)


@in_stage("20", "corpus, teacher and translator")
def held_out_agreement(
    session, labels: pd.DataFrame, trained: TrainedValueDetector
) -> tuple[pd.DataFrame, dict]:
    """Macro-F1 per value against the teacher on test texts: the trained detector and the embedding proxy
    (which agrees perfectly when it is the teacher)."""
    test = labels[labels["split"] == "test"]
    judge = test[list(SCHWARTZ_VALUES)].to_numpy()
    proxy = make_value_detector("embedding", embedder=session.embedder)
    readings = {
        "trained": trained.predict(list(test["text"])),
        "embedding": np.array([r.vector for r in proxy.vectors(list(test["text"]))]),
    }
    table = pd.concat({name: agreement(judge, pred) for name, pred in readings.items()}, axis=1)
    return table, confusion(judge, readings["trained"])


def confusion_figure(session, matrices: dict[str, np.ndarray]) -> None:
    import seaborn as sns

    with plots.figure(session.figure_paths("20_detector_confusion.png"), 2, 5, figsize=(13, 5.4)) as (
        fig,
        axes,
    ):
        for ax, (name, m) in zip(axes.flat, matrices.items()):
            sns.heatmap(
                m,
                annot=True,
                fmt="d",
                cmap="Blues",
                cbar=False,
                ax=ax,
                xticklabels=["−1", "0", "1"],
                yticklabels=["−1", "0", "1"],
            )
            ax.set_title(name, fontsize=9)
        fig.supxlabel("trained detector")
        fig.supylabel(f"teacher ({session.params.visa.teacher})")
        fig.suptitle("Trained value detector vs its teacher on held-out texts")


@in_stage("20", "corpus, teacher and translator")
def round_trip(session) -> tuple[pd.DataFrame, int]:
    """The translator reading back its own template for sampled targets, and hand-written instructions."""
    p = session.params
    targets = [sample_target(p.seed, f"round-trip-{k}", 1 + k % 3) for k in range(p.visa.round_trip_targets)]
    cases = [("template", instruction(t), t) for t in targets] + [
        ("hand-written", text, np.asarray(vec)) for text, vec in INSTRUCTION_EXAMPLES
    ]
    translator = ValueTranslator(
        session.backend, max_retries=p.visa.max_retries, seed=p.seed, max_new_tokens=p.visa.translator_tokens
    )
    with session.timed("translator round trip"):
        results = translator.vectors([text for _, text, _ in cases])
    rows = []
    for (kind, text, target), r in zip(cases, results):
        got = r.vector if r.vector is not None else np.zeros(len(target))
        rows.append(
            {
                "kind": kind,
                "instruction": text,
                "readable": r.valid,
                "exact": bool(np.array_equal(got, target)),
                "value_accuracy": float(np.mean(got == target)),
                "raw": r.raw[:200],
            }
        )
    return pd.DataFrame(rows), translator.failures


def round_trip_figure(session, trips: pd.DataFrame) -> None:
    summary = trips.groupby("kind")[["exact", "value_accuracy", "readable"]].mean()
    ax = summary.plot.bar(figsize=(6, 3.4), rot=0, ylim=(0, 1.05))
    ax.set_ylabel("share")
    ax.set_title("Value translator: instruction → vector agreement")
    plots.save(ax.figure, session.figure_paths("20_translator_round_trip.png"))


def key_numbers(
    session, items, dropped, counts, labels, judge_failures, table, trips, translator_failures
) -> dict:
    return {
        "items": {s: sum(it.split == s for it in items) for s in ("train", "test")},
        "dropped": len(dropped),
        "overlap": counts,
        "teacher": session.params.visa.teacher,
        "teacher_labels": len(labels),
        "teacher_failures": judge_failures,
        "detector_macro_f1": round(float(table[("trained", "macro_f1")].mean()), 4),
        "embedding_macro_f1": round(float(table[("embedding", "macro_f1")].mean()), 4),
        "detector_macro_f1_per_value": table[("trained", "macro_f1")].round(4).to_dict(),
        "translator_exact": trips.groupby("kind")["exact"].mean().round(4).to_dict(),
        "translator_failures": translator_failures,
    }
