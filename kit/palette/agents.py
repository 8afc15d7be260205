"""Continent agents and the joint model: ORPO LoRA adapters on the palette's preference records.

One adapter per continent, trained on that continent's records (its response chosen, the other
continents' rejected), and one joint adapter on all of them (Xu et al. 2024's joint alignment).
The recipe is ``palette.train`` (trl's ORPO config keys; LoRA on the MLP projections only, so the
MoE merge keeps every delta). Training goes through ``kit.train.trainers.train``: a finished
adapter of the same records and recipe is reused, a killed one resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from kit.palette.prompts import CONTINENTS

METHOD = "orpo"


def palette_dir(run_dir: Path) -> Path:
    """Where a run keeps its palette agents, merged models and ``models.json``."""
    return Path(run_dir) / "palette"


def train_study(params) -> dict[str, Path]:
    """The continent agents and the joint model of ``params``'s study, trained into the folders notebook 11
    reuses (``python -m kit train orpo --palette``, e.g. under ``accelerate launch``)."""
    from kit.artifacts import model_parts
    from kit.palette.synthesis import training_data

    records, _ = training_data(params, model_parts(params.model))
    return train_agents(records, params.model.name, palette_dir(params.run_dir) / "agents", params.palette.train,
                        params.seed)


def train_agents(records: Mapping[str, Sequence[dict]], base_model: str, out_dir: Path, recipe,
                 seed: int) -> dict[str, Path]:
    """Adapter folders of the five continent agents and of ``joint``."""
    from kit.train.trainers import train

    sets = {c: list(records[c]) for c in CONTINENTS} | {"joint": [r for c in CONTINENTS for r in records[c]]}
    empty = [name for name, rows in sets.items() if not rows]
    if empty:
        raise ValueError(f"no preference records for {empty}: every continent needs data; raise palette.queries.n "
                         "or check the validation counts")
    return {name: train(METHOD, rows, [], base_model, Path(out_dir) / name, recipe, seed).adapter_dir
            for name, rows in sets.items()}


MODELS_FILE = "models.json"


def save_models(folder: Path, adapters: Mapping[str, Path], merged: Mapping[str, Path]) -> Path:
    """Where notebook 11 put the adapters and merged models, for notebook 12 (paths relative to ``folder``)."""
    from kit.files import atomic_write_json

    rel = {k: Path(v).resolve().relative_to(Path(folder).resolve()).as_posix() for k, v in {**adapters, **merged}.items()}
    return atomic_write_json(Path(folder) / MODELS_FILE, {"adapters": {k: rel[k] for k in adapters},
                                                          "merged": {k: rel[k] for k in merged}})


def load_models(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(adapters, merged models) notebook 11 saved, as absolute paths."""
    from kit.files import read_json

    stored = read_json(Path(folder) / MODELS_FILE)
    if stored is None:
        raise ValueError(f"no palette models in {folder}: run notebook 11 (11_palette_agents) with this profile first")
    return ({k: str(Path(folder) / v) for k, v in stored["adapters"].items()},
            {k: str(Path(folder) / v) for k, v in stored["merged"].items()})
