"""LoRA finetuning with trl: DPO, SimPO, ORPO and SFT behind one signature.

Each ``train_<method>(train_records, eval_records, base_model, output_dir, cfg, seed)`` trains a
LoRA adapter on ``base_model`` (a registry name such as ``tiny-random``, a hub id or a folder) and
writes into ``output_dir``:

- ``checkpoint-N/``: Trainer checkpoints (about every tenth of the run, and at the end); a call
  on a folder that has them resumes from the last one, so a killed job, or a second call with
  more epochs, continues instead of starting over;
- ``adapter/``: the final adapter in PEFT format plus the tokenizer, loadable by the kit's
  backends (``ChatRequest(..., adapter=str(adapter_dir))``);
- ``log_history.json`` and ``train_config.json``.

Facts of trl 1.16 this relies on: ``DPOConfig.loss_type`` is a list and has no SimPO, so SimPO is
``trl.experimental.cpo.CPOTrainer`` with ``loss_type="simpo"``, ``cpo_alpha=0`` (no BC term)
and ``simpo_gamma``; ORPO is ``trl.experimental.orpo`` whose ``beta`` is the paper's λ; the trl
configs default ``gradient_checkpointing`` and ``bf16`` to True, so both are set explicitly; and
transformers 5 takes a warmup ratio as ``warmup_steps < 1``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from kit.config import FinetuneParams, LoraParams, SFTParams
from kit.runs import atomic_write_json

log = logging.getLogger(__name__)

METHODS = ("dpo", "simpo", "orpo", "sft")
# Checkpoint every tenth of the total steps (transformers reads save_steps < 1 as a ratio) and
# keep two, so a preempted GPU job loses little and the disk holds little.
SAVE_EVERY = 0.1
SAVE_TOTAL_LIMIT = 2
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    log_history: list[dict]
    train_tokens: int  # tokens of training text seen in this call (prompt once plus each answer)
    seconds: float  # wall time of ``trainer.train()`` in this call
    global_step: int = 0
    resumed_from: str | None = None
    step_seconds: tuple[float, ...] = ()  # wall time of each optimiser step in this call


def finetune_from_sft(sft: SFTParams, base: FinetuneParams | None = None) -> FinetuneParams:
    """The ``agents.sft`` section as finetune params (other settings from ``base`` or defaults)."""
    base = base or FinetuneParams()
    return base.model_copy(update={
        "methods": ["sft"], "epochs": sft.epochs, "learning_rate": sft.learning_rate, "batch_size": sft.batch_size,
        "max_length": sft.max_length, "lora": LoraParams(r=sft.lora_r, alpha=sft.lora_alpha,
                                                          dropout=base.lora.dropout, target_modules=base.lora.target_modules),
    })


# --- pieces shared by all methods ---------------------------------------------------------------

def lora_config(lora: LoraParams):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                      bias="none", task_type="CAUSAL_LM")


def _use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _common_args(cfg: FinetuneParams, output_dir: Path, seed: int, has_eval: bool) -> dict[str, Any]:
    return dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        bf16=cfg.bf16, activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps, report_to="none",
        save_strategy="steps", save_steps=SAVE_EVERY, save_total_limit=SAVE_TOTAL_LIMIT,
        eval_strategy="epoch" if has_eval else "no",
        use_cpu=_use_cpu(), disable_tqdm=True if os.environ.get("TQDM_DISABLE") == "1" else None,
    )


def _load(base_model: str, cfg: FinetuneParams):
    """Tokenizer and model; called after the trainer config exists, so ZeRO-3 can shard on load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.llm.models import resolve_model

    resolved = resolve_model(base_model)
    tok = AutoTokenizer.from_pretrained(resolved.path, revision=resolved.revision)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"model {base_model!r} has no chat template: train an instruct model or set tokenizer.chat_template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(resolved.path, revision=resolved.revision, use_safetensors=True,
                                                 dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
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
    messages = record["messages"] if "messages" in record else record["prompt"] + record["completion"]
    return cap(_conversation_tokens(tok, messages))


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

    if method == "sft":
        return Dataset.from_list([_as_prompt_completion(r) for r in records])
    for r in records:
        missing = [c for c in PREFERENCE_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"preference record {r.get('id')!r} lacks {missing}: build records with kit.train.data.preference_records")
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


def _run(method: str, make_trainer: Callable[..., Any], config_cls, method_args: dict[str, Any],
         train_records: Sequence[dict], eval_records: Sequence[dict] | None, base_model: str, output_dir: Path,
         cfg: FinetuneParams, seed: int) -> TrainResult:
    from transformers.trainer_utils import get_last_checkpoint

    if not train_records:
        raise ValueError(f"{method}: no training records; check the data funnel counts")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    eval_records = list(eval_records or [])
    args = config_cls(**_common_args(cfg, output_dir, seed, bool(eval_records)), **method_args)
    resolved, tok, model = _load(base_model, cfg)
    meter = _meter()
    last = get_last_checkpoint(str(output_dir))
    if last:
        log.info("%s: resuming from %s", method, last)
    with warnings.catch_warnings():
        # trl and peft still read the pre-5.x attribute name; nothing a caller can act on.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer = make_trainer(model=model, args=args, processing_class=tok, peft_config=lora_config(cfg.lora),
                               train_dataset=_dataset(train_records, method),
                               eval_dataset=_dataset(eval_records, method) if eval_records else None,
                               callbacks=[meter])
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=True if last else None)
        seconds = time.perf_counter() - start

    epoch_tokens = sum(record_tokens(tok, r, cfg.max_length) for r in train_records)
    epochs_done = (trainer.state.epoch or 0.0) - meter.start_epoch
    adapter_dir = output_dir / "adapter"
    trainer.save_model(str(adapter_dir))  # PEFT adapter + tokenizer; gathers shards under ZeRO-3
    history = list(trainer.state.log_history)
    if trainer.is_world_process_zero():
        atomic_write_json(output_dir / "log_history.json", history)
        atomic_write_json(output_dir / "train_config.json", {
            "method": method, "base_model": base_model, "base_identity": resolved.identity, "seed": seed,
            "finetune": cfg.model_dump(mode="json"), "method_args": method_args,
            "n_train": len(train_records), "n_eval": len(eval_records),
            "global_step": trainer.state.global_step, "resumed_from": last, "versions": _versions(),
        })
    return TrainResult(adapter_dir=adapter_dir, log_history=history, train_tokens=round(epoch_tokens * epochs_done),
                       seconds=seconds, global_step=trainer.state.global_step, resumed_from=last,
                       step_seconds=tuple(meter.step_seconds))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "trl", "peft")}


@contextmanager
def _experimental() -> Iterator[None]:
    """Import from ``trl.experimental`` without its warning: the kit pins trl and tests these trainers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        yield


# --- one function per method --------------------------------------------------------------------

def train_dpo(train_records, eval_records, base_model: str, output_dir: Path, cfg: FinetuneParams, seed: int = 0) -> TrainResult:
    """DPO (sigmoid loss, β = ``cfg.beta``); the reference is the base model with the adapter off."""
    from trl import DPOConfig, DPOTrainer

    return _run("dpo", DPOTrainer, DPOConfig, {"beta": cfg.beta, "loss_type": ["sigmoid"]},
                train_records, eval_records, base_model, output_dir, cfg, seed)


def train_simpo(train_records, eval_records, base_model: str, output_dir: Path, cfg: FinetuneParams, seed: int = 0) -> TrainResult:
    """SimPO: reference-free, length-normalised, margin γ = ``cfg.simpo_gamma`` (the anchor's "dpo")."""
    with _experimental():
        from trl.experimental.cpo import CPOConfig, CPOTrainer

    return _run("simpo", CPOTrainer, CPOConfig,
                {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": cfg.beta, "simpo_gamma": cfg.simpo_gamma,
                 "remove_unused_columns": False},
                train_records, eval_records, base_model, output_dir, cfg, seed)


def train_orpo(train_records, eval_records, base_model: str, output_dir: Path, cfg: FinetuneParams, seed: int = 0) -> TrainResult:
    """ORPO: SFT on chosen plus λ·odds-ratio term, λ = ``cfg.orpo_lambda`` (trl calls it beta)."""
    with _experimental():
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return _run("orpo", ORPOTrainer, ORPOConfig, {"beta": cfg.orpo_lambda, "remove_unused_columns": False},
                train_records, eval_records, base_model, output_dir, cfg, seed)


def train_sft(train_records, eval_records, base_model: str, output_dir: Path, cfg: FinetuneParams | SFTParams,
              seed: int = 0) -> TrainResult:
    """SFT on chat records (``messages`` or ``prompt``/``completion``), loss on the last assistant turn."""
    from trl import SFTConfig, SFTTrainer

    if isinstance(cfg, SFTParams):
        cfg = finetune_from_sft(cfg)
    return _run("sft", SFTTrainer, SFTConfig, {}, train_records, eval_records, base_model, output_dir, cfg, seed)


_TRAINERS = {"dpo": train_dpo, "simpo": train_simpo, "orpo": train_orpo, "sft": train_sft}


def train(method: str, train_records, eval_records, base_model: str, output_dir: Path, cfg: FinetuneParams,
          seed: int = 0) -> TrainResult:
    """Dispatch to ``train_<method>``."""
    if method not in _TRAINERS:
        raise ValueError(f"unknown training method {method!r}; use one of {', '.join(METHODS)}")
    return _TRAINERS[method](train_records, eval_records, base_model, Path(output_dir), cfg, seed)
