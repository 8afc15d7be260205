"""Single-turn GRPO through the notebook's own engine (kit.train.rollouts): the engine samples each group with the
policy's adapter as it is at that step, trl's importance-sampling correction reads the log-probabilities it
returns, and they are the trained model's own."""

from __future__ import annotations

import json

import pytest

from kit.config import TrainRecipe
from kit.train.rollouts import engine_rollout_func, grpo_recipe

TOLERANCE = 1e-4  # float32 on the same weights: only the order of operations differs


def _length_reward(completions, **_):
    """A reward that tells any two different completions apart (so a group's advantages are not all 0)."""
    return [sum(map(ord, c[0]["content"] if isinstance(c, list) else c)) % 97 / 97 for c in completions]


def test_two_grpo_steps_roll_out_through_the_engine_with_its_log_probabilities(tmp_path):
    import torch

    from kit.llm.hf_backend import HFBackend
    from kit.llm.models import resolve_model
    from kit.train.trainers import sampling_correction, train

    engine = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8)
    seen = []
    rollout = engine_rollout_func(engine, 8, seed=0)

    def recorded(prompts, trainer):
        out = rollout(prompts, trainer)
        model = trainer.accelerator.unwrap_model(trainer.model)
        training = model.training
        model.eval()  # LoRA's dropout off, as the engine serves the adapter
        with (
            torch.no_grad()
        ):  # the trained model's own log-probabilities of the drawn tokens, at temperature 1
            for p_ids, c_ids, lps in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"]):
                ids = torch.tensor([p_ids + c_ids])
                logits = model(input_ids=ids).logits[0, len(p_ids) - 1 : -1].float()
                own = torch.log_softmax(logits, -1).gather(1, torch.tensor(c_ids)[:, None])[:, 0].tolist()
                seen.append((trainer.state.global_step, max(abs(a - b) for a, b in zip(own, lps))))
        model.train(training)
        return out

    recorded.engine = rollout.engine
    records = [
        {"id": f"p{i}", "prompt": [{"role": "user", "content": f"Say something about {t}."}]}
        for i, t in enumerate(["family", "freedom"])
    ]
    recipe = grpo_recipe(
        TrainRecipe(
            lora={"r": 4},
            trl={
                "num_generations": 2,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "learning_rate": 0.05,
                "warmup_steps": 0,
                "temperature": 1.0,
                "max_completion_length": 8,
            },
        ),
        {"length": 1.0},
        engine,
    )
    assert recipe.trl["use_vllm"] is False  # the engine samples: no second engine inside trl
    result = train(
        "grpo",
        records,
        None,
        resolve_model("tiny-random").path,
        tmp_path / "grpo",
        recipe,
        0,
        reward_funcs=[_length_reward],
        rewards={"length": 1.0},
        rollout_func=recorded,
    )
    assert {step for step, _ in seen} == {0, 1}
    assert max(gap for _, gap in seen) <= TOLERANCE
    found = sampling_correction(result.adapter_dir)
    assert (found["sampler"], found["correction"]) == ("engine", True) and found[
        "importance_ratio"
    ] is not None
    # the second step's rollouts came through the adapter trained by the first (a new adapter content, loaded again)
    assert engine._loads == 2 and any("rollout-adapter" in a for a in engine._adapters)


def test_the_seeds_follow_the_step_so_a_resumed_run_draws_the_same(monkeypatch):
    """The same step draws with the same seed whenever it runs (a resumed run), another step with another; the k-th
    repeat of a prompt in its group is sample k."""
    from types import SimpleNamespace

    from kit.llm.base import Sampled

    class Engine:
        name, sampling_logprobs = "fake", True

        def __init__(self):
            self.calls = []

        def generate_sampled(self, requests, params):
            self.calls.append((params.seed, [r.sample for r in requests]))
            return [Sampled("x", (5,), (-1.0,), False) for _ in requests]

    monkeypatch.setattr("kit.selfplay.rollout.save_policy_adapter", lambda trainer: None)
    monkeypatch.setattr(
        "kit.llm.chat.render_chat", lambda tokenizer, messages, prefix="": json.dumps(messages)
    )
    engine = Engine()
    rollout = engine_rollout_func(engine, 4, seed=3)
    tok = SimpleNamespace(encode=lambda text, add_special_tokens=False: [1, 2])
    prompts = [[{"role": "user", "content": "a"}]] * 2 + [[{"role": "user", "content": "b"}]] * 2
    for step in (0, 1, 0):
        out = rollout(
            prompts,
            SimpleNamespace(
                args=SimpleNamespace(temperature=1.0, top_p=1.0),
                state=SimpleNamespace(global_step=step),
                processing_class=tok,
            ),
        )
    (s0, samples), (s1, _), (again, _) = engine.calls
    assert s0 == again != s1 and samples == [0, 1, 0, 1]
    assert out == {"prompt_ids": [[1, 2]] * 4, "completion_ids": [[5]] * 4, "logprobs": [[-1.0]] * 4}


def test_an_engine_without_sampling_log_probabilities_is_refused():
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="no sampling log-probabilities"):
        engine_rollout_func(SimpleNamespace(name="openai", sampling_logprobs=False), 8, 0)
