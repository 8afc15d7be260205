"""Continent agents and the joint model: ORPO LoRA adapters on the palette's preference records.

One adapter per continent, trained on that continent's records (its response chosen, the other
continents' rejected), and one joint adapter on all of them (Xu et al. 2024's joint alignment).
The recipe is ``palette.train`` (trl's ORPO config keys; LoRA on the MLP projections only, so the
MoE merge keeps every delta). Training goes through ``kit.train.trainers.train``: a finished
adapter of the same records and recipe is reused, a killed one resumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from kit.palette.prompts import CONTINENTS

METHOD = "orpo"


def palette_dir(run_dir: Path) -> Path:
    """Where a run keeps its palette agents, merged models and ``models.json``."""
    return Path(run_dir) / "palette"


def train_study(params) -> dict[str, Path]:
    """The continent agents and the joint model of ``params``'s study, trained into the folders notebook 11
    reuses (``python -m kit train orpo --palette``, e.g. under ``accelerate launch``)."""
    from kit.palette.synthesis import training_data
    from kit.run.artifacts import model_parts

    records, _ = training_data(params, model_parts(params.role_model("palette_teacher")))
    return train_agents(
        records, params.model.ref, palette_dir(params.run_dir) / "agents", params.palette.train, params.seed
    )


def train_agents(
    records: Mapping[str, Sequence[dict]], base_model: str, out_dir: Path, recipe, seed: int
) -> dict[str, Path]:
    """Adapter folders of the five continent agents and of ``joint``."""
    from kit.train.trainers import train

    sets = {c: list(records[c]) for c in CONTINENTS} | {"joint": [r for c in CONTINENTS for r in records[c]]}
    empty = [name for name, rows in sets.items() if not rows]
    if empty:
        raise ValueError(
            f"no preference records for {empty}: every continent needs data; raise palette.queries.n "
            "or check the validation counts"
        )
    return {
        name: train(METHOD, rows, [], base_model, Path(out_dir) / name, recipe, seed).adapter_dir
        for name, rows in sets.items()
    }


MODELS_FILE = "models.json"
# notebook 12's own settings: they change how the models are evaluated, not the models
EVALUATION_ONLY = (
    "n_boot",
    "references",
    "models.nli",
    "palette.countries",
    "palette.max_test_items",
    "palette.draft_tokens",
    "palette.regulate_tokens",
    "palette.comment_tokens",
    "palette.nli",
    "palette.nli_items",
    "palette.capability_items",
)


def save_models(folder: Path, params, adapters: Mapping[str, Path], merged: Mapping[str, Path]) -> Path:
    """Where notebook 11 put the adapters and merged models, for notebook 12, with their contents and the
    params that made them (``kit.run.artifacts.hand_off``)."""
    from kit.run.artifacts import hand_off

    return hand_off(Path(folder) / MODELS_FILE, params, {**adapters, **merged}, merged=sorted(merged))


def load_models(folder: Path, params) -> tuple[dict[str, str], dict[str, str]]:
    """(adapters, merged models) notebook 11 saved, as absolute paths; only when made with ``params``."""
    from kit.run.artifacts import take_over

    models, stored = take_over(
        Path(folder) / MODELS_FILE,
        params,
        "the palette models",
        "notebook 11 (11_palette_agents)",
        EVALUATION_ONLY,
    )
    merged = set(stored["merged"])
    return (
        {k: v for k, v in models.items() if k not in merged},
        {k: v for k, v in models.items() if k in merged},
    )
