"""``python -m kit submit PARAMS [--only …] --executor slurm|local``: a study as cluster jobs through submitit.

One job per unit (0x, 1x, 2x, 3x, 9x; with ``--only``, the units, or the notebooks of a unit, it names), each
running ``python -m kit run PARAMS --only <its notebooks>``, with the GPUs, CPUs, memory and wall time the
``cluster`` params section asks for the unit. The jobs follow unit order: 0x first, then 1x, 2x and 3x, then 9x.
On SLURM every job is submitted at once with ``afterok`` dependencies on the units before it, and ``singleton``
(one job of the profile's name at a time), since one run folder has one writer (``kit.run.lock``); the local
executor runs the same jobs one after another, each once those before it finished.

A job killed at its wall time is requeued: SLURM (and submitit's local executor, which plays the cluster) signals
it ``cluster.signal_delay_s`` before the limit; the job stops its ``kit run`` (every process of it) and submitit
submits it again, up to ``cluster.max_requeue`` times, and ``kit run`` resumes where the records, the cache and
the training checkpoints left off. Each attempt is one line in ``runs/<profile>/cluster/attempts.jsonl``;
submitit's scripts and logs are in ``runs/<profile>/cluster/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kit.run import paths
from kit.run.files import atomic_write_text

UNITS = ("0", "1", "2", "3", "9")
ATTEMPTS = "attempts.jsonl"


def after(unit: str) -> tuple[str, ...]:
    """The units a unit's job waits for: 0x before everything, 1x, 2x and 3x before 9x."""
    return {"0": (), "1": ("0",), "2": ("0",), "3": ("0",), "9": ("0", "1", "2", "3")}[unit]


def plan(only: Sequence[str] | None) -> dict[str, list[str]]:
    """Unit -> the notebook numbers its job runs: every notebook, or those ``--only`` names (a unit: ``1``; a
    notebook: ``10``), in unit order."""
    from kit.runner import notebooks

    numbers = [nb.name[:2] for nb in notebooks()]
    chosen = numbers
    if only:
        unknown = [
            o
            for o in only
            if not (len(o) == 1 and any(n.startswith(o) for n in numbers)) and o not in numbers
        ]
        if unknown:
            raise ValueError(
                f"--only {','.join(unknown)}: no such unit or notebook; units {', '.join(UNITS)}, "
                f"notebooks {', '.join(numbers)}"
            )
        chosen = [n for n in numbers if any(n == o or (len(o) == 1 and n.startswith(o)) for o in only)]
    out: dict[str, list[str]] = {}
    for n in chosen:
        out.setdefault(n[0], []).append(n)
    return out


@dataclass
class UnitJob:
    """One unit's job: ``kit run PARAMS --only <notebooks>`` in a child process group; on the cluster's signal before
    the wall time (:meth:`checkpoint`) the group is stopped and submitit requeues the job, which runs it again."""

    unit: str
    notebooks: list[str]
    params_path: str
    overrides: list[str] = field(default_factory=list)
    log: str = ""  # the attempts file
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def command(self) -> list[str]:
        sets = [x for o in self.overrides for x in ("--set", o)]
        return [
            sys.executable,
            "-m",
            "kit",
            "run",
            self.params_path,
            "--only",
            ",".join(self.notebooks),
            *sets,
        ]

    def _note(self, **row) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps({"unit": self.unit, "time": round(time.time(), 3), **row}) + "\n")

    def __call__(self) -> int:
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        self._note(event="start", job=job, pid=os.getpid(), notebooks=self.notebooks)
        # its own process group, so a requeue stops the kernels and merges it started as well
        self._proc = subprocess.Popen(self.command(), cwd=str(paths.ROOT), start_new_session=True)
        code = self._proc.wait()
        self._proc = None
        self._note(event="end", job=job, code=code)
        if code != 0:
            raise RuntimeError(
                f"unit {self.unit}: python -m kit run --only {','.join(self.notebooks)} exited {code}; "
                "see its log in the cluster folder"
            )
        return code

    def checkpoint(self, *args, **kwargs):
        """The wall time is near: stop the run (all of it), and be submitted again; ``kit run`` resumes."""
        import submitit

        self._note(event="requeue")
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc.pid)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __getstate__(self):
        return {**self.__dict__, "_proc": None}


def stop(pid: int, grace_s: float = 30.0) -> None:
    """Stop a ``kit run`` and everything it started (its kernels run in sessions of their own, a merge in a child):
    SIGTERM to each, SIGKILL to what is left after ``grace_s``. Called from a signal handler while the job waits on
    the run, so it reaps with psutil (``os.waitpid``), never ``Popen.wait`` (whose lock the interrupted wait holds)."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def attempts(run_dir: Path) -> list[dict]:
    """The lines every job attempt wrote (start, requeue, end), in order."""
    path = Path(run_dir) / "cluster" / ATTEMPTS
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def slurm_parameters(params, unit: str) -> dict:
    """The sbatch options of a unit's job (submitit's ``SlurmExecutor`` keys) from the ``cluster`` section."""
    c = params.cluster
    out = {
        "job_name": f"agora-{params.profile}",
        "time": int(c.time_min.get(unit, c.default_time_min)),
        "cpus_per_task": c.cpus,
        "mem": f"{c.mem_gb}GB",
        "signal_delay_s": c.signal_delay_s,
        "partition": c.partition,
        "account": c.account,
        "gpus_per_node": c.gpus or None,
    }
    if c.slurm:
        out["additional_parameters"] = dict(c.slurm)
    return {k: v for k, v in out.items() if v is not None}


def _executor(params, kind: str, unit: str, folder: Path):
    import submitit

    c = params.cluster
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder), max_num_timeout=c.max_requeue)
        ex.update_parameters(
            timeout_min=c.time_min.get(unit, c.default_time_min),
            gpus_per_node=c.gpus,
            signal_delay_s=c.signal_delay_s,
        )
        return ex
    ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=c.max_requeue)
    ex.update_parameters(**slurm_parameters(params, unit))
    return ex


@dataclass
class Submission:
    """The unit jobs of one study: on SLURM all submitted; locally each submitted when those before it are done."""

    params: object
    kind: str
    units: dict[str, list[str]]
    params_path: str
    overrides: list[str]
    jobs: dict[str, object] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.params.run_dir / "cluster"

    def _submit(self, unit: str, dependency: str | None = None):
        ex = _executor(self.params, self.kind, unit, self.folder / "%j")
        if dependency:
            ex.update_parameters(dependency=dependency)
        job = ex.submit(
            UnitJob(unit, self.units[unit], self.params_path, self.overrides, str(self.folder / ATTEMPTS))
        )
        self.jobs[unit] = job
        return job

    def start(self) -> Submission:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "slurm":
            for unit in self.units:
                before = [self.jobs[u].job_id for u in after(unit) if u in self.jobs]
                self._submit(unit, ",".join([f"afterok:{':'.join(before)}"] * bool(before) + ["singleton"]))
        else:
            self._submit(next(iter(self.units)))
        return self

    def wait(self) -> dict[str, object]:
        """Every job's result, in unit order (locally: submitting each after those it waits for)."""
        out = {}
        for unit in self.units:
            if unit not in self.jobs:
                self._submit(unit)
            out[unit] = self.jobs[unit].result()
        return out


def submit(
    params, params_path: str, only: Sequence[str] | None, kind: str, overrides: Sequence[str] = ()
) -> Submission:
    if kind not in ("slurm", "local"):
        raise ValueError(f"--executor {kind}: use slurm or local")
    units = plan(only)
    path = str(Path(params_path).resolve())
    return Submission(params, kind, units, path, list(overrides)).start()


def main(params, params_path: str, only: Sequence[str] | None, kind: str, overrides: Sequence[str]) -> int:
    s = submit(params, params_path, only, kind, overrides)
    for unit, job in s.jobs.items():
        print(f"unit {unit}x: job {job.job_id} (python -m kit run --only {','.join(s.units[unit])})")
    print(f"logs: {s.folder}")
    if kind == "slurm":
        atomic_write_text(
            s.folder / "jobs.json", json.dumps({u: j.job_id for u, j in s.jobs.items()}, indent=1)
        )
        return 0
    try:
        s.wait()
    except Exception as e:  # noqa: BLE001 — submitit's FailedJobError carries the job's traceback: its last line
        last = [line for line in str(e).strip().splitlines() if line.strip()]
        print(
            f"error: a unit's job failed: {last[-1] if last else type(e).__name__} (logs: {s.folder})",
            file=sys.stderr,
        )
        return 1
    print("every unit finished")
    return 0
