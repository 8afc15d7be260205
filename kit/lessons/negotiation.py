"""Notebook 02 · negotiation: NCN and its baselines for every pair × topic × method, in lock-step.

Topics come from the params' source, agents from notebook 01's stored set (``Session.agents``);
every negotiation of the run advances one step at a time on the engine and is stored as it ends.
"""

from __future__ import annotations

import pandas as pd

from kit import plots
from kit.agents import Agent, prompted
from kit.data import Topic, resolve_countries
from kit.data.topics import negotiation_topics
from kit.negotiation.run import run_negotiations

STORE = "negotiations"


def topics(session) -> list[Topic]:
    p = session.params
    return negotiation_topics(p.data, p.negotiation.topics, p.seed)


def topic_table(topic_list: list[Topic]) -> pd.DataFrame:
    return pd.DataFrame({"topic": [t.id for t in topic_list], "text": [t.text for t in topic_list]})


def agents(session) -> dict[str, Agent]:
    """One agent of ``negotiation.agent_kind`` per country of the pairs; built ones come from notebook 01."""
    p = session.params
    countries = resolve_countries([c for pair in p.negotiation.pairs for c in pair], p.data.goqa_path)
    if p.negotiation.agent_kind == "prompted":
        return {c: prompted(c) for c in countries}
    built = session.agents().of_kind(p.negotiation.agent_kind)
    missing = [c for c in countries if c not in built]
    if missing:
        raise ValueError(f"notebook 01 built no {p.negotiation.agent_kind} agent for {missing}: add them to "
                         "agents.countries and run notebook 01 again")
    return {c: built[c] for c in countries}


def run(session, agent_by_country: dict[str, Agent], topic_list: list[Topic]) -> list[dict]:
    """Run (or resume) every negotiation of the params; the stored traces, in job order."""
    with session.timed("negotiations"):
        return run_negotiations(session.backend, session.embedder, agent_by_country, topic_list,
                                session.params.negotiation, session.records(STORE), session.params.seed)


def overview(traces: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": t["id"], "method": t["method"], "pair": " × ".join(a["culture"] for a in t["agents"]),
        "rounds": t["rounds_used"], "converged": t["converged"], "failed": t["failed"],
        "parse failures": t["parse_failures"],
    } for t in traces])


def example(traces: list[dict]) -> dict | None:
    """The first NCN negotiation that did not fail (else the first NCN one), to read round by round."""
    ncn = [t for t in traces if t["method"] == "ncn"]
    return next((t for t in ncn if not t["failed"]), ncn[0] if ncn else None)


def utility_figure(session, traces: list[dict]) -> None:
    """Best new utility per round for every NCN negotiation (one line per agent)."""
    import seaborn as sns

    rows = [{"round": r, "utility": u, "negotiation": f"{t['agents'][i]['culture']} ({t['topic']['id'][:8]})"}
            for t in traces if t["method"] == "ncn" and not t["failed"]
            for r, rnd in enumerate(t["rounds"], 1) for i, u in enumerate(rnd.get("best_utility", []))]
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
        "max_nash_gap": max((r["nash_gap"] for t in traces for r in t.get("rounds", []) if "nash_gap" in r), default=0.0),
        "seconds": session.timings.get("negotiations"),
    }
