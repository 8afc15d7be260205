"""Single-turn GRPO rollouts through the notebook's own engine (trl's ``rollout_func``), so GRPO never starts a
second engine inside trl.

trl hands the function a batch of prompts (chat messages), each repeated ``num_generations`` times. The
policy's LoRA adapter, as it is at this step, is saved (``kit.selfplay.rollout.save_policy_adapter``) and every
prompt's completions are sampled by the engine through it in one batch, the k-th repeat of a prompt as sample k.
Each completion comes back as trl needs it: the prompt's token ids as the engine rendered them, the drawn token
ids (ending on the end-of-turn token when the engine stopped on it) and the log-probability each was sampled
with (``Backend.generate_sampled``), which trl's importance-sampling correction reads
(``kit.train.correction``). Sampling seeds come from (seed, the trainer's global step): a resumed run draws the
same completions for the same step as one never stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kit.llm.base import ChatRequest, GenParams
from kit.run import seeds


def engine_rollout_func(engine, completion_tokens: int, seed: int):
    """trl's ``rollout_func`` for prompt -> completion GRPO on ``engine`` (a backend serving LoRA adapters per
    request, whose ``generate_sampled`` gives sampling log-probabilities)."""
    from kit.llm.chat import render_chat
    from kit.selfplay.rollout import save_policy_adapter

    if not engine.sampling_logprobs:
        raise ValueError(
            f"the {engine.name} engine gives no sampling log-probabilities, which GRPO rollouts through "
            "it return to trl; fix: a transformers or vLLM engine (or let trl generate: no engine)"
        )

    def rollout(prompts: Sequence, trainer) -> dict:
        adapter = save_policy_adapter(trainer)
        seen: dict[str, int] = {}
        requests = []
        for messages in prompts:
            key = json.dumps(list(messages), sort_keys=True)
            seen[key] = seen.get(key, -1) + 1  # the k-th completion of this prompt in its group
            requests.append(ChatRequest(messages, adapter=adapter, sample=seen[key]))
        args = trainer.args
        params = GenParams(
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=completion_tokens,
            seed=seeds.derive(seed, "grpo-rollout", trainer.state.global_step),
        )
        drawn = engine.generate_sampled(requests, params)
        tokenizer = trainer.processing_class
        prompt_ids = [
            tokenizer.encode(render_chat(tokenizer, r.chat), add_special_tokens=False) for r in requests
        ]
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": [list(s.token_ids) for s in drawn],
            "logprobs": [list(s.logprobs) for s in drawn],
        }

    rollout.engine = engine  # kit.train.trainers: rollouts sampled outside the trainer get trl's correction
    return rollout


def engine_of(session):
    """The session's engine for rollouts: the agents' vLLM engine (None on transformers: the policy generates in
    the trainer, which on a CPU is the faster of the two)."""
    backend = session.backend
    return getattr(backend, "inner", backend) if backend.name == "vllm" else None


def completion_tokens(recipe) -> int:
    """A GRPO recipe's ``max_completion_length`` (the kit's default where it sets none)."""
    from kit.train.recipes import TRAINERS

    return int(
        recipe.trl.get("max_completion_length", TRAINERS.get("grpo").defaults["max_completion_length"])
    )


def grpo_recipe(recipe, weights: dict[str, float], engine=None, where: str = "selfplay.policy"):
    """The recipe with the rewards' weights. Rollouts through the profile's ``engine`` need no second vLLM engine
    inside trl (unless a param asks for one), and trl's importance-sampling correction reads that engine's sampling
    log-probabilities (``kit.train.correction``) — turned off here, explicitly, where the engine gives none."""
    from kit.config import ParamsError

    trl = {
        **({"use_vllm": False} if engine is not None else {}),
        **recipe.trl,
        "reward_weights": list(weights.values()),
    }
    if engine is not None and not engine.sampling_logprobs:
        if trl.get("vllm_importance_sampling_correction"):
            raise ParamsError(
                f"{where}.trl.vllm_importance_sampling_correction: true, but the {engine.name} engine that "
                "rolls out gives no sampling log-probabilities; fix: set it false"
            )
        trl["vllm_importance_sampling_correction"] = False
    return recipe.model_copy(update={"trl": trl})
