"""kill -9 anywhere: a run killed at random points of grounding SFT (01), finetuning (04), synthesis (10),
the merges (11), the value detector (20), VISA's GRPO rewriter and its baselines (21) and self-play GRPO (31)
resumes, with nothing lost, nothing doubled and the same numbers as a run never killed.

Every process of the run dies at once (the runner, the notebook's kernel, a merge's child), as when a
node is lost. The kill times are drawn from a fixed seed, each a share of that notebook's
uninterrupted duration, so the points fall in its real work (training steps, checkpoint writes,
cache writes, a merge in flight) and the test is the same on every machine.

The run never killed is the tiny run ``tests/test_notebooks.py`` made (this file sorts after it);
run alone, the test makes those notebooks first.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT

ORDER = ("01", "02", "04", "10", "11", "20", "21", "30", "31")
KILLS = {"01": 1, "04": 2, "10": 1, "11": 2, "20": 1, "21": 1, "31": 1}
# never killed, copied from the run never killed: 02's traces are what 04 trains on, 30's dilemmas what 31 plays
COPIED = {"02": ["records/negotiations"], "30": ["records/selfplay_generated_*.jsonl"]}
# what one call spent, not what it made: seconds, memory, tokens this call trained, where it resumed from
VOLATILE = (
    "seconds",
    "rss",
    "cost",
    "resumed",
    "train_tokens",
    "tokens_per_second",
    "step_seconds",
    "timings",
)


def _command(runs: Path, nb: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kit",
        "run",
        str(ROOT / "params" / "tiny.yaml"),
        "--only",
        nb,
        "--set",
        f"runs_dir={runs}",
    ]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "AGORA_RUN_LOCK"} | {"HF_HUB_OFFLINE": "1"}


def _run(runs: Path, nb: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        _command(runs, nb), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return time.perf_counter() - start


def _kill_after(runs: Path, nb: str, seconds: float) -> bool:
    """Start the notebook and SIGKILL its whole process tree after ``seconds``; False if it ended first."""
    proc = subprocess.Popen(
        _command(runs, nb), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        tree = [
            proc,
            *psutil.Process(proc.pid).children(recursive=True),
        ]  # the kernel runs in its own session
        for p in tree:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        psutil.wait_procs([p for p in tree[1:]], timeout=30)
        return True


def _plain(value):
    """Metrics without what one call spent (``VOLATILE``)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not any(w in k for w in VOLATILE)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _records(run_dir: Path) -> dict[str, list[dict]]:
    return {
        str(f.relative_to(run_dir)): [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        for f in sorted((run_dir / "records").rglob("*.jsonl"))
    }


def _weights(run_dir: Path) -> dict[str, dict]:
    """Every trained adapter's and merged model's tensors."""
    from safetensors.torch import load_file

    found = [
        *run_dir.rglob("adapter_model.safetensors"),
        *(run_dir / "palette" / "models").glob("*/*.safetensors"),
        *run_dir.rglob("detector.safetensors"),
    ]
    return {
        str(f.relative_to(run_dir)): {k: v.tolist() for k, v in load_file(f).items()} for f in sorted(found)
    }


def _name(nb: str) -> str:
    return next(p.stem for p in (ROOT / "notebooks").glob(f"{nb}_*.ipynb"))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # every notebook of ORDER twice or more, on two cores
def test_a_run_killed_at_random_points_resumes_to_the_numbers_of_a_run_never_killed(tmp_path, tiny_params):
    rng = random.Random(31)
    a, runs = tiny_params.run_dir, tmp_path / "killed"
    b = runs / tiny_params.profile
    for nb in ORDER:
        if not (a / "metrics" / f"{_name(nb)}.json").is_file():
            _run(a.parent, nb)
    took = {
        nb: json.loads((a / "metrics" / f"{_name(nb)}.json").read_text())["cost"]["session"]["seconds"]
        for nb in ORDER
    }
    points = []
    for nb in ORDER:
        if nb in COPIED:
            for pattern in COPIED[nb]:
                for found in a.glob(pattern):
                    target = b / found.relative_to(a)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if found.is_dir() else shutil.copy)(found, target)
            (b / "metrics").mkdir(parents=True, exist_ok=True)
            shutil.copy(a / "metrics" / f"{_name(nb)}.json", b / "metrics" / f"{_name(nb)}.json")
            continue
        for _ in range(KILLS[nb]):
            at = 4 + rng.uniform(0.2, 0.9) * took[nb]  # after the kernel's start (~4 s), inside the work
            if _kill_after(runs, nb, at):
                points.append((nb, round(at, 1)))
        _run(runs, nb)
    print(f"\n{len(points)} kill points: {points}")
    assert {nb for nb, _ in points} == set(KILLS)  # every notebook was killed at least once while it ran
    assert len(points) >= len(KILLS)

    for nb in KILLS:
        m_a = _plain(json.loads((a / "metrics" / f"{_name(nb)}.json").read_text()))
        m_b = _plain(json.loads((b / "metrics" / f"{_name(nb)}.json").read_text()))
        assert m_b == m_a, _name(nb)
    stores_a, stores_b = _records(a), _records(b)
    assert stores_b.keys() <= stores_a.keys()  # the never-killed run went on to later notebooks
    for store, rows in stores_b.items():
        ids = [r.get("id") for r in rows]
        assert len(ids) == len(set(ids)), f"{store}: a record written twice"  # nothing doubled
        assert sorted(ids, key=str) == sorted((r.get("id") for r in stores_a[store]), key=str), (
            store
        )  # nothing lost
        by_id = {r.get("id"): r for r in stores_a[store]}
        assert all(_plain(r) == _plain(by_id[r.get("id")]) for r in rows), store
    weights_a, weights_b = _weights(a), _weights(b)
    assert weights_b and weights_b.keys() <= weights_a.keys()
    for f in weights_b:
        assert weights_b[f] == weights_a[f], f  # to the bit
