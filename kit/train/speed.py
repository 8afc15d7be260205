"""Training throughput: a few DPO steps with LoRA on the profile's model (``python -m kit bench train``)."""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

from kit.agents import culture_instruction
from kit.config import Params

_CULTURES = ("Japan", "Nigeria", "Brazil", "Germany", "India", "Mexico")
_TOPICS = (
    "Should elderly parents live with their adult children?",
    "How important is it for children to learn obedience?",
    "Is hard work or luck more important for success in life?",
    "Should women and men share housework equally?",
)
_CHOSEN = "Both sides agree that families and communities should decide together, respecting each person's values. "
_REJECTED = "Our tradition is the only right answer, and other views do not matter here. "
STEPS = 4


def synthetic_preferences(n: int, answer_repeats: int = 4) -> list[dict]:
    """``n`` conversational preference records of similar length (answers repeated to lengthen them)."""
    return [{
        "id": f"synthetic:{i}",
        "prompt": [{"role": "system", "content": culture_instruction(_CULTURES[i % len(_CULTURES)])},
                   {"role": "user", "content": _TOPICS[i % len(_TOPICS)]}],
        "chosen": [{"role": "assistant", "content": (_CHOSEN * answer_repeats).strip()}],
        "rejected": [{"role": "assistant", "content": (_REJECTED * answer_repeats).strip()}],
    } for i in range(n)]


def _peak_rss_gb() -> float:
    # ru_maxrss is KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024**3 if sys.platform == "darwin" else 1024**2)


def measure_train_speed(params: Params) -> dict:
    """DPO + LoRA on ``params.model.name`` for a few steps; tokens/s over the steps after the first.

    Tokens count the training text of each record (prompt once plus both answers); the first
    step (allocator and kernel warm-up) is left out of the rate.
    """
    import torch

    from kit.train.trainers import train_dpo

    cfg = params.finetune.model_copy(update={"epochs": 1.0, "warmup_ratio": 0.0, "logging_steps": STEPS})
    per_step = cfg.batch_size * cfg.grad_accum
    records = synthetic_preferences(per_step * STEPS)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_dpo(records, [], params.model.name, Path(tmp) / "dpo", cfg, params.seed)
    steps = result.step_seconds
    tokens_per_step = result.train_tokens / max(len(steps), 1)
    timed = steps[1:] or steps  # one step only: nothing to leave out
    out = {
        "model": params.model.name, "method": "dpo", "steps": len(steps), "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum, "tokens_per_step": round(tokens_per_step, 1),
        "train_tok_s": round(tokens_per_step * len(timed) / sum(timed), 2),
        "seconds": round(result.seconds, 3), "peak_rss_gb": round(_peak_rss_gb(), 3),
    }
    if torch.cuda.is_available():
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return out
