"""Notebook 21 · the GRPO value rewriter, and the two trained baselines it is compared with.

The rewriter is a LoRA adapter trained with trl's GRPOTrainer on the unit's train items: each
prompt is an answer plus a target's instruction, the rewards (``kit.visa.rewards``) read the
trained detector and the embedder. The SFT rewriter learns the best of ``best_of`` prompting
samples by the same reward; direct finetuning trains the answering model itself with DPO.
Adapters go to ``runs/<profile>/visa/train/<method>`` and are reused while their inputs match.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.lessons import visa_detector
from kit.reporting import curves
from kit.session import in_stage
from kit.train.rewards import bind
from kit.train.rollouts import completion_tokens, engine_of, engine_rollout_func, grpo_recipe
from kit.train.trainers import reward_fell, train
from kit.values import make_value_detector
from kit.visa import corpus as vc
from kit.visa.rewards import RewardContext, gaming_rewards
from kit.visa.rewriter import best_of_records, direct_records, grpo_records, targets_of


def train_items(items: list[vc.Item]) -> list[vc.Item]:
    return [it for it in items if it.split == "train"]


def reward_detector(session):
    """The detector the rewards read, ``visa.reward_detector``: ``trained`` is notebook 20's (fitted on the
    teacher's labels, never stale); any other name in ``kit.values.DETECTORS`` is built as it is registered."""
    p = session.params
    if p.visa.reward_detector == "trained":
        return visa_detector.detector(session)
    return make_value_detector(
        p.visa.reward_detector, backend=session.backend, embedder=session.embedder, seed=p.seed
    )


def reward_context(session, detector) -> RewardContext:
    v = session.params.visa
    nli = session.nli_scorer(v.nli) if v.nli else None
    return RewardContext(detector, session.embedder, nli, v.min_words, v.max_words)


def reward_parts(session, detector) -> dict:
    """What the rewards are, for the adapters' fingerprints: names, weights, detector, embedder, NLI, bounds."""
    v = session.params.visa
    card = getattr(detector, "card", None) or {"kind": v.reward_detector, "backend": session.backend.identity}
    return {
        "weights": v.rewards,
        "detector": card,
        "embedder": session.embedder.identity,
        "nli": v.nli,
        "words": [v.min_words, v.max_words],
    }


@in_stage("21", "GRPO rewriter")
def train_grpo(session, items: list[vc.Item], detector) -> tuple[Path, list[dict]]:
    """The GRPO rewriter adapter and its records."""
    p, v = session.params, session.params.visa
    records = grpo_records(items, targets_of(items, p.seed, v.n_targeted))
    engine = engine_of(session)  # the notebook's vLLM engine samples the groups: no second engine inside trl
    recipe = grpo_recipe(v.rewriter, v.rewards, engine, "visa.rewriter")
    rollout = engine_rollout_func(engine, completion_tokens(recipe), p.seed) if engine is not None else None
    with session.timed("train grpo", row="grpo"):
        result = train(
            "grpo",
            records,
            None,
            p.model.ref,
            visa_detector.folder(session) / "train" / "grpo",
            recipe,
            p.seed,
            reward_funcs=bind(list(v.rewards), reward_context(session, detector)),
            rewards=reward_parts(session, detector),
            rollout_func=rollout,
        )
    return result.adapter_dir, records


def train_sft(session, items: list[vc.Item], detector) -> tuple[Path, list[float]]:
    """The SFT rewriter: best-of-n prompting samples by the weighted reward, then SFT; and the chosen rewards."""
    p, v = session.params, session.params.visa
    with session.stage("21", "best-of-n and direct samples"), session.timed("best-of-n samples", row="sft"):
        records, best = best_of_records(
            session.backend,
            items,
            targets_of(items, p.seed, v.n_targeted),
            reward_context(session, detector),
            v.rewards,
            v.best_of,
            v.rewrite_tokens,
            v.sample_temperature,
            p.seed,
        )
    with session.stage("21", "SFT rewriter"), session.timed("train sft", row="sft"):
        result = train(
            "sft", records, None, p.model.ref, visa_detector.folder(session) / "train" / "sft", v.sft, p.seed
        )
    return result.adapter_dir, best


def train_direct(session, items: list[vc.Item], detector) -> tuple[Path | None, int, int]:
    """Direct DPO finetuning of the answering model; (adapter or None when no pair differs, pairs, ties)."""
    p, v = session.params, session.params.visa
    with (
        session.stage("21", "best-of-n and direct samples"),
        session.timed("direct-finetuning samples", row="direct_finetune"),
    ):
        records, ties = direct_records(
            session.backend,
            items,
            targets_of(items, p.seed, v.n_targeted),
            reward_context(session, detector),
            v.rewards,
            v.best_of,
            v.answer_tokens,
            v.sample_temperature,
            p.seed,
        )
    if not records:
        return None, 0, ties
    with session.stage("21", "direct DPO"), session.timed("train direct", row="direct_finetune"):
        result = train(
            "dpo",
            records,
            None,
            p.model.ref,
            visa_detector.folder(session) / "train" / "direct",
            v.direct,
            p.seed,
        )
    return result.adapter_dir, len(records), ties


ADAPTERS_FILE = "adapters.json"
# notebook 22's own settings: they change how the rewriters are evaluated, not the rewriters
EVALUATION_ONLY = (
    "n_boot",
    "references",
    "models.visa_judge",
    "visa.eval_detector",
    "visa.max_test_items",
    "visa.capability_items",
    "visa.goqa_items",
    "visa.culture_countries",
)


def save_adapters(session, sft: Path, grpo: Path, direct: Path | None) -> Path:
    """The adapters this run of notebook 21 trained, for notebook 22 (``kit.run.artifacts.hand_off``): a direct
    adapter left from an earlier run is never picked up when this one trained none."""
    from kit.run.artifacts import hand_off

    return hand_off(
        visa_detector.folder(session) / "train" / ADAPTERS_FILE,
        session.params,
        {"prompting": None, "sft": sft, "grpo": grpo, "direct_finetune": direct},
    )


def adapters(session) -> dict[str, str | None]:
    """Each method's adapter as notebook 22 uses them (None: the base model), as notebook 21 recorded them."""
    from kit.run.artifacts import take_over

    found, _ = take_over(
        visa_detector.folder(session) / "train" / ADAPTERS_FILE,
        session.params,
        "the VISA adapters",
        "notebook 21 (21_value_rewriter)",
        EVALUATION_ONLY,
    )
    return found


@in_stage("21", "best-of-n and direct samples")
def gaming_check(session, items: list[vc.Item], detector, curves: pd.DataFrame) -> pd.DataFrame:
    """The reward of copying each train answer and of appending its target values' names, beside the reward
    GRPO started and ended at: a policy that ends no higher than the keyword row has learned to name values."""
    p, v = session.params, session.params.visa
    targets = targets_of(items, p.seed, v.n_targeted)
    found = gaming_rewards(
        v.rewards,
        reward_context(session, detector),
        [it.answer for it in items],
        [targets[it.id] for it in items],
    )
    grpo = (
        {"GRPO, first step": curves["reward"].iloc[0], "GRPO, last step": curves["reward"].iloc[-1]}
        if len(curves)
        else {}
    )
    return pd.DataFrame(
        {
            "mean weighted reward": {
                "copy the answer": found["copy"],
                "append the target values' names": found["keywords"],
                **grpo,
            }
        }
    )


def went_backwards(curves: pd.DataFrame) -> str:
    fell = reward_fell(curves["reward"]) if len(curves) else None
    return (
        "too few logged steps to tell whether the reward fell"
        if fell is None
        else "REWARD FELL over training (last-quarter mean below the first)"
        if fell
        else "the reward did not fall"
    )


def curves_figure(session, adapters: dict[str, Path]) -> None:
    """The GRPO rewriter's reward by component and every method's loss, from the trainers' log histories
    (``kit.reporting.curves``)."""
    curves.figure(
        session.figure_paths("21_training_curves.png"),
        curves.training_curves(adapters),
        "VISA: the GRPO rewriter, the SFT rewriter and direct finetuning",
    )


def key_numbers(
    session,
    grpo_records_: list[dict],
    curves: pd.DataFrame,
    best: list[float],
    pairs: int,
    ties: int,
    gaming: pd.DataFrame,
    lesson_error: float | None = None,
) -> dict:
    first, last = (curves.iloc[0], curves.iloc[-1]) if len(curves) else (None, None)
    g = gaming["mean weighted reward"]
    return {
        # the lesson's GRPO group: its advantages by hand against trl's scoring of the same rewards
        **({} if lesson_error is None else {"grpo_group_advantage_max_error": float(f"{lesson_error:.3g}")}),
        "grpo_records": len(grpo_records_),
        "grpo_steps": len(curves),
        "reward_detector": session.params.visa.reward_detector,
        "reward_first": None if first is None else round(float(first["reward"]), 4),
        "reward_last": None if last is None else round(float(last["reward"]), 4),
        "reward_fell": reward_fell(curves["reward"]) if len(curves) else None,
        "reward_copy": round(float(g["copy the answer"]), 4),
        "reward_keywords": round(float(g["append the target values' names"]), 4),
        "sft_records": len(best),
        "sft_best_reward_mean": round(float(sum(best) / max(len(best), 1)), 4),
        "direct_pairs": pairs,
        "direct_ties": ties,
        "seconds": {k: session.timings.get(k) for k in ("train grpo", "train sft", "train direct")},
    }
