"""Training curves and key numbers in the tracker a researcher already reads: trackio, wandb or mlflow.

``params.tracking`` names the backend and the project. Every trl trainer reports to it through trl's own
``report_to`` (:func:`trainer_args`, read by ``kit.train.trainers.train``), and every notebook logs its key
numbers and the run's fingerprint to the same project (:meth:`Tracker.log_numbers`, called by
``Session.record_metrics``). Runs are named by profile, notebook and fingerprint:
``<profile>-<notebook>-<what>-<fingerprint>`` — a trainer's ``what`` is its folder in the run folder and its
fingerprint the training's (``kit.train.trainers.train_parts``), so a resumed training continues its own run;
a notebook's ``what`` is ``key_numbers`` and its fingerprint the params it ran with (``artifacts.made_by``).

Where the runs are kept, by backend:

- ``trackio``: local-first, a SQLite store in ``runs/<profile>/tracking/`` (``TRACKIO_DIR``, set before trackio
  is imported: it reads it once); ``python -m kit track P`` serves its dashboard on 127.0.0.1 (:func:`serve`).
  The kit opens each run itself with ``embed=False`` before the trainer's callback re-opens it, so a notebook
  kernel never starts a dashboard of its own;
- ``wandb``: offline, in the run folder, unless ``WANDB_MODE`` / ``WANDB_DIR`` say otherwise;
- ``mlflow``: a file store in the run folder unless ``MLFLOW_TRACKING_URI`` names a server.

A process has one active tracker (:func:`activate`; a session activates its profile's), so the trainers the
lessons call reach it without passing it along; the open stage names the notebook (``Session.stage``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE = "tracking"  # the tracker's folder in a run folder
KEY_NUMBERS = "key_numbers"  # a notebook's run: its key numbers
_SKIPPED = (
    "made_by",
    "plan_stages",
)  # in a notebook's metrics: the params (its config says them) and the plan


@dataclass
class Tracker:
    """A profile's tracker: backend, project, store, and the notebook now running (set by the session's stages)."""

    backend: str
    project: str
    store: Path
    profile: str
    notebook: str = field(default="")

    @classmethod
    def of(cls, params) -> Tracker:
        return cls(params.tracking.backend, params.tracking.project, params.run_dir / STORE, params.profile)

    @property
    def on(self) -> bool:
        return self.backend != "none"

    def prepare(self) -> None:
        """Point the backend's client at the run folder, before it is imported (trackio reads its folder once)."""
        if self.backend == "trackio":
            self.store.mkdir(parents=True, exist_ok=True)
            os.environ["TRACKIO_DIR"] = str(self.store)
            loaded = sys.modules.get("trackio.utils")
            if loaded is not None and Path(loaded.TRACKIO_DIR).resolve() != self.store.resolve():
                raise RuntimeError(
                    f"trackio was imported in this process with its store at {loaded.TRACKIO_DIR}, "
                    f"not {self.store}; fix: one run folder per process (a notebook's kernel, "
                    "python -m kit run)"
                )
        elif self.backend == "wandb":
            self.store.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_DIR", str(self.store))
            os.environ["WANDB_PROJECT"] = self.project
        elif self.backend == "mlflow":
            self.store.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("MLFLOW_TRACKING_URI", (self.store / "mlruns").as_uri())
            os.environ["MLFLOW_EXPERIMENT_NAME"] = self.project

    def run_name(self, what: str, fingerprint: str, notebook: str | None = None) -> str:
        """``<profile>-<notebook>-<what>-<fingerprint>``, in the characters every backend accepts."""
        parts = [
            self.profile,
            notebook if notebook is not None else (self.notebook or "kit"),
            what,
            fingerprint[:8],
        ]
        return "-".join(name_part(p) for p in parts)

    def trainer_args(self, what: str, fingerprint: str) -> dict[str, Any]:
        """The ``TrainingArguments`` keys that make a trl trainer report here (trl's ``report_to``), its run opened."""
        if not self.on:
            return {"report_to": "none"}
        name = self.run_name(what, fingerprint)
        if self.backend == "trackio":
            self.prepare()
            # the callback's config (the training arguments, the model's) replaces this run's: the name says the rest
            _trackio_open(self.project, name, {})
            return {"report_to": "trackio", "run_name": name, "project": self.project}
        self.prepare()
        return {"report_to": self.backend, "run_name": name}

    def log_numbers(self, notebook: str, metrics: Mapping[str, Any], fingerprint: str) -> str | None:
        """A notebook's key numbers (every finite number of ``metrics``, nested keys joined by ``/``) as one run,
        with the run's fingerprint in its config; the run's name, or None with no tracker."""
        if not self.on:
            return None
        self.prepare()
        numbers = flat_numbers({k: v for k, v in metrics.items() if k not in _SKIPPED})
        name = self.run_name(
            KEY_NUMBERS, fingerprint, notebook.partition("_")[0]
        )  # 21, as the stages name it
        config = {"profile": self.profile, "notebook": notebook, "fingerprint": fingerprint}
        if self.backend == "trackio":
            _trackio_open(self.project, name, config)
            import trackio

            trackio.log(numbers, step=0)
            with _quiet():
                trackio.finish()
        elif self.backend == "wandb":
            import wandb

            run = wandb.init(
                project=self.project,
                name=name,
                config=config,
                dir=os.environ["WANDB_DIR"],
                reinit="finish_previous",
            )
            run.log(numbers, step=0)
            run.summary.update(numbers)
            run.finish()
        else:
            import mlflow

            mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
            mlflow.set_experiment(self.project)
            with mlflow.start_run(run_name=name):
                mlflow.log_params(config)
                # mlflow's metric names: letters, digits and _-./ (a space or a colon is refused)
                mlflow.log_metrics({re.sub(r"[^\w\-./ ]", "_", k): v for k, v in numbers.items()}, step=0)
        return name


def name_part(text: str) -> str:
    """One part of a run's name in the characters every backend accepts (``agents/grounded/United States/sft``:
    ``agents_grounded_United_States_sft``)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "_"


def flat_numbers(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a nested mapping (booleans as 0/1), keyed by its path joined with ``/``; lists,
    strings and None are not numbers a tracker plots."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flat_numbers(value, f"{path}/")
        elif isinstance(value, bool):
            out[path] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[path] = float(value)
    return out


# --- the process's tracker -------------------------------------------------------------------------------------

_active: Tracker | None = None


def point(params) -> None:
    """Tell trackio where this profile's store is, if it is not imported yet: params validation imports trl, which
    imports trackio, which reads ``TRACKIO_DIR`` once (``kit.config.validate`` calls this first)."""
    if params.tracking.backend == "trackio" and "trackio.utils" not in sys.modules:
        os.environ["TRACKIO_DIR"] = str(params.run_dir / STORE)


def activate(params) -> Tracker:
    """Make ``params``'s tracker the one this process's trainers report to (a session does, on start)."""
    global _active
    _active = Tracker.of(params)
    if _active.on:
        _active.prepare()
    return _active


def active() -> Tracker | None:
    return _active


def trainer_args(what: str, fingerprint: str) -> dict[str, Any]:
    """``report_to`` (and the run's name) for a trainer in this process: none without an active tracker."""
    return _active.trainer_args(what, fingerprint) if _active is not None else {"report_to": "none"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """trackio prints where its store is and how to open it at every run: the kit says that once (kit track)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _trackio_open(project: str, name: str, config: Mapping[str, Any]) -> None:
    """Open (or resume) a trackio run without a dashboard: ``embed`` off, so a kernel never starts one, and
    the trainer's callback, opening the same run next, finds the project current and starts none either."""
    import trackio

    with _quiet():
        trackio.init(project=project, name=name, config=dict(config), resume="allow", embed=False)


# --- the dashboard ---------------------------------------------------------------------------------------------


def serve(params, port: int | None = None, block: bool = True):
    """trackio's dashboard of ``params``'s run folder on 127.0.0.1 (this machine only); returns (handle, url)."""
    tracker = Tracker.of(params)
    if tracker.backend != "trackio":
        raise ValueError(
            f"tracking.backend is {tracker.backend!r}: python -m kit track serves trackio's dashboard; "
            "fix: --set tracking.backend=trackio (then rerun the notebooks), or open the backend's own UI"
        )
    if not (tracker.store / f"{tracker.project}.db").is_file():
        raise ValueError(
            f"no trackio project {tracker.project!r} in {tracker.store}: run the notebooks with this "
            "profile first (python -m kit run)"
        )
    tracker.prepare()
    import trackio

    with _quiet():
        handle, url, _, _ = trackio.show(
            project=tracker.project,
            open_browser=False,
            block_thread=False,
            host="127.0.0.1",
            share=False,
            server_port=port,
        )
    url = f"{url.rstrip('/')}/?project={tracker.project}"
    print(f"trackio dashboard of {tracker.store}: {url}", flush=True)
    if block:
        try:
            import time

            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            handle.close()
    return handle, url
