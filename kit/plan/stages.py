"""What each notebook holds in memory at once: its stages and their resident parts.

One list, read two ways: the memory plan sums each stage's parts per GPU, and the session
(``kit.session``) releases every engine a stage does not list before the stage starts
(``Session.stage``), so a stage that trains or merges runs with the inference engines asleep.

A part is one thing resident on a device:

- ``engine``: the model of a role (``model`` for the agents; a role of ``kit.config.ROLES`` that names
  its own model in ``models:``, else it is ``model``'s engine);
- ``merged``: a merged model of notebook 11 served as its own engine (``ties``, ``model_stock``, ``moe``);
- ``trainer``: a trl trainer of a recipe (its params key, e.g. ``agents.sft``);
- ``merge``: a mergekit build; ``router``: the built MoE read for its router shares;
- ``embedder`` and ``cross-encoder``: sentence-transformers models;
- ``harness``: lm-eval's model of a capability step (``kit.evals.harness``): the profile's model (``model``) with
  one adapter, or a merged model of notebook 11 (its name), one at a time, the inference engines asleep.

Embedders and cross-encoders (``ENCODERS``) are small and, once a stage of a notebook loads them, stay for the
rest of the notebook: the plan counts them in every later stage of it, and the session does not release them.

A stage's ``swap`` parts are engines it uses one at a time: using one puts the others to sleep
(notebook 12 asks the base model and the three merged models in turn; together they do not fit). An
NLI judge on the agents' own engine (``palette.nli: judge``) is that swapped engine too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kit.config import ROLES, Params

PartKind = Literal["engine", "merged", "trainer", "merge", "router", "embedder", "cross-encoder", "harness"]
MERGES = ("ties", "model_stock", "moe")
ENCODERS = ("embedder", "cross-encoder")  # kinds of part that stay once loaded (see the module docstring)


@dataclass(frozen=True)
class Part:
    kind: PartKind
    key: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}" if self.key else self.kind


@dataclass(frozen=True)
class Stage:
    notebook: str
    name: str
    parts: tuple[Part, ...]
    swap: tuple[Part, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.notebook} {self.name}"

    def allows(self, part: Part) -> bool:
        return part in self.parts or part in self.swap


EMBEDDER = Part("embedder")


def engine_key(params: Params, role: str) -> str:
    """The engine a role runs on: ``model`` when the role's model is the agents', else the first role (in
    ``ROLES`` order) with that same model, so two roles on one model are one engine (as the session loads them)."""
    if role == "model":
        return "model"
    model = params.role_model(role)
    if model == params.model:
        return "model"
    return next(r for r in ROLES if params.role_model(r) == model)


def engine(params: Params, role: str = "model") -> Part:
    return Part("engine", engine_key(params, role))


def _detector(params: Params, kind: str, role: str) -> tuple[Part, ...]:
    """What a value detector of ``kind`` (``kit.values.DETECTORS``) holds: the LLM judge asks its role's engine;
    the embedding proxy and the trained detector read embeddings."""
    return (engine(params, role), EMBEDDER) if kind == "llm" else (EMBEDDER,)


def _nli(params: Params, scorer: str | None) -> tuple[Part, ...]:
    if scorer is None:
        return ()
    return (Part("cross-encoder", "nli"),) if scorer == "cross-encoder" else (engine(params, "nli"),)


def _unique(*parts: Part) -> tuple[Part, ...]:
    return tuple(dict.fromkeys(parts))


HARNESS = Part("harness", "model")


def _capability(params: Params, notebook: str, merged: bool = False) -> Stage:
    """A unit's capability step: lm-eval's model of one artifact at a time (notebook 12 also the merged models). On a
    CPU profile the agents' engine stays beside it (host memory holds both, and a reload would redo its set-up:
    threads, prefix cache); elsewhere the engines sleep."""
    kept = (engine(params),) if params.model.device == "cpu" else ()
    if merged:
        return Stage(
            notebook, "capability (lm-eval)", kept, swap=(HARNESS, *(Part("harness", m) for m in MERGES))
        )
    return Stage(notebook, "capability (lm-eval)", (*kept, HARNESS))


def notebook_stages(params: Params) -> dict[str, list[Stage]]:
    """Every notebook's stages for ``params``, in the order they run (notebook 90 reads stored rows only)."""
    p, m = params, engine(params)
    neg, v = p.negotiation, p.visa
    out: dict[str, list[Stage]] = {
        "00": [Stage("00", "chat and survey", (m,))],
        "01": [
            Stage("01", "agents and descriptions", (m,)),
            *(
                [Stage("01", "grounded SFT", (Part("trainer", "agents.sft"),))]
                if "grounded" in p.agents.kinds
                else []
            ),
            Stage("01", "fidelity and capability", (m,)),
            _capability(p, "01"),
        ],
        "02": [Stage("02", "negotiations", (m, EMBEDDER))],
        "03": [
            Stage("03", "acceptance and values", _unique(m, *_detector(p, neg.value_judge, "value_judge")))
        ],
        "04": [
            Stage("04", "finetune", (Part("trainer", "finetune"),)),
            Stage(
                "04",
                "distance, alignment and capability",
                _unique(m, *_detector(p, neg.value_judge, "value_judge")),
            ),
            _capability(p, "04"),
        ],
        "05": [Stage("05", "the release judged and scored", _unique(m, engine(p, "value_judge"), EMBEDDER))],
        "10": [Stage("10", "synthesis", _unique(engine(p, "palette_teacher"), EMBEDDER))],
        "11": [
            Stage("11", "ORPO continent agents", (Part("trainer", "palette.train"),)),
            *[Stage("11", f"merge {name}", (Part("merge", name),)) for name in MERGES],
            Stage("11", "router shares", (Part("router", "moe"),)),
        ],
        "12": [
            Stage(
                "12",
                "Table 1, consistency and capability",
                _unique(*_nli(p, p.palette.nli)),
                swap=_unique(m, *(Part("merged", name) for name in MERGES)),
            ),
            _capability(p, "12", merged=True),
        ],
        "20": [
            Stage(
                "20",
                "corpus, teacher and translator",
                _unique(m, *_detector(p, v.teacher, "visa_teacher"), EMBEDDER),
            )
        ],
        "21": [
            Stage(
                "21",
                "GRPO rewriter",
                _unique(
                    Part("trainer", "visa.rewriter"),
                    m,
                    *_detector(p, v.reward_detector, "model"),
                    *_nli(p, v.nli),
                ),
            ),
            Stage(
                "21",
                "best-of-n and direct samples",
                _unique(m, *_detector(p, v.reward_detector, "model"), *_nli(p, v.nli)),
            ),
            Stage("21", "SFT rewriter", (Part("trainer", "visa.sft"),)),
            Stage("21", "direct DPO", (Part("trainer", "visa.direct"),)),
        ],
        "22": [
            Stage("22", "held-out table", _unique(m, *_detector(p, v.eval_detector, "visa_judge"), EMBEDDER)),
            _capability(p, "22"),
        ],
        "30": [Stage("30", "dilemmas", (m, EMBEDDER))],
        "31": [
            Stage(
                "31",
                "self-play GRPO",
                _unique(Part("trainer", "selfplay.policy"), m, engine(p, "selfplay_judge"), EMBEDDER),
            ),
            Stage(
                "31",
                "single-agent GRPO",
                _unique(Part("trainer", "selfplay.single"), m, engine(p, "selfplay_judge")),
            ),
        ],
        "32": [
            Stage(
                "32",
                "held-out dialogues and NCN study",
                _unique(
                    m,
                    engine(p, "selfplay_eval_judge"),
                    *_detector(p, neg.value_judge, "value_judge"),
                    EMBEDDER,
                ),
            ),
            _capability(p, "32"),
        ],
        "90": [],
    }
    return out


def find(params: Params, notebook: str, name: str) -> Stage:
    """The stage ``name`` of ``notebook``; a name the table does not hold is a programming error, said in one line."""
    for stage in notebook_stages(params).get(notebook, []):
        if stage.name == name:
            return stage
    known = [s.name for s in notebook_stages(params).get(notebook, [])]
    raise KeyError(f"notebook {notebook} has no stage {name!r} in kit.plan.stages (it has {known})")
