"""Notebook 31 · self-play GRPO and the single-agent GRPO baseline, on the same judge.

Both are LoRA adapters on the base model trained with trl's ``GRPOTrainer`` on the train dilemmas:
self-play through the rollout function (``kit.selfplay.rollout``: dialogues between two copies
of the policy, the loss on the learning side's own turns), the baseline on single completions. Self-play
trains on Collective Agency alone (``selfplay.rewards``), as the paper does; ``self_play_grpo+joint`` is the
ablation that adds the joint-solution reward (``selfplay.ablation_rewards``) — the very test the table's
resolution rate reads, so its resolution is won partly by construction.
Adapters go to ``runs/<profile>/selfplay/train/<method>`` and are reused while their inputs match;
the ids each one trained on are written beside them, for the leak count of notebook 32.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.lessons.selfplay_data import folder
from kit.reporting.curves import figure as curve_figure
from kit.reporting.curves import training_curves
from kit.run.cache import cache_key
from kit.selfplay import judge as ca
from kit.selfplay.dilemmas import Dilemma
from kit.selfplay.rewards import JudgeContext
from kit.selfplay.rollout import rollout_func
from kit.selfplay.training import selfplay_records, single_records
from kit.session import in_stage
from kit.train.rewards import bind
from kit.train.rollouts import completion_tokens, engine_of, engine_rollout_func, grpo_recipe
from kit.train.trainers import reward_fell, reward_history, sampling_correction, train

SELF_PLAY, ABLATION, SINGLE = "self_play_grpo", "self_play_grpo+joint", "single_agent_grpo"
TRAINED = (SINGLE, SELF_PLAY, ABLATION)


def train_dilemmas(found: list[Dilemma]) -> list[Dilemma]:
    return [d for d in found if d.split == "train"]


def judge_backend(session):
    """The Collective Agency judge: ``models.selfplay_judge``, or the profile's model when it names none."""
    return session.role_backend("selfplay_judge")


def reward_parts(session, weights: dict[str, float], dilemmas: list[Dilemma]) -> dict:
    """What the rewards are, for the adapters' fingerprints: weights, judge, rubric, dialogue settings, dilemmas."""
    sp = session.params.selfplay
    return {
        "weights": weights,
        "judge": judge_backend(session).identity,
        "rubric": cache_key([ca.RUBRIC, ca.PREFIX]),
        "dialogue": [sp.max_turns, sp.turn_tokens, sp.turn_words, sp.agree_cosine],
        "dilemmas": cache_key([d.as_dict() for d in dilemmas]),
    }


def rollout_engine(session):
    """The profile's vLLM engine, which serves the policy's adapter to the rollouts (None on transformers: the policy
    generates in the trainer)."""
    return engine_of(session)


@in_stage("31", "self-play GRPO")
def train_self_play(
    session, dilemmas: list[Dilemma], name: str = SELF_PLAY, rewards: dict[str, float] | None = None
) -> tuple[Path, list[dict]]:
    """A self-play policy: GRPO on dialogues with itself, judged for Collective Agency (``selfplay.rewards``), or
    on ``rewards`` (the ablation's)."""
    p, sp = session.params, session.params.selfplay
    rewards = rewards or sp.rewards
    records, lookup = selfplay_records(dilemmas, p.seed, sp.turn_words)
    context = JudgeContext(judge_backend(session), {d.id: d for d in dilemmas})
    engine = rollout_engine(session)
    rollout = rollout_func(
        lookup,
        sp.max_turns,
        sp.turn_tokens,
        sp.turn_words,
        p.seed,
        p.model.batch_size,
        session.embedder,
        sp.agree_cosine,
        engine=engine,
    )
    with session.timed(f"train {name}", row=name):
        result = train(
            "grpo",
            records,
            None,
            p.model.ref,
            folder(session) / "train" / name,
            grpo_recipe(sp.policy, rewards, engine),
            p.seed,
            reward_funcs=bind(list(rewards), context),
            rewards=reward_parts(session, rewards, dilemmas),
            rollout_func=rollout,
        )
    return result.adapter_dir, records


def train_policies(session, dilemmas: list[Dilemma]) -> tuple[dict[str, Path], dict[str, list[dict]]]:
    """Every policy of the unit: self-play on Collective Agency alone, the single-agent baseline, and the
    ``self_play_grpo+joint`` ablation when ``selfplay.ablation_rewards`` names it; (adapters, records) by name."""
    sp = session.params.selfplay
    adapters, records = {}, {}
    adapters[SELF_PLAY], records[SELF_PLAY] = train_self_play(session, dilemmas)
    if sp.ablation_rewards:  # in the self-play stage, before the single agent's
        adapters[ABLATION], records[ABLATION] = train_self_play(
            session, dilemmas, ABLATION, sp.ablation_rewards
        )
    adapters[SINGLE], records[SINGLE] = train_single_agent(session, dilemmas)
    return adapters, records


@in_stage("31", "single-agent GRPO")
def train_single_agent(session, dilemmas: list[Dilemma]) -> tuple[Path, list[dict]]:
    """The single-agent baseline: GRPO on one solution per prompt, under the same judge."""
    p, sp = session.params, session.params.selfplay
    records = single_records(dilemmas, sp.turn_words)
    context = JudgeContext(judge_backend(session), {d.id: d for d in dilemmas})
    engine = rollout_engine(session)
    recipe = grpo_recipe(sp.single, sp.single_rewards, engine, "selfplay.single")
    rollout = engine_rollout_func(engine, completion_tokens(recipe), p.seed) if engine is not None else None
    with session.timed("train single_agent_grpo", row="single_agent_grpo"):
        result = train(
            "grpo",
            records,
            None,
            p.model.ref,
            folder(session) / "train" / "single_agent_grpo",
            recipe,
            p.seed,
            reward_funcs=bind(list(sp.single_rewards), context),
            rewards=reward_parts(session, sp.single_rewards, dilemmas),
            rollout_func=rollout,
        )
    return result.adapter_dir, records


TRAINED_FILE = "trained.json"
# notebook 32's own settings: they change how the policies are evaluated, not the policies
EVALUATION_ONLY = (
    "n_boot",
    "models.selfplay_eval_judge",
    "models.value_judge",
    "selfplay.eval_temperature",
    "selfplay.max_test_items",
    "selfplay.capability_items",
)


def write_trained(session, adapter_dirs: dict[str, Path], records: dict[str, list[dict]]) -> Path:
    """The policies this run trained and the dilemma ids each saw, for notebook 32 (``kit.run.artifacts.hand_off``)."""
    from kit.run.artifacts import hand_off

    return hand_off(
        folder(session) / "train" / TRAINED_FILE,
        session.params,
        {"untrained": None, **adapter_dirs},
        trained_ids={m: sorted({r["dilemma_id"] for r in rs}) for m, rs in records.items()},
    )


def _trained(session) -> tuple[dict[str, str | None], dict]:
    from kit.run.artifacts import take_over

    return take_over(
        folder(session) / "train" / TRAINED_FILE,
        session.params,
        "the self-play policies",
        "notebook 31 (31_selfplay_training)",
        EVALUATION_ONLY,
    )


def trained_ids(session) -> set[str]:
    """Every dilemma id any trained method saw (recorded by notebook 31)."""
    return {i for ids in _trained(session)[1]["trained_ids"].values() for i in ids}


def adapters(session) -> dict[str, str | None]:
    """Each method's adapter (None: the base model), as notebook 31 recorded them."""
    return _trained(session)[0]


def curves(adapter_dirs: dict[str, Path]) -> pd.DataFrame:
    """Per method and GRPO step: the total reward and each reward's mean (long format)."""
    frames = [reward_history(a).reset_index().assign(method=m) for m, a in adapter_dirs.items()]
    return (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame()
    )


def curves_figure(session, adapter_dirs: dict[str, Path]) -> None:
    """Each policy's reward by component and loss, from its trainer's log history (``kit.reporting.curves``)."""
    curve_figure(
        session.figure_paths("31_training_curves.png"),
        training_curves(adapter_dirs),
        "Self-play and single-agent GRPO",
    )


SAMPLERS = {
    "trl-vllm": "trl's colocated vLLM engine, its weights synced from the policy before each rollout",
    "engine": "the profile's engine, serving the policy's adapter saved before each rollout",
    "trainer": "the policy itself, in the trainer (on-policy: trl corrects nothing)",
}


def sampling(adapter_dirs: dict[str, Path]) -> dict[str, dict]:
    """Per method: who sampled its rollouts and whether trl's importance-sampling correction read their
    log-probabilities, with what it measured (``kit.train.trainers.sampling_correction``)."""
    return {m: sampling_correction(a) for m, a in adapter_dirs.items()}


def sampling_lines(found: dict[str, dict]) -> str:
    """One line per method: the sampler, and the correction with its mean ratio, or why it is off."""
    lines = []
    for method, s in found.items():
        if s["correction"]:
            said = (
                f"trl's importance-sampling correction on (mean ratio {s['importance_ratio']:.4f}, mean "
                f"|trainer − sampling| log-probability {s['logp_difference']:.2e} nats per token)"
            )
        elif s["sampler"] == "trainer":
            said = "no importance-sampling correction (not needed)"
        else:
            said = "importance-sampling correction OFF" + (
                " (vllm_importance_sampling_correction: false)" if not s["correction_asked"] else ""
            )
        known = (
            ""
            if s["logprob_known"] is None
            else f"; own tokens with a known sampling log-probability: {s['logprob_known']:.0%}"
        )
        lines.append(f"{method}: sampled by {SAMPLERS[s['sampler']]}; {said}{known}")
    return "\n".join(lines)


MASK_COLOURS = {"prompt": "#e4e4e4", "own": "#a6e3a1", "masked": "#f5b8b8"}
MASK_LEGEND = {
    "prompt": "prompt (before the first own turn)",
    "own": "own turn: env_mask 1, in the loss",
    "masked": "env_mask 0: the other persona and the template",
}


def mask_strip(parts: list[tuple[str, str]]):
    """The lesson's token stream as a coloured strip (``kit.selfplay.rollout.token_parts``): one box per token."""
    import html

    from IPython.display import HTML

    def box(text: str, part: str) -> str:
        shown = html.escape(text).replace("\n", "↵<br>") or "∅"
        return f'<span title="{part}" style="background:{MASK_COLOURS[part]};border-right:1px solid #fff">{shown}</span>'

    legend = " ".join(box(MASK_LEGEND[p], p) for p in MASK_COLOURS)
    return HTML(
        f'<div style="font-family:monospace;font-size:12px;line-height:1.7;white-space:pre-wrap">{legend}'
        f"<hr>{''.join(box(t, p) for t, p in parts)}</div>"
    )


def key_numbers(
    session,
    records: dict[str, list[dict]],
    history: pd.DataFrame,
    held_out_ids: set[str],
    sampled: dict[str, dict] | None = None,
    lesson_mask_ok: bool | None = None,
) -> dict:
    out = {
        "records": {m: len(r) for m, r in records.items()},
        # the lesson's dialogue: its env_mask marks exactly the learning side's turns in the rendered chat
        **({} if lesson_mask_ok is None else {"selfplay_lesson_mask_matches_turns": bool(lesson_mask_ok)}),
        "heldout_in_training": len(held_out_ids & {r["dilemma_id"] for rs in records.values() for r in rs}),
        "rewards": {
            SELF_PLAY: session.params.selfplay.rewards,
            SINGLE: session.params.selfplay.single_rewards,
            **(
                {ABLATION: session.params.selfplay.ablation_rewards}
                if session.params.selfplay.ablation_rewards
                else {}
            ),
        },
        "seconds": {m: session.timings.get(f"train {m}") for m in TRAINED if m in records},
        **({"sampling": sampled} if sampled is not None else {}),
    }
    for method, g in history.groupby("method", sort=False) if len(history) else ():
        out[method] = {
            "steps": len(g),
            "reward_first": round(float(g["reward"].iloc[0]), 4),
            "reward_last": round(float(g["reward"].iloc[-1]), 4),
            "reward_fell": reward_fell(g["reward"]),
        }
    return out


def went_backwards(history: pd.DataFrame) -> str:
    """One line per method: whether its reward's last-window mean fell below its first-window mean."""
    lines = []
    for method, g in history.groupby("method", sort=False) if len(history) else ():
        fell = reward_fell(g["reward"])
        lines.append(
            f"{method}: "
            + (
                "too few logged steps to tell"
                if fell is None
                else "REWARD FELL over training (last-quarter mean below the first)"
                if fell
                else "reward did not fall"
            )
        )
    return "\n".join(lines) or "no reward was logged"
