"""A notebook's handle on one profile: its params, run folder, cached backend, embedder, records,
and the agents notebook 01 built.

Everything heavy is built on first use, so a notebook that never embeds never loads the embedder,
and bad params fail in :func:`kit.config.from_notebook` before anything loads.

Memory is managed by stage (``kit.plan.stages``, the list the memory plan sums): inside
``with session.stage(notebook, name):`` only the stage's parts may be resident. Entering a stage
releases every engine it does not list (a stage that trains or merges starts with the inference
engines asleep), using a part the stage does not list is refused where ``AGORA_STRICT_STAGES`` is set
(the tests) and logged otherwise, and of a stage's ``swap`` engines one is awake at a time. What was
resident in each stage goes into the notebook's metrics (``stages``), which the tests hold against the plan.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from kit.config import Params
from kit.run import artifacts, cost, lock, paths, tracking
from kit.run.cache import Cache
from kit.run.files import atomic_write_json, atomic_write_text, json_default

log = logging.getLogger(__name__)

METRICS_MIME = "application/vnd.agora.metrics+json"
STRICT_STAGES_ENV = "AGORA_STRICT_STAGES"  # set: a part used outside its stage's list is an error (tests)


class StageError(RuntimeError):
    """A notebook used a model its stage in ``kit.plan.stages`` does not list: the memory plan is not the truth."""


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
        self._backends: dict[str, object] = {}  # cached backends by engine key
        self._residents: dict[str, object] = {}  # engine key -> kit.llm.resident.Resident
        self._stage = None  # the kit.plan.stages.Stage now open
        self._entry: dict | None = None  # its entry in stage_log
        self._encoders: set[str] = set()  # sentence-transformers parts loaded (embedder, cross-encoder:nli)
        # per stage entered: the distinct sets of parts that were resident at once in it
        self.stage_log: list[dict] = []
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # silence fork warnings in kernels
        # the trainers of this process report to the profile's tracker (kit.run.tracking), the stages name the notebook
        self.tracker = tracking.activate(params)
        _table_display()

    @cached_property
    def cache(self) -> Cache:
        """One cache file per profile, shared by all its notebooks."""
        return Cache(self.run_dir / "cache" / "cache.sqlite")

    @cached_property
    def backend(self):
        """The agents' model (``model``), loaded on first use, released and restored by stage."""
        return self._engine("model", self.params.model)

    @cached_property
    def embedder(self):
        from kit.embed import Embedder

        self._used("embedder")
        with self.timed("load embedder"):
            return Embedder(self.params.embedder.name, self.params.embedder.batch_size, self.cache)

    def _engine(self, key: str, model, label: str | None = None):
        """A cached backend for ``model`` under engine key ``key`` (``kit.plan.stages``): local weights behind a
        :class:`~kit.llm.resident.Resident` the stages release and restore; a served model as it is."""
        if key in self._backends:
            return self._backends[key]
        from kit.llm import load_backend

        if model.backend == "openai":
            with self.timed(f"load {label or key}"):
                self._backends[key] = load_backend(model, self.cache.path, seed=self.params.seed)
            return self._backends[key]
        from kit.llm import BACKENDS
        from kit.llm.cached import CachedBackend
        from kit.llm.resident import Resident
        from kit.run.artifacts import model_parts

        def load():
            with self.timed(f"load {label or key}"):
                return BACKENDS.get(model.backend).from_params(model, seed=self.params.seed)

        resident = Resident(
            key,
            load,
            model_parts(model),
            tokenizer=lambda: _tokenizer(model),
            on_use=self._on_use,
            sampling_logprobs=getattr(BACKENDS.get(model.backend), "sampling_logprobs", False),
        )
        self._residents[key] = resident
        self._backends[key] = CachedBackend(resident, self.cache)
        return self._backends[key]

    def backend_of(self, folder: str | Path):
        """A model folder (a merged model, an MoE) served with the ``palette_merged`` role's engine settings (the
        profile's model's unless ``models.palette_merged`` changes them), through the same cache; its engine key is
        ``merged:<folder name>`` (``kit.plan.stages``)."""
        update: dict[str, Any] = {"name": str(folder)}
        model = self.params.role_model("palette_merged")
        if model.backend == "openai":  # a folder built here is not on the server: load it here
            update |= {"backend": "transformers", "base_url": None, "api_key_env": None, "served_model": None}
        return self._engine(f"merged:{Path(folder).name}", model.model_copy(update=update), Path(folder).name)

    def role_backend(self, role: str):
        """The model a role runs on (``models.<role>``, see ``kit.config.ROLES``), through the same cache; the
        agents' backend when the role names no model of its own (two roles on one model share it)."""
        from kit.plan.stages import engine_key

        key = engine_key(self.params, role)
        if key == "model":
            return self.backend
        return self._engine(key, self.params.role_model(role), role)

    def role_name(self, role: str) -> str:
        """The name a table prints for a role's model: the served or local model's name."""
        model = self.params.role_model(role)
        return model.served_model or model.name

    def nli_scorer(self, name: str):
        """The NLI scorer ``name`` (``kit.evals.nli.NLI_SCORERS``): the ``nli`` role's model as a judge, or a
        cross-encoder (``models.nli``'s name where given)."""
        from kit.evals.nli import make_scorer

        model = self.params.models["nli"].name if "nli" in self.params.models else None
        if name == "cross-encoder":
            self._used("cross-encoder:nli")
        return make_scorer(name, lambda: self.role_backend("nli"), model)

    # --- stages: what may be resident (kit.plan.stages) --------------------------------------------
    @contextmanager
    def stage(self, notebook: str, name: str) -> Iterator[None]:
        """Run a stage of ``kit.plan.stages``: engines it does not list are released first."""
        from kit.plan.stages import find

        outer, outer_entry = self._stage, self._entry
        self._stage = find(self.params, notebook, name)
        self.tracker.notebook = notebook
        self._entry = {"stage": self._stage.label, "resident": []}
        self.stage_log.append(self._entry)
        try:
            for key, resident in self._residents.items():
                if not self._stage.allows(_part(key)):
                    resident.release()
            self._note()
            yield
        finally:
            self._stage, self._entry = outer, outer_entry

    def _on_use(self, resident) -> None:
        """Before a resident backend computes: check the stage allows it, and put the other swap engines to sleep."""
        if self._stage is None:
            return
        part = _part(resident.key)
        self._check(part)
        if part in self._stage.swap:
            for key, other in self._residents.items():
                if key != resident.key and _part(key) in self._stage.swap:
                    other.release()
        self._note(part)

    def resident(self, kind: str, key: str = "") -> None:
        """A part loaded outside the session's backends (lm-eval's model in a capability stage) is resident now:
        checked against the open stage and recorded in its log (it is dropped by its user, not kept)."""
        from kit.plan.stages import Part

        if self._stage is not None:
            part = Part(kind, key)
            self._check(part)
            self._note(part)

    def _used(self, part_name: str) -> None:
        from kit.plan.stages import Part

        self._encoders.add(
            part_name
        )  # embedders and cross-encoders stay loaded for the session (they are small)
        if self._stage is not None:
            kind, _, key = part_name.partition(":")
            part = Part(kind, key)
            self._check(part)
            self._note(part)

    def _check(self, part) -> None:
        if self._stage.allows(part):
            return
        message = (
            f"stage '{self._stage.label}' uses {part}, which kit.plan.stages does not list for it: the memory "
            "plan would not count it; fix: add it to the stage there (and check python -m kit plan)"
        )
        if os.environ.get(STRICT_STAGES_ENV):
            raise StageError(message)
        log.warning(message)

    def _note(self, part=None) -> None:
        """Record what is resident at once now (a distinct snapshot) in the open stage's log entry."""
        resident = {str(_part(k)) for k, r in self._residents.items() if r.loaded} | self._encoders
        if part is not None:
            resident.add(str(part))
        snapshot = sorted(resident)
        if self._entry is not None and snapshot not in self._entry["resident"]:
            self._entry["resident"].append(snapshot)

    def records(self, name: str):
        """An append-only JSONL store in the run folder, keyed by item id (resumable)."""
        from kit.run.records import RecordStore

        return RecordStore(self.run_dir / "records" / f"{name}.jsonl")

    def save_scores(self, notebook: str, board: str, rows: Iterable[Mapping]) -> Path:
        """Per-item rows a cross-method board reads (``kit.reporting.leaderboard``), replacing the notebook's last
        ones: ``scores/<board>/<notebook>.jsonl``. The boards are computed from these, never by
        asking a model again."""
        lines = "".join(
            json.dumps(dict(r), ensure_ascii=False, sort_keys=True, default=json_default) + "\n" for r in rows
        )
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
        self.costs.append(
            {
                "stage": label,
                "row": row,
                **dict.fromkeys(cost.COUNTERS, 0),
                "seconds": round(seconds, 3),
                "peak_rss_gb": round(peak_rss_gb, 3),
            }
        )

    def each_row(self, label: str, models: Mapping[str, Any], fn: Callable[[dict], Any]) -> list:
        """``fn({name: value})`` for each board row of ``models``, each measured as that row's own stage;
        the results in order. (Rows that share one batch cannot be told apart in its cost.)"""
        out = []
        for name, value in models.items():
            with self.timed(f"{label} ({name})", row=name):
                out.append(fn({name: value}))
        return out

    def record_metrics(self, notebook: str, metrics: dict) -> None:
        """Key numbers of a notebook: shown in its output (tests read them), saved as JSON and logged to the
        profile's tracker with the run's fingerprint (``kit.run.tracking``).

        The unit's cost goes with them: every measured stage, per board row the sum of its stages,
        and the whole session (wall seconds since it started, peak memory of the process)."""
        out = self.run_dir / "metrics" / f"{notebook}.json"
        metrics = {
            **metrics,
            "made_by": artifacts.made_by(self.params),
            "cost": {
                "stages": self.costs,
                "rows": cost.row_costs(self.costs),
                "session": {
                    "seconds": round(time.perf_counter() - self._started, 1),
                    "peak_rss_gb": round(cost.peak_rss_gb(), 3),
                },
            },
            "plan_stages": self.stage_log,
        }
        atomic_write_json(out, metrics)
        self.tracker.log_numbers(notebook, metrics, artifacts.fingerprint(metrics["made_by"]))
        try:
            from IPython.display import display

            display({METRICS_MIME: metrics, "text/plain": json.dumps(metrics, indent=1)}, raw=True)
        except ImportError:
            pass


def in_stage(notebook: str, name: str):
    """Run the decorated function (its first argument the session) in stage ``name`` of ``notebook``
    (``kit.plan.stages``)."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def run(session, *args, **kwargs):
            with session.stage(notebook, name):
                return fn(session, *args, **kwargs)

        return run

    return wrap


def _part(key: str):
    """The plan's part of an engine key: ``merged:<name>`` for a merged model, else a role's engine."""
    from kit.plan.stages import Part

    kind, _, name = key.partition(":")
    return Part("merged", name) if kind == "merged" else Part("engine", key)


def _tokenizer(model):
    """A model's tokenizer without its weights (the cache counts tokens of answers it holds)."""
    from transformers import AutoTokenizer

    from kit.llm.models import resolve_model

    resolved = resolve_model(model.name, model.revision)
    return AutoTokenizer.from_pretrained(
        resolved.path, revision=resolved.revision, trust_remote_code=model.trust_remote_code
    )


def _table_display() -> None:
    """Long tables show their head and tail with a "[N rows x M columns]" note instead of scrolling on."""
    import pandas as pd

    pd.set_option("display.max_rows", 40)
    pd.set_option("display.min_rows", 16)
