"""Notebook 02 · negotiation: NCN and its baselines for every pair × topic × method, in lock-step.

Topics come from the negotiation pool of the params' source, agents from notebook 01's stored set
(``Session.agents``); every negotiation of the run advances one step at a time on the engine and is
stored, as it ends, in the study's fingerprinted trace store (``kit.negotiation.run``). Notebooks
03 and 04 read the same store through :func:`study_traces`.
"""

from __future__ import annotations

import pandas as pd

from kit.agents import Agent
from kit.data import Topic
from kit.data.topics import negotiation_topics
from kit.llm.base import backend_parts
from kit.negotiation.run import planned_traces, resolve_pairs, run_negotiations, study_agents, study_store
from kit.reporting import plots
from kit.run.records import RecordStore
from kit.session import in_stage


def topics(session) -> list[Topic]:
    p = session.params
    return negotiation_topics(p.data, p.negotiation.topics, p.seed)


def topic_table(topic_list: list[Topic]) -> pd.DataFrame:
    return pd.DataFrame({"topic": [t.id for t in topic_list], "text": [t.text for t in topic_list]})


def agents(session) -> dict[str, Agent]:
    """One agent of ``negotiation.agent_kind`` per pair country; built ones come from notebook 01."""
    p = session.params
    return study_agents(p, None if p.negotiation.agent_kind == "prompted" else session.agents())


def store(session, agent_by_country: dict[str, Agent]) -> RecordStore:
    """The study's trace store: traces made with other agents, model, settings or data live elsewhere."""
    return study_store(session.params, session.run_dir, agent_by_country, backend_parts(session.backend))


@in_stage("02", "negotiations")
def run(session, agent_by_country: dict[str, Agent], topic_list: list[Topic]) -> list[dict]:
    """Run (or resume) every negotiation of the params, one method at a time, so each method's cost is
    its own (``kit.run.cost``); the stored traces, in plan order."""
    p = session.params
    traces = store(session, agent_by_country)
    with session.timed("negotiations"):
        session.each_row(
            "negotiate",
            dict.fromkeys(p.negotiation.methods),
            lambda one: run_negotiations(
                session.backend,
                session.embedder,
                agent_by_country,
                topic_list,
                p.negotiation.model_copy(update={"methods": list(one)}),
                traces,
                p.seed,
                pairs=resolve_pairs(p),
            ),
        )
    return planned_traces(traces, p, topic_list)


def study_traces(session) -> tuple[dict[str, Agent], list[dict]]:
    """The study's agents and its stored traces of the current plan (for notebooks 03 and 04)."""
    agent_by_country = agents(session)
    found = planned_traces(store(session, agent_by_country), session.params, topics(session))
    if not found:
        raise ValueError("no traces of this study yet: run notebook 02 with the same params first")
    return agent_by_country, found


def overview(traces: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": t["id"],
                "method": t["method"],
                "pair": " × ".join(a["culture"] for a in t["agents"]),
                "rounds": t["rounds_used"],
                "converged": t["converged"],
                "failed": t["failed"],
                "parse failures": t["parse_failures"],
            }
            for t in traces
        ]
    )


def example(traces: list[dict]) -> dict | None:
    """The first NCN negotiation that did not fail (else the first NCN one), to read round by round."""
    ncn = [t for t in traces if t["method"] == "ncn"]
    return next((t for t in ncn if not t["failed"]), ncn[0] if ncn else None)


def utility_figure(session, traces: list[dict]) -> None:
    """Best new utility per round for every NCN negotiation (one line per agent)."""
    import seaborn as sns

    rows = [
        {"round": r, "utility": u, "negotiation": f"{t['agents'][i]['culture']} ({t['topic']['id'][:8]})"}
        for t in traces
        if t["method"] == "ncn" and not t["failed"]
        for r, rnd in enumerate(t["rounds"], 1)
        for i, u in enumerate(rnd.get("best_utility", []))
    ]
    with plots.figure(session.figure_paths("02_utility_per_round.png"), figsize=(7, 4)) as (_, ax):
        if rows:
            sns.lineplot(pd.DataFrame(rows), x="round", y="utility", hue="negotiation", marker="o", ax=ax)
            ax.legend(fontsize=7, loc="best")
        ax.set_title("NCN: utility of each agent's best new guideline per round")


def key_numbers(session, traces: list[dict]) -> dict:
    df = overview(traces)
    by = df.groupby("method")
    return {
        "negotiations": len(traces),
        "failed": int(df["failed"].sum()),
        "parse_failures": int(df["parse failures"].sum()),
        "rounds_mean": {m: round(float(v), 2) for m, v in by["rounds"].mean().items()},
        "converged_share": {m: round(float(v), 3) for m, v in by["converged"].mean().items()},
        "max_nash_gap": max(
            (r["nash_gap"] for t in traces for r in t.get("rounds", []) if "nash_gap" in r), default=0.0
        ),
        "seconds": session.timings.get("negotiations"),
    }
