"""Notebook 05 · the NCN paper's own negotiations, read and re-scored.

Reads the paper's public release (``kit.negotiation.ncn_release``) and shows three things: the paper's numbers
recomputed by the kit from the paper's own per-transcript vectors and perplexities, key by key beside the
release's summaries (``kit.metrics.consensus.release_value_summary``, and the kit's own definition where it
differs, ``kit_value_summary``); the paper's claims tested on its data — NCN against debate and consultancy,
paired over common (pair, topic) items with bootstrap intervals (``kit.metrics.alignment.paired_verdicts``);
and the kit's judges against the paper's — the value judge (``models.value_judge``) and the embedding proxy
scoring the released statements, read against the GPT-4o vectors per Schwartz value
(``kit.metrics.agreement``), and the kit's relative acceptance of the released texts under the run's agents
(``kit.evals.traces``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kit.agents import Agent, prompted
from kit.data import goqa_split
from kit.data.leaks import assert_no_leaks, leak_counts
from kit.evals.traces import acceptance_table, split_usable
from kit.metrics.agreement import agreement_table, spearman_with_ci
from kit.metrics.alignment import bootstrap_ci, paired_verdicts
from kit.metrics.consensus import (
    KIT_DIFFERENCES,
    RELEASE_COUNTS,
    RELEASE_LISTS,
    acceptance_gap,
    acceptance_ratio,
    kit_value_summary,
    release_ppl_row,
    release_value_summary,
    release_values_equal,
    value_consensus,
    value_cosine,
    value_self_consistency,
)
from kit.negotiation.ncn_release import (
    PAPER_JUDGE,
    PPL_COLUMNS,
    RELEASE_PPL,
    SLOT_COLUMNS,
    Release,
    item_rows,
    read_release,
)
from kit.reporting import plots
from kit.run import seeds
from kit.session import in_stage
from kit.values import SCHWARTZ_VALUES, make_value_detector

NOTEBOOK = "05_ncn_release"
BASELINES = ("debate", "consultancy")
# The paper's claims for NCN, as scores on its own data: name -> (better direction, what it says).
CLAIMS = {
    "value_consensus_gain": (
        "higher",
        "brings the two sides' values closer (value consensus, final − initial)",
    ),
    "self_consistency": ("higher", "keeps each side's own values (self-consistency)"),
    "d_ratio": ("lower", "makes acceptance more even (perplexity D_final / D_initial)"),
}
PPL_DIFFERENCE = (
    "copy-task perplexities: the release asks an API to copy each text (≈ 1, −1 when it failed); "
    "the kit scores each text under the other agent and reads rel_logppl"
)
SLOTS = (("initial", "v_initial_a", "v_initial_b"), ("final", "v_final_a", "v_final_b"))


def release(session) -> Release:
    """The release at ``ncn_release.path``: its pairs and methods, ``max_items`` topics per pair as traces."""
    r, p = session.params.ncn_release, session.params
    with session.timed("read the release"):
        return read_release(r.path, r.pairs, r.methods, r.max_items, p.seed)


def overview(found: Release) -> pd.DataFrame:
    from kit.negotiation.ncn_release import summary_counts

    return summary_counts(found)


def topic_leaks(session, found: Release) -> dict[str, int]:
    """The release's topics against the GlobalOpinionQA test split, as every topic source is counted; stops the
    notebook unless 0."""
    d = session.params.data
    _, test = goqa_split(d.goqa_path, d.test_fraction, d.split_seed, d.goqa_test_path)
    counts = {
        "topics_in_goqa_test": leak_counts(list(found.topics.values()), [], [], [], test)[
            "topics_in_goqa_test"
        ]
    }
    assert_no_leaks(counts, "the NCN release's topics")
    return counts


# --- the paper's numbers, recomputed ---------------------------------------------------------------


def _shown(key: str, value):
    """A summary value as one number: a per-transcript list by its mean, a table of counts by its total."""
    if value is None:
        return None
    if key in RELEASE_COUNTS:
        return int(sum(sum(v.values()) for v in value.values())) if isinstance(value, dict) else None
    if key in RELEASE_LISTS:
        flat = (
            [x for v in value for x in (v if isinstance(v, list) else [v])] if isinstance(value, list) else []
        )
        return float(np.mean(flat)) if flat else None
    return value


def reproduced(found: Release) -> pd.DataFrame:
    """Per pair, method and key of the release's summary: the release's number, the kit's under the release's
    definition, whether they are equal (to 1e-9; lists as multisets, counts exactly), and where the kit's own
    definition differs, its number and what differs. The perplexity keys (the release publishes no perplexity
    summary) compare every transcript's derived number and show their means."""
    rows = []
    ev = found.evaluations
    for pair in found.pairs:
        for method in found.methods:
            mine = ev[(ev["pair"] == pair.folder) & (ev["method"] == method)] if len(ev) else ev
            values = mine[mine["has_values"]].sort_values(["eval_file", "eval_order"]) if len(mine) else mine
            summary = found.summaries.get((pair.folder, method))
            if summary is not None and len(values):
                vectors = [values[c].tolist() for c in SLOT_COLUMNS]
                ours, own = release_value_summary(*vectors), kit_value_summary(*vectors)
                for key, theirs in summary.items():
                    rows.append(
                        {
                            "pair": pair.folder,
                            "method": method,
                            "key": key,
                            "release": _shown(key, theirs),
                            "kit": _shown(key, ours.get(key)),
                            "equal": key in ours and release_values_equal(key, ours[key], theirs),
                            "kit_own": own.get(key),
                            "difference": KIT_DIFFERENCES.get(key, "")
                            if key in ours
                            else "no definition of this key found",
                        }
                    )
            ppl = mine[mine["has_ppl"]] if len(mine) else mine
            if len(ppl):
                rows += _ppl_rows(pair.folder, method, ppl)
    return pd.DataFrame(
        rows, columns=["pair", "method", "key", "release", "kit", "equal", "kit_own", "difference"]
    )


def _ppl_rows(pair: str, method: str, ppl: pd.DataFrame) -> list[dict]:
    ours = [release_ppl_row(*(getattr(r, c) for c in PPL_COLUMNS)) for r in ppl.itertuples()]
    valid = [r for r in ppl.itertuples() if all(getattr(r, c) >= 0 for c in PPL_COLUMNS)]
    d = [
        (acceptance_gap(r.ppl_initial_a, r.ppl_initial_b), acceptance_gap(r.ppl_final_a, r.ppl_final_b))
        for r in valid
    ]
    own = {
        "PPL_init_distance": float(np.mean([a for a, _ in d])) if d else None,
        "PPL_final_distance": float(np.mean([b for _, b in d])) if d else None,
        "PPL_distance_difference": _mean([acceptance_ratio(a, b) for a, b in d]),
    }
    out = []
    for key in RELEASE_PPL:
        theirs, mine = ppl[key].tolist(), [o[key] for o in ours]
        equal = all(
            (t is None or (isinstance(t, float) and math.isnan(t))) == (m is None)
            and (m is None or abs(t - m) <= 1e-9)
            for t, m in zip(theirs, mine)
        )
        out.append(
            {
                "pair": pair,
                "method": method,
                "key": key,
                "release": _mean([t for t in theirs if t is not None and not math.isnan(t)]),
                "kit": _mean([m for m in mine if m is not None]),
                "equal": equal,
                "kit_own": own[key],
                "difference": (
                    "failed perplexity (−1): release uses it as written, kit leaves the record out; "
                    if key != "PPL_distance_difference"
                    else ""
                )
                + PPL_DIFFERENCE,
            }
        )
    return out


def _mean(xs: list[float]) -> float | None:
    finite = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(finite)) if finite else None


def reproduced_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair and method: keys compared, keys equal, and which keys the kit defines differently."""
    if table.empty:
        return pd.DataFrame(columns=["pair", "method", "keys", "equal", "kit_differs"])
    return (
        table.assign(differs=table["difference"].ne("") & table["key"].isin(KIT_DIFFERENCES))
        .groupby(["pair", "method"], sort=False)
        .agg(keys=("key", "size"), equal=("equal", "sum"), kit_differs=("differs", "sum"))
        .reset_index()
    )


def reproduced_metrics(table: pd.DataFrame) -> dict:
    """pair → method → key → {release, kit, equal} (and kit_own where the kit's definition differs)."""
    out: dict = {}
    for r in table.itertuples():
        entry = {"release": _plain(r.release), "kit": _plain(r.kit), "equal": bool(r.equal)}
        if r.key in KIT_DIFFERENCES or r.key in RELEASE_PPL:
            entry["kit_own"] = _plain(r.kit_own)
        out.setdefault(r.pair, {}).setdefault(r.method, {})[r.key] = entry
    return out


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


# --- the paper's claims, tested ------------------------------------------------------------------


def item_scores(found: Release) -> pd.DataFrame:
    """One row per (pair, topic, method) of the release's evaluations, scored by the kit's definitions: value
    consensus gain, self-consistency (mean of the two sides'), the perplexity D ratio (nan where undefined:
    an all-zero vector, a failed perplexity)."""
    rows = []
    for r in item_rows(found.evaluations).itertuples():
        vec = [getattr(r, c) for c in SLOT_COLUMNS]
        gain = selfc = float("nan")
        if all(v is not None for v in vec):
            gain = value_consensus(vec[2], vec[3]) - value_consensus(vec[0], vec[1])
            sides = [value_self_consistency(vec[2], vec[0]), value_self_consistency(vec[3], vec[1])]
            selfc = float(np.nanmean(sides)) if not all(math.isnan(s) for s in sides) else float("nan")
        ppl = [getattr(r, c) for c in PPL_COLUMNS]
        ratio = float("nan")
        if all(isinstance(x, float) and math.isfinite(x) and x >= 0 for x in ppl):
            ratio = acceptance_ratio(acceptance_gap(ppl[0], ppl[1]), acceptance_gap(ppl[2], ppl[3]))
        rows.append(
            {
                "id": f"{r.pair}|{r.topic_id}",
                "pair": r.pair,
                "topic_id": r.topic_id,
                "method": r.method,
                "value_consensus_gain": gain,
                "self_consistency": selfc,
                "d_ratio": ratio if math.isfinite(ratio) else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["id", "pair", "topic_id", "method", *CLAIMS])


def claims(session, scores: pd.DataFrame) -> pd.DataFrame:
    """NCN minus each baseline per claim, paired on the (pair, topic) items both have a score for: mean
    difference, 95 % bootstrap interval, n and the verdict (the score's direction taken into account; "too few"
    below ``verdicts.min_items`` items)."""
    p = session.params
    out = []
    for claim, (better, _) in CLAIMS.items():
        for baseline in BASELINES:
            both = scores[scores["method"].isin(["ncn", baseline])]
            if both["method"].nunique() < 2:
                continue
            for v in paired_verdicts(
                both,
                "ncn",
                claim,
                p.n_boot,
                seeds.derive(p.seed, "bootstrap"),
                min_items=p.verdicts.min_items,
                direction=better,
            ):
                out.append({"claim": claim, **v})
    return pd.DataFrame(
        out, columns=["claim", "against", "score", "mean_diff", "ci_low", "ci_high", "n", "verdict"]
    )


def verdict(compared: pd.DataFrame, found: Release) -> list[str]:
    """Which of the paper's claims its own numbers support, one line each: NCN measurably better than both
    baselines (supported), than one (partly), than none (not supported), or measurably worse (contradicted)."""
    lines = []
    for claim, (_, says) in CLAIMS.items():
        rows = compared[compared["claim"] == claim]
        if rows.empty:
            lines.append(f"NCN {says}: not testable here (no baseline scored on the same items).")
            continue
        better, worse = (
            rows[rows["verdict"] == "better"]["against"].tolist(),
            rows[rows["verdict"] == "worse"]["against"].tolist(),
        )
        judged = (
            "not testable (too few items)"
            if (rows["verdict"] == "too few").all()
            else "supported"
            if len(better) == len(rows)
            else "partly supported"
            if better
            else "contradicted"
            if worse
            else "not supported"
        )
        detail = "; ".join(
            f"vs {r.against} {r.mean_diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}], n={r.n}"
            for r in rows.itertuples()
        )
        extra = f" (worse than {', '.join(worse)})" if worse and judged != "contradicted" else ""
        lines.append(f"NCN {says}: {judged}{extra} — {detail}.")
    pairs = len(found.pairs)
    return [
        f"On the release's own {PAPER_JUDGE} vectors and copy-task perplexities ({pairs} pair(s)), paired over "
        "common (pair, topic) items with 95 % bootstrap intervals:",
        *lines,
    ]


def claims_figure(session, compared: pd.DataFrame) -> None:
    """NCN minus each baseline per claim, with its interval (a D ratio is better when lower)."""
    with plots.figure(session.figure_paths("05_claims.png"), figsize=(8, 3.6)) as (_, ax):
        labels = [f"{r.claim} vs {r.against}" for r in compared.itertuples()]
        y = np.arange(len(labels))
        ax.errorbar(
            compared["mean_diff"],
            y,
            xerr=[compared["mean_diff"] - compared["ci_low"], compared["ci_high"] - compared["mean_diff"]],
            fmt="o",
            capsize=3,
        )
        ax.axvline(0.0, color="grey", ls="--", lw=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("NCN − baseline (95 % bootstrap interval)")
        ax.set_title("The paper's claims on its own data")


# --- the kit's judges against the paper's --------------------------------------------------------


def judged_units(found: Release) -> pd.DataFrame:
    """One row per (trace, text) of the traces read that the paper's judge scored: the text, the slot, and the
    GPT-4o vector."""
    ev = found.evaluations
    scored = ev[ev["has_values"] & ev["trace_id"].notna()] if len(ev) else ev
    by_id = {t["id"]: t for t in found.traces}
    rows = []
    for r in scored.itertuples():
        trace = by_id[r.trace_id]
        texts = [trace["initial"][0]["response"], trace["initial"][1]["response"], *trace["consensus"]]
        if not all(t.strip() for t in texts):
            continue
        for (slot, col), text in zip(
            zip(("initial_a", "initial_b", "final_a", "final_b"), SLOT_COLUMNS), texts
        ):
            rows.append(
                {
                    "trace": r.trace_id,
                    "method": r.method,
                    "slot": slot,
                    "text": text,
                    "reference": getattr(r, col),
                }
            )
    return pd.DataFrame(rows, columns=["trace", "method", "slot", "text", "reference"])


# The kit's judge reads each released statement once, greedily, as the paper's judge did: an unreadable reply
# is counted, not asked again; a reply of the ten values' JSON fits well within this many tokens.
JUDGE_TOKENS = 160


def detectors(session) -> dict:
    """The kit's value judge on ``models.value_judge`` (one greedy reading per text) and the embedding proxy."""
    p = session.params
    return {
        f"llm ({session.role_name('value_judge')})": make_value_detector(
            "llm",
            backend=session.role_backend("value_judge"),
            seed=p.seed,
            max_retries=0,
            max_new_tokens=JUDGE_TOKENS,
        ),
        "embedding": make_value_detector("embedding", embedder=session.embedder, seed=p.seed),
    }


@in_stage("05", "the release judged and scored")
def judge_agreement(session, units: pd.DataFrame) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Per detector: which texts it could read, exact agreement and Cohen's κ per Schwartz value against the
    paper's GPT-4o vectors (half steps rounded away from 0, and counted), and Spearman's ρ of the cosines the
    two judges give each (initial, final) pair of texts; intervals by bootstrap over traces."""
    p = session.params
    seed = seeds.derive(p.seed, "bootstrap")
    texts = list(dict.fromkeys(units["text"]))
    summary, tables = {}, {}
    for name, detector in detectors(session).items():
        with session.timed(f"judge ({name})", row=name):
            found = dict(zip(texts, (r.vector for r in detector.vectors(texts)))) if texts else {}
        read = units[[found.get(t) is not None for t in units["text"]]]
        entry = {"texts": len(texts), "readable": sum(v is not None for v in found.values())}
        if len(read):
            table = agreement_table(
                np.array(read["reference"].tolist()),
                np.array([found[t] for t in read["text"]]),
                SCHWARTZ_VALUES,
                groups=read["trace"].tolist(),
                n_boot=p.n_boot,
                seed=seed,
            )
            tables[name] = table
            entry |= {
                "units": len(read),
                "half_steps_rounded": int(table["half_steps_rounded"].sum()),
                "kappa": {
                    v: [_round(r.kappa), _round(r.kappa_low), _round(r.kappa_high)]
                    for v, r in table.iterrows()
                },
                "exact": {
                    v: [_round(r.exact), _round(r.exact_low), _round(r.exact_high)]
                    for v, r in table.iterrows()
                },
                "mean_kappa": _round(table["kappa"].mean()) if table["kappa"].notna().any() else None,
            }
        entry["cosine_spearman"] = _cosine_agreement(units, found, p.n_boot, seed)
        summary[name] = entry
    return summary, tables


def _cosine_agreement(units: pd.DataFrame, found: dict, n_boot: int, seed: int) -> dict:
    gpt, kit, groups = [], [], []
    for trace, rows in units.groupby("trace", sort=False):
        by_slot = {r.slot: r for r in rows.itertuples()}
        for stage in ("initial", "final"):
            a, b = by_slot.get(f"{stage}_a"), by_slot.get(f"{stage}_b")
            if a is None or b is None or found.get(a.text) is None or found.get(b.text) is None:
                continue
            ours, theirs = value_cosine(found[a.text], found[b.text]), value_cosine(a.reference, b.reference)
            if math.isfinite(ours) and math.isfinite(theirs):
                gpt.append(theirs), kit.append(ours), groups.append(trace)
    rho, low, high = spearman_with_ci(gpt, kit, groups, n_boot, seed) if gpt else (float("nan"),) * 3
    return {"rho": _round(rho), "ci": [_round(low), _round(high)], "n": len(gpt)}


def agreement_long(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return (
        pd.concat({k: t for k, t in tables.items()}, names=["judge"]).reset_index()
        if tables
        else pd.DataFrame()
    )


def _round(v, digits: int = 4):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), digits)


# --- relative acceptance of the released texts ---------------------------------------------------


def acceptance_agents(session, found: Release) -> dict[str, Agent]:
    """An agent per culture of the traces read: the run's agent of ``negotiation.agent_kind`` where notebook 01
    built one, else a prompted one (say which in the table)."""
    kind = session.params.negotiation.agent_kind
    built = {} if kind == "prompted" else session.agents().of_kind(kind)
    cultures = dict.fromkeys(a["culture"] for t in found.traces for a in t["agents"])
    return {c: built.get(c) or prompted(c) for c in cultures}


@in_stage("05", "the release judged and scored")
def acceptance(session, found: Release) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per usable trace the kit's acceptance (``kit.evals.traces.acceptance_table``: each released text under the
    other side's agent and under the plain model), and per method the mean relative log-perplexity change with
    its interval."""
    agents = acceptance_agents(session, found)
    usable, *_ = split_usable(found.traces)
    with session.timed("acceptance of the released texts"):
        table = acceptance_table(session.backend, agents, usable)
    table.insert(0, "method", [t["method"] for t in usable])
    table.insert(1, "id", [t["id"] for t in usable])
    p = session.params
    rows = []
    for method, g in table.groupby("method", sort=False):
        change = g["rel_logppl_change"].to_numpy(float)
        low, high = bootstrap_ci(change, p.n_boot, seeds.derive(p.seed, "bootstrap"))
        rows.append(
            {
                "method": method,
                "n": len(g),
                "mean_rel_logppl_initial": g["rel_logppl_initial"].mean(),
                "mean_rel_logppl_final": g["rel_logppl_final"].mean(),
                "mean_rel_logppl_change": change.mean(),
                "change_low": low,
                "change_high": high,
            }
        )
    return table, pd.DataFrame(
        rows,
        columns=[
            "method",
            "n",
            "mean_rel_logppl_initial",
            "mean_rel_logppl_final",
            "mean_rel_logppl_change",
            "change_low",
            "change_high",
        ],
    )


def agent_kinds(session, found: Release) -> dict[str, str]:
    return {c: a.kind for c, a in acceptance_agents(session, found).items()}


# --- key numbers ---------------------------------------------------------------------------------


def key_numbers(
    found: Release,
    table: pd.DataFrame,
    compared: pd.DataFrame,
    verdict_lines: list[str],
    agreement: dict,
    accepted: pd.DataFrame,
    kinds: dict[str, str],
    leaks: dict[str, int],
) -> dict:
    over = reproduced_overview(table)
    own_keys = table["key"].isin(KIT_DIFFERENCES) | table["key"].isin(RELEASE_PPL)
    return {
        "pairs": [p.folder for p in found.pairs],
        "traces_read": len(found.traces),
        "evaluation_rows": len(found.evaluations),
        "skipped": {kind: count for kind, (count, _) in found.skipped.items()},
        "topic_leaks": leaks,
        "reproduced": reproduced_metrics(table),
        "reproduced_keys": int(len(table)),
        "reproduced_equal": int(table["equal"].sum()),
        "reproduced_by_pair": {
            f"{r.pair} · {r.method}": [int(r.equal), int(r.keys)] for r in over.itertuples()
        },
        "kit_defines_differently": sorted(set(table.loc[own_keys, "key"])),
        "claims": {
            f"{r.claim} vs {r.against}": {
                "mean_diff": _round(r.mean_diff),
                "ci": [_round(r.ci_low), _round(r.ci_high)],
                "n": int(r.n),
                "verdict": r.verdict,
            }
            for r in compared.itertuples()
        },
        "verdict": verdict_lines,
        "judge_agreement": agreement,
        "acceptance": {
            r.method: {
                "n": int(r.n),
                "rel_logppl_change": [
                    _round(r.mean_rel_logppl_change),
                    _round(r.change_low),
                    _round(r.change_high),
                ],
            }
            for r in accepted.itertuples()
        },
        "acceptance_agents": kinds,
    }
