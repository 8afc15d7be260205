"""Finetuning on negotiation data: records from traces (``records``), trl recipes (``recipes``), LoRA
training (``trainers``), trl's importance-sampling correction for rollouts a kit engine sampled
(``correction``) and the ``python -m kit train`` command (``cli``).

trl, peft and datasets are imported only when a trainer runs, so importing this package is cheap.
"""

from __future__ import annotations

from kit.train.recipes import TRAINERS
from kit.train.records import preference_records, sft_records, split_records, to_dataset
from kit.train.trainers import TrainResult, train

__all__ = ["TRAINERS", "TrainResult", "preference_records", "sft_records", "split_records", "to_dataset", "train"]
