"""GRPO rewriter throughput: a few GRPO steps of the value rewriter on the profile's model
(``python -m kit bench grpo``), with the profile's ``visa.rewriter`` recipe and ``visa.rewards``.

The records are synthetic answers with sampled targets (the bench needs no earlier notebook); the
rewards read the embedding proxy, so they cost what the trained detector costs (one embedder call
per reward and batch). Prints seconds per step (the first, warm-up, left out), the embedder calls
per step, and the process's peak RSS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.bench.common import TOPICS
from kit.config import Params
from kit.run.cost import peak_rss_gb

ANSWER = (
    "Families should talk openly and decide together. Each person's view deserves respect, and "
    "traditions can guide us without binding us."
)


class CountingEmbedder:
    def __init__(self, embedder):
        self.embedder, self.calls, self.identity = embedder, 0, embedder.identity

    def encode(self, texts):
        self.calls += 1
        return self.embedder.encode(texts)


def run(params: Params) -> dict:
    from kit.embed import Embedder
    from kit.train.recipes import config_kwargs
    from kit.train.rewards import bind
    from kit.train.trainers import train
    from kit.values import make_value_detector
    from kit.visa.corpus import Item
    from kit.visa.rewards import RewardContext
    from kit.visa.rewriter import grpo_records, targets_of

    v = params.visa
    trl = {
        **v.rewriter.trl,
        "num_train_epochs": 1.0,
        "warmup_steps": 0.0,
        "reward_weights": list(v.rewards.values()),
    }
    recipe = v.rewriter.model_copy(update={"trl": trl})
    with tempfile.TemporaryDirectory() as tmp:
        args = config_kwargs("grpo", trl, {}, tmp, params.seed, has_eval=False)
    completions = args["per_device_train_batch_size"] * args["gradient_accumulation_steps"]
    prompts_per_step = completions // args["num_generations"]
    n = prompts_per_step * params.bench.grpo_steps
    items = [
        Item(f"bench:{i}", "bench", TOPICS[i % len(TOPICS)], f"{ANSWER} ({i})", "train") for i in range(n)
    ]
    embedder = CountingEmbedder(Embedder(params.embedder.name, params.embedder.batch_size))
    detector = make_value_detector("embedding", embedder=embedder)
    context = RewardContext(detector, embedder, None, v.min_words, v.max_words)
    embedder.calls = 0
    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            "grpo",
            grpo_records(items, targets_of(items, params.seed, v.n_targeted)),
            None,
            params.model.name,
            Path(tmp) / "grpo",
            recipe,
            params.seed,
            reward_funcs=bind(list(v.rewards), context),
            rewards={"bench": True},
        )
    steps = result.step_seconds
    timed = steps[1:] or steps
    return {
        "model": params.model.name,
        "method": "grpo",
        "steps": len(steps),
        "completions_per_step": prompts_per_step * args["num_generations"],
        "max_completion_length": args["max_completion_length"],
        "seconds_per_step": round(sum(timed) / len(timed), 3),
        "first_step_s": round(steps[0], 3),
        "embedder_calls_per_step": round(embedder.calls / max(len(steps), 1), 2),
        "rewards": list(v.rewards),
        "peak_rss_gb": round(peak_rss_gb(), 3),
    }
