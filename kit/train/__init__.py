"""Finetuning on negotiation data: records from traces, and LoRA training with trl (DPO, SimPO, ORPO, SFT).

trl, peft and datasets are imported only when a trainer runs, so importing this package is cheap.
"""

from __future__ import annotations

from kit.train.data import preference_records, sft_records, split_records, to_dataset
from kit.train.speed import measure_train_speed
from kit.train.trainers import (METHODS, TrainResult, finetune_from_sft, train, train_dpo, train_orpo, train_sft,
                                train_simpo)

__all__ = ["METHODS", "TrainResult", "finetune_from_sft", "measure_train_speed", "preference_records", "sft_records",
           "split_records", "to_dataset", "train", "train_dpo", "train_orpo", "train_sft", "train_simpo"]
