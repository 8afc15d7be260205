"""python -m kit submit (kit/tools/submit.py): one submitit job per unit in unit order (0x → 1x/2x/3x → 9x), the
cluster section's requests in the SLURM script, and — through submitit's local executor, on the tiny profile — two
units run in order, one of them killed at its "wall time" (submitit's signal), requeued, and resumed."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import ROOT


def test_units_their_notebooks_and_their_order():
    from kit.tools.submit import after, plan

    everything = plan(None)
    assert list(everything) == ["0", "1", "2", "3", "9"] and everything["1"] == ["10", "11", "12"]
    assert plan(["0", "32"]) == {"0": ["00", "01", "02", "03", "04", "05"], "3": ["32"]}
    assert after("0") == () and after("2") == ("0",) and after("9") == ("0", "1", "2", "3")
    with pytest.raises(ValueError, match="--only 7: no such unit or notebook"):
        plan(["7"])


def test_the_slurm_script_asks_what_the_cluster_section_says(shared_data, tmp_path):
    """The sbatch script of a unit's job: GPUs, CPUs, memory, wall time, the requeue signal and the dependency on
    the units before it (one job of the profile at a time: one run folder has one writer)."""
    from submitit.slurm.slurm import _make_sbatch_string

    from kit.config import load_params
    from kit.tools.submit import UnitJob, slurm_parameters

    params = load_params(
        ROOT / "params" / "full.yaml",
        [f"runs_dir={tmp_path}", "cluster.partition=gpu", "cluster.slurm={qos: high}"],
    )
    script = _make_sbatch_string(
        "python -m submitit.core._submit",
        str(tmp_path / "%j"),
        **slurm_parameters(params, "1"),
        dependency="afterok:101,singleton",
    )
    for line in (
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=128GB",
        f"#SBATCH --time={int(params.cluster.time_min['1'])}",
        "#SBATCH --signal=USR2@300",
        "#SBATCH --partition=gpu",
        "#SBATCH --qos=high",
        "#SBATCH --job-name=agora-full",
        "#SBATCH --dependency=afterok:101,singleton",
    ):
        assert line in script, line
    job = UnitJob("1", ["10", "11", "12"], "params/full.yaml", ["model.batch_size=4"])
    assert job.command()[3:] == [
        "run",
        "params/full.yaml",
        "--only",
        "10,11,12",
        "--set",
        "model.batch_size=4",
    ]


def test_bad_cluster_params_fail_in_one_line(shared_data):
    from kit.config import ParamsError, load_params

    with pytest.raises(ParamsError, match=r"cluster\.time_min: .*unit '7'"):
        load_params(ROOT / "params" / "tiny.yaml", ["cluster.time_min={7: 10}"])
    with pytest.raises(ParamsError, match=r"cluster: .*signal_delay_s 3000 .*shortest wall time"):
        load_params(ROOT / "params" / "tiny.yaml", ["cluster.signal_delay_s=3000"])


@pytest.mark.slow
def test_two_units_through_the_local_executor_one_killed_requeued_and_resumed(shared_data, tmp_path):
    from kit.config import load_params
    from kit.tools.submit import attempts, submit

    params_file = ROOT / "params" / "tiny.yaml"
    overrides = [f"runs_dir={tmp_path}"]
    params = load_params(params_file, overrides)
    s = submit(params, str(params_file), ["00", "10"], "local", overrides)
    started = params.run_dir / "notebooks" / "00_quickstart.ipynb"
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline:  # papermill writes it as the first cell runs
        time.sleep(0.5)
    assert started.exists(), "unit 0's job never started its notebook"
    # what SLURM (or submitit's local controller) sends the job's task signal_delay_s before its wall time
    os.kill(attempts(params.run_dir)[0]["pid"], signal.SIGUSR2)
    results = s.wait()
    assert results == {"0": 0, "1": 0}
    log = attempts(params.run_dir)
    events = [(a["unit"], a["event"]) for a in log]
    # unit 0 stopped and requeued, then ran to its end; unit 1 started only after that
    assert events == [
        ("0", "start"),
        ("0", "requeue"),
        ("0", "start"),
        ("0", "end"),
        ("1", "start"),
        ("1", "end"),
    ]
    assert all(a["code"] == 0 for a in log if a["event"] == "end")
    for nb in ("00_quickstart", "10_palette_data"):
        assert json.loads((params.run_dir / "metrics" / f"{nb}.json").read_text())["made_by"]
