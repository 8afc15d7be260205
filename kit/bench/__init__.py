"""Benchmarks that print ratios (``python -m kit bench WHAT --params …``), one module each.

Each ``run(params)`` returns a dict the CLI prints as its last line. Timings are wall-clock on
whatever machine runs them; the ratios are what the issues' speed targets are stated in.
"""

from __future__ import annotations

from kit.registry import Registry

BENCHES: Registry = Registry("benchmark")
for _name in ("generate", "choice", "negotiate", "train", "palette", "grpo", "selfplay"):
    BENCHES.register(_name, f"kit.bench.{_name}:run")
