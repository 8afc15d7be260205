"""LoRA finetuning with trl: DPO, SimPO, ORPO, SFT and GRPO behind one function.

``train(method, train_records, eval_records, base_model, output_dir, recipe, seed)`` trains a LoRA
adapter on ``base_model`` (a registry name such as ``tiny-random``, a hub id or a folder) with the
trl trainer of ``method`` (``kit.train.recipes.TRAINERS``) and writes into ``output_dir``:

- ``checkpoint-N/``: Trainer checkpoints (about every tenth of the run) while it trains; a killed
  job rerun with the same inputs resumes from the last one; they are deleted once it finishes;
- ``adapter/``: the final adapter in PEFT format plus the tokenizer, loadable by the kit's
  backends (``ChatRequest(..., adapter=str(adapter_dir))``);
- ``fingerprint.json`` (what the run depends on, and whether it finished), ``log_history.json``
  and ``train_config.json``.

trl, peft and transformers are imported only when a trainer runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kit.run import artifacts, secrets, tracking
from kit.run.cache import cache_key
from kit.run.files import atomic_write_json, read_json
from kit.train.recipes import TRAINERS, lora_config, resolve_precision, training_config

log = logging.getLogger(__name__)

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
FINGERPRINT = "fingerprint.json"


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    log_history: list[dict]
    train_tokens: int  # tokens of training text seen in this call (prompt once plus each answer)
    seconds: float  # wall time of ``trainer.train()`` in this call
    global_step: int = 0
    resumed_from: str | None = None
    step_seconds: tuple[float, ...] = ()  # wall time of each optimiser step in this call
    reused: bool = False  # a finished adapter of the same fingerprint was found; nothing trained


def _load(base_model: str, bf16: bool):
    """Tokenizer and model; called after the trainer config exists, so ZeRO-3 can shard on load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.llm.models import resolve_model

    resolved = resolve_model(base_model)
    tok = AutoTokenizer.from_pretrained(resolved.path, revision=resolved.revision)
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"model {base_model!r} has no chat template: train an instruct model or set tokenizer.chat_template"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        resolved.path,
        revision=resolved.revision,
        use_safetensors=True,
        dtype=torch.bfloat16 if bf16 else torch.float32,
    )
    return resolved, tok, model


def _conversation_tokens(tok, messages: list[dict], generation_prompt: bool = False) -> int:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def record_tokens(tok, record: dict, max_length: int | None = None) -> int:
    """Tokens of one record's text, chat template included: the prompt once plus each answer.

    Each sequence the trainer builds (prompt + answer) is cut at ``max_length``, as trl cuts it.
    """
    cap = (lambda n: min(n, max_length)) if max_length else (lambda n: n)
    if "chosen" in record:
        prompt = _conversation_tokens(tok, record["prompt"], generation_prompt=True)
        chosen = _conversation_tokens(tok, record["prompt"] + record["chosen"])
        rejected = _conversation_tokens(tok, record["prompt"] + record["rejected"])
        return cap(chosen) + cap(rejected) - cap(prompt)
    if "messages" in record:
        return cap(_conversation_tokens(tok, record["messages"]))
    if "completion" not in record:  # an online (GRPO) record: the prompt; completions are sampled
        return cap(_conversation_tokens(tok, record["prompt"], generation_prompt=True))
    return cap(_conversation_tokens(tok, record["prompt"] + record["completion"]))


def _as_prompt_completion(record: dict) -> dict:
    """SFT records as prompt/completion, so the loss covers the assistant's answer only."""
    if "messages" not in record:
        return {"prompt": record["prompt"], "completion": record["completion"]}
    messages = record["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError(f"SFT record {record.get('id')!r} must end with an assistant message")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _dataset(records: Sequence[dict], method: str):
    from datasets import Dataset

    spec = TRAINERS.get(method)
    if (
        spec.online
    ):  # the prompt plus the columns reward functions read (trl passes them as keyword arguments)
        if any("prompt" not in r for r in records):
            raise ValueError(
                f"{method} records need a 'prompt' (chat messages) and the reward functions' columns"
            )
        return Dataset.from_list([{k: v for k, v in r.items() if k != "id"} for r in records])
    if not spec.preference:
        return Dataset.from_list([_as_prompt_completion(r) for r in records])
    for r in records:
        missing = [c for c in PREFERENCE_COLUMNS if c not in r]
        if missing:
            raise ValueError(
                f"preference record {r.get('id')!r} lacks {missing}: build records with kit.train.records.preference_records"
            )
    return Dataset.from_list([{c: r[c] for c in PREFERENCE_COLUMNS} for r in records])


def _meter():
    """A callback that times optimiser steps and remembers where training (re)started."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self):
            self.start_epoch = 0.0
            self.step_seconds: list[float] = []
            self._t = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.start_epoch = state.epoch or 0.0  # > 0 when resumed from a checkpoint

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step_seconds.append(time.perf_counter() - self._t)

    return Meter()


def train_parts(
    method: str,
    train_records: Sequence[dict],
    eval_records: Sequence[dict],
    base_model: str,
    recipe,
    seed: int,
    rewards: dict | None = None,
) -> dict:
    """What a training run depends on: the base weights, the exact records, the recipe, the seed and,
    for online methods, what the rewards are (names, weights, the detector and embedder they read)."""
    from kit.llm.models import resolve_model

    return {
        "method": method,
        "base": resolve_model(base_model).identity,
        "records": cache_key([list(train_records), list(eval_records)]),
        "lora": recipe.lora,
        "trl": resolve_precision(recipe.trl),
        "per_method": getattr(recipe, "per_method", {}).get(method, {}),
        "seed": seed,
        **({"rewards": rewards} if rewards is not None else {}),
    }


def diverged_at(log_history: Sequence[dict]) -> dict | None:
    """The first logged step whose loss or gradient norm is NaN (a diverged run), if any."""
    return next(
        (
            h
            for h in log_history
            if any(isinstance(h.get(k), float) and math.isnan(h[k]) for k in ("loss", "grad_norm"))
        ),
        None,
    )


def train(
    method: str,
    train_records: Sequence[dict],
    eval_records: Sequence[dict] | None,
    base_model: str,
    output_dir: Path,
    recipe,
    seed: int = 0,
    reward_funcs: Sequence | None = None,
    rewards: dict | None = None,
    rollout_func: Callable | None = None,
) -> TrainResult:
    """Train ``method``'s LoRA adapter with ``recipe`` (``lora``, ``trl`` and maybe ``per_method`` keys).

    Online methods (GRPO) also take ``reward_funcs`` (trl reward functions) and ``rewards``, a
    description of them for the fingerprint (their names, weights, and the models they read), and
    may take a ``rollout_func`` (trl's multi-turn rollouts; describe it in ``rewards`` too). A rollout function
    whose ``engine`` attribute names a backend outside the trainer trains with
    ``kit.train.correction.EngineGRPOTrainer``: trl's importance-sampling correction on its log-probabilities.

    ``output_dir/fingerprint.json`` records what the run depends on (:func:`train_parts`). A
    finished adapter with the same fingerprint is reused; an unfinished run with the same one
    resumes from its last checkpoint; a folder made from anything else is cleared first, so no
    checkpoint of another recipe or data set is ever resumed. A finished run keeps its adapter and
    deletes its checkpoints (optimizer state included); a failed one keeps them for the resume.
    """
    spec = TRAINERS.get(method)
    if not train_records:
        raise ValueError(f"{method}: no training records; check the data funnel counts")
    output_dir = Path(output_dir)
    eval_records = list(eval_records or [])
    if spec.online and not reward_funcs:
        raise ValueError(
            f"{method} trains on rewards: pass reward_funcs (kit.train.rewards.bind) and their description"
        )
    parts = train_parts(method, train_records, eval_records, base_model, recipe, seed, rewards)
    stamp_path, adapter_dir = output_dir / FINGERPRINT, output_dir / "adapter"
    reason = artifacts.stale(stamp_path, parts)
    if (
        reason is None
        and read_json(stamp_path)["finished"]
        and (adapter_dir / "adapter_model.safetensors").is_file()
    ):
        log.info("%s: reusing the finished adapter in %s", method, adapter_dir)
        return _finished(output_dir)
    if reason is not None and output_dir.is_dir() and any(output_dir.iterdir()) and not stamp_path.is_file():
        # not a folder the kit made: never delete what someone else put there
        raise ValueError(
            f"{method}: {output_dir} holds files the kit did not write (no {FINGERPRINT}); fix: "
            "train into an empty or new folder"
        )
    from accelerate import PartialState

    state = PartialState()  # one process, or every rank of `accelerate launch`
    if state.is_main_process:  # only the main rank deletes, creates and stamps; the others wait for it
        if reason is not None and output_dir.is_dir() and any(output_dir.iterdir()):
            log.warning("%s: %s holds a run of other inputs (%s); starting over", method, output_dir, reason)
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        artifacts.stamp(stamp_path, parts, finished=False)
    state.wait_for_everyone()

    per_method = parts["per_method"]
    # trl's report_to: the process's tracker (kit.run.tracking), the run named by the folder and this fingerprint
    report = (
        tracking.trainer_args(_tracked_as(output_dir), artifacts.fingerprint(parts))
        if state.is_main_process
        else {"report_to": "none"}
    )
    args = training_config(method, recipe.trl, per_method, str(output_dir), seed, bool(eval_records), report)
    trainer_cls, _ = spec.load()
    resolved, tok, model = _load(base_model, args.bf16)
    meter = _meter()
    found = last_complete_checkpoint(output_dir)
    last = str(found) if found else None
    if last:
        log.info("%s: resuming from %s", method, last)
    with warnings.catch_warnings():
        # trl and peft still read the pre-5.x attribute name; nothing a caller can act on.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        # the kit pins trl and tests its rollout_func contract (tests/test_selfplay.py)
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
        online = {"reward_funcs": list(reward_funcs)} if spec.online else {}
        if rollout_func is not None:
            if not spec.online:
                raise ValueError(f"{method} samples no rollouts; rollout_func is for online methods (grpo)")
            online["rollout_func"] = rollout_func
            if method == "grpo" and getattr(rollout_func, "engine", None) is not None:
                # rollouts an engine outside the trainer sampled: trl's importance-sampling correction on them
                from kit.train.correction import EngineGRPOTrainer as trainer_cls
        trainer = trainer_cls(
            model=model,
            args=args,
            processing_class=tok,
            peft_config=lora_config(recipe.lora),
            **online,
            train_dataset=_dataset(train_records, method),
            eval_dataset=_dataset(eval_records, method) if eval_records else None,
            callbacks=[meter],
        )
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=last)
        seconds = time.perf_counter() - start

    diverged = diverged_at(trainer.state.log_history)
    if diverged is not None:
        raise ValueError(
            f"{method} in {output_dir}: training diverged (NaN at step {diverged.get('step')}); no adapter "
            "is kept. A prompt that fills max_length leaves no answer tokens to train on: raise "
            "trl.max_length, or lower the learning rate"
        )
    epoch_tokens = sum(record_tokens(tok, r, getattr(args, "max_length", None)) for r in train_records)
    epochs_done = (trainer.state.epoch or 0.0) - meter.start_epoch
    trainer.save_model(str(adapter_dir))  # PEFT adapter + tokenizer; gathers shards under ZeRO-3
    history = list(trainer.state.log_history)
    if trainer.is_world_process_zero():
        atomic_write_json(output_dir / "log_history.json", history)
        atomic_write_json(
            output_dir / "train_config.json",
            secrets.redact(
                {
                    "method": method,
                    "trainer": type(trainer).__name__,
                    "base_model": base_model,
                    "base_identity": resolved.identity,
                    "seed": seed,
                    "lora": recipe.lora,
                    "trl": recipe.trl,
                    "per_method": per_method,
                    "args": args.to_dict(),
                    "n_train": len(train_records),
                    "n_eval": len(eval_records),
                    "global_step": trainer.state.global_step,
                    "resumed_from": last,
                    "versions": _versions(),
                }
            ),
        )
        for checkpoint in output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
        artifacts.stamp(stamp_path, parts, finished=True)
    result = TrainResult(
        adapter_dir=adapter_dir,
        log_history=history,
        train_tokens=round(epoch_tokens * epochs_done),
        seconds=seconds,
        global_step=trainer.state.global_step,
        resumed_from=last,
        step_seconds=tuple(meter.step_seconds),
    )
    # the trainer's model, optimizer and activations leave the GPU before the stage's engines wake again
    del trainer, model
    from kit.llm.resident import free_accelerator_memory

    free_accelerator_memory()
    return result


def _tracked_as(output_dir: Path) -> str:
    """A trainer's run name part: its folder within the run folder (``visa/train/grpo``), else the folder's name."""
    tracker = tracking.active()
    run_dir = tracker.store.parent.resolve() if tracker is not None else None
    folder = Path(output_dir).resolve()
    return (
        str(folder.relative_to(run_dir))
        if run_dir is not None and folder.is_relative_to(run_dir)
        else folder.name
    )


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` a resume can load: trainer state that parses and weights whose
    safetensors header reads. A newer one that fails (half-written by a kill or a full disk) is
    deleted, so neither this resume nor the trainer's checkpoint rotation trips over it."""
    from safetensors import safe_open

    def step(path: Path) -> int:
        tail = path.name.removeprefix("checkpoint-")
        return int(tail) if tail.isdigit() else -1

    for checkpoint in sorted(Path(output_dir).glob("checkpoint-*"), key=step, reverse=True):
        if step(checkpoint) < 0 or not checkpoint.is_dir():
            continue
        weights = [
            checkpoint / n
            for n in ("adapter_model.safetensors", "model.safetensors")
            if (checkpoint / n).is_file()
        ]
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            if not weights:
                raise OSError("no weights")
            with safe_open(str(weights[0]), framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 — whatever is wrong with it, it cannot be resumed
            log.warning(
                "%s: incomplete checkpoint (%s); deleting it and resuming from an earlier one",
                checkpoint,
                str(e).splitlines()[0] if str(e) else type(e).__name__,
            )
            if os.environ.get("RANK", "0") == "0":  # under accelerate launch, one rank deletes
                shutil.rmtree(checkpoint, ignore_errors=True)
            continue
        return checkpoint
    return None


def reward_history(adapter_dir: Path):
    """Per logged GRPO step of a finished run: the total reward and each reward's mean (a DataFrame by step)."""
    import pandas as pd

    history = read_json(Path(adapter_dir).parent / "log_history.json", [])
    rows = [
        {
            "step": h["step"],
            "reward": h["reward"],
            **{k.split("/")[1]: v for k, v in h.items() if k.startswith("rewards/") and k.endswith("/mean")},
        }
        for h in history
        if "reward" in h
    ]
    return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()


def sampling_correction(adapter_dir: Path) -> dict:
    """How a finished GRPO run's rollouts were sampled and corrected, from its own records (train_config.json and
    log_history.json beside the adapter):

    - ``sampler``: ``trl-vllm`` (trl's own vLLM engine, ``use_vllm``), ``engine`` (an engine of the kit's through a
      rollout function: ``kit.train.correction.EngineGRPOTrainer``) or ``trainer`` (the trained model generates:
      on-policy, so trl corrects nothing);
    - ``correction``: whether trl's importance-sampling correction ran, i.e. logged its ratios;
    - the means over the logged steps of trl's ``sampling/sampling_logp_difference/mean`` (|trainer's − sampling
      log-probability| per token) and ``sampling/importance_sampling_ratio/mean``, and of the rollout's
      ``selfplay/logprob_known`` (the share of own tokens with a known sampling log-probability); None where not logged.
    """
    folder = Path(adapter_dir).parent
    config = read_json(folder / "train_config.json", {})
    args = config.get("args", {})
    sampler = (
        "trl-vllm"
        if args.get("use_vllm")
        else "engine"
        if config.get("trainer") == "EngineGRPOTrainer"
        else "trainer"
    )
    steps = [h for h in read_json(folder / "log_history.json", []) if "reward" in h]

    def mean(key: str) -> float | None:
        values = [float(h[key]) for h in steps if h.get(key) is not None and not math.isnan(float(h[key]))]
        return round(sum(values) / len(values), 6) if values else None

    return {
        "sampler": sampler,
        "correction": mean("sampling/importance_sampling_ratio/mean") is not None,
        "correction_asked": bool(args.get("vllm_importance_sampling_correction")),
        "logp_difference": mean("sampling/sampling_logp_difference/mean"),
        "importance_ratio": mean("sampling/importance_sampling_ratio/mean"),
        "logprob_known": mean("selfplay/logprob_known"),
    }


def reward_window(steps: int) -> int:
    """The logged steps ``reward_fell`` compares at each end by default: a quarter of them, at least one."""
    return max(1, steps // 4)


def reward_fell(rewards, window: int | None = None) -> bool | None:
    """Whether training went backwards: the mean of the last ``window`` logged rewards below the mean of the first
    ``window`` (default :func:`reward_window`); None with fewer than two steps."""
    values = [float(r) for r in rewards]
    if len(values) < 2:
        return None
    w = window or reward_window(len(values))
    return sum(values[-w:]) / w < sum(values[:w]) / w


def _finished(output_dir: Path) -> TrainResult:
    """The result of a finished run, read back from its folder (nothing trained in this call)."""
    config = read_json(output_dir / "train_config.json", {})
    return TrainResult(
        adapter_dir=output_dir / "adapter",
        log_history=read_json(output_dir / "log_history.json", []),
        train_tokens=0,
        seconds=0.0,
        global_step=config.get("global_step", 0),
        reused=True,
    )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "trl", "peft")}


# the GRPO config keys that decide a group's advantages from its rewards (trl's GRPOTrainer)
ADVANTAGE_KEYS = ("scale_rewards", "multi_objective_aggregation")


def trl_group_advantages(
    rewards: dict[str, Sequence[float]], weights: dict[str, float], trl: dict | None = None
):
    """The advantages trl's ``GRPOTrainer`` gives one group of completions whose reward functions returned
    ``rewards`` (name -> one score per completion), weighted by ``weights`` as ``reward_weights``, under the recipe
    ``trl``'s :data:`ADVANTAGE_KEYS` (trl's defaults where unset): trl's own scoring step
    (``_generate_and_score_completions``) run on a trainer of the tiny random model, whose rollout function returns
    the group and whose reward functions return the given scores. The advantages read only the rewards, so the model
    is a stand-in; a float32 array, one per completion."""
    import tempfile

    from datasets import Dataset

    from kit.llm.models import TINY

    group = len(next(iter(rewards.values())))
    if group < 2 or any(len(v) != group for v in rewards.values()) or set(rewards) != set(weights):
        raise ValueError(
            "a GRPO group is two or more completions, with one score each from every weighted reward"
        )
    names = list(weights)

    def reward_of(name: str):
        def reward(completions, row, **_):
            return [float(rewards[name][r]) for r in row]

        reward.__name__ = name
        return reward

    def rollout(prompts, trainer) -> dict:  # the group's tokens do not enter its advantages
        eos = trainer.processing_class.eos_token_id
        return {
            "prompt_ids": [[eos]] * len(prompts),
            "completion_ids": [[eos]] * len(prompts),
            "logprobs": None,
        }

    given = {k: v for k, v in (trl or {}).items() if k in ADVANTAGE_KEYS}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        args = training_config(
            "grpo",
            {
                **given,
                "num_generations": group,
                "per_device_train_batch_size": group,
                "reward_weights": [float(weights[n]) for n in names],
                "use_vllm": False,
                "bf16": False,
                "max_completion_length": 1,
            },
            {},
            tmp,
            0,
            False,
        )
        trainer_cls, _ = TRAINERS.get("grpo").load()
        _, tok, model = _load(TINY, False)
        prompt = [{"role": "user", "content": "a group"}]
        trainer = trainer_cls(
            model=model,
            args=args,
            processing_class=tok,
            reward_funcs=[reward_of(n) for n in names],
            train_dataset=Dataset.from_list([{"prompt": prompt, "row": 0}]),
            rollout_func=rollout,
        )
        trainer.model.train()  # trl scores a training batch (num_generations, not the eval count)
        scored = trainer._generate_and_score_completions([{"prompt": prompt, "row": i} for i in range(group)])
    return scored["advantages"].detach().cpu().float().numpy()
