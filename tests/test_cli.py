"""The command line: check, bench's last-line JSON, run's notebook selection."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.runner import notebooks

ROOT = Path(__file__).resolve().parents[1]


def test_check_ok(shared_data):
    out = subprocess.run([sys.executable, "-m", "kit", "check", "params/tiny.yaml"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "ok" in out.stdout


def test_bench_generate_prints_json_last(shared_data):
    out = subprocess.run([sys.executable, "-m", "kit", "bench", "generate", "--params", "params/tiny.yaml",
                          "--set", "bench.max_new_tokens=4"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("batched_tok_s", "sequential_tok_s", "raw_tok_s", "batched_vs_sequential", "overhead_vs_raw",
                "cached_rerun_speedup"):
        assert isinstance(result[key], (int, float)) and result[key] == result[key]
    assert result["cached_rerun_speedup"] > 1


def test_only_selects_notebooks():
    assert [nb.name[:2] for nb in notebooks(["00"])] == ["00"]
    with pytest.raises(ValueError, match="no such notebook"):
        notebooks(["99"])
