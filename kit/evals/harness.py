"""Capability through lm-evaluation-harness (``lm-eval``), the field's harness.

Every unit's capability step (``kit.evals.capability.capability_kept``) runs the tasks of ``capability.tasks`` on
the base model and on each adapter or merged model, with lm-eval's own model classes: transformers' (``HFLM``,
an adapter through ``peft=``) or, where the profile's backend is vLLM, lm-eval's vLLM model (an adapter as its
LoRA request). Each task reports its headline metric with lm-eval's standard error and, against the base, the
paired change on the same items with a 95 % interval (:func:`paired_change`).

The kit ships three tasks (``kit/evals/tasks/``, read offline): ``agora_moralchoice_low`` (accuracy),
``agora_moralchoice_high`` (balance between two actions where none is right) and ``agora_neutral_ppl`` (byte
perplexity on neutral passages). Any task lm-eval registers may be named besides (the full profile adds
``ifeval``, ``gpqa_diamond_zeroshot`` and ``mmlu``): their data comes from the Hugging Face Hub, so they run
where the Hub is reachable (``python -m kit doctor`` says so). ``limit`` — the notebook's ``capability_items`` —
keeps every task to its first items. Prompts go through the model's chat template (instruct models).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.run.paths import resolve

TASKS_DIR = Path(__file__).parent / "tasks"
# the kit's own tasks and their headline metric
LOCAL_TASKS = {
    "agora_moralchoice_low": "acc",
    "agora_moralchoice_high": "balance",
    "agora_neutral_ppl": "byte_perplexity",
}
# the headline metric of lm-eval's tasks the profiles name; any other task: its first metric with a standard error
MAIN_METRIC = {
    **LOCAL_TASKS,
    "ifeval": "prompt_level_strict_acc",
    "gpqa_diamond_zeroshot": "acc_norm",
    "mmlu": "acc",
}
# the Hub data sets of lm-eval's tasks the profiles name (python -m kit doctor checks the hub cache for them); gpqa's
# is gated: it needs HF_TOKEN of an account that accepted its terms
HUB_DATASETS = {"ifeval": "google/IFEval", "gpqa_diamond_zeroshot": "Idavidrein/gpqa", "mmlu": "cais/mmlu"}
GATED = ("Idavidrein/gpqa",)


def hub_tasks(tasks: Sequence[str]) -> list[str]:
    """The tasks of ``tasks`` whose data lm-eval reads from the Hugging Face Hub (all but the kit's own)."""
    return [t for t in tasks if t not in LOCAL_TASKS]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lm-eval logs every request batch and its task set-up at INFO/WARNING: the kit's notebooks show results."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _own_randomness() -> Iterator[None]:
    """lm-eval seeds Python's, numpy's and torch's global generators: put them back after, so the notebook's later
    draws are what they would have been without the capability step."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@contextlib.contextmanager
def _no_bars() -> Iterator[None]:
    """lm-eval draws its progress bars whatever TQDM_DISABLE says: a headless run (which sets it) keeps them out of
    the executed notebook."""
    import io
    import os

    if os.environ.get("TQDM_DISABLE") != "1":
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def task_manager(moralchoice_path: str, tasks: Sequence[str]):
    """lm-eval's ``TaskManager`` over the kit's task folder (and lm-eval's own tasks only when one is named: scanning
    them takes seconds), the MoralChoice path handed to the kit's tasks as metadata."""
    from lm_eval.tasks import TaskManager

    with _quiet():
        return TaskManager(
            include_path=str(TASKS_DIR),
            include_defaults=bool(hub_tasks(tasks)),
            metadata={"moralchoice_path": str(resolve(moralchoice_path))},
        )


def load(model, folder: str | None = None, adapter: str | None = None):
    """lm-eval's model for a ``ModelParams``: its weights (or a merged model's ``folder``), with ``adapter`` (a PEFT
    folder) through ``peft=`` (transformers) or as the LoRA request (vLLM)."""
    from kit.llm.models import resolve_model

    resolved = resolve_model(folder or model.name, None if folder else model.revision)
    with _quiet(), _no_bars():
        if model.backend == "vllm":
            from lm_eval.models.vllm_causallms import VLLM

            lm = VLLM(
                pretrained=resolved.path,
                revision=resolved.revision,
                dtype=model.dtype,
                trust_remote_code=model.trust_remote_code,
                tensor_parallel_size=model.tensor_parallel_size,
                gpu_memory_utilization=model.gpu_memory_utilization,
                max_model_len=model.max_model_len,
                quantization=model.quantization,
                lora_local_path=adapter,
                max_lora_rank=model.max_lora_rank,
                batch_size="auto",
                enforce_eager=bool(model.enforce_eager),
            )
            lm.agora_identity = resolved.identity
            return lm
        from lm_eval.models.huggingface import HFLM

        from kit.llm.hf_backend import resolve_dtype

        device = model.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        lm = HFLM(
            pretrained=resolved.path,
            revision=resolved.revision,
            peft=adapter,
            dtype=resolve_dtype(model.dtype, device),
            device=device,
            batch_size=model.batch_size,
            trust_remote_code=model.trust_remote_code,
        )
    lm.agora_identity = resolved.identity  # who served the calls, in the cost columns (kit.run.cost)
    return lm


@dataclass
class TaskScore:
    """One task of one model: its headline metric, lm-eval's standard error, the items, and each item's value."""

    task: str
    metric: str
    value: float | None
    stderr: float | None
    n: int
    items: dict[str, float] = field(
        default_factory=dict
    )  # per item (task:doc id), where the metric is per item
    extra: dict[str, float] = field(default_factory=dict)  # the task's other metrics


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def evaluate(
    lm, tasks: Sequence[str], limit: int, manager, seed: int = 0, n_boot: int = 1000
) -> dict[str, TaskScore]:
    """``tasks`` on ``lm`` (first ``limit`` items of each), through ``lm_eval.simple_evaluate``: per task its headline
    metric, standard error and per-item values (a group, e.g. ``mmlu``: its subtasks' items together)."""
    from lm_eval import simple_evaluate

    with _quiet(), _own_randomness(), _no_bars():
        out = simple_evaluate(
            model=lm,
            tasks=list(tasks),
            limit=limit,
            task_manager=manager,
            apply_chat_template=True,
            log_samples=True,
            bootstrap_iters=n_boot,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    _count(lm, out.get("samples", {}))
    results, samples = out["results"], out.get("samples", {})
    groups = out.get("group_subtasks", {})
    scores = {}
    for task in tasks:
        found = results.get(task)
        if found is None:
            raise ValueError(
                f"lm-eval returned no result for task {task!r} (results for: {', '.join(results)})"
            )
        metric = MAIN_METRIC.get(task) or next(
            k.split(",")[0]
            for k in found
            if k.endswith(",none")
            and "_stderr" not in k
            and _number(found.get(k.replace(",", "_stderr,", 1))) is not None
        )
        key = next((k for k in found if k.split(",")[0] == metric and "_stderr" not in k), None)
        if key is None:
            raise ValueError(f"lm-eval's {task} reports no {metric} (it reports {', '.join(sorted(found))})")
        stderr_key = key.replace(",", "_stderr,", 1)
        subtasks = _leaves(task, groups) or [task]
        items = {
            f"{sub}:{s['doc_id']}": float(s[metric])
            for sub in subtasks
            for s in samples.get(sub, [])
            if _number(s.get(metric)) is not None
        }
        n = sum(len(samples.get(sub, [])) for sub in subtasks) or int(found.get("sample_len", 0) or 0)
        extra = {
            k.split(",")[0]: float(v)
            for k, v in found.items()
            if k != key and "_stderr" not in k and _number(v) is not None and k.endswith(",none")
        }
        scores[task] = TaskScore(
            task, metric, _number(found[key]), _number(found.get(stderr_key)), n, items, extra
        )
    return scores


def _count(lm, samples: Mapping[str, list[dict]]) -> None:
    """lm-eval's requests in the open cost stages (``kit.run.cost``): one call per request, the tokens it scored
    (context and continuation) and, for generation, the tokens of the reply."""
    from kit.run import cost

    if not cost.measuring():
        return
    calls = scored = generated = 0
    for rows in samples.values():
        for row in rows:
            for args, resp in zip(row.get("arguments", []), row.get("resps", [])):
                calls += 1
                texts = [
                    a for a in (args if isinstance(args, (list, tuple)) else [args]) if isinstance(a, str)
                ]
                generation = isinstance(args, (list, tuple)) and len(args) > 1 and isinstance(args[1], dict)
                scored += len(lm.tok_encode(texts[0] if generation else "".join(texts))) if texts else 0
                if generation:
                    generated += sum(len(lm.tok_encode(r)) for r in resp if isinstance(r, str))
    cost.count(calls, generated, scored, model=getattr(lm, "agora_identity", None))


def _leaves(task: str, groups: Mapping[str, list[str]]) -> list[str]:
    """The tasks under a group (lm-eval's ``group_subtasks``), recursively; [] for a task that is no group."""
    out = []
    for sub in groups.get(task, []):
        out += _leaves(sub, groups) or [sub]
    return out


def paired_change(
    model: Mapping[str, float], base: Mapping[str, float], level: float = 0.95
) -> dict[str, Any]:
    """The model's change against the base on the items both scored: the mean paired difference, its standard error
    and its Student-t interval (the paired t-test's); no interval with fewer than two items."""
    from scipy import stats

    common = sorted(set(model) & set(base))
    d = [model[k] - base[k] for k in common]
    n = len(d)
    if n == 0:
        return {"change": None, "stderr": None, "low": None, "high": None, "n": 0}
    mean = sum(d) / n
    if n < 2:
        return {"change": mean, "stderr": None, "low": None, "high": None, "n": n}
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    return {"change": mean, "stderr": se, "low": mean - half, "high": mean + half, "n": n}
