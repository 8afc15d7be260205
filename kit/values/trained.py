"""A trained value detector: one logistic regression per Schwartz value on sentence embeddings,
distilled from the LLM judge's labels.

The judge is slow (a generation per text) and the embedding proxy is coarse; a light classifier
trained on the judge's labels runs as fast as the embedder and can be measured against the judge
on texts it never saw (:func:`agreement`, macro-F1 per value). scikit-learn fits it; the weights
are stored as safetensors (``coef``/``intercept``/``classes`` per value) with a JSON card, and
prediction is the linear decision rule on them, so loading needs neither pickle nor scikit-learn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit.run.files import atomic_write_json, read_json
from kit.values.detectors import DETECTORS, ValueResult
from kit.values.schwartz import SCHWARTZ_VALUES

LABELS = (-1, 0, 1)
WEIGHTS, CARD = "detector.safetensors", "detector.json"


class TrainedValueDetector:
    """Per value: classes, and a linear rule (``coef`` k×d or 1×d for two classes, ``intercept``)."""

    def __init__(self, embedder: Any, heads: dict[str, dict[str, np.ndarray]], card: dict | None = None):
        missing = [n for n in SCHWARTZ_VALUES if n not in heads]
        if missing:
            raise ValueError(f"trained detector lacks heads for {missing}")
        self.embedder, self.heads, self.card = embedder, heads, card or {}
        self.failures = 0  # a classifier always answers; kept so every detector reads the same

    @classmethod
    def fit(
        cls, embedder: Any, texts: Sequence[str], labels: np.ndarray, c: float = 1.0, card: dict | None = None
    ) -> TrainedValueDetector:
        """Fit on ``texts`` and their ``(n, 10)`` labels in {−1, 0, 1}; a value with one label is a constant."""
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(labels, dtype=int)
        if labels.shape != (len(texts), len(SCHWARTZ_VALUES)):
            raise ValueError(f"labels must be (len(texts), {len(SCHWARTZ_VALUES)}), got {labels.shape}")
        x = embedder.encode(list(texts))
        heads = {}
        for j, name in enumerate(SCHWARTZ_VALUES):
            y = labels[:, j]
            classes = np.unique(y)
            if len(classes) == 1:
                heads[name] = {
                    "classes": classes.astype(np.float32),
                    "coef": np.zeros((1, x.shape[1]), np.float32),
                    "intercept": np.zeros(1, np.float32),
                }
                continue
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
            heads[name] = {
                "classes": model.classes_.astype(np.float32),
                "coef": model.coef_.astype(np.float32),
                "intercept": model.intercept_.astype(np.float32),
            }
        return cls(embedder, heads, {**(card or {}), "n_train": len(texts), "c": c})

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 10)`` labels by each head's linear rule (argmax, or the sign for two classes)."""
        x = self.embedder.encode(list(texts))
        out = np.zeros((len(texts), len(SCHWARTZ_VALUES)))
        for j, name in enumerate(SCHWARTZ_VALUES):
            h = self.heads[name]
            if len(h["classes"]) == 1:
                out[:, j] = h["classes"][0]
                continue
            scores = x @ h["coef"].T + h["intercept"]
            pick = (scores[:, 0] > 0).astype(int) if len(h["classes"]) == 2 else scores.argmax(axis=1)
            out[:, j] = h["classes"][pick]
        return out

    def vectors(self, texts: Sequence[str]) -> list[ValueResult]:
        if not texts:
            return []
        return [
            ValueResult(v, json.dumps(dict(zip(SCHWARTZ_VALUES, map(int, v)))), 1)
            for v in self.predict(texts)
        ]

    def save(self, folder: str | Path) -> Path:
        import os
        import secrets

        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # each file replaced whole (a reader or a kill sees the old file or the new one, never half of one)
        tmp = folder / f".{WEIGHTS}.{secrets.token_hex(4)}.tmp"
        try:
            save_file(
                {
                    f"{k}.{name}": np.ascontiguousarray(v)
                    for name, h in self.heads.items()
                    for k, v in h.items()
                },
                str(tmp),
            )
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, folder / WEIGHTS)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_json(folder / CARD, {**self.card, "values": list(SCHWARTZ_VALUES)})
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder: Any) -> TrainedValueDetector:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder / WEIGHTS}: no trained detector; run notebook 20 first")
        tensors = load_file(str(folder / WEIGHTS))
        heads: dict[str, dict[str, np.ndarray]] = {}
        for key, value in tensors.items():
            part, _, name = key.partition(".")
            heads.setdefault(name, {})[part] = value
        card = read_json(folder / CARD, {})
        if card.get("embedder") and card["embedder"] != getattr(embedder, "identity", card["embedder"]):
            raise ValueError(
                f"{folder}: trained on embeddings of {card['embedder']}, not {embedder.identity}"
            )
        return cls(embedder, heads, card)


def agreement(judge: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Per value: macro-F1 over {−1, 0, 1} (labels absent from both sides are left out), accuracy and support."""
    from sklearn.metrics import f1_score

    judge, predicted = np.asarray(judge, dtype=int), np.asarray(predicted, dtype=int)
    rows = []
    for j, name in enumerate(SCHWARTZ_VALUES):
        present = sorted(set(judge[:, j]) | set(predicted[:, j]))
        rows.append(
            {
                "value": name,
                "macro_f1": f1_score(
                    judge[:, j], predicted[:, j], labels=present, average="macro", zero_division=0
                ),
                "accuracy": float(np.mean(judge[:, j] == predicted[:, j])),
                "expressed": int(np.sum(judge[:, j] != 0)),
                "n": len(judge),
            }
        )
    return pd.DataFrame(rows).set_index("value")


def confusion(judge: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per value, the 3×3 confusion matrix (rows: judge −1/0/1, columns: detector)."""
    from sklearn.metrics import confusion_matrix

    judge, predicted = np.asarray(judge, dtype=int), np.asarray(predicted, dtype=int)
    return {
        name: confusion_matrix(judge[:, j], predicted[:, j], labels=list(LABELS))
        for j, name in enumerate(SCHWARTZ_VALUES)
    }


@DETECTORS.register("trained")
def _trained(
    backend: Any, embedder: Any, seed: int, path: str | None = None, **_: Any
) -> TrainedValueDetector:
    if embedder is None or path is None:
        raise ValueError("value detector 'trained' needs an embedder and path=<folder notebook 20 wrote>")
    return TrainedValueDetector.load(path, embedder)
