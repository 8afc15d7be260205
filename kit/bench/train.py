"""Training throughput: a few DPO steps with LoRA on the profile's model (``python -m kit bench train``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.agents import culture_instruction
from kit.bench.common import CULTURES, TOPICS
from kit.config import Params
from kit.run.cost import peak_rss_gb

_CHOSEN = (
    "Both sides agree that families and communities should decide together, respecting each person's values. "
)
_REJECTED = "Our tradition is the only right answer, and other views do not matter here. "
STEPS = 4


def synthetic_preferences(n: int, answer_repeats: int = 4) -> list[dict]:
    """``n`` conversational preference records of similar length (answers repeated to lengthen them)."""
    return [
        {
            "id": f"synthetic:{i}",
            "prompt": [
                {"role": "system", "content": culture_instruction(CULTURES[i % len(CULTURES)])},
                {"role": "user", "content": TOPICS[i % len(TOPICS)]},
            ],
            "chosen": [{"role": "assistant", "content": (_CHOSEN * answer_repeats).strip()}],
            "rejected": [{"role": "assistant", "content": (_REJECTED * answer_repeats).strip()}],
        }
        for i in range(n)
    ]


def run(params: Params) -> dict:
    """DPO + LoRA on ``params.model.name`` for a few steps; tokens/s over the steps after the first.

    Tokens count the training text of each record (prompt once plus both answers); the first
    step (allocator and kernel warm-up) is left out of the rate.
    """
    import torch

    from kit.train.recipes import config_kwargs
    from kit.train.trainers import train

    f = params.finetune
    recipe = f.model_copy(
        update={"trl": {**f.trl, "num_train_epochs": 1.0, "warmup_steps": 0.0, "logging_steps": STEPS}}
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = config_kwargs(
            "dpo", recipe.trl, recipe.per_method.get("dpo", {}), tmp, params.seed, has_eval=False
        )
    per_step = args["per_device_train_batch_size"] * args["gradient_accumulation_steps"]
    records = synthetic_preferences(per_step * STEPS)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        result = train("dpo", records, [], params.model.name, Path(tmp) / "dpo", recipe, params.seed)
    steps = result.step_seconds
    tokens_per_step = result.train_tokens / max(len(steps), 1)
    timed = steps[1:] or steps  # one step only: nothing to leave out
    out = {
        "model": params.model.name,
        "method": "dpo",
        "steps": len(steps),
        "batch_size": args["per_device_train_batch_size"],
        "grad_accum": args["gradient_accumulation_steps"],
        "tokens_per_step": round(tokens_per_step, 1),
        "train_tok_s": round(tokens_per_step * len(timed) / sum(timed), 2),
        "seconds": round(result.seconds, 3),
        "peak_rss_gb": round(peak_rss_gb(), 3),
    }
    if torch.cuda.is_available():
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return out
