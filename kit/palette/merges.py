"""Merging the continent agents with mergekit: TIES, Model Stock, and the Cultural MoErges MoE.

Recipes are mergekit's own YAML (``params/merges/*.yml``) with placeholders the kit fills in:
``{base}`` (the base model folder) and ``{Africa}`` … ``{Oceania}`` (for TIES and Model Stock each
continent's LoRA adapter, referenced as ``base+adapter`` so mergekit applies it; for the MoE each
continent agent merged into the base, since mergekit-moe reads full models). A merged model is a
model folder the backend serves as its own model (its identity hashes the folder). Each output
carries the fingerprint of its rendered recipe and inputs (the base model's identity, each adapter's
content) and is rebuilt only when they change.

mergekit keeps each adapter merged into the base in a LoRA cache it reuses by *path*. The kit gives
it a cache folder named by the base's identity and the adapters' contents, filled in a temporary
folder and renamed into place only after a merge succeeded, and removes every other cache folder
when it builds: a retrained adapter is never read from an old extraction, a killed merge leaves
nothing that is reused.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from kit.llm.models import adapter_fingerprint, resolve_model
from kit.run import artifacts
from kit.run.cost import peak_rss_gb
from kit.run.paths import resolve

log = logging.getLogger(__name__)

STAMP = "agora.merge.json"


def render(recipe_path: str | Path, values: Mapping[str, str]) -> dict[str, Any]:
    """The recipe at ``recipe_path`` with every ``{name}`` in its strings filled from ``values``."""

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            try:
                return node.format_map(values)
            except KeyError as e:
                raise ValueError(
                    f"{recipe_path}: unknown placeholder {e}; use {{base}} and the continents"
                ) from None
        if isinstance(node, list):
            return [fill(n) for n in node]
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        return node

    return fill(yaml.safe_load(Path(recipe_path).read_text()))


def _built(out: Path, parts: Mapping[str, Any], what: str) -> bool:
    return (out / "config.json").is_file() and artifacts.reusable(out / STAMP, parts, what)


def _inputs(base: str, adapters: Mapping[str, str]) -> dict[str, Any]:
    return {
        "base": resolve_model(base).identity,
        "adapters": {c: adapter_fingerprint(a) for c, a in sorted(adapters.items())},
    }


def _publish(out: Path, parts: Mapping[str, Any], cache: Path, build, *args: Any) -> None:
    """``build(folder, *args, lora_cache)`` into a fresh ``out`` in a child process, then stamp it with its cost.

    A fresh process returns mergekit's memory to the system when it ends, and the peak it reports is
    the merge's own, not that of the notebook which trained the agents before.
    """
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    key = artifacts.fingerprint(parts["inputs"])
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.iterdir():  # other inputs' extractions, and what a killed merge left
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    done = cache / key
    lora_cache = done if done.is_dir() else Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}-"))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_quiet,
            initargs=(str(out.parent / f"{out.name}.log"),),
        ) as pool:
            cost = pool.submit(build, str(out), *args, str(lora_cache)).result()
    except BaseException:
        if lora_cache != done:
            shutil.rmtree(lora_cache, ignore_errors=True)
        raise
    if lora_cache != done:
        lora_cache.rename(done)  # whole, or not there
    artifacts.stamp(
        out / STAMP, parts, seconds=round(cost["seconds"], 2), peak_rss_gb=round(cost["peak_rss_gb"], 3)
    )


def _quiet(log_path: str) -> None:
    """The merge process's library warnings and logging go to ``<model>.log`` beside the model, not the
    terminal of ``make run`` (mergekit logs through the root logger)."""
    import logging
    import os
    import sys

    handle = open(log_path, "a", buffering=1)
    os.dup2(handle.fileno(), 2)  # what C code and tqdm write to stderr, too
    sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, force=True)
    logging.captureWarnings(True)


def _cost(start: float) -> dict[str, float]:
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # mergekit merges tensor by tensor on either


def _options(cache: Path):
    from mergekit.merge import MergeOptions

    return MergeOptions(device=_device(), quiet=True, lora_merge_cache=str(cache), write_model_card=False)


def merge(
    name: str, recipe_path: str | Path, base: str, adapters: Mapping[str, str], out: Path, cache: Path
) -> dict[str, Any]:
    """A TIES / Model Stock (any ``run_merge`` method) merge of the adapters into ``out``; returns its stamp.
    ``cache`` holds mergekit's LoRA extractions (see the module's note)."""
    from mergekit.config import MergeConfiguration

    config = render(recipe_path, {"base": base, **adapters})
    parts = {"recipe": config, "inputs": _inputs(base, adapters)}
    if not _built(out, parts, f"the {name} merge"):
        try:
            MergeConfiguration.model_validate(config)
        except Exception as e:  # pydantic's error names the bad field
            raise ValueError(f"{recipe_path}: not a mergekit recipe: {str(e).splitlines()[0]}") from None
        log.info("merging %s into %s", name, out)
        _publish(out, parts, Path(cache), _run_merge, config)
    return artifacts.read_stamp(out / STAMP)


def _run_merge(folder: str, config: dict, cache: str) -> dict[str, float]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge

    start = time.perf_counter()
    run_merge(MergeConfiguration.model_validate(config), folder, options=_options(Path(cache)))
    return _cost(start)


def merged_experts(base: str, adapters: Mapping[str, str], cache: Path) -> dict[str, str]:
    """Each adapter merged into the base as a full model folder (mergekit's own LoRA merge, cached)."""
    from mergekit.common import ModelReference

    return {
        c: ModelReference.parse(f"{base}+{a}").merged(cache_dir=str(cache)).model.path
        for c, a in adapters.items()
    }


def build_moe(
    recipe_path: str | Path, base: str, adapters: Mapping[str, str], out: Path, cache: Path
) -> dict[str, Any]:
    """The Cultural MoErges model (mergekit-moe, ``gate_mode: hidden``) into ``out``; returns its stamp.

    mergekit-moe exits the process on a bad config (``sys.exit``); that becomes a one-line ValueError.
    """
    from mergekit.moe.config import MoEMergeConfig

    placeholders = render(recipe_path, {"base": base, **{c: f"<{c}>" for c in adapters}})
    parts = {"recipe": placeholders, "inputs": _inputs(base, adapters)}
    if not _built(out, parts, "the MoE merge"):
        try:
            MoEMergeConfig.model_validate(placeholders)
        except Exception as e:
            raise ValueError(f"{recipe_path}: not a mergekit-moe recipe: {str(e).splitlines()[0]}") from None
        log.info("building the MoE into %s", out)
        _publish(out, parts, Path(cache), _run_moe, str(recipe_path), base, dict(adapters))
    return artifacts.read_stamp(out / STAMP)


def _run_moe(
    folder: str, recipe_path: str, base: str, adapters: dict[str, str], cache: str
) -> dict[str, float]:
    from mergekit.moe.config import MoEMergeConfig
    from mergekit.scripts.moe import build

    start = time.perf_counter()
    config = MoEMergeConfig.model_validate(
        render(recipe_path, {"base": base, **merged_experts(base, adapters, Path(cache))})
    )
    with _mergekit_messages() as said:
        try:
            build(config, folder, _options(Path(cache)), device=_device(), verbose=True)
        except SystemExit:
            raise ValueError(f"{recipe_path}: mergekit-moe refused the recipe: {said()}") from None
    return _cost(start)


class _Said(logging.Handler):
    """What mergekit logged at WARNING or above, in order (it explains a refusal there, then exits)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage().strip())


@contextmanager
def _mergekit_messages() -> Iterator[Callable[[], str]]:
    handler = _Said()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield (
            lambda: (
                "; ".join(dict.fromkeys(line for line in handler.lines if line and not line.startswith("*")))[
                    :600
                ]
                or "no reason given (see the merge's .log)"
            )
        )
    finally:
        root.removeHandler(handler)


def check_moe(recipe_path: str | Path, base: str, revision: str | None = None) -> None:
    """Raise ValueError, with mergekit's own reasons, when mergekit-moe has no output architecture for
    ``recipe_path`` on a base model like ``base`` — before anything trains. The continent agents are the base
    plus a LoRA, so every input has the base's architecture: the recipe is checked with the base's config
    standing for every model (its ``config.json`` from a folder, the hub cache or ``kit.plan.catalog``)."""
    import tempfile

    from mergekit.moe import ALL_OUTPUT_ARCHITECTURES
    from mergekit.moe.config import MoEMergeConfig, is_bad_config

    from kit.plan.catalog import _config

    config, _ = _config(base, revision)
    if config is None:
        return  # nothing known of the base here: mergekit checks it when it builds
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        names = yaml.safe_load(Path(recipe_path).read_text())
        rendered = render(recipe_path, {"base": tmp, **{c: tmp for c in _placeholders(names)}})
        try:
            moe = MoEMergeConfig.model_validate(rendered)
        except Exception as e:
            raise ValueError(f"{recipe_path}: not a mergekit-moe recipe: {str(e).splitlines()[0]}") from None
        with _mergekit_messages() as said:
            if is_bad_config(moe, allow_all_same=True):
                raise ValueError(f"{recipe_path}: mergekit-moe refuses it: {said()}")
            wanted = [
                a
                for a in ALL_OUTPUT_ARCHITECTURES
                if not moe.architecture or a.name().lower().startswith(moe.architecture.lower())
            ]
            if not any(a.supports_config(moe, explain=True) for a in wanted):
                shown = ", ".join(a.name() for a in wanted) or f"none named {moe.architecture!r}"
                raise ValueError(
                    f"{recipe_path}: mergekit-moe has no output architecture for a {config.model_type} base "
                    f"({shown}: {said()}); fix: the recipe for this base family "
                    f"({'params/merges/moe_qwen.yml' if config.model_type == 'qwen2' else 'params/merges/moe.yml'})"
                )


def _placeholders(node: Any) -> set[str]:
    """The ``{name}`` placeholders of a recipe's strings."""
    import string

    if isinstance(node, str):
        return {f for _, f, _, _ in string.Formatter().parse(node) if f}
    if isinstance(node, list):
        return {p for n in node for p in _placeholders(n)}
    if isinstance(node, dict):
        return {p for v in node.values() for p in _placeholders(v)}
    return set()


def router_shares(moe_path: str | Path, prompts: Mapping[str, Sequence[str]], experts: Sequence[str]):
    """The share of tokens each expert is routed first, per group of prompts (rows) and expert (columns),
    over every token and every layer of the MoE model. Routing decisions, not the router's mean
    probabilities: a hidden-state gate's logits are small, so its mean softmax sits near uniform even
    where its top-1 choice differs clearly between groups."""
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(moe_path)
    # the MoE in the dtype it was saved in (bfloat16 for the full profile's), placed by accelerate across the GPUs
    # (and host memory past them): never a float32 copy of every expert on the CPU
    placement = {"device_map": "auto"} if torch.cuda.is_available() else {}
    model = AutoModelForCausalLM.from_pretrained(moe_path, dtype="auto", **placement).eval()
    rows = {}
    with torch.inference_mode():
        for group, texts in prompts.items():
            shares = []
            for text in texts:
                inputs = tok(text, return_tensors="pt").to(model.device)
                logits = [layer.float() for layer in model(**inputs, output_router_logits=True).router_logits]
                first = [
                    torch.nn.functional.one_hot(layer.argmax(-1), len(experts)).float().mean(0)
                    for layer in logits
                ]
                shares.append(torch.stack(first).mean(0))  # logits: one (tokens, experts) per layer
            rows[group] = torch.stack(shares).mean(0).tolist()
    return pd.DataFrame(list(rows.values()), index=list(rows), columns=list(experts))


def router_prompts(recipe_paths: Sequence[str | Path]) -> list[str]:
    """Every router prompt (``positive_prompts`` / ``negative_prompts``) the merge recipes hold, for the leak counts."""

    def walk(node: Any) -> list[str]:
        if isinstance(node, Mapping):
            return [
                t
                for k, v in node.items()
                for t in ([*v] if k in ("positive_prompts", "negative_prompts") else walk(v))
            ]
        return [t for v in node for t in walk(v)] if isinstance(node, list) else []

    return [
        t for path in recipe_paths for t in walk(yaml.safe_load(resolve(path).read_text(encoding="utf-8")))
    ]


# One TIES merge by hand (notebook 11's lesson): the task vectors of two adapters, and mergekit's TIES on them.


def lora_modules(adapter_dir: str | Path) -> list[str]:
    """The weights a PEFT LoRA adapter changes, as module names (``model.layers.0.mlp.down_proj``)."""
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="np") as f:
        keys = list(f.keys())
    return sorted(
        k.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        for k in keys
        if k.endswith(".lora_A.weight")
    )


def lora_delta(adapter_dir: str | Path, module: str):
    """The change ``(alpha / r) · B · A`` (``alpha / sqrt(r)`` with rsLoRA) a LoRA adapter makes to the weight of
    ``module`` (a name or its tail: ``layers.0.mlp.down_proj``), as a float32 array of the weight's shape: the
    adapter's task vector for that weight, which TIES merges."""
    import json
    import math

    import numpy as np
    from safetensors import safe_open

    folder = Path(adapter_dir)
    config = json.loads((folder / "adapter_config.json").read_text())
    found = [m for m in lora_modules(folder) if m == module or m.endswith(f".{module}")]
    if len(found) != 1:
        raise ValueError(
            f"{folder}: {len(found)} LoRA weights match {module!r}; fix: one of {lora_modules(folder)[:6]} …"
        )
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    with safe_open(str(folder / "adapter_model.safetensors"), framework="np") as f:
        a = f.get_tensor(f"base_model.model.{found[0]}.lora_A.weight").astype(np.float32)
        b = f.get_tensor(f"base_model.model.{found[0]}.lora_B.weight").astype(np.float32)
    return (scale * (b @ a)).astype(np.float32)


def mergekit_ties(deltas, density: float, weights=None, normalize: bool = True):
    """mergekit's own TIES (``merge_method: ties``, as ``params/merges/ties.yml`` runs it) on task vectors ``deltas``
    (arrays of one shape) over a zero base: the merged task vector, float32. ``weights`` default to 1 each."""
    import numpy as np
    import torch
    from mergekit.merge_methods.api import merge_tensors

    tensors = [torch.as_tensor(np.asarray(d, dtype=np.float32)) for d in deltas]
    merged = merge_tensors(
        [torch.zeros_like(tensors[0]), *tensors],
        "ties",
        base_index=0,
        parameters={
            "density": float(density),
            "normalize": normalize,
            "weight": [1.0] * len(tensors) if weights is None else list(weights),
        },
        dtype=torch.float32,
    )
    return merged.numpy()
