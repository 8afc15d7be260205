"""The cross-method boards, read from what the units stored — no model is asked again.

Three boards, each a table a reader can sort and every row of which says what it cost:

- **alignment** — GlobalOpinionQA held-out questions. Every row any unit scored (``scores/alignment/
  <notebook>.jsonl``: notebook 01's agent kinds, 04's finetuned adapters, 12's Table 1 rows and
  ablations, 22's rewritten answers), beside the four references on the same (country, question) pairs
  (uniform, the other countries' mean, the neighbour prior, and the unit's base row flattened to the
  world answer's entropy), ``evals.min_label_mass`` applied (``missing``: answers below it, never uniform).
  S_align and js_similarity (overall = mean of country means, and per continent) with 95 % bootstrap
  intervals resampling questions; the paired js_similarity difference against the best reference on the
  row's own pairs (a missing answer scored as the worst value; "too few" below ``verdicts.min_items``);
  coverage (countries × questions answered, and the share of the most complete row of its unit).
- **consensus** — every negotiation method and self-play policy on the same study topics and pairs
  (``scores/consensus``: notebook 32's joint evaluation, else notebook 03's without the judge), every mean
  over the (pair, topic) items *every* method scored (``common_items``; an item a method failed on is
  dropped for every method, and ``failed`` counts each method's items lost so), each method paired
  against ``none`` on them (relative acceptance change: interval and verdict, ``verdicts.min_items``);
  ``none`` is a reference row, never scored; ``agency_judge`` says whether Collective Agency was graded by
  the judge the self-play policies were trained on.
- **capability** — every trained artifact's (grounded agents, NCN's adapters, the palette's adapters and
  merges, the VISA models, the self-play policies) MoralChoice low-ambiguity accuracy and neutral-text
  perplexity beside its base model's (``scores/capability``), the accuracy change with a 95 % bootstrap
  interval (the two models' right/wrong answers resampled apart: the stored counts carry no pairing) and a
  verdict (``too few`` below ``verdicts.min_items`` items).

Cost columns come from the units' metrics (``cost.rows``, :mod:`kit.run.cost`): a row's cost is what its
method's units (notebooks of the same decade) spent under its name — training or building it,
generating its data, and scoring it. Shared work (loading models, data both rows use) is in each
unit's session cost, not in a row's. ``models`` names every model whose calls a row counts. A unit that has not run shows as ``not run``, never as a gap.

A unit whose metrics were made with other params than the board's (``kit.run.artifacts.made_by``, on the
sections both were given) keeps its rows, and their ``stale`` column names the keys that changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from kit.data import goqa_split
from kit.evals.references import neighbour_settings, with_references
from kit.evals.traces import REFERENCE_METHOD, common_items, item_key, summarise
from kit.metrics.alignment import (
    NEIGHBOUR_AGENT,
    REFERENCES,
    bootstrap_ci,
    continent_table,
    missing_answers,
    paired_verdicts,
    per_question_scores,
    prior_check,
    reference_comparison,
    reference_rows,
)
from kit.metrics.scorers import spec
from kit.metrics.verdicts import MIN_ITEMS
from kit.metrics.verdicts import verdict as verdict_of
from kit.run import seeds
from kit.run.cost import COUNTERS

BOARDS = {
    "alignment": ("01_cultural_agents", "04_finetune_on_negotiation", "12_palette_table", "22_visa_table"),
    "consensus": ("32_selfplay_table", "03_consensus_evaluation"),  # the first that holds a method wins
    "capability": (
        "01_cultural_agents",
        "04_finetune_on_negotiation",
        "12_palette_table",
        "22_visa_table",
        "32_selfplay_table",
    ),
}
# the row of each unit whose answers the entropy-matched reference flattens: the model before the unit's method
BASE_ROWS = {
    "01_cultural_agents": "vanilla",
    "04_finetune_on_negotiation": "base",
    "12_palette_table": "vanilla",
    "22_visa_table": "original",
}
NOT_RUN = "not run"
NO_ROWS = "ran, no rows"  # the unit ran but scored nothing (e.g. notebook 22 without notebook 01's agents)


@dataclass
class Stored:
    """What a run folder holds for the boards: per board and notebook, its rows; per notebook, its metrics."""

    run_dir: Path
    scores: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)

    def missing(self, board: str) -> list[str]:
        """The board's notebooks that stored no rows: never ran, or ran and scored nothing."""
        return [nb for nb in BOARDS[board] if not self.scores.get(board, {}).get(nb)]


def load(run_dir: str | Path) -> Stored:
    run_dir = Path(run_dir)
    stored = Stored(run_dir)
    for board in BOARDS:
        for f in sorted((run_dir / "scores" / board).glob("*.jsonl")):
            stored.scores.setdefault(board, {})[f.stem] = [
                _parse(f, line, n) for n, line in enumerate(f.read_text().splitlines(), 1) if line.strip()
            ]
    for f in sorted((run_dir / "metrics").glob("*.json")):
        stored.metrics[f.stem] = _parse(f, f.read_text())
    return stored


def _parse(path: Path, text: str, line: int | None = None):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{path}:{line}" if line else str(path)
        raise ValueError(f"{where} is not valid JSON ({e.msg}); rerun the notebook that wrote it") from None


def label(notebook: str, row: str) -> str:
    """A board row's name: its notebook's number and the unit's own name for it."""
    return f"{notebook[:2]} · {row}"


def row_cost(stored: Stored, notebook: str, row: str) -> dict:
    """What the units of ``notebook``'s decade spent under ``row``'s name (``kit.run.cost``); zeros if nothing."""
    out = {**dict.fromkeys(COUNTERS, 0), "seconds": 0.0, "peak_rss_gb": 0.0}
    models: set[str] = set()
    for nb, metrics in stored.metrics.items():
        found = metrics.get("cost", {}).get("rows", {}).get(row) if nb[:1] == notebook[:1] else None
        if found:
            for k in (*COUNTERS, "seconds"):
                out[k] += found.get(k, 0)
            out["peak_rss_gb"] = max(out["peak_rss_gb"], found.get("peak_rss_gb", 0))
            models.update(found.get("models") or {})
    # the models whose calls the row counts (agents, judges, teachers), by the name before their revision
    return {
        **out,
        "seconds": round(out["seconds"], 3),
        "models": ", ".join(sorted({model_label(m) for m in models})),
    }


def model_label(identity: str) -> str:
    """A model identity as a table names it: ``hub:Qwen/Qwen2.5-7B@main`` → ``Qwen/Qwen2.5-7B``, a served
    ``name@http://…`` → ``name``, ``smollm2-135m-instruct:gguf-sha256:…`` → ``smollm2-135m-instruct``, a local
    folder → its name."""
    if identity.startswith("local:"):
        return Path(identity.removeprefix("local:").rsplit(":", 1)[0]).name
    return identity.removeprefix("hub:").split("@", 1)[0].split(":", 1)[0]


def _absent(stored: Stored, board: str, notebooks: list[str]) -> list[dict]:
    """One row per notebook the board lacks, saying why: it has not run, or it ran and scored nothing."""
    return [
        {"unit": nb, "row": nb, "status": NO_ROWS if nb in stored.metrics else NOT_RUN} for nb in notebooks
    ]


# --- alignment ---------------------------------------------------------------------------------


def alignment_board(
    stored: Stored,
    data,
    references,
    n_boot: int = 1000,
    seed: int = 0,
    min_label_mass: float = 0.1,
    min_items: int = MIN_ITEMS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall board, per-continent S_align, js_similarity and js_similarity_e) over every unit's stored score
    rows, each unit beside the four references (``references``: the params section; the entropy-matched one
    from the unit's ``BASE_ROWS`` answers) on its own pairs, answers below ``min_label_mass`` missing."""
    train, test = goqa_split(data.goqa_path, data.test_fraction, data.split_seed, data.goqa_test_path)
    k, m = neighbour_settings(SimpleNamespace(references=references, data=data), train)
    rng_seed = seeds.derive(seed, "bootstrap")
    rows, continents = [], []
    for nb in BOARDS["alignment"]:
        scored = stored.scores.get("alignment", {}).get(nb)
        if not scored:
            continue
        pairs = {(r["country"], r["question_id"]) for r in scored}
        refs = reference_rows(train, test, pairs, k=k, min_shared=m)
        names = list(dict.fromkeys(r["agent"] for r in scored))
        base = BASE_ROWS.get(nb) if BASE_ROWS.get(nb) in names else names[0]
        every = [
            {
                **{k: r[k] for k in ("country", "question_id", "p_gen", "p_gold")},
                "agent": label(nb, r["agent"]),
            }
            for r in with_references(scored, refs, base, min_label_mass)
        ]
        lost = missing_answers(every)
        unlabelled = [{**r, "agent": r["agent"].split(" · ", 1)[1]} for r in every]
        prior = prior_check(unlabelled, "js_similarity", n_boot, rng_seed, min_items)
        tables = {
            m: continent_table(every, m, n_boot=n_boot, seed=rng_seed)
            for m in ("s_align", "js_similarity", "js_similarity_e")
        }
        per_pair = per_question_scores(every)
        most = (
            per_pair[~per_pair["agent"].isin([label(nb, r) for r in REFERENCES])]
            .groupby("agent")
            .size()
            .max()
        )
        for name in [*names, *REFERENCES]:
            agent = label(nb, name)
            mine = per_pair[per_pair["agent"] == agent]
            if mine.empty:
                continue
            line = {"unit": nb, "row": agent, "status": "reference" if name in REFERENCES else "scored"}
            for metric, t in tables.items():
                o = t[(t["agent"] == agent) & (t["continent"] == "overall")].iloc[0]
                line |= {metric: o["mean"], f"{metric}_low": o["ci_low"], f"{metric}_high": o["ci_high"]}
                for _, c in t[(t["agent"] == agent) & (t["continent"] != "overall")].iterrows():
                    continents.append(
                        {
                            "unit": nb,
                            "row": agent,
                            "continent": c["continent"],
                            "metric": metric,
                            "mean": c["mean"],
                            "ci_low": c["ci_low"],
                            "ci_high": c["ci_high"],
                            "n": c["n"],
                        }
                    )
            if name not in REFERENCES:
                line |= _against_best_reference(every, per_pair, mine, nb, agent, n_boot, rng_seed, min_items)
                line |= row_cost(stored, nb, name)
            if name == NEIGHBOUR_AGENT:  # the table says when its strongest reference is not the stronger bar
                line["verdict"] = prior["verdict"]
            line |= {
                "countries": mine["country"].nunique(),
                "questions": mine["question_id"].nunique(),
                "pairs": len(mine),
                "missing": lost.get(agent, 0),
                "coverage": len(mine) / most if most else np.nan,
            }
            rows.append(line)
    board = pd.DataFrame(rows + _absent(stored, "alignment", stored.missing("alignment")))
    return board, pd.DataFrame(continents)


def _against_best_reference(
    every: list[dict],
    per_pair: pd.DataFrame,
    mine: pd.DataFrame,
    nb: str,
    agent: str,
    n_boot: int,
    seed: int,
    min_items: int = MIN_ITEMS,
) -> dict:
    """The best of the four references on the row's own (country, question) pairs, and the paired difference
    to it (its missing answers scored as the worst value, :func:`kit.metrics.alignment.reference_comparison`)."""
    keys = set(zip(mine["country"], mine["question_id"]))
    means = {}
    for ref in REFERENCES:
        r = per_pair[per_pair["agent"] == label(nb, ref)]
        r = r[[k in keys for k in zip(r["country"], r["question_id"])]]
        if len(r):
            means[ref] = r["js_similarity"].mean()
    if not means:
        return {"best_reference": None}
    best = max(means, key=means.get)
    d = reference_comparison(
        every, [agent], [label(nb, best)], "js_similarity", n_boot=n_boot, seed=seed, min_items=min_items
    ).iloc[0]
    return {
        "best_reference": best,
        "diff_vs_best": d["diff"],
        "diff_low": d["ci_low"],
        "diff_high": d["ci_high"],
        "verdict": d["verdict"],
    }


# --- consensus ---------------------------------------------------------------------------------

CONSENSUS_COLUMNS = (
    "n",
    "common_items",
    "failed",
    "mean_rel_logppl_change",
    "mean_rel_logppl_change_low",
    "mean_rel_logppl_change_high",
    "vs_none",
    "vs_none_low",
    "vs_none_high",
    "verdict",
    "mean_d_ratio",
    "mean_d_ratio_low",
    "mean_d_ratio_high",
    "share_improved",
    "mean_consensus",
    "mean_self_consistency",
    "share_converged",
    "resolution_rate",
    "collective_agency",
    "collective_agency_low",
    "collective_agency_high",
    "agency_judge",
    "mean_rounds",
)


def consensus_board(
    rows: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
    reward_judge: bool | None = None,
) -> pd.DataFrame:
    """Per method, on the (pair, topic) items every method scored (``common_items``): acceptance (relative
    log-perplexity change; the paper's D ratio, share improved), each method minus ``none`` on the relative
    acceptance change (paired interval, verdict), values (consensus, self-consistency), the stopping rule met
    (``share_converged``: NCN, debate), dialogues resolved (``resolution_rate``: self-play only), Collective
    Agency (when judged; ``agency_judge`` names whether the judge was the policies' reward judge) and rounds,
    with 95 % bootstrap intervals. ``failed``: the items of any method's that this one did not score (failed,
    degenerate, or not run), dropped for every method. NaN where a column does not apply to the method."""
    every = set(item_key(rows))
    shared = common_items(rows)
    methods = list(dict.fromkeys(rows["method"]))
    table = (
        summarise(shared, n_boot=n_boot, seed=seed).set_index("method")
        if len(shared)
        else pd.DataFrame(index=pd.Index(methods, name="method"))
    ).reindex(sorted(methods))
    extra: dict[str, dict] = {
        m: {
            "common_items": item_key(shared).nunique() if len(shared) else 0,
            "failed": len(every - set(item_key(rows[rows["method"] == m]))),
        }
        for m in methods
    }
    keyed = shared.assign(id=item_key(shared)) if len(shared) else shared
    if len(shared) and REFERENCE_METHOD in set(shared["method"]):
        for method in [m for m in methods if m != REFERENCE_METHOD]:
            (v,) = paired_verdicts(
                keyed[keyed["method"].isin([method, REFERENCE_METHOD])],
                method,
                "rel_logppl_change",
                n_boot,
                seed,
                min_items=min_items,
            )
            extra[method] |= {
                "vs_none": v["mean_diff"],
                "vs_none_low": v["ci_low"],
                "vs_none_high": v["ci_high"],
                "verdict": v["verdict"],
            }
    if "collective_agency" in rows:
        for method, g in shared.groupby("method") if len(shared) else []:
            values = g["collective_agency"].dropna().to_numpy(float)
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) else (np.nan, np.nan)
            extra[method] |= {
                "collective_agency": values.mean() if len(values) else np.nan,
                "collective_agency_low": low,
                "collective_agency_high": high,
            }
            if len(values) and reward_judge is not None:
                extra[method]["agency_judge"] = (
                    "the policies' reward judge" if reward_judge else "another judge"
                )
    added = pd.DataFrame.from_dict(extra, orient="index")
    table = table.drop(columns=[c for c in added.columns if c in table.columns]).join(added)
    return table.reindex(columns=list(CONSENSUS_COLUMNS))


def consensus_rows(stored: Stored) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every method's per-trace rows, each method from the first source that has it; and that source."""
    frames, source = [], {}
    for nb in BOARDS["consensus"]:
        found = stored.scores.get("consensus", {}).get(nb)
        if not found:
            continue
        df = pd.DataFrame(found)
        fresh = [m for m in dict.fromkeys(df["method"]) if m not in source]
        source |= dict.fromkeys(fresh, nb)
        frames.append(df[df["method"].isin(fresh)])
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), source


def consensus_overall(
    stored: Stored, n_boot: int = 1000, seed: int = 0, min_items: int = MIN_ITEMS
) -> pd.DataFrame:
    rows, source = consensus_rows(stored)
    out = []
    if len(rows):
        judged = stored.metrics.get("32_selfplay_table", {}).get("eval_judge", {})
        table = consensus_board(
            rows, n_boot, seeds.derive(seed, "bootstrap"), min_items, judged.get("is_reward_judge")
        )
        negotiated = stored.metrics.get("02_negotiation", {}).get("cost", {}).get("rows", {})
        for method, r in table.iterrows():
            nb = source[method]
            # NCN and its baselines negotiated in notebook 02: that is their cost; a policy's is its unit's
            cost = row_cost(stored, "02_negotiation" if method in negotiated else nb, method)
            status = (
                "reference" if method == REFERENCE_METHOD else "scored"
            )  # none is compared against, never scored
            out.append({"unit": nb, "row": label(nb, method), "status": status, **r.to_dict(), **cost})
    missing = stored.missing("consensus")
    if out:  # notebook 03 only stands in for notebook 32
        missing = [nb for nb in missing if nb != "03_consensus_evaluation"]
    return pd.DataFrame(out + _absent(stored, "consensus", missing))


# --- capability --------------------------------------------------------------------------------

# per lm-eval task of a capability row (kit.evals.capability): its value, standard error, paired change and interval
TASK_COLUMNS = (
    ("", "value"),
    ("_stderr", "stderr"),
    ("_change", "change"),
    ("_change_low", "change_low"),
    ("_change_high", "change_high"),
)


def _minus(a, b):
    return None if a is None or b is None else a - b


def _finite(x) -> float:
    return float("nan") if x is None else float(x)


def accuracy_change_interval(
    correct: int, items: int, base_correct: int, base_items: int, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % bootstrap interval of ``correct / items − base_correct / base_items``, each model's right/wrong
    answers resampled apart: for rows stored without lm-eval's paired per-item change (the wider, unpaired one)."""
    if items < 1 or base_items < 1:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    mine = rng.binomial(items, correct / items, n_boot) / items
    base = rng.binomial(base_items, base_correct / base_items, n_boot) / base_items
    low, high = np.quantile(mine - base, [0.025, 0.975])
    return float(low), float(high)


def capability_board(
    stored: Stored, n_boot: int = 1000, seed: int = 0, min_items: int = MIN_ITEMS
) -> pd.DataFrame:
    """Every trained artifact against its base: MoralChoice low-ambiguity accuracy (with lm-eval's standard error,
    the paired change's 95 % interval and a verdict) and neutral perplexity, then every lm-eval task of the rows.
    A row stored without lm-eval's paired change gets the unpaired interval of its counts."""
    out = []
    for nb in BOARDS["capability"]:
        found = stored.scores.get("capability", {}).get(nb)
        if not found:
            continue
        by = {r["model"]: r for r in found}
        for r in found:
            base = by.get(r["base"])
            if r["model"] == r["base"] or base is None:
                continue
            tasks = r.get("tasks") or {}
            low = dict(tasks.get("agora_moralchoice_low", {}))
            if low.get("change_low") is None and r.get("items") and base.get("items"):

                def right(x: dict) -> int:  # from the accuracy where a row did not keep its count
                    return int(x.get("correct", round(x["moralchoice_low_accuracy"] * x["items"])))

                low["change_low"], low["change_high"] = accuracy_change_interval(
                    right(r),
                    r["items"],
                    right(base),
                    base["items"],
                    n_boot,
                    seeds.derive(seed, "capability", r["model"]),
                )
            out.append(
                {
                    "unit": nb,
                    "row": label(nb, r["model"]),
                    "status": "scored",
                    "base": label(nb, r["base"]),
                    "moralchoice_low_accuracy": r["moralchoice_low_accuracy"],
                    "accuracy_stderr": low.get("stderr"),
                    "base_accuracy": base["moralchoice_low_accuracy"],
                    "accuracy_change": _minus(
                        r["moralchoice_low_accuracy"], base["moralchoice_low_accuracy"]
                    ),
                    "accuracy_change_low": low.get("change_low"),
                    "accuracy_change_high": low.get("change_high"),
                    "verdict": verdict_of(
                        _finite(low.get("change_low")),
                        _finite(low.get("change_high")),
                        int(r["items"]),
                        min_items,
                    ),
                    "items": r["items"],
                    "neutral_ppl": r["neutral_ppl"],
                    "base_ppl": base["neutral_ppl"],
                    "ppl_ratio": (
                        r["neutral_ppl"] / base["neutral_ppl"]
                        if r["neutral_ppl"] is not None and base["neutral_ppl"]
                        else None
                    ),
                    **{f"{task}{end}": v.get(key) for task, v in tasks.items() for end, key in TASK_COLUMNS},
                    **row_cost(stored, nb, r["model"]),
                }
            )
    return pd.DataFrame(out + _absent(stored, "capability", stored.missing("capability")))


@dataclass
class Boards:
    alignment: pd.DataFrame
    alignment_by_continent: pd.DataFrame
    consensus: pd.DataFrame
    capability: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "alignment": self.alignment,
            "alignment_by_continent": self.alignment_by_continent,
            "consensus": self.consensus,
            "capability": self.capability,
        }


def stale_units(stored: Stored, params) -> dict[str, str]:
    """Notebook -> the params keys (dotted) its metrics were made with that differ from ``params``."""
    from kit.run.artifacts import made_by_changes, shown

    out = {}
    for nb, metrics in stored.metrics.items():
        keys = made_by_changes(metrics["made_by"], params) if "made_by" in metrics else ["(not recorded)"]
        if keys:
            out[nb] = "changed: " + shown(keys)
    return out


def boards(params, stored: Stored | None = None) -> Boards:
    stored = stored or load(params.run_dir)
    alignment, by_continent = alignment_board(
        stored,
        params.data,
        params.references,
        params.n_boot,
        params.seed,
        params.evals.min_label_mass,
        params.verdicts.min_items,
    )
    tables = [
        alignment,
        by_continent,
        consensus_overall(stored, params.n_boot, params.seed, params.verdicts.min_items),
        capability_board(stored, params.n_boot, params.seed, params.verdicts.min_items),
    ]
    stale = stale_units(stored, params)
    for df in tables:
        if "unit" in df.columns:
            df.insert(df.columns.get_loc("unit") + 1, "stale", df["unit"].map(stale).fillna(""))
    return Boards(*tables)


def _number(v):
    if isinstance(v, str) or v is None:
        return v
    return None if pd.isna(v) else round(float(v), 4)


# columns that count things: shown as whole numbers even when a table stored them as floats
COUNTS = {
    "n",
    "calls",
    "generated_tokens",
    "scored_tokens",
    "countries",
    "questions",
    "pairs",
    "items",
    "missing",
    "common_items",
    "failed",
}


def fmt(v, digits: int = 2) -> str:
    """A board number for people: ``digits`` decimals, or that many significant ones below 1 (0.0042);
    an integer as it is."""
    if v is None or isinstance(v, str):
        return "" if v is None else v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if np.isnan(v):
        return ""
    if v == 0 or abs(v) >= 1:
        return f"{v:.{digits}f}"
    return f"{v:.{max(digits, digits - 1 - int(np.floor(np.log10(abs(v)))))}f}"


def cell(column: str, v) -> str:
    """:func:`fmt`, with a count column's whole numbers shown without decimals."""
    if (
        column in COUNTS
        and isinstance(v, (int, float, np.number))
        and not pd.isna(v)
        and float(v).is_integer()
    ):
        return str(int(v))
    return fmt(v)


def interval(point, low, high) -> str:
    """``0.12 [0.05, 0.20]``, or the point alone where no interval was computed."""
    if pd.isna(low) or pd.isna(high):
        return fmt(point)
    return f"{fmt(point)} [{fmt(low)}, {fmt(high)}]"


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "scored"] if "status" in df.columns else df.iloc[0:0]


def _best(values: pd.Series, scorer: str):
    """The index of the best of ``values`` by the direction ``scorer`` has in the registry (kit.metrics.scorers)."""
    return values.idxmin() if spec(scorer).direction == "lower" else values.idxmax()


def _worst(values: pd.Series, scorer: str):
    """The index of the worst of ``values`` by the direction ``scorer`` has in the registry."""
    return values.idxmax() if spec(scorer).direction == "lower" else values.idxmin()


def verdicts(b: Boards) -> dict[str, str]:
    """One line per board saying what it shows, computed from the board (the report's and the docs' first line)."""
    out = {}
    a = _scored(b.alignment)
    if a.empty:
        out["alignment"] = "nothing scored yet."
    else:
        beats = a[a["verdict"] == "beats"]
        closest = a.loc[_best(a["diff_vs_best"], "js_similarity")]
        head = (
            f"{len(beats)} of {len(a)} scored rows beat the better of their references "
            f"({', '.join(beats['row'])})"
            if len(beats)
            else f"no scored row beats the better of its references (0 of {len(a)})"
        )
        priors = b.alignment[b.alignment["row"].str.endswith(f" · {NEIGHBOUR_AGENT}")]
        weak = [r["row"].split(" · ")[0] for _, r in priors.iterrows() if r.get("verdict") != "beats"]
        out["alignment"] = (
            f"{head}; closest: {closest['row']}, js_similarity "
            f"{interval(closest['diff_vs_best'], closest['diff_low'], closest['diff_high'])} "
            f"against {closest['best_reference']}"
            + (
                f"; the neighbour prior does not beat the other countries' mean in unit(s) {', '.join(weak)}"
                if weak
                else ""
            )
            + "."
        )
    c = _scored(b.consensus)
    c = c[~c["row"].str.endswith(" · none")] if not c.empty else c
    if c.empty or c["mean_rel_logppl_change"].isna().all():
        out["consensus"] = "nothing scored yet."
    else:
        best = c.loc[_best(c["mean_rel_logppl_change"], "rel_logppl_change")]
        low, high = best.get("vs_none_low"), best.get("vs_none_high")
        said = best.get("verdict")
        sure = (
            f"against none {interval(best.get('vs_none'), low, high)} over {cell('n', best.get('common_items'))} "
            f"common items: {said}"
            if isinstance(said, str)
            else "no none row to pair it with"
        )
        ca = c.dropna(subset=["collective_agency"]) if "collective_agency" in c.columns else c.iloc[0:0]
        agency = (
            f"; Collective Agency {fmt(ca['collective_agency'].min())}–{fmt(ca['collective_agency'].max())} "
            f"across {len(ca)} rows"
            if len(ca)
            else ""
        )
        out["consensus"] = (
            f"most acceptable to the other side: {best['row']}, relative log-perplexity change "
            f"{interval(best['mean_rel_logppl_change'], best.get('mean_rel_logppl_change_low'), best.get('mean_rel_logppl_change_high'))}"
            f" ({sure}){agency}."
        )
    k = _scored(b.capability)
    if k.empty:
        out["capability"] = "nothing scored yet."
    else:
        drop = k.loc[_worst(k["accuracy_change"], "moralchoice_low_accuracy")]
        ppl = k.loc[k["ppl_ratio"].idxmax()]
        out["capability"] = (
            f"largest MoralChoice accuracy drop "
            f"{interval(drop['accuracy_change'], drop.get('accuracy_change_low'), drop.get('accuracy_change_high'))}"
            f" ({drop['row']}, on {int(drop['items'])} items, lm-evaluation-harness: "
            f"{drop.get('verdict', '')}); largest "
            f"neutral-perplexity ratio {fmt(ppl['ppl_ratio'])} ({ppl['row']}); {len(k)} artifacts "
            "against their base."
        )
    return out


def key_numbers(b: Boards) -> dict:
    """The boards' rows by name, with their main numbers (the report must show every one of them)."""

    def pick(df: pd.DataFrame, cols: tuple[str, ...]) -> dict:
        return {r["row"]: {c: _number(r.get(c)) for c in cols} for _, r in df.iterrows()}

    absent = {
        r["unit"]
        for df in (b.alignment, b.consensus, b.capability)
        for _, r in df.iterrows()
        if r.get("status") in (NOT_RUN, NO_ROWS)
    }
    stale = {
        r["unit"]: r["stale"]
        for df in (b.alignment, b.consensus, b.capability)
        for _, r in df.iterrows()
        if r.get("stale")
    }
    return {
        "alignment": pick(
            b.alignment,
            (
                "status",
                "s_align",
                "js_similarity",
                "diff_vs_best",
                "verdict",
                "coverage",
                "missing",
                "calls",
                "seconds",
            ),
        ),
        "consensus": pick(
            b.consensus,
            (
                "status",
                "common_items",
                "failed",
                "mean_rel_logppl_change",
                "verdict",
                "mean_d_ratio",
                "share_improved",
                "share_converged",
                "resolution_rate",
                "collective_agency",
                "agency_judge",
                "calls",
                "seconds",
            ),
        ),
        "capability": pick(
            b.capability,
            (
                "status",
                "moralchoice_low_accuracy",
                "accuracy_stderr",
                "accuracy_change",
                "accuracy_change_low",
                "accuracy_change_high",
                "verdict",
                "ppl_ratio",
                "seconds",
            ),
        ),
        "verdicts": verdicts(b),
        "not_run": sorted(absent),
        "stale": dict(sorted(stale.items())),
    }
