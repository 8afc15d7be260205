"""Run the numbered notebooks headless with papermill, one profile at a time."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kit.config import PARAMS_ENV, Params
from kit.run import lock, paths, secrets, tracking

KERNEL = "agora-kit"
# Progress bars inside a papermill kernel write every update into the saved notebook.
QUIET_ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted((paths.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        unknown = [o for o in only if not any(nb.name.startswith(o) for nb in found)]
        if unknown:
            raise ValueError(
                f"--only {','.join(unknown)}: no such notebook; have {', '.join(nb.name[:2] for nb in found)}"
            )
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


def ensure_kernel(name: str = KERNEL) -> str:
    """Register this interpreter as a Jupyter kernel once, so papermill runs notebooks in it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        # not resolve(): every virtualenv's python links to the same interpreter binary
        if Path(spec.argv[0]).absolute() == Path(sys.executable).absolute():
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=name, display_name="Python (agora-kit)", prefix=sys.prefix)
    return name


def local_kernel_manager():
    """A kernel manager whose kernels talk over IPC sockets in a private temp folder.

    The kernel runs on this machine, so a TCP port (plain text, and ipykernel's warning about it in
    every run's output) buys nothing; the socket files go to a temp folder, not the project root.
    """
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _ipc(self) -> str:
            return "ipc"

        @default("ip")
        def _socket_prefix(self) -> str:
            return str(Path(tempfile.mkdtemp(prefix="agora-kernel-")) / "kernel")

    return LocalKernelManager


RUN_PARAMS = "params.yaml"  # in the run folder: the params the notebooks of the latest run read (kit run, as validated)


def run_params_file(params: Params) -> str:
    """Write ``params`` as the run folder's params file; returns its path (from the project root where inside it).

    JSON, which YAML reads as written (quoted strings stay strings), so a notebook reading it gets ``params``
    exactly, ``--set`` overrides and all."""
    from kit.run.files import atomic_write_text

    path = atomic_write_text(
        params.run_dir / RUN_PARAMS,
        "# the params python -m kit run gave the notebooks, "
        "validated (kit.runner)\n" + json.dumps(params.sections(), indent=1) + "\n",
    )
    path = path.resolve()
    return str(path.relative_to(paths.ROOT) if path.is_relative_to(paths.ROOT) else path)


def notebook_values(notebook: Path, params: Params, profile: str | None = None) -> dict:
    """What papermill injects: ``profile`` (the run's params file, :func:`run_params_file`) and, for every other
    variable of the notebook's parameters cell named like a top-level key, ``params``' value in the cell's shape
    (a section's keys the cell shows, nested as it shows them), so the cell's own literals never rule a run."""
    import ast

    import papermill as pm

    sections = params.sections()
    values = {"profile": profile or run_params_file(params)}
    for name, spec in pm.inspect_notebook(str(notebook)).items():
        if name != "profile" and name in sections:
            try:
                shape = ast.literal_eval(spec["default"])
            except (ValueError, SyntaxError):
                shape = None
            values[name] = _shaped(sections[name], shape)
    return values


def read_sections(notebook: Path, params: Params) -> dict:
    """The sections the notebook reads (its ``from_notebook`` call: ``profile``, ``runs_dir``, the names it lists
    and the ones its parameters cell shows), at ``params``' values: what it ran with, for the manifest. Every
    section where no such call is found."""
    import ast

    import nbformat

    sections = params.sections()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code" or "from_notebook(" not in cell.source:
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "from_notebook":
                listed = (
                    node.args[1].value.split()
                    if len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                    else []
                )
                names = ["profile", "runs_dir", *listed, *(k.arg for k in node.keywords if k.arg)]
                return {k: sections[k] for k in dict.fromkeys(names) if k in sections}
    return sections


def _shaped(value, shape):
    """``value`` cut to the keys of ``shape`` where both are mappings (all of it elsewhere)."""
    if isinstance(value, dict) and isinstance(shape, dict):
        return {k: _shaped(value[k], shape[k]) for k in shape if k in value}
    return value


def execute(notebook: Path, out: Path, params: Params, kernel: str = KERNEL, progress: bool = False) -> float:
    """Execute one notebook with the run's params file and the values its parameters cell shows injected;
    returns seconds taken.

    ``progress`` shows a bar of executed cells on stderr while it runs."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(QUIET_ENV)
    os.environ.pop(PARAMS_ENV, None)  # the injected params file rules a headless run, not AGORA_PARAMS
    values = notebook_values(notebook, params)
    start = time.perf_counter()
    # The bar (cells done of all, elapsed) is drawn here, on the terminal; the kernel's own bars
    # stay off (QUIET_ENV), so the executed notebook holds no progress output.
    bar = {"disable": not progress, "desc": f"  {notebook.stem}", "leave": True, "file": sys.stderr}
    # cell_timeout_s: a hung cell fails the notebook (papermill's execution_timeout) instead of holding the run
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters=values,
        kernel_name=kernel,
        progress_bar=bar,
        log_output=False,
        cwd=str(paths.ROOT),
        kernel_manager_class=local_kernel_manager(),
        execution_timeout=params.cell_timeout_s,
    )
    return time.perf_counter() - start


def run(params: Params, params_path: str, only: list[str] | None = None) -> int:
    from kit.run.files import read_json
    from kit.run.records import MANIFEST, git_info, write_manifest
    from kit.tools.doctor import served_problems

    code = git_info()  # the code the notebooks run, taken before any of them writes into the checkout
    selected = notebooks(only)
    refused = plan_refusals(params, [nb.name[:2] for nb in selected])
    if refused:
        for line in refused:
            print(f"refused: {line}", file=sys.stderr)
        print(
            "the memory plan says this profile does not fit the visible GPUs (python -m kit plan "
            f"{params_path}); nothing was run",
            file=sys.stderr,
        )
        return 2
    refused = served_problems(params)  # a served role lacking a verb stops here, before any model call
    if refused:
        print(
            f"error: {params_path}: {refused[0]}"
            + (f" [+{len(refused) - 1} more]" if len(refused) > 1 else ""),
            file=sys.stderr,
        )
        return 2
    lock.hold(params.run_dir)  # held through every notebook; their kernels inherit it
    kernel = ensure_kernel()
    out_dir = params.run_dir / "notebooks"
    print(f"profile {params.profile}: {len(selected)} notebook(s) -> {out_dir}", flush=True)
    status = 0
    ran: dict[str, dict] = {}  # per notebook: what it ran with, how it ended
    for nb in selected:
        values = secrets.redact(read_sections(nb, params))
        try:
            seconds = execute(nb, out_dir / nb.name, params, kernel, progress=True)
            print(f"  {nb.name} done in {seconds:.0f}s", flush=True)
            ran[nb.stem] = {"status": "ran", "seconds": round(seconds, 1), "params": values}
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            print(secrets.scrub(f"  {nb.name} FAILED: {last}"), flush=True)
            print(f"    see the partly executed notebook: {out_dir / nb.name}", flush=True)
            ran[nb.stem] = {"status": "failed", "params": values}
            status = 1
            break
    # notebooks not run this time keep what the last manifest recorded of them (--only, a stop on failure)
    notebooks_ = {**(read_json(params.run_dir / MANIFEST) or {}).get("notebooks", {}), **ran}
    manifest = write_manifest(
        params.run_dir,
        params.sections(),
        seeds={"seed": params.seed},
        extra={"params_file": params_path, "selected": [nb.name for nb in selected]},
        notebooks=dict(sorted(notebooks_.items())),
        git=code,
    )
    print(f"executed notebooks: {out_dir}\nfigures: {params.run_dir / 'figures'}\nmanifest: {manifest}")
    if params.tracking.backend != "none":
        how = f" (python -m kit track {params_path})" if params.tracking.backend == "trackio" else ""
        print(
            f"tracked ({params.tracking.backend}, project {params.tracking.project}): "
            f"{params.run_dir / tracking.STORE}{how}"
        )
    print(summary(params.run_dir))
    return status


def plan_refusals(params: Params, notebook_numbers: list[str]) -> list[str]:
    """The memory plan's refusals for the selected notebooks on this machine's GPUs (none for a CPU profile)."""
    from kit.plan import make_plan, visible_gpus

    device = params.model.device
    if not (device.startswith("cuda") or (device == "auto" and visible_gpus())):
        return []
    plan = make_plan(params)
    if plan.device != "cuda":
        return []
    return [
        line
        for line in plan.refusals()
        if not line.startswith("notebook ") or line.split()[1] in notebook_numbers
    ]


def summary(run_dir: Path) -> str:
    """A short table of every notebook's recorded key numbers."""
    lines = ["key numbers:"]
    for f in sorted((run_dir / "metrics").glob("*.json")):
        metrics = json.loads(f.read_text())
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
        lines.append(f"  {f.stem:<28} " + "  ".join(f"{k}={_fmt(v)}" for k, v in flat.items()))
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
