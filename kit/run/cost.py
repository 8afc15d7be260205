"""What each result cost: model calls, tokens generated and scored, wall seconds and peak memory.

A notebook measures its stages with ``Session.timed(label, row=…)``; every model request the
cached backend serves inside a stage is counted for it (and for every stage it is nested in)::

    with session.timed("train", row="dpo@ncn"):   # a board row's own cost
        ...

Requests are counted whether the cache answers them or the model does, so the numbers say what a
result costs to produce and a rerun from the cache records the same calls and tokens (its wall
seconds are what that run took). ``generated_tokens`` are the tokens of the replies;
``scored_tokens`` the prompt and continuation tokens that ``score`` and ``choice_probs`` read in
their forward passes. Memory is in GiB (``_gb`` keys): the largest resident set size sampled during
the stage (and the peak CUDA allocation on a GPU), so a stage that allocates and frees shows its
real peak.
"""

from __future__ import annotations

import contextvars
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

COUNTERS = ("calls", "generated_tokens", "scored_tokens")
COLUMNS = (*COUNTERS, "seconds", "peak_rss_gb")
_SAMPLE_S = 0.05


@dataclass
class Stage:
    label: str
    row: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    seconds: float = 0.0
    peak_rss_gb: float = 0.0
    peak_gpu_gb: float | None = None  # on a CUDA device only
    models: dict[str, int] = field(default_factory=dict)  # calls per model identity: who made the result

    def as_dict(self) -> dict:
        gpu = {} if self.peak_gpu_gb is None else {"peak_gpu_gb": round(self.peak_gpu_gb, 3)}
        return {
            "stage": self.label,
            "row": self.row,
            **self.counts,
            "seconds": round(self.seconds, 3),
            "peak_rss_gb": round(self.peak_rss_gb, 3),
            **gpu,
            **({"models": dict(self.models)} if self.models else {}),
        }


_active: contextvars.ContextVar[tuple[Stage, ...]] = contextvars.ContextVar("cost_stages", default=())


def measuring() -> bool:
    """Whether a stage is open (counting tokens costs a tokenizer pass, so it is skipped otherwise)."""
    return bool(_active.get())


def count(
    calls: int = 0, generated_tokens: int = 0, scored_tokens: int = 0, model: str | None = None
) -> None:
    """Add model work to every stage now open (no-op outside one); ``model`` names who served the calls."""
    for stage in _active.get():
        if model is not None and calls:
            stage.models[model] = stage.models.get(model, 0) + calls
        stage.counts["calls"] += calls
        stage.counts["generated_tokens"] += generated_tokens
        stage.counts["scored_tokens"] += scored_tokens


def rss_gb() -> float:
    """Resident memory of this process now; the peak so far where /proc is missing (macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3
    except OSError:
        return peak_rss_gb()


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


class _PeakSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = rss_gb(), threading.Event()

    def run(self) -> None:
        while not self._done.wait(_SAMPLE_S):
            self.peak = max(self.peak, rss_gb())

    def finish(self) -> float:
        self._done.set()
        self.join()
        return max(self.peak, rss_gb())


def _cuda_peak_reset() -> bool:
    torch = sys.modules.get("torch")  # never import torch just to measure
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


@contextmanager
def stage(label: str, row: str | None = None) -> Iterator[Stage]:
    """Measure a block: counts of the requests served in it, wall seconds, peak memory."""
    current = Stage(label, row)
    token = _active.set((*_active.get(), current))
    sampler = _PeakSampler()
    sampler.start()
    on_gpu = _cuda_peak_reset()
    start = time.perf_counter()
    try:
        yield current
    finally:
        current.seconds = time.perf_counter() - start
        current.peak_rss_gb = sampler.finish()
        if on_gpu:
            import torch

            current.peak_gpu_gb = torch.cuda.max_memory_allocated() / 1024**3
        _active.reset(token)


def row_costs(stages: list[dict]) -> dict[str, dict]:
    """Per board row: the sum of its stages' counts and seconds, and the largest peak memory."""
    out: dict[str, dict] = {}
    for s in stages:
        if not s.get("row"):
            continue
        acc = out.setdefault(s["row"], dict.fromkeys(COLUMNS, 0))
        for k in (*COUNTERS, "seconds"):
            acc[k] += s.get(k, 0)
        acc["peak_rss_gb"] = max(acc["peak_rss_gb"], s.get("peak_rss_gb", 0))
        for model, calls in (s.get("models") or {}).items():
            acc.setdefault("models", {})[model] = acc.get("models", {}).get(model, 0) + calls
    return {r: {**c, "seconds": round(c["seconds"], 3)} for r, c in out.items()}
