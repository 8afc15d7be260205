"""The data package's own params section: where a study's topics come from (``TopicsParams``), validated
here and composed by ``kit.config`` into ``negotiation.topics`` and ``palette.queries``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from kit.run.sections import Section, existing_file, existing_path


class TopicsParams(Section):
    # goqa: train-split questions; moralchoice: high-ambiguity scenarios; file: your own; prism: the
    # PRISM opening prompts from the hub (online runs); ncn_release: the NCN paper's 457 topics
    source: Literal["goqa", "moralchoice", "file", "prism", "ncn_release"] = "moralchoice"
    n: PositiveInt = 4
    # file: the topic file; ncn_release: the release's tarball or unpacked folder (null: the release beside the project)
    path: str | None = None
    # share of the source kept out of every negotiation, for evaluating finetuning (notebook 04)
    heldout_share: float = Field(0.2, gt=0, lt=1)

    @field_validator("path")
    @classmethod
    def _topic_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("source") == "ncn_release":
            return existing_path(v)
        return existing_file(v)

    @model_validator(mode="after")
    def _file_has_path(self):
        if self.source == "file" and self.path is None:
            raise ValueError(
                "source file needs path: a JSON or JSONL file of topics; fix: set path, or use goqa or moralchoice"
            )
        return self
