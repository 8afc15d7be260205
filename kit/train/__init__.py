"""Finetuning on negotiation data: records from traces (``records``), trl recipes (``recipes``), LoRA
training (``trainers``), trl's importance-sampling correction for rollouts a kit engine sampled
(``correction``) and the ``python -m kit train`` command (``cli``).

Its params (``params``: ``TrainRecipe``, the ``finetune`` section, the recipe checks) are what ``kit.config``
composes, so this package's names load on first use (PEP 562): importing ``kit.train.params`` runs no trainer
module. trl, peft and datasets are imported only when a trainer runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "TRAINERS": "recipes",
    "preference_records": "records",
    "sft_records": "records",
    "split_records": "records",
    "to_dataset": "records",
    "TrainResult": "trainers",
    "train": "trainers",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'kit.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kit.train.{_WHERE[name]}"), name)


__all__ = [
    "TRAINERS",
    "TrainResult",
    "preference_records",
    "sft_records",
    "split_records",
    "to_dataset",
    "train",
]
