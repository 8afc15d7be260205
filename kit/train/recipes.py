"""Training recipes in trl's and peft's own keys: defaults, per-method settings, and the built configs.

A params recipe (``finetune``, ``agents.sft``, ``palette.train``, ``visa.rewriter`` …) holds ``lora`` (``peft.LoraConfig`` keys) and
``trl`` (trl config keys); ``finetune.per_method`` adds keys for one method. The config a trainer
gets is, from weakest to strongest:

1. ``TRL_DEFAULTS`` — CPU-friendly values of the kit (no bf16, no gradient checkpointing, cosine
   schedule, checkpoints every tenth of the run …), for every method;
2. ``TrainerSpec.defaults`` — the method's paper defaults (DPO β, SimPO γ, ORPO λ as ``beta``);
3. the recipe's ``trl`` keys that the method's config has, then ``per_method[method]``;
4. ``TrainerSpec.fixed`` and what the run decides: the output folder, the seed, CPU or GPU, whether
   there is an eval set, ``bf16: auto`` (:func:`resolve_precision`) and where the trainer reports (trl's
   ``report_to``, the run's name: ``kit.run.tracking``, from the ``tracking`` section). ``fixed`` keys make the
   method what it is (SimPO is the CPO trainer with ``loss_type: simpo``) and cannot be overridden.

A key no selected method's config knows is an error, found by :func:`check` before anything
trains (``python -m kit check`` runs it).

Facts of trl 1.16 this relies on: ``DPOConfig.loss_type`` is a list and has no SimPO, so SimPO is
``trl.experimental.cpo.CPOTrainer`` with ``loss_type="simpo"`` and ``cpo_alpha=0`` (no BC term);
ORPO is ``trl.experimental.orpo`` whose ``beta`` is the paper's λ; the trl configs default
gradient checkpointing and ``bf16`` to True, so the kit sets both; transformers 5 takes a warmup
ratio as ``warmup_steps < 1`` and renamed ``gradient_checkpointing`` to ``activation_checkpointing``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kit.registry import Registry

# Checkpoint every tenth of the total steps (transformers reads save_steps < 1 as a ratio) and
# keep two, so a preempted GPU job loses little and the disk holds little.
TRL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "num_train_epochs": 3.0,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 1024,
    "bf16": False,
    "logging_steps": 5,
    "report_to": "none",
    "save_strategy": "steps",
    "save_steps": 0.1,
    "save_total_limit": 2,
}
LORA_DEFAULTS: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "bias": "none",
    "task_type": "CAUSAL_LM",
}


@dataclass(frozen=True)
class TrainerSpec:
    """A training method: its trl trainer and config (``"module:Class"``), defaults and fixed keys."""

    trainer: str
    config: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    preference: bool = True  # prompt/chosen/rejected records; SFT takes chat records
    online: bool = False  # RL on its own samples (GRPO): prompt-only records plus reward functions

    def load(self) -> tuple[type, type]:
        with _experimental():
            return _import(self.trainer), _import(self.config)


TRAINERS: Registry[TrainerSpec] = Registry("training method")
TRAINERS.register(
    "dpo", TrainerSpec("trl:DPOTrainer", "trl:DPOConfig", {"beta": 0.1, "loss_type": ["sigmoid"]})
)
TRAINERS.register(
    "simpo",
    TrainerSpec(
        "trl.experimental.cpo:CPOTrainer",
        "trl.experimental.cpo:CPOConfig",
        {"beta": 0.1, "simpo_gamma": 0.5, "cpo_alpha": 0.0},
        {"loss_type": "simpo", "remove_unused_columns": False},
    ),
)
TRAINERS.register(
    "orpo",
    TrainerSpec(
        "trl.experimental.orpo:ORPOTrainer",
        "trl.experimental.orpo:ORPOConfig",
        {"beta": 0.1},
        {"remove_unused_columns": False},
    ),
)
TRAINERS.register("sft", TrainerSpec("trl:SFTTrainer", "trl:SFTConfig", preference=False))
# GRPO counts completions per device batch: one prompt's group of 4 per step unless the recipe says otherwise
TRAINERS.register(
    "grpo",
    TrainerSpec(
        "trl:GRPOTrainer",
        "trl:GRPOConfig",
        {
            "num_generations": 4,
            "per_device_train_batch_size": 4,
            "max_completion_length": 128,
            "learning_rate": 2e-5,
            "beta": 0.0,
            "logging_steps": 1,
        },
        preference=False,
        online=True,
    ),
)


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@contextmanager
def _experimental() -> Iterator[None]:
    """Import from ``trl.experimental`` without its warning: the kit pins trl and tests these trainers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        yield


def _fields(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def _use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def resolve_precision(trl: dict[str, Any]) -> dict[str, Any]:
    """``trl`` with ``bf16: auto`` decided for this machine: bfloat16 where the training device computes
    in it natively (``kit.llm.hf_backend.native_bf16``), float32 elsewhere."""
    if trl.get("bf16") != "auto":
        return trl
    from kit.llm.hf_backend import native_bf16

    return {**trl, "bf16": native_bf16("cpu" if _use_cpu() else "cuda")}


# where a trainer reports is the tracking section's to say (kit.run.tracking), for every trainer alike
TRACKING_KEYS = ("report_to", "run_name", "project")


def config_kwargs(
    method: str,
    trl: dict[str, Any],
    per_method: dict[str, Any],
    output_dir: str,
    seed: int,
    has_eval: bool,
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``method``'s trl config for a recipe (see the module docstring); ``report``:
    ``report_to`` and the run's name (``kit.run.tracking.trainer_args``), none by default."""
    spec = TRAINERS.get(method)
    _, config_cls = spec.load()
    known = _fields(config_cls)
    given = {k: v for k, v in resolve_precision(trl).items() if k in known} | resolve_precision(per_method)
    kwargs = {k: v for k, v in TRL_DEFAULTS.items() if k in known} | spec.defaults
    if not {"activation_checkpointing", "gradient_checkpointing"} & given.keys():
        # trl turns checkpointing on by default; newer transformers call it activation_checkpointing
        kwargs[
            "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
        ] = False
    kwargs |= given
    kwargs.setdefault("per_device_eval_batch_size", kwargs["per_device_train_batch_size"])
    kwargs |= (
        spec.fixed
        | {
            "output_dir": output_dir,
            "seed": seed,
            "data_seed": seed,
            "use_cpu": _use_cpu(),
            "eval_strategy": "epoch" if has_eval else "no",
            "disable_tqdm": True if os.environ.get("TQDM_DISABLE") == "1" else None,
        }
        | (report or {"report_to": "none"})
    )
    if spec.online and "use_vllm" not in given:
        # GPU: generate the groups with vLLM in the training process (colocate); CPU: transformers' generate
        kwargs["use_vllm"] = not kwargs["use_cpu"] and importlib.util.find_spec("vllm") is not None
    return kwargs


def training_config(
    method: str,
    trl: dict[str, Any],
    per_method: dict[str, Any],
    output_dir: str,
    seed: int,
    has_eval: bool,
    report: dict[str, Any] | None = None,
):
    """The built trl config (``DPOConfig`` …) of ``method`` for a recipe."""
    _, config_cls = TRAINERS.get(method).load()
    return config_cls(**config_kwargs(method, trl, per_method, output_dir, seed, has_eval, report))


def lora_config(lora: dict[str, Any]):
    """``peft.LoraConfig`` from the recipe's ``lora`` keys over ``LORA_DEFAULTS``."""
    from peft import LoraConfig

    return LoraConfig(**{**LORA_DEFAULTS, **lora})


# trl/TrainingArguments keys whose value must be above 0 (a 0 or negative one trains nothing, or backwards)
_POSITIVE = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_length",
    "max_completion_length",
)


def _check_types(config_cls: type, given: dict[str, Any], where: str) -> None:
    """A value of the type its field's default has: the configs do not check, so ``learning_rate: "1e-4"``
    (a string) would fail only inside the optimiser."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    for key, value in given.items():
        default = defaults.get(key, dataclasses.MISSING)
        if value is None:
            continue  # an optional setting left unset; the config rejects None where it needs a value
        if isinstance(default, bool):
            ok = isinstance(value, bool) or (key == "bf16" and value == "auto")
        elif isinstance(default, (int, float)) and default is not None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            continue
        if not ok:
            example = value if isinstance(value, str) and _is_number(value) else repr(default)
            raise ValueError(
                f"{where}.trl.{key}: {value!r} is a {type(value).__name__}, not a "
                f"{type(default).__name__}; fix: write it unquoted, e.g. {key}: {example}"
            )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_ranges(config, where: str, method: str) -> None:
    for key in _POSITIVE:
        value = getattr(config, key, None)
        if value is not None and value <= 0:
            raise ValueError(f"{where}.trl.{key}: {value} ({method}); fix: use a value above 0")
    if config.max_steps <= 0 and config.num_train_epochs <= 0:
        raise ValueError(
            f"{where}.trl.num_train_epochs: {config.num_train_epochs} ({method}) trains no step; "
            "fix: use a value above 0 (or set max_steps)"
        )


def _check_lora(
    lora: dict[str, Any], where: str, modules: Callable[[], dict[str, str] | None] | None
) -> None:
    r, alpha, dropout = lora.get("r", 1), lora.get("lora_alpha", 1), lora.get("lora_dropout", 0)
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{where}.lora.r: {r!r}; fix: a whole number ≥ 1 (8, 16, …)")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"{where}.lora.lora_alpha: {alpha!r}; fix: a number above 0 (often 2 r)")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{where}.lora.lora_dropout: {dropout!r}; fix: a number in [0, 1)")
    targets = lora.get("target_modules")
    if not isinstance(targets, list) or modules is None:
        return  # "all-linear" or a regex: peft matches them itself
    names = modules()
    if names is None:
        return
    for key in targets:
        # peft's rule: a module is targeted when its full name is the key or ends with "." + key
        if not any(n == key or n.endswith("." + key) for n in names):
            leaves = sorted({n.rpartition(".")[2] for n, kind in names.items() if kind == "Linear"})
            raise ValueError(
                f"{where}.lora.target_modules: the model has no module {key!r}; fix: use its module "
                f"names ({', '.join(leaves[:12])}) or 'all-linear'"
            )


def check(
    lora: dict[str, Any],
    trl: dict[str, Any],
    methods: list[str],
    per_method: dict[str, dict[str, Any]],
    where: str,
    modules: Callable[[], dict[str, str] | None] | None = None,
) -> None:
    """Raise ValueError naming the first key of a recipe its libraries reject, by building every config.

    ``modules`` gives the model's module names and classes (None where its config is not at hand), against which a
    list of LoRA ``target_modules`` is checked.
    """
    from peft import LoraConfig

    lora_fields = _fields(LoraConfig)
    for key in lora:
        if key not in lora_fields:
            raise ValueError(
                f"{where}.lora.{key}: not a peft LoraConfig key; fix: use a LoraConfig field "
                "(r, lora_alpha, lora_dropout, target_modules, …)"
            )
    _check_lora(lora, where, modules)
    known = {m: _fields(TRAINERS.get(m).load()[1]) for m in methods}
    for key in [*trl, *(k for keys in per_method.values() for k in keys)]:
        if key in TRACKING_KEYS:
            raise ValueError(
                f"{where}.trl.{key}: where trainers report is the tracking section's to say; fix: remove "
                "it and set tracking.backend (none, trackio, wandb, mlflow) and tracking.project"
            )
    for key in trl:
        if not any(key in fields for fields in known.values()):
            names = ", ".join(TRAINERS.get(m).config.rpartition(":")[2] for m in methods)
            raise ValueError(
                f"{where}.trl.{key}: not a key of {names}; fix: use a trl/TrainingArguments "
                "field name, as in the trl docs"
            )
    for method, keys in per_method.items():
        for key in keys:
            if key not in known[method]:
                raise ValueError(
                    f"{where}.per_method.{method}.{key}: not a key of "
                    f"{TRAINERS.get(method).config.rpartition(':')[2]}"
                )
            if key in TRAINERS.get(method).fixed:
                raise ValueError(
                    f"{where}.per_method.{method}.{key}: fixed by the kit for {method}; remove it"
                )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            LoraConfig(**{**LORA_DEFAULTS, **lora})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}.lora: {e}") from None
        for method in methods:
            _check_types(TRAINERS.get(method).load()[1], {**trl, **per_method.get(method, {})}, where)
            try:
                with warnings.catch_warnings():
                    # gradient_checkpointing is an accepted alias on newer transformers (see the docstring)
                    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated")
                    config = training_config(method, trl, per_method.get(method, {}), tmp, 0, has_eval=False)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}.trl ({method}): {str(e).splitlines()[0]}") from None
            _check_ranges(config, where, method)
