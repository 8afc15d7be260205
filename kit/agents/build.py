"""Build every requested agent kind for the countries of a study, from the train split only.

Descriptions and grounded adapters are stored in the run folder with the fingerprint of what
made them and reused on a rerun while it matches; before the agents are saved
(``store.AgentSet``), a check asserts that no test question reached any description or training
record. Grounded agents carry the culture description too (adapter plus description, as NCN
builds its agents), so descriptions are written whenever either kind is asked for.
"""

from __future__ import annotations

from kit.agents import kinds
from kit.agents.descriptions import describe_cultures
from kit.agents.grounding import train_grounded_agents
from kit.agents.store import AgentSet
from kit.data import SurveySplits
from kit.data.leaks import agent_leak_counts, assert_no_leaks, assert_no_test_leak
from kit.run import artifacts


def build_agents(session, splits: SurveySplits) -> AgentSet:
    """Every kind of ``session.params.agents.kinds`` for every kept country; saved to the run folder.

    ``AgentSet.report`` says what was built: which survey rows the agents come from, countries
    whose description lacks a section, and each grounded agent's data funnel and training.
    """
    from kit.llm.models import resolve_model

    p = session.params
    wanted, report = p.agents.kinds, {"source": splits.source_note}
    built: list[kinds.Agent] = [kinds.vanilla()] if "vanilla" in wanted else []
    if "prompted" in wanted:
        built += [kinds.prompted(c) for c in splits.countries]
    texts: list[str] = []
    desc = {}
    if {"described", "grounded"} & set(wanted):
        with session.timed("describe cultures", row="described"):
            desc = describe_cultures(
                session.backend,
                splits.countries,
                splits.train,
                p.agents,
                p.seed,
                session.run_dir / "agents" / "descriptions",
            )
        texts += [d.text for d in desc.values()]
        report["descriptions_incomplete"] = [c for c, d in desc.items() if not d.complete]
    if "described" in wanted:
        built += [kinds.described(c, d.text) for c, d in desc.items()]
    if "grounded" in wanted:
        base = resolve_model(p.model.name, p.model.revision).ref
        with session.timed("ground agents (data + LoRA SFT)", row="grounded"):
            grounded = train_grounded_agents(
                session.backend,
                base,
                splits.countries,
                splits.train,
                p.agents,
                p.seed,
                session.run_dir / "agents" / "grounded",
                room=lambda: session.stage("01", "grounded SFT"),
            )
        built += [
            kinds.grounded(c, g.adapter_dir, desc[c].text) for c, g in grounded.items() if g.adapter_dir
        ]
        report["grounding"] = {c: g.stats for c, g in grounded.items()}
        texts += [m["content"] for g in grounded.values() for r in g.records for m in r["messages"][1:]]
    assert_no_test_leak(splits.train_items, splits.test_items, texts)
    # the counts notebook 01 records, by question stem; it stops when one is not 0
    report["leaks"] = agent_leak_counts(
        splits.train_all_countries or splits.train_items, splits.test_all_countries, texts
    )
    assert_no_leaks(report["leaks"], "the agents' descriptions or grounding data")
    agent_set = AgentSet(
        tuple(built),
        tuple(splits.countries),
        {c: tuple(it.question_id for it in splits.test[c]) for c in splits.countries},
        report,
        artifacts.made_by(p),
    )
    agent_set.save(session.run_dir)
    return agent_set
