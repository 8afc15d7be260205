"""A notebook's handle on one profile: its params, run folder, cached backend, embedder, records,
and the agents notebook 01 built.

Everything heavy is built on first use, so a notebook that never embeds never loads the embedder,
and bad params fail in :func:`kit.config.from_notebook` before anything loads.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from kit.config import Params
from kit.run import artifacts, cost, lock, paths
from kit.run.cache import Cache
from kit.run.files import atomic_write_json, atomic_write_text, json_default

METRICS_MIME = "application/vnd.agora.metrics+json"
RUNS_DEFAULT = "runs"  # the runs folder whose figures also update the project's figures/


class Session:
    def __init__(self, params: Params):
        self.params = params
        self.run_dir = params.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock.hold(self.run_dir)  # one writer per run folder (kit/run/lock.py)
        self._started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.costs: list[dict] = []  # every timed stage's calls, tokens, seconds and peak memory
        self._agents = None
        self._backends: dict[str, object] = {}
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # silence fork warnings in kernels
        _table_display()

    @cached_property
    def cache(self) -> Cache:
        """One cache file per profile, shared by all its notebooks."""
        return Cache(self.run_dir / "cache" / "cache.sqlite")

    @cached_property
    def backend(self):
        from kit.llm import load_backend

        with self.timed("load model"):
            return load_backend(self.params.model, self.cache.path, seed=self.params.seed)

    @cached_property
    def embedder(self):
        from kit.embed import Embedder

        with self.timed("load embedder"):
            return Embedder(self.params.embedder.name, self.params.embedder.batch_size, self.cache)

    def backend_of(self, folder: str | Path):
        """A model folder (a merged model, an MoE) served like the profile's model, through the same cache."""
        folder = str(folder)
        if folder not in self._backends:
            from kit.llm import load_backend

            with self.timed(f"load {Path(folder).name}"):
                update: dict[str, Any] = {"name": folder}
                if self.params.model.backend == "openai":  # a folder built here is not on the server: load it here
                    update |= {"backend": "transformers", "base_url": None, "api_key_env": None, "served_model": None}
                self._backends[folder] = load_backend(self.params.model.model_copy(update=update),
                                                      self.cache.path, seed=self.params.seed)
        return self._backends[folder]

    def role_backend(self, role: str):
        """The model a role runs on (``models.<role>``, see ``kit.config.ROLES``), through the same cache; the
        agents' backend when the role names no model of its own."""
        model = self.params.role_model(role)
        if model == self.params.model:
            return self.backend
        key = f"role:{model.model_dump_json()}"  # two roles on one model share it
        if key not in self._backends:
            from kit.llm import load_backend

            with self.timed(f"load {role}"):
                self._backends[key] = load_backend(model, self.cache.path, seed=self.params.seed)
        return self._backends[key]

    def role_name(self, role: str) -> str:
        """The name a table prints for a role's model: the served or local model's name."""
        model = self.params.role_model(role)
        return model.served_model or model.name

    def records(self, name: str):
        """An append-only JSONL store in the run folder, keyed by item id (resumable)."""
        from kit.run.records import RecordStore

        return RecordStore(self.run_dir / "records" / f"{name}.jsonl")

    def save_scores(self, notebook: str, board: str, rows: Iterable[Mapping]) -> Path:
        """Per-item rows a cross-method board reads (``kit.reporting.leaderboard``), replacing the notebook's last
        ones: ``scores/<board>/<notebook>.jsonl``. The boards are computed from these, never by
        asking a model again."""
        lines = "".join(json.dumps(dict(r), ensure_ascii=False, sort_keys=True, default=json_default) + "\n"
                        for r in rows)
        return atomic_write_text(self.run_dir / "scores" / board / f"{notebook}.jsonl", lines)

    def agents(self):
        """The :class:`~kit.agents.AgentSet` notebook 01 built and stored in this run folder."""
        if self._agents is None:
            from kit.agents import AgentSet

            self._agents = AgentSet.load(self.run_dir, self.params)
        return self._agents

    def figure_paths(self, name: str) -> list[Path]:
        """Where a figure is saved: the run folder's ``figures/``, and also the project's
        ``figures/<profile>/`` when the run goes to the default runs folder (so a run elsewhere never
        overwrites the committed figures)."""
        out = [self.run_dir / "figures" / name]
        if self.params.run_dir == paths.resolve(RUNS_DEFAULT) / self.params.profile:
            out.append(paths.ROOT / paths.FIGURES / self.params.profile / name)
        return out

    @contextmanager
    def timed(self, label: str, row: str | None = None) -> Iterator[None]:
        """Measure a stage (``kit.run.cost``): model calls and tokens, wall seconds, peak memory. ``row``
        names the board row (an agent kind, a trained model, a method) whose own cost it is."""
        with cost.stage(label, row) as measured:
            yield
        self.timings[label] = round(measured.seconds, 3)
        self.costs.append(measured.as_dict())

    def record_cost(self, label: str, row: str | None, seconds: float, peak_rss_gb: float) -> None:
        """A stage measured elsewhere (a child process), kept with the ones ``timed`` measures."""
        self.costs.append({"stage": label, "row": row, **dict.fromkeys(cost.COUNTERS, 0), "seconds": round(seconds, 3),
                           "peak_rss_gb": round(peak_rss_gb, 3)})

    def each_row(self, label: str, models: Mapping[str, Any], fn: Callable[[dict], Any]) -> list:
        """``fn({name: value})`` for each board row of ``models``, each measured as that row's own stage;
        the results in order. (Rows that share one batch cannot be told apart in its cost.)"""
        out = []
        for name, value in models.items():
            with self.timed(f"{label} ({name})", row=name):
                out.append(fn({name: value}))
        return out

    def record_metrics(self, notebook: str, metrics: dict) -> None:
        """Key numbers of a notebook: shown in its output (tests read them) and saved as JSON.

        The unit's cost goes with them: every measured stage, per board row the sum of its stages,
        and the whole session (wall seconds since it started, peak memory of the process)."""
        out = self.run_dir / "metrics" / f"{notebook}.json"
        metrics = {**metrics, "made_by": artifacts.made_by(self.params), "cost": {"stages": self.costs, "rows": cost.row_costs(self.costs),
                                       "session": {"seconds": round(time.perf_counter() - self._started, 1),
                                                   "peak_rss_gb": round(cost.peak_rss_gb(), 3)}}}
        atomic_write_json(out, metrics)
        try:
            from IPython.display import display

            display({METRICS_MIME: metrics, "text/plain": json.dumps(metrics, indent=1)}, raw=True)
        except ImportError:
            pass


def _table_display() -> None:
    """Long tables show their head and tail with a "[N rows x M columns]" note instead of scrolling on."""
    import pandas as pd

    pd.set_option("display.max_rows", 40)
    pd.set_option("display.min_rows", 16)
