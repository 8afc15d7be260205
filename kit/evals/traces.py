"""Evaluating negotiation traces: perplexity-based acceptance and Schwartz value vectors, per trace.

A trace is a mapping (a record of the negotiation, debate or consultancy runs) with at least
``id, method, topic{id, text}, agents[{name, culture, kind}] ×2, initial[{opinion, guideline,
response}] ×2, consensus[str, str], rounds_used, converged, failed``. Agent A is ``agents[0]``.

Acceptance: ``PPL_B(r_A)`` scores A's text teacher-forced as agent B's reply to the topic (B's
system prompt and adapter), and ``PPL_A(r_B)`` the other way round; the paper's
``D = |PPL_B(r_A) − PPL_A(r_B)|`` for the initial responses and for the consensus statements, and its
ratio ``d_ratio``. D compares the perplexities of two *different* texts, so it mostly measures how
predictable each text is on its own (a repeated ``##`` wins it). The kit's acceptance cancels that:
``log PPL_B(r_A) − log PPL_base(r_A)``, the other side's persona against the plain model (the same user
turn, no system prompt, no adapter) on the same text — below 0, B's persona finds A's text more
likely than the model does on its own — averaged over the two sides (``rel_logppl_initial`` /
``_final``) and its change (``rel_logppl_change``, below 0: acceptance grew). Every perplexity of every
trace comes from ONE ``backend.score`` call, and every value vector from ONE detector call. A trace
with a degenerate text (``kit.metrics.text``) is left out and counted per method.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kit.agents import Agent
from kit.llm.base import Backend, ScoreRequest
from kit.metrics.alignment import bootstrap_ci, paired_verdicts
from kit.metrics.consensus import (
    acceptance_gap,
    acceptance_ratio,
    acceptance_summary,
    distance_reduction,
    perplexity,
    rel_logppl,
    value_consensus,
    value_distance,
    value_self_consistency,
    value_summary,
)
from kit.metrics.scorers import spec
from kit.metrics.text import copied, degenerate
from kit.metrics.verdicts import MIN_ITEMS
from kit.registry import stopping_rules
from kit.values import ValueDetector

log = logging.getLogger(__name__)

Trace = Mapping[str, Any]

SLOTS = ("initial_a", "initial_b", "final_a", "final_b")
# Perplexity of one side's text under the other side: (column, scoring agent 0|1, text slot).
PPL_COLUMNS = (
    ("ppl_b_of_initial_a", 1, "initial_a"),
    ("ppl_a_of_initial_b", 0, "initial_b"),
    ("ppl_b_of_final_a", 1, "final_a"),
    ("ppl_a_of_final_b", 0, "final_b"),
)
BASE_PPL_COLUMNS = tuple((f"ppl_base_of_{slot}", slot) for slot in SLOTS)  # the plain model on each text
CONTROL_PPL_COLUMNS = tuple(
    (f"ppl_control_of_{slot}", slot) for slot in SLOTS
)  # the control persona on each text
ACCEPTANCE_COLUMNS = (
    "d_initial",
    "d_final",
    "d_ratio",
    "improved",
    "rel_logppl_initial",
    "rel_logppl_final",
    "rel_logppl_change",
    "rel_logppl_plain_initial",
    "rel_logppl_plain_final",
    "rel_logppl_plain_change",
    "control",
)
# where the study has no agent of a third culture, the control persona is a prompted one of the first of these
# that is not party to the negotiation
CONTROL_CULTURES = ("Japan", "Brazil", "Nigeria", "Germany")
REFERENCE_METHOD = "none"  # its statements are its opening answers: a reference row, never a winner
VALUE_COLUMNS = (
    "self_consistency_a",
    "self_consistency_b",
    "value_consensus_initial",
    "value_consensus",
    "value_distance_initial",
    "value_distance_final",
    "distance_reduction",
    "values_missing",
)


def _get(trace: Trace, key: str) -> Any:
    try:
        return trace[key]
    except KeyError:
        raise ValueError(
            f"trace {trace.get('id', '?')!r} has no field {key!r}; "
            "evaluate records written by the negotiation runners"
        ) from None


def trace_texts(trace: Trace) -> dict[str, str]:
    """The four texts a trace is judged on: both initial responses and both consensus statements."""
    initial, consensus = _get(trace, "initial"), _get(trace, "consensus")
    if len(initial) != 2 or len(consensus) != 2:
        raise ValueError(
            f"trace {trace.get('id', '?')!r} needs two initial entries and two consensus statements"
        )
    return {
        "initial_a": initial[0]["response"] or "",
        "initial_b": initial[1]["response"] or "",
        "final_a": consensus[0] or "",
        "final_b": consensus[1] or "",
    }


def trace_agents(trace: Trace, agents: Mapping[str, Agent]) -> tuple[Agent, Agent]:
    """Agents A and B of a trace, looked up by culture."""
    cultures = [a["culture"] for a in _get(trace, "agents")]
    missing = [c for c in cultures if c not in agents]
    if missing:
        raise ValueError(
            f"trace {trace.get('id', '?')!r}: no agent for culture(s) {missing}; agents has {sorted(agents)}"
        )
    return agents[cultures[0]], agents[cultures[1]]


def copied_the_other_side(texts: Mapping[str, str]) -> bool:
    """Whether a side's consensus statement is the other side's opening copied (``kit.metrics.text.copied``):
    the copy is as likely under the other persona as its own words, so it would win acceptance unread."""
    return copied(texts["final_a"], texts["initial_b"]) or copied(texts["final_b"], texts["initial_a"])


def split_usable(traces: Sequence[Trace]) -> tuple[list[Trace], int, int, dict[str, int]]:
    """(usable traces, failed count, empty count, degenerate count per method): a trace is unusable if it
    failed, lacks one of its texts, one of them is degenerate (``kit.metrics.text.degenerate``: markup,
    repetition, a word or two, headings only, a non-answer) — a perplexity or a value vector of such a text
    measures its format — or a consensus statement copies the other side's opening."""
    usable, failed, empty, bad = [], 0, 0, {}
    for trace in traces:
        if _get(trace, "failed"):
            failed += 1
            continue
        named = trace_texts(trace)
        texts = named.values()
        if not all(t.strip() for t in texts):
            empty += 1
        elif any(degenerate(t) for t in texts) or copied_the_other_side(named):
            bad[trace["method"]] = bad.get(trace["method"], 0) + 1
        else:
            usable.append(trace)
    if empty or bad:
        log.warning("trace(s) left out: %d with an empty text, degenerate texts per method %s", empty, bad)
    return usable, failed, empty, bad


def control_agent(trace: Trace, agents: Mapping[str, Agent]) -> Agent:
    """The control persona of a trace: the study's agent of a culture not party to it (the same kind as the
    negotiators'; chosen by the trace's topic, so every method's trace of one topic and pair has the same one),
    else a prompted persona of the first of ``CONTROL_CULTURES`` that is not party to it."""
    from kit.agents.kinds import prompted
    from kit.data.countries import base_country
    from kit.run import seeds

    parties = {base_country(a["culture"]) for a in _get(trace, "agents")}
    others = sorted(c for c in agents if base_country(c) not in parties)
    if others:
        key = f"{_get(trace, 'topic')['id']}|{'|'.join(sorted(parties))}"
        return agents[min(others, key=lambda c: seeds.unit(0, "acceptance-control", key, c))]
    return prompted(next(c for c in CONTROL_CULTURES if c not in parties))


# country names written with "the" ("the United States'", "in the Netherlands")
_THE = (
    "United States",
    "United Kingdom",
    "Netherlands",
    "Philippines",
    "Czech Republic",
    "Palestinian territories",
    "Ivory Coast",
)


def swap_names(text: str, culture: str, control: str) -> str:
    """``text`` with the names of ``culture`` (its data label and the country without a sample qualifier, with a
    leading "the" and a possessive) put as ``control``'s, whole words only: what the text would say to the control
    persona ("This respects the United States' values." → "This respects Japan's values.")."""
    from kit.data.countries import base_country

    new = base_country(control)

    def put(m: re.Match) -> str:
        article = ("the " if m.group(1) is None or m.group(1)[0] == "t" else "The ") if new in _THE else ""
        possessive = ("'" if new.endswith("s") else "'s") if m.group(2) else ""
        return article + new + possessive

    out = text
    for name in sorted({culture, base_country(culture)}, key=len, reverse=True):
        out = re.sub(rf"(?<!\w)([Tt]he\s+)?{re.escape(name)}(['’]s?)?(?!\w)", put, out)
    return out


def acceptance_requests(trace: Trace, agents: Mapping[str, Agent]) -> dict[str, ScoreRequest]:
    """Column → request: each text scored as the *other* agent's reply to the topic (its prompt, its adapter),
    as the control persona's reply with the other agent's name put as the control's (:func:`control_agent`,
    :func:`swap_names`), and as the plain model's reply to the same user turn (no system prompt, no adapter)."""
    pair, texts, topic = trace_agents(trace, agents), trace_texts(trace), _get(trace, "topic")["text"]
    control = control_agent(trace, agents)
    plain = [{"role": "user", "content": topic}]
    listener = {"initial_a": 1, "final_a": 1, "initial_b": 0, "final_b": 0}  # whose persona reads each text
    return (
        {
            col: ScoreRequest(pair[who].messages(topic), texts[slot], adapter=pair[who].adapter)
            for col, who, slot in PPL_COLUMNS
        }
        | {
            col: ScoreRequest(
                control.messages(swap_names(topic, pair[listener[slot]].culture, control.culture)),
                swap_names(texts[slot], pair[listener[slot]].culture, control.culture),
                adapter=control.adapter,
            )
            for col, slot in CONTROL_PPL_COLUMNS
        }
        | {col: ScoreRequest(plain, texts[slot]) for col, slot in BASE_PPL_COLUMNS}
    )


def _relative(
    ppl_b_of_initial_a: float,
    ppl_a_of_initial_b: float,
    ppl_b_of_final_a: float,
    ppl_a_of_final_b: float,
    against: tuple[float, float, float, float],
) -> tuple[float, float]:
    """(initial, final) ``rel_logppl`` against the reference perplexities ``against`` (initial a, initial b, final a,
    final b); NaN where one is unknown."""
    if not all(np.isfinite(x) for x in against):
        return float("nan"), float("nan")
    return (
        rel_logppl(ppl_b_of_initial_a, against[0], ppl_a_of_initial_b, against[1]),
        rel_logppl(ppl_b_of_final_a, against[2], ppl_a_of_final_b, against[3]),
    )


def acceptance_row(
    ppl_b_of_initial_a: float,
    ppl_a_of_initial_b: float,
    ppl_b_of_final_a: float,
    ppl_a_of_final_b: float,
    ppl_base_of_initial_a: float = float("nan"),
    ppl_base_of_initial_b: float = float("nan"),
    ppl_base_of_final_a: float = float("nan"),
    ppl_base_of_final_b: float = float("nan"),
    ppl_control_of_initial_a: float = float("nan"),
    ppl_control_of_initial_b: float = float("nan"),
    ppl_control_of_final_a: float = float("nan"),
    ppl_control_of_final_b: float = float("nan"),
    control: str | None = None,
) -> dict[str, float | bool]:
    """``D_initial``, ``D_final``, their ratio (< 1 = more even acceptance) and whether D fell; and the
    relative acceptance (``log PPL_other − log PPL_control`` on each text, mean of the two sides; the plain
    model's perplexity stands in where no control was scored), initial, final and its change (< 0: each side's
    persona came to find the other's text likelier), and the same against the plain model (``_plain_``)."""
    sides = (ppl_b_of_initial_a, ppl_a_of_initial_b, ppl_b_of_final_a, ppl_a_of_final_b)
    d0 = acceptance_gap(ppl_b_of_initial_a, ppl_a_of_initial_b)
    d1 = acceptance_gap(ppl_b_of_final_a, ppl_a_of_final_b)
    plain = _relative(
        *sides, (ppl_base_of_initial_a, ppl_base_of_initial_b, ppl_base_of_final_a, ppl_base_of_final_b)
    )
    controlled = _relative(
        *sides,
        (ppl_control_of_initial_a, ppl_control_of_initial_b, ppl_control_of_final_a, ppl_control_of_final_b),
    )
    rel0, rel1 = controlled if np.isfinite(controlled[0]) else plain
    return {
        "d_initial": d0,
        "d_final": d1,
        "d_ratio": acceptance_ratio(d0, d1),
        "improved": d1 < d0,
        "rel_logppl_initial": float(rel0),
        "rel_logppl_final": float(rel1),
        "rel_logppl_change": float(rel1 - rel0),
        "rel_logppl_plain_initial": plain[0],
        "rel_logppl_plain_final": plain[1],
        "rel_logppl_plain_change": plain[1] - plain[0],
        "control": control,
    }


def acceptance_table(backend: Backend, agents: Mapping[str, Agent], traces: Sequence[Trace]) -> pd.DataFrame:
    """One row per trace (in order): the four perplexities and ``acceptance_row``; one score call in all."""
    per_trace = [acceptance_requests(t, agents) for t in traces]
    # The same text under the same agent recurs (initial responses shared across methods, "none"
    # baselines whose statement is the initial response): score each distinct request once.
    unique = list(dict.fromkeys(r for reqs in per_trace for r in reqs.values()))
    ppl = dict(zip(unique, map(perplexity, backend.score(unique)))) if unique else {}
    log.info("acceptance: %d traces, %d distinct score requests", len(traces), len(unique))
    rows = []
    for trace, reqs in zip(traces, per_trace):
        ppls = {col: ppl[req] for col, req in reqs.items()}
        rows.append(ppls | acceptance_row(**ppls, control=control_agent(trace, agents).culture))
    return pd.DataFrame(
        rows,
        columns=[c for c, _, _ in PPL_COLUMNS]
        + [c for c, _ in BASE_PPL_COLUMNS]
        + [c for c, _ in CONTROL_PPL_COLUMNS]
        + list(ACCEPTANCE_COLUMNS),
    )


def value_row(vectors: Mapping[str, np.ndarray | None]) -> dict[str, float | int]:
    """Value metrics of one trace from its four vectors (slot → vector, ``None`` when unreadable).

    Cosines are ``nan`` for an all-zero vector; every metric touching a missing vector is ``nan``.
    """
    v = vectors

    def metric(fn, *slots):
        return fn(*(v[s] for s in slots)) if all(v[s] is not None for s in slots) else float("nan")

    d0 = metric(value_distance, "initial_a", "initial_b")
    d1 = metric(value_distance, "final_a", "final_b")
    return {
        "self_consistency_a": metric(value_self_consistency, "final_a", "initial_a"),
        "self_consistency_b": metric(value_self_consistency, "final_b", "initial_b"),
        "value_consensus_initial": metric(value_consensus, "initial_a", "initial_b"),
        "value_consensus": metric(value_consensus, "final_a", "final_b"),
        "value_distance_initial": d0,
        "value_distance_final": d1,
        "distance_reduction": distance_reduction(d0, d1)
        if np.isfinite(d0) and np.isfinite(d1)
        else float("nan"),
        "values_missing": sum(v[s] is None for s in SLOTS),
    }


def value_table(detector: ValueDetector, traces: Sequence[Trace]) -> pd.DataFrame:
    """One row per trace: the four vectors (``v_<slot>``, lists or ``None``) and ``value_row``."""
    texts = [trace_texts(t) for t in traces]
    unique = list(dict.fromkeys(s for tx in texts for s in tx.values()))
    found = dict(zip(unique, detector.vectors(unique))) if unique else {}
    rows = []
    for tx in texts:
        vecs = {slot: found[tx[slot]].vector for slot in SLOTS}
        rows.append(
            {f"v_{s}": None if vecs[s] is None else [int(x) for x in vecs[s]] for s in SLOTS}
            | value_row(vecs)
        )
    return pd.DataFrame(rows, columns=[f"v_{s}" for s in SLOTS] + list(VALUE_COLUMNS))


def evaluate_traces(
    backend: Backend, detector: ValueDetector, agents: Mapping[str, Agent], traces: Sequence[Trace]
) -> pd.DataFrame:
    """One row per usable trace: identity, rounds, acceptance and value metrics.

    Failed traces, traces missing a text and traces with a degenerate text are left out and counted in
    ``df.attrs["failed"]``, ``df.attrs["empty"]`` and ``df.attrs["degenerate"]`` (method → count);
    ``df.attrs["value_failures"]`` counts unreadable value vectors. ``converged`` is the protocol's
    stopping rule met (``None`` for methods that have none); ``resolved`` a self-play dialogue's
    agreement (``None`` for every other method).
    """
    usable, failed, empty, bad = split_usable(traces)
    with_rule = stopping_rules()
    meta = []
    for t in usable:
        cultures = [a["culture"] for a in _get(t, "agents")]
        meta.append(
            {
                "id": _get(t, "id"),
                "method": _get(t, "method"),
                "topic_id": _get(t, "topic")["id"],
                "culture_a": cultures[0],
                "culture_b": cultures[1],
                "pair": " vs ".join(map(str, cultures)),
                "rounds_used": _get(t, "rounds_used"),
                "converged": bool(_get(t, "converged")) if t["method"] in with_rule else None,
                "resolved": None if t.get("resolved") is None else bool(t["resolved"]),
            }
        )
    columns = [
        "id",
        "method",
        "topic_id",
        "culture_a",
        "culture_b",
        "pair",
        "rounds_used",
        "converged",
        "resolved",
    ]
    df = pd.concat(
        [
            pd.DataFrame(meta, columns=columns),
            acceptance_table(backend, agents, usable),
            value_table(detector, usable),
        ],
        axis=1,
    )
    df.attrs.update(
        failed=failed, empty=empty, degenerate=bad, value_failures=int(df["values_missing"].sum())
    )
    return df


def _ci(values: Any, n_boot: int, seed: int, groups: Any = None) -> tuple[float, float]:
    return bootstrap_ci(np.asarray(values, dtype=float), n_boot=n_boot, seed=seed, groups=groups)


def _summary_row(g: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
    ratios = g["d_ratio"].to_numpy(float)
    acc = acceptance_summary(zip(g["d_initial"], g["d_final"]))
    # An infinite ratio (an even start made uneven) makes the mean infinite; no interval then.
    ratio_ci = _ci(ratios, n_boot, seed) if np.all(np.isfinite(ratios)) else (float("nan"), float("nan"))
    row = acc | {"mean_d_ratio_low": ratio_ci[0], "mean_d_ratio_high": ratio_ci[1]}
    row |= dict(zip(("share_improved_low", "share_improved_high"), _ci(g["improved"], n_boot, seed)))

    # Self-consistency pools agents A and B; both come from one trace, so resample traces (clusters).
    sc = np.concatenate([g["self_consistency_a"], g["self_consistency_b"]]).astype(float)
    sc_groups = np.concatenate([np.arange(len(g))] * 2)
    named = {
        "self_consistency": (sc, sc_groups),
        "consensus": (g["value_consensus"].to_numpy(float), None),
        "distance_reduction": (g["distance_reduction"].to_numpy(float), None),
    }
    for name, (vals, groups) in named.items():
        keep = ~np.isnan(vals)
        stats = value_summary(vals)
        low, high = _ci(vals[keep], n_boot, seed, None if groups is None else groups[keep])
        row |= {
            f"mean_{name}": stats["mean"],
            f"mean_{name}_low": low,
            f"mean_{name}_high": high,
            f"n_{name}_undefined": stats["n_undefined"],
        }

    # The reduction of the mean distance is steadier than the mean of per-trace reductions, whose
    # small denominators swing it; report both.
    d0, d1 = g["value_distance_initial"].to_numpy(float), g["value_distance_final"].to_numpy(float)
    both = ~np.isnan(d0) & ~np.isnan(d1)
    row["distance_reduction_of_means"] = (
        distance_reduction(d0[both].mean(), d1[both].mean()) if both.any() else float("nan")
    )
    for name in ("rel_logppl_initial", "rel_logppl_final", "rel_logppl_change"):
        vals = g[name].to_numpy(float) if name in g else np.full(len(g), np.nan)
        vals = vals[np.isfinite(vals)]
        low, high = _ci(vals, n_boot, seed) if len(vals) else (float("nan"), float("nan"))
        row |= {
            f"mean_{name}": float(vals.mean()) if len(vals) else float("nan"),
            f"median_{name}": float(np.median(vals)) if len(vals) else float("nan"),
            f"mean_{name}_low": low,
            f"mean_{name}_high": high,
        }

    def share(col: str) -> float:  # of the rows where the flag means something (a stopping rule, a dialogue)
        flags = g[col].dropna() if col in g else pd.Series(dtype=float)
        return float(flags.astype(float).mean()) if len(flags) else float("nan")

    row |= {
        "mean_rounds": float(g["rounds_used"].mean()),
        "share_converged": share("converged"),
        "resolution_rate": share("resolved"),
    }
    return row


def summarise(
    df: pd.DataFrame, n_boot: int = 1000, seed: int = 0, by: Sequence[str] = ("method",)
) -> pd.DataFrame:
    """Per group of ``by`` (``("method", "pair")`` for each pair): acceptance, values, rounds, with 95 % CIs.

    Columns: n, mean/median ratio, share improved, mean D initial/final, mean self-consistency
    (agents A and B pooled, trace-cluster bootstrap), mean consensus, mean distance reduction (each
    with ``_low``/``_high`` percentile-bootstrap bounds and a count of undefined values skipped),
    reduction of the mean distance, the relative acceptance (initial, final, change: mean, median and
    interval), mean rounds used, share converged (methods with a stopping rule) and resolution rate
    (self-play dialogues); NaN where a flag does not apply.
    """
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(
            f"summarise: no column(s) {missing} to group by; use columns of evaluate_traces' table"
        )
    rows = [
        dict(zip(by, key if isinstance(key, tuple) else (key,))) | _summary_row(g, n_boot, seed)
        for key, g in df.groupby(list(by), sort=True)
    ]
    return pd.DataFrame(rows)


def item_key(df: pd.DataFrame) -> pd.Series:
    """A (pair, topic) item's key: what every method negotiated alike."""
    return df["pair"].astype(str) + "|" + df["topic_id"].astype(str)


def common_items(df: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of the (pair, topic) items every one of ``methods`` (default: all in ``df``) scored, so a
    summary never compares a method's easy items with another's hard ones (a failed or degenerate trace
    of one method drops that item for all)."""
    methods = list(dict.fromkeys(df["method"])) if methods is None else list(methods)
    keys = item_key(df)
    shared = set.intersection(*[set(keys[df["method"] == m]) for m in methods]) if methods else set()
    return df[keys.isin(shared) & df["method"].isin(methods)]


# the scores each method is paired on against the reference, as the scorer registry names them (with their directions)
PAIRED_SCORES = tuple(
    spec(name).name for name in ("rel_logppl_change", "value_consensus", "self_consistency")
)


def paired_against(
    df: pd.DataFrame,
    reference: str = REFERENCE_METHOD,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
) -> pd.DataFrame:
    """Each method minus ``reference`` on the shared items, per score of ``PAIRED_SCORES`` (self-consistency:
    the mean of the two agents'; the reference's is 1 by construction, so it is compared among the others
    only): mean difference, 95 % bootstrap interval over items, n, and whether the method is ``better``,
    ``worse`` or shows ``no difference`` (the score's direction from the registry) — ``too few`` below
    ``min_items`` shared items."""
    rows = df.assign(
        id=item_key(df), self_consistency=df[["self_consistency_a", "self_consistency_b"]].mean(axis=1)
    )
    out = []
    for method in [
        m for m in dict.fromkeys(rows["method"]) if m != reference and reference in set(rows["method"])
    ]:
        for score in PAIRED_SCORES:
            if score == "self_consistency":
                continue
            for v in paired_verdicts(
                rows[rows["method"].isin([method, reference])],
                method,
                score,
                n_boot,
                seed,
                min_items=min_items,
            ):
                out.append({"method": method, **v})
    return pd.DataFrame(
        out, columns=["method", "against", "score", "mean_diff", "ci_low", "ci_high", "n", "verdict"]
    )


def self_consistency_ranking(
    df: pd.DataFrame,
    reference: str = REFERENCE_METHOD,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
) -> pd.DataFrame:
    """The negotiating methods by mean self-consistency (``reference`` left out: cos(v, v) = 1 for it), the
    best one paired against each other on the shared items."""
    rows = df[df["method"] != reference].assign(
        id=item_key(df), self_consistency=df[["self_consistency_a", "self_consistency_b"]].mean(axis=1)
    )
    means = (
        rows.groupby("method")["self_consistency"]
        .mean()
        .dropna()
        .sort_values(ascending=spec("self_consistency").direction == "lower")
    )  # the best first
    if len(means) < 2:
        return pd.DataFrame(
            columns=["method", "against", "score", "mean_diff", "ci_low", "ci_high", "n", "verdict"]
        )
    best = means.index[0]
    return pd.DataFrame(
        [
            {"method": best, **v}
            for v in paired_verdicts(rows, best, "self_consistency", n_boot, seed, min_items=min_items)
        ]
    )
