"""The negotiation pipeline as notebooks 02–04 use it: topics and agents from params, every job run
round-synchronously and stored, and traces made readable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit import agents as agent_kinds
from kit.agents import Agent
from kit.config import Params
from kit.data import Topic, load_goqa, load_topics, resolve_country


def topics(params: Params) -> list[Topic]:
    t = params.negotiation.topics
    path = {"goqa": params.data.goqa_path, "moralchoice": params.data.moralchoice_path, "file": t.path}[t.source]
    return load_topics(t.source, path, n=t.n, seed=params.seed)


def heldout_topics(params: Params) -> list[Topic]:
    """Topics never negotiated in this profile: the next ``finetune.heldout_topics`` of the same source.

    Topic selection ranks by a seeded hash, so a larger pick contains the negotiated one."""
    t = params.negotiation.topics
    path = {"goqa": params.data.goqa_path, "moralchoice": params.data.moralchoice_path, "file": t.path}[t.source]
    used = {x.id for x in topics(params)}
    more = load_topics(t.source, path, n=t.n + params.finetune.heldout_topics, seed=params.seed)
    return [x for x in more if x.id not in used]


def pair_countries(params: Params) -> list[str]:
    known = {it.country for it in load_goqa(params.data.goqa_path)}
    return list(dict.fromkeys(resolve_country(c, known) for pair in params.negotiation.pairs for c in pair))


def make_agents(session) -> dict[str, Agent]:
    """One agent per country of the pairs; ``described`` agents reuse notebook 01's descriptions."""
    p = session.params
    countries = pair_countries(p)
    if p.negotiation.agent_kind == "prompted":
        return {c: agent_kinds.prompted(c) for c in countries}
    from kit.culture_description import describe_cultures
    from kit.fidelity import prepare_splits

    # Descriptions come from the train split only, exactly as notebook 01 built them (files reused).
    splits = prepare_splits(p.model_copy(update={"agents": p.agents.model_copy(update={"countries": countries, "min_train_items": 1})}))
    desc = describe_cultures(session.backend, splits.countries, splits.train, p.agents, p.seed,
                             session.run_dir / "agents" / "descriptions")
    return {c: agent_kinds.described(c, desc[c].text) if c in desc else agent_kinds.prompted(c) for c in countries}


def run(session, agents: dict[str, Agent], topic_list: list[Topic], store_name: str = "negotiations") -> list[dict]:
    from kit.negotiation.engine import run_negotiations

    store = session.records(store_name)
    with session.timed("negotiations"):
        return run_negotiations(session.backend, session.embedder, agents, topic_list, session.params.negotiation,
                                store, session.params.seed)


def overview(traces: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": t["id"], "method": t["method"], "pair": " × ".join(a["culture"] for a in t["agents"]),
        "rounds": t["rounds_used"], "converged": t["converged"], "failed": t["failed"],
        "parse failures": t["parse_failures"],
    } for t in traces])


def transcript(trace: dict, width: int = 400) -> str:
    """A negotiation as a readable transcript: openings, each round's statements and choices, consensus."""
    a, b = (x["culture"] for x in trace["agents"])
    cut = lambda s: (s or "").strip().replace("\n", " ")[:width]  # noqa: E731
    lines = [f"# {trace['method'].upper()} — {a} × {b}", f"Topic: {cut(trace['topic']['text'])}", ""]
    for who, init in zip((a, b), trace.get("initial", [])):
        g = init.get("guideline") or {}
        lines.append(f"[{who}] opening guideline: {g.get('title', '—')} — {cut(g.get('description', ''))}")
        lines.append(f"[{who}] opinion: {cut(init.get('opinion') or init.get('response'))}")
    for r, rnd in enumerate(trace.get("rounds", []), 1):
        lines.append(f"\n— round {r} —")
        for who, st in zip((a, b), rnd.get("statements", [])):
            lines.append(f"[{who}] {cut(st)}")
        for who, ch in zip((a, b), rnd.get("chosen", [])):
            if ch:
                lines.append(f"[{who}] adds guideline: {ch.get('title', '')} (U={ch.get('total', float('nan')):.3f})")
        if "nash_gap" in rnd:
            lines.append(f"weights {a}: {_fmt_w(rnd['weights'][0])} · {b}: {_fmt_w(rnd['weights'][1])} · Nash gap {rnd['nash_gap']:.1e}")
    lines.append("\n— consensus —")
    for who, text in zip((a, b), trace.get("consensus", [])):
        lines.append(f"[{who}] {cut(text)}")
    return "\n".join(lines)


def _fmt_w(w) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in w) + "]"


def weights_table(trace: dict) -> pd.DataFrame:
    """Guideline weights per round (NCN): how the equilibrium moves as pools grow."""
    rows = []
    for r, rnd in enumerate(trace.get("rounds", []), 1):
        for side, (pool, weights) in enumerate(zip(rnd.get("pools", []), rnd.get("weights", []))):
            for title, w in zip(pool, weights):
                rows.append({"round": r, "agent": trace["agents"][side]["culture"], "guideline": title, "weight": w})
    return pd.DataFrame(rows)


def utility_figure(traces: list[dict], path: Path) -> Path:
    """Best new utility per round for every NCN negotiation (one line per agent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = [{"round": r, "utility": u, "negotiation": f"{t['agents'][i]['culture']} ({t['topic']['id'][:8]})"}
            for t in traces if t["method"] == "ncn" and not t["failed"]
            for r, rnd in enumerate(t["rounds"], 1) for i, u in enumerate(rnd.get("best_utility", []))]
    fig, ax = plt.subplots(figsize=(7, 4))
    if rows:
        sns.lineplot(pd.DataFrame(rows), x="round", y="utility", hue="negotiation", marker="o", ax=ax)
        ax.legend(fontsize=7, loc="best")
    ax.set_title("NCN: utility of each agent's best new guideline per round")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def key_numbers(traces: list[dict], timings: dict) -> dict:
    df = overview(traces)
    by = df.groupby("method")
    return {
        "negotiations": len(traces),
        "failed": int(df["failed"].sum()),
        "parse_failures": int(df["parse failures"].sum()),
        "rounds_mean": {m: round(float(v), 2) for m, v in by["rounds"].mean().items()},
        "converged_share": {m: round(float(v), 3) for m, v in by["converged"].mean().items()},
        "max_nash_gap": max((r["nash_gap"] for t in traces for r in t.get("rounds", []) if "nash_gap" in r), default=0.0),
        "seconds": timings.get("negotiations"),
    }
