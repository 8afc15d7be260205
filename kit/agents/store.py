"""The agents a run built, saved once (notebook 01) and loaded by every later notebook.

``runs/<profile>/agents/agents.json`` lists each agent (name, kind, culture, system prompt, adapter
folder relative to the run folder, fingerprint) and the held-out questions notebook 01 evaluated
them on, so later units evaluate on exactly those and never rebuild an agent. It also records the
params notebook 01 ran with (``kit.run.artifacts.made_by``): a later notebook given another model, seed
or data split stops with one line instead of using agents built for other params.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kit.agents.kinds import Agent, fingerprint
from kit.data import OpinionItem
from kit.run.files import atomic_write_json, read_json

AGENTS_FILE = "agents.json"


@dataclass(frozen=True)
class AgentSet:
    """Built agents, the countries they serve, and each country's held-out question ids."""

    agents: tuple[Agent, ...]
    countries: tuple[str, ...]
    test_questions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    made_by: dict[str, Any] | None = None  # kit.run.artifacts.made_by of notebook 01's params

    def of_kind(self, kind: str) -> dict[str, Agent]:
        """Country -> agent of one kind (``vanilla`` has no country and is keyed by ``None``)."""
        return {a.culture: a for a in self.agents if a.kind == kind}

    def test_items(self, items: list[OpinionItem]) -> dict[str, list[OpinionItem]]:
        """The held-out items among ``items`` (a test split), per country, in stored order."""
        by_key = {(it.country, it.question_id): it for it in items}
        missing = [(c, q) for c, qs in self.test_questions.items() for q in qs if (c, q) not in by_key]
        if missing:
            raise ValueError(
                f"{len(missing)} held-out questions of the stored agents are not in the test split "
                f"(e.g. {missing[0]}); rerun notebook 01 with these data params"
            )
        return {c: [by_key[(c, q)] for q in qs] for c, qs in self.test_questions.items()}

    def save(self, run_dir: Path) -> Path:
        run_dir = Path(run_dir)
        agents = [
            asdict(a) | {"adapter": _relative(a.adapter, run_dir), "fingerprint": fingerprint(a)}
            for a in self.agents
        ]
        return atomic_write_json(
            run_dir / "agents" / AGENTS_FILE,
            {
                "agents": agents,
                "countries": list(self.countries),
                "test_questions": {c: list(q) for c, q in self.test_questions.items()},
                "report": self.report,
                "made_by": self.made_by,
            },
        )

    @classmethod
    def load(cls, run_dir: Path, params=None) -> AgentSet:
        """The stored agents; with ``params``, only if notebook 01 made them with the same model, seed and
        data (the sections both notebooks are given), else one line naming what changed."""
        from kit.run.artifacts import check_made_by

        run_dir = Path(run_dir)
        stored = read_json(run_dir / "agents" / AGENTS_FILE)
        if stored is None:
            raise ValueError(
                f"no agents stored in {run_dir / 'agents'}: run notebook 01 (01_cultural_agents) "
                "with this profile first"
            )
        if params is not None:
            check_made_by(
                stored.get("made_by"),
                params,
                f"the agents in {run_dir / 'agents'}",
                "notebook 01 (01_cultural_agents)",
            )
        agents = tuple(
            Agent(
                **(
                    {k: v for k, v in a.items() if k != "fingerprint"}
                    | {"adapter": None if a["adapter"] is None else str(run_dir / a["adapter"])}
                )
            )
            for a in stored["agents"]
        )
        return cls(
            agents,
            tuple(stored["countries"]),
            {c: tuple(q) for c, q in stored["test_questions"].items()},
            stored.get("report", {}),
            stored.get("made_by"),
        )


def _relative(adapter: str | None, run_dir: Path) -> str | None:
    if adapter is None:
        return None
    try:
        return Path(adapter).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError as e:
        raise ValueError(
            f"adapter {adapter} lies outside the run folder {run_dir}; agents store adapters inside it"
        ) from e
