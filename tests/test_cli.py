"""The command line: check, bench's last-line JSON, run's notebook selection."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.runner import notebooks

ROOT = Path(__file__).resolve().parents[1]


def test_check_ok(shared_data):
    out = subprocess.run(
        [sys.executable, "-m", "kit", "check", "params/tiny.yaml"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0 and "ok" in out.stdout


BENCH_KEYS = {
    "generate": (
        "engine_start_s",
        "batched_tok_s",
        "sequential_tok_s",
        "raw_tok_s",
        "batched_vs_sequential",
        "overhead_vs_raw",
        "cached_rerun_speedup",
    ),
    "choice": ("choice_per_s", "generate_per_s", "choice_vs_generate", "choice_vs_single_answer"),
    "negotiate": (
        "engine_start_s",
        "engine_tok_s",
        "sequential_tok_s",
        "raw_tok_s",
        "engine_vs_sequential",
        "overhead_vs_raw",
        "prefill_tokens_saved",
        "engine_processed_tok_s",
        "threads",
    ),
    "selfplay": (
        "engine_tok_s",
        "sequential_tok_s",
        "engine_vs_sequential",
        "grpo_seconds_per_step",
        "peak_rss_gb",
    ),
    "train": ("train_tok_s", "peak_rss_gb"),
    "palette": (
        "synthesis_engine_vs_sequential",
        "meta_engine_vs_sequential",
        "engine_vs_sequential",
        "raw_tok_s",
        "overhead_vs_raw",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", sorted(BENCH_KEYS))
def test_bench_prints_json_last(shared_data, what):
    """Format only: the tiny model's timings mean nothing; the ratios are measured on the smoke model."""
    out = subprocess.run(
        [sys.executable, "-m", "kit", "bench", what, "--params", "params/tiny.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in BENCH_KEYS[what]:
        assert isinstance(result[key], (int, float)) and result[key] == result[key], key
    if what == "generate":
        assert result["cached_rerun_speedup"] > 1
    if what in ("generate", "negotiate"):  # which engine made the numbers, so two runs compare engines
        assert result["backend"] == "transformers" and result["numerics"] == "float32@cpu"


def test_only_selects_notebooks():
    assert [nb.name[:2] for nb in notebooks(["00"])] == ["00"]
    assert [nb.name[:2] for nb in notebooks(["1"])] == ["10", "11", "12"]  # a unit by its decade
    with pytest.raises(ValueError, match="no such notebook"):
        notebooks(["99"])


def test_a_bench_result_is_stored_by_engine(shared_data, tmp_path):
    from kit.config import load_params
    from kit.tools.cli import store_bench

    for backend in ("transformers", "vllm"):
        params = load_params("params/tiny.yaml", [f"runs_dir={tmp_path}", f"model.backend={backend}"])
        store_bench(
            params,
            "generate",
            {"batched_tok_s": 1.0, "backend": backend},
            ["bench", "generate", "--params", "params/tiny.yaml", "--set", f"model.backend={backend}"],
        )
    stored = {p.name: json.loads(p.read_text()) for p in (tmp_path / "tiny" / "bench").glob("*.json")}
    assert sorted(stored) == [
        "generate.json",
        "generate@vllm.json",
    ]  # one engine does not overwrite the other
    assert stored["generate@vllm.json"]["result"]["backend"] == "vllm"
    assert stored["generate@vllm.json"]["command"].endswith("--set model.backend=vllm")
    assert {"machine", "created", "git"} <= set(stored["generate.json"])
