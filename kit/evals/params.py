"""The evaluation package's own params: the ``capability`` section (lm-evaluation-harness tasks, the kit's own
among them) and the NLI scorer names sections choose from (``registered_nli``). ``kit.config`` composes them."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from kit.evals.harness import LOCAL_TASKS
from kit.run.sections import Section, registered, unique


def registered_nli(v: str | None) -> str | None:
    """An NLI scorer of ``NLI_SCORERS`` (or None where the section allows none)."""
    from kit.evals.nli import NLI_SCORERS  # loads the metrics (scipy): read when a section names a scorer

    return v if v is None else registered(NLI_SCORERS, v)


class CapabilityParams(Section):
    """Every unit's capability step: lm-evaluation-harness tasks on the base model and each trained artifact
    (``kit.evals.harness``); each notebook's ``capability_items`` is lm-eval's ``limit``."""

    # the kit's own (agora_*: offline, from data.moralchoice_path and the neutral passages) and any task lm-eval
    # registers (ifeval, gpqa_diamond_zeroshot, mmlu …: their data from the Hugging Face Hub)
    tasks: list[str] = Field(
        default_factory=lambda: ["agora_moralchoice_low", "agora_moralchoice_high", "agora_neutral_ppl"],
        min_length=1,
    )

    _once = field_validator("tasks")(unique)

    @field_validator("tasks")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-.]*", name):
                raise ValueError(f"{name!r} is not an lm-eval task name (letters, digits, _ - .)")
            if name.startswith("agora_") and name not in LOCAL_TASKS:
                raise ValueError(f"{name!r}: the kit ships {', '.join(LOCAL_TASKS)}")
        return v
