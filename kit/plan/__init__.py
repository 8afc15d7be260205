"""The memory plan: for every notebook stage, what is resident on each GPU, what it needs, and whether it fits.

``python -m kit plan PARAMS [--gpus N] [--gpu-gb G]`` prints it before any model loads; ``kit doctor``
and ``kit run`` refuse a profile that does not fit the visible GPUs, one line per stage. The stages are
``kit.plan.stages`` (the list the session also follows), the models' shapes ``kit.plan.catalog``, the
estimates ``kit.plan.memory``, and the GPU-hours ``kit.plan.hours``.

On a profile that runs on the CPU (``model.device: cpu``) the same plan is of host memory, which is
how its estimates are checked against measured peaks (``tests/test_plan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.config import Params
from kit.plan import catalog, memory
from kit.plan.memory import GiB, Need, Recipe
from kit.plan.stages import ENCODERS, MERGES, Part, Stage, notebook_stages

PROCESS_RSS_GIB = 0.7  # what a kernel holds before any model: Python, torch, transformers, pandas (CPU plans)


@dataclass
class StagePlan:
    stage: Stage
    device: str  # "cuda:0" … or "cpu"
    needs: list[Need]
    swap: list[Need]
    budget: float
    base: float  # the process's own share: CUDA context on a GPU, the interpreter on the CPU

    @property
    def total(self) -> float:
        return sum(n.gib for n in self.needs) + max((n.gib for n in self.swap), default=0.0) + self.base

    @property
    def fits(self) -> bool:
        return self.total <= self.budget * (1 - memory.HEADROOM)

    def why(self) -> str:
        parts = [f"{n.what} {n.gib:.1f} ({n.why()})" for n in self.needs]
        if self.swap:
            big = max(self.swap, key=lambda n: n.gib)
            parts.append(f"largest of {len(self.swap)} swapped: {big.what} {big.gib:.1f} ({big.why()})")
        return "; ".join(parts)

    def host(self) -> float:
        return sum(n.host for n in self.needs + self.swap)


@dataclass
class Plan:
    params: Params
    device: str  # "cuda" or "cpu"
    gpus: int
    gpu_gib: float
    stages: list[StagePlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems and all(s.fits for s in self.stages)

    def refusals(self) -> list[str]:
        """One line per stage that does not fit: notebook, stage, need, and the fix."""
        lines = list(self.problems)
        unit = "GPU" if self.device == "cuda" else "host RAM"
        for s in self.stages:
            if not s.fits:
                lines.append(
                    f"notebook {s.stage.notebook} stage '{s.stage.name}' needs {s.total:.1f} GiB on "
                    f"{s.device} of {s.budget * (1 - memory.HEADROOM):.1f} usable ({unit}): {s.why()}; "
                    f"fix: {fix(s, self)}"
                )
        return lines

    def table(self):
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "notebook": s.stage.notebook,
                    "stage": s.stage.name,
                    "device": s.device,
                    "need_gib": round(s.total, 1),
                    "usable_gib": round(s.budget * (1 - memory.HEADROOM), 1),
                    "fits": s.fits,
                    "host_gib": round(s.host(), 1),
                    "why": s.why(),
                }
                for s in self.stages
            ]
        )


def fix(s: StagePlan, plan: Plan) -> str:
    """The change that most likely makes ``s`` fit, named by its params key."""
    biggest = max(s.needs + s.swap, key=lambda n: n.gib)
    if biggest.what.startswith("trainer"):
        return (
            "lower the recipe's per_device_train_batch_size (raise gradient_accumulation_steps to keep the "
            "batch), max_length, or turn gradient_checkpointing on"
        )
    if biggest.what.startswith("engine") and biggest.terms.get("KV cache", 0) > biggest.terms.get(
        "weights", 0
    ):
        return "lower model.kv_cache_gb (or gpu_memory_utilization)"
    if plan.device == "cpu":
        return "use a smaller model or a machine with more memory"
    return (
        "a GPU with more memory, tensor_parallel_size over more GPUs, or serve a role from another node "
        "(models.<role>: {backend: openai, base_url: …})"
    )


def _shape(model) -> catalog.Shape:
    return catalog.shape(model.name, model.revision, model.params_b)


def _recipe(params: Params, key: str) -> tuple[Recipe, catalog.Shape]:
    """The memory-relevant settings of a training recipe (``kit.config.training_recipes``) on the agents' model."""
    from kit.config import training_recipes
    from kit.train.recipes import LORA_DEFAULTS, TRAINERS, TRL_DEFAULTS

    recipe, methods, per_method = training_recipes(params)[key]
    trl = {**TRL_DEFAULTS, **recipe.trl}
    lora = {**LORA_DEFAULTS, **recipe.lora}
    shape = _shape(params.model)
    widest, rows = 0, 1
    for method in methods:
        spec = TRAINERS.get(method)
        keys = {**spec.defaults, **trl, **per_method.get(method, {})}
        if spec.online:
            tokens = int(keys.get("max_prompt_length") or 512) + int(keys.get("max_completion_length", 256))
            if key == "selfplay.policy":  # a whole dialogue: the setting plus every turn of both sides
                sp = params.selfplay
                tokens = 512 + sp.max_turns * sp.turn_tokens
        else:
            tokens = int(keys.get("max_length", 1024))
        widest = max(widest, tokens)
        rows = max(rows, 2 if spec.preference else 1)
    bf16 = trl.get("bf16") is True or (trl.get("bf16") == "auto" and params.model.device != "cpu")
    ckpt = bool(trl.get("gradient_checkpointing") or trl.get("activation_checkpointing"))
    io = None
    if lora.get("target_modules") not in (None, "all-linear") and shape.hidden and shape.intermediate:
        io = sum(
            {
                "gate_proj": shape.hidden + shape.intermediate,
                "up_proj": shape.hidden + shape.intermediate,
                "down_proj": shape.intermediate + shape.hidden,
            }.get(t, 2 * shape.hidden)
            for t in lora["target_modules"]
        )
    batch = max(int(trl.get("per_device_train_batch_size", 1)), 1)
    return Recipe("/".join(methods), bf16, ckpt, batch, widest, int(lora.get("r", 8)), io, rows), shape


def _merge_shapes(params: Params) -> dict[str, catalog.Shape]:
    base = _shape(params.model)
    moe = moe_recipe_shared(params)
    return {"ties": base, "model_stock": base, "moe": catalog.moe_shape(base, 5, moe)}


def moe_recipe_shared(params: Params) -> bool:
    """Whether the profile's MoE recipe has a shared expert (mergekit's Qwen MoE output does)."""
    import yaml

    from kit.run.paths import resolve

    recipe = yaml.safe_load(resolve(params.palette.merges["moe"]).read_text())
    return bool(recipe.get("shared_experts"))


def part_need(params: Params, part: Part, gpu_gib: float, on_gpu: bool) -> Need | None:
    """The memory of one part (None: nothing on this machine, e.g. a role served from another node)."""
    if part.kind in ("engine", "merged"):
        model = (
            params.role_model("palette_merged")
            if part.kind == "merged"
            else params.model
            if part.key == "model"
            else params.role_model(part.key)
        )
        if model.backend == "openai" and not model.devices:
            return None
        shape = _merge_shapes(params)[part.key] if part.kind == "merged" else _shape(model)
        if model.backend in ("vllm", "openai") and on_gpu:
            return memory.engine(shape, model, gpu_gib)
        return memory.hf_inference(shape, model, on_gpu)
    if part.kind == "harness":  # lm-eval's model: the profile's (one adapter) or a merged one, on its backend
        merged = part.key in MERGES
        model = params.role_model("palette_merged") if merged else params.model
        shape = _merge_shapes(params)[part.key] if merged else _shape(model)
        if model.backend == "vllm" and on_gpu:
            return memory.engine(shape, model.model_copy(update={"max_loras": 1}), gpu_gib)
        return memory.hf_inference(shape, model, on_gpu)
    if part.kind == "trainer":
        recipe, shape = _recipe(params, part.key)
        return memory.trainer(shape, recipe, on_gpu)
    if part.kind == "merge":
        base = _shape(params.model)
        return memory.merge([base] * 5, base, hidden_states=part.key == "moe")
    if part.kind == "router":
        return memory.router(_merge_shapes(params)["moe"], "bfloat16" if on_gpu else "float32")
    if part.kind == "embedder":
        return memory.encoder(catalog.shape(_embedder_name(params.embedder.name)), params.embedder.batch_size)
    if part.kind == "cross-encoder":
        from kit.evals.nli import CROSS_ENCODER

        name = params.models["nli"].name if "nli" in params.models else CROSS_ENCODER
        return memory.encoder(catalog.shape(name), 32, 512)
    raise ValueError(f"unknown part {part}")


def _embedder_name(name: str) -> str:
    from kit.embed import PACKAGED, resolve_embedder

    return resolve_embedder(name)[0] if name in PACKAGED else name


def devices_of(params: Params, part: Part) -> list[int]:
    """The GPUs a part occupies: a role's ``devices`` (or its first ``tensor_parallel_size`` GPUs); GPU 0 else."""
    if part.kind == "engine":
        model = params.model if part.key == "model" else params.role_model(part.key)
        return list(model.devices or range(model.tensor_parallel_size))
    if part.kind == "merged":
        model = params.role_model("palette_merged")
        return list(model.devices or range(model.tensor_parallel_size))
    if (
        part.kind == "harness"
    ):  # lm-eval's own engine: the first GPUs, as many as the model's tensor parallelism
        model = params.role_model("palette_merged") if part.key in MERGES else params.model
        return list(range(model.tensor_parallel_size)) if model.backend == "vllm" else [0]
    return [0]


def make_plan(params: Params, gpus: int | None = None, gpu_gb: float | None = None) -> Plan:
    """The plan of ``params`` on ``gpus`` GPUs of ``gpu_gb`` GiB each (None: this machine's), or of host memory
    for a profile that runs on the CPU."""
    device = params.model.device
    on_gpu = device.startswith("cuda") or (device == "auto" and bool(gpus or visible_gpus()))
    if on_gpu:
        if gpus is None or gpu_gb is None:
            found = visible_gpus()
            gpus = gpus if gpus is not None else len(found)
            gpu_gb = gpu_gb if gpu_gb is not None else (min(found) if found else 0.0)
        device, budget = "cuda", float(gpu_gb)
    else:
        device, gpus, budget = "cpu", 0, float(gpu_gb) if gpu_gb else host_gib()
    plan = Plan(params, device, gpus, budget)
    if on_gpu and gpus == 0:
        plan.problems.append(
            "no GPU is visible and the profile runs on cuda; fix: run on a GPU node, or plan for one "
            "with --gpus N --gpu-gb G"
        )
        return plan
    for stages in notebook_stages(params).values():
        kept: list[Part] = []  # encoders an earlier stage of the notebook loaded: they stay (kit.plan.stages)
        for stage in stages:
            by_device: dict[int, tuple[list[Need], list[Need]]] = {}
            carried = tuple(p for p in kept if p not in stage.parts)
            kept += [p for p in stage.parts if p.kind in ENCODERS and p not in kept]
            for group, parts in ((0, stage.parts + carried), (1, stage.swap)):
                for part in parts:
                    need = part_need(params, part, budget, on_gpu)
                    if need is None:
                        continue
                    for d in devices_of(params, part) if on_gpu else [0]:
                        if on_gpu and d >= gpus:
                            plan.problems.append(
                                f"notebook {stage.notebook} stage '{stage.name}': {part} is placed on "
                                f"GPU {d}, but {gpus} GPU(s) are visible; fix: models.<role>.devices "
                                f"within 0…{gpus - 1}"
                            )
                            continue
                        by_device.setdefault(d, ([], []))[group].append(need)
            for d, (needs, swap) in sorted(by_device.items()):
                base = memory.PROCESS_CONTEXT_GIB if on_gpu else PROCESS_RSS_GIB
                plan.stages.append(
                    StagePlan(stage, f"cuda:{d}" if on_gpu else "cpu", needs, swap, budget, base)
                )
    return plan


def recipe_batches(params: Params, gpu_gb: float) -> dict[str, dict[str, int]]:
    """For every training recipe: its micro-batch and accumulation now, and the plan's choice — the largest
    power-of-two micro-batch that divides the effective batch (``per_device_train_batch_size x
    gradient_accumulation_steps``) and fits its stage beside the parts resident with it on one GPU of ``gpu_gb``."""
    from kit.config import training_recipes

    out = {}
    stages = {
        p.key: st
        for sts in notebook_stages(params).values()
        for st in sts
        for p in st.parts
        if p.kind == "trainer"
    }
    for key in training_recipes(params):
        if key not in stages:
            continue
        recipe, _, _ = training_recipes(params)[key]
        trl = recipe.trl
        batch, accum = (
            int(trl.get("per_device_train_batch_size", 2)),
            int(trl.get("gradient_accumulation_steps", 1)),
        )
        effective = batch * accum
        others = sum(
            n.gib
            for part in stages[key].parts
            if part.kind != "trainer" and 0 in devices_of(params, part)
            for n in [part_need(params, part, gpu_gb, True)]
            if n is not None
        )  # the trainer's GPU: 0
        usable = gpu_gb * (1 - memory.HEADROOM) - memory.PROCESS_CONTEXT_GIB - others
        chosen, size = 0, 1
        while size <= effective:
            if effective % size == 0:
                rec, shape = _recipe(params, key)
                rec = Recipe(
                    rec.method,
                    rec.bf16,
                    rec.checkpointing,
                    size,
                    rec.tokens,
                    rec.lora_r,
                    rec.lora_linear_io,
                    rec.sequences_per_example,
                )
                if memory.trainer(shape, rec).gib <= usable:
                    chosen = size
            size *= 2
        out[key] = {
            "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": accum,
            "planned_batch": chosen,
            "planned_accumulation": effective // chosen if chosen else 0,
        }
    return out


def visible_gpus() -> list[float]:
    """Total memory (GiB) of each visible CUDA GPU; none without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(i).total_memory / GiB for i in range(torch.cuda.device_count())]


def host_gib() -> float:
    """This machine's physical memory in GiB."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB


def disk_gib(params: Params) -> dict[str, float]:
    """Disk a run of ``params`` writes (run folder) and downloads (hub cache), GiB: merged models, mergekit's LoRA
    extractions (each continent merged into the base), the hub weights of every local model."""
    base = _shape(params.model)
    b = memory.BYTES.get(params.model.dtype, 2)
    shapes = _merge_shapes(params)
    merges = sum(s.params for s in shapes.values()) * b / GiB
    lora_cache = 5 * base.params * b / GiB
    names = {m.name for m in [params.model, *params.models.values()] if m.backend != "openai"}
    hub = sum(
        catalog.shape(n, None, None).params * 2 / GiB
        for n in names
        if "/" in n and not Path(n).exists() and (n in catalog.ARCHITECTURES or _cached(n))
    )
    return {"run folder": round(merges + lora_cache + 5.0, 1), "hub cache": round(hub, 1)}


def _cached(name: str) -> bool:
    try:
        catalog.shape(name)
    except ValueError:
        return False
    return True
