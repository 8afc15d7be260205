"""MoralChoice (Scherrer et al. 2023): moral scenarios with two actions.

Read from the Modular Pluralism JSON release, whose ``question`` wraps the scenario as
"Below is a scenario and two potential actions, … \\nScenario: …\\nA. …\\nB. …\\nAnswer:".
High-ambiguity scenarios (no clearly right action, gold 0.5 / 0.5) make good dilemmas for
negotiation and self-play.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kit.run.paths import resolve

log = logging.getLogger(__name__)

Ambiguity = Literal["low", "high"]
_AMBIGUITY = {"low_ambiguity": "low", "high_ambiguity": "high"}
_SCENARIO = re.compile(r"Scenario: (?P<context>.*)\nA\. (?P<a>.*)\nB\. (?P<b>.*)\nAnswer:\s*$", re.S)


@dataclass(frozen=True)
class MoralScenario:
    """A scenario (``context``) and the two first-person actions one may take in it."""

    id: str
    context: str
    actions: tuple[str, str]
    ambiguity: Ambiguity
    gold_distribution: tuple[float, float]

    @property
    def dilemma(self) -> str:
        """The scenario and both actions as one text, for a negotiation topic."""
        return f"{self.context}\nAction A: {self.actions[0]}\nAction B: {self.actions[1]}"


def _scenario(rec: dict, where: str) -> MoralScenario:
    missing = {"question", "options", "attribute", "gold_distribution", "id"} - set(rec)
    if missing:
        raise ValueError(f"{where}: missing fields {sorted(missing)}")
    if rec["attribute"] not in _AMBIGUITY:
        raise ValueError(f"{where}: attribute {rec['attribute']!r} is not one of {sorted(_AMBIGUITY)}")
    options = rec["options"]
    if not isinstance(options, list) or len(options) != 2:
        raise ValueError(f"{where}: expected two options, got {options!r}")
    match = _SCENARIO.search(rec["question"])
    if match is None:
        raise ValueError(f"{where}: question does not contain 'Scenario: …\\nA. …\\nB. …\\nAnswer:'")
    # the options field is authoritative; the question must agree with it
    if [match["a"].strip(), match["b"].strip()] != [o.strip() for o in options]:
        raise ValueError(f"{where}: actions in the question differ from the options field")
    try:
        gold = tuple(float(v) for v in rec["gold_distribution"])
    except (TypeError, ValueError):
        gold = ()
    if len(gold) != 2 or any(not math.isfinite(v) or v < 0 for v in gold) or sum(gold) <= 0:
        raise ValueError(
            f"{where}: gold_distribution {rec['gold_distribution']!r} is not two non-negative shares"
        )
    total = sum(gold)
    return MoralScenario(
        id=str(rec["id"]),
        context=match["context"].strip(),
        actions=(options[0].strip(), options[1].strip()),
        ambiguity=_AMBIGUITY[rec["attribute"]],
        gold_distribution=(gold[0] / total, gold[1] / total),
    )


def load_moralchoice(path: str | Path, ambiguity: Ambiguity | None = None) -> list[MoralScenario]:
    """Read MoralChoice scenarios, optionally only the ``"low"`` or ``"high"`` ambiguity ones."""
    if ambiguity not in (None, "low", "high"):
        raise ValueError(f"ambiguity must be None, 'low' or 'high', got {ambiguity!r}")
    path = resolve(path)  # relative: from the project root, as every params path
    if not path.is_file():
        raise ValueError(
            f"MoralChoice file {path} does not exist; point the data path at moralchoice/dev.json"
        )
    records = json.loads(path.read_text(encoding="utf-8-sig"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of MoralChoice records")
    scenarios = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"{path} record {i}: expected a JSON object, got {type(rec).__name__}")
        scenarios.append(_scenario(rec, f"{path} record {i}"))
    selected = [s for s in scenarios if ambiguity is None or s.ambiguity == ambiguity]
    log.info("loaded %d MoralChoice scenarios from %s (ambiguity=%s)", len(selected), path, ambiguity)
    return selected
