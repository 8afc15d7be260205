"""The GPU stack's versions, tested on CPU: pip's resolution of the ``gpu`` extra as constraints.

On GPU nodes ``pip install -e .[gpu,dev]`` resolves vLLM's own pins (vLLM 0.31.0 caps transformers
below 5.18), so the kit there meets other versions than the CPU environment's. ``make
test-gpu-stack`` asks pip for that resolution (``pip install --dry-run --report``), turns it into
constraints without vLLM and the CUDA-only packages (:func:`constraints`), installs the kit under
them into ``.venv-gpu-stack`` and runs the tests there::

    python -m kit.stack resolved.json > constraints.txt
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# vLLM itself, and what only a CUDA machine installs or needs; torch is pinned by the Makefile (CPU build)
EXCLUDED = re.compile(r"^(vllm|torch|torchvision|torchaudio|triton|xformers|nvidia-.*|cupy.*|flashinfer.*|"
                      r"xgrammar|compressed-tensors|depyf|ray|cuda-.*|agora-kit)$")


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
    if len(argv) != 1:
        print("usage: python -m kit.stack RESOLVED.json  (from pip install --dry-run --report)", file=sys.stderr)
        return 2
    print("\n".join(constraints(json.loads(Path(argv[0]).read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
