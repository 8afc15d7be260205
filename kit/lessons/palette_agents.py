"""Notebook 11 · continent agents, the joint model, and merging them: TIES, Model Stock, Cultural MoErges.

Trains the five ORPO continent adapters and the joint adapter on notebook 10's records
(``kit.palette.agents``), merges them with mergekit (``kit.palette.merges``) and shows where the
MoE's router sends prompts from each continent. Notebook 12 reads what was built from
``runs/<profile>/palette/models.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.data.cultures import PALETTE_CONTINENTS
from kit.llm.models import resolve_model
from kit.palette.agents import palette_dir, save_models, train_agents
from kit.palette.merges import build_moe, merge, router_shares
from kit.palette.prompts import CONTINENTS
from kit.reporting import curves, plots
from kit.run.cost import peak_rss_gb
from kit.session import in_stage


def folder(session) -> Path:
    return palette_dir(session.run_dir)


@in_stage("11", "ORPO continent agents")
def train(session, records: dict[str, list[dict]]) -> dict[str, Path]:
    """The five continent adapters and the joint one (reused when their records and recipe are unchanged)."""
    p = session.params
    with session.timed("train continent agents"):
        return train_agents(records, p.model.ref, folder(session) / "agents", p.palette.train, p.seed)


def curves_figure(session, adapters: dict[str, Path]) -> None:
    """Each continent agent's and the joint model's ORPO loss, from its trainer's log history (``kit.reporting.curves``)."""
    curves.figure(
        session.figure_paths("11_training_curves.png"),
        curves.training_curves(adapters),
        "ORPO continent agents and the joint model",
    )


def merges(session, adapters: dict[str, Path]) -> tuple[dict[str, Path], pd.DataFrame]:
    """TIES, Model Stock and the MoE model, built (or reused) from the continent adapters; and what each cost."""
    p = session.params
    base = resolve_model(p.model.name, p.model.revision).ref
    continents = {c: str(adapters[c]) for c in CONTINENTS}
    models, cache = folder(session) / "models", folder(session) / "models" / "lora-cache"
    stamps = {}
    for name in (
        "ties",
        "model_stock",
        "moe",
    ):  # each merge in its own stage: the engines asleep, one merge at a time
        with session.stage("11", f"merge {name}"):
            stamps[name] = (
                build_moe(p.palette.merges[name], base, continents, models / name, cache)
                if name == "moe"
                else merge(name, p.palette.merges[name], base, continents, models / name, cache)
            )
    for name, s in stamps.items():  # each merge runs in its own process, which measured it
        session.record_cost(f"merge {name}", name, s["seconds"], s["peak_rss_gb"])
    merged = {name: models / name for name in stamps}
    save_models(folder(session), p, adapters, merged)
    costs = pd.DataFrame(
        {name: {"seconds": s["seconds"], "peak RSS (GB)": s["peak_rss_gb"]} for name, s in stamps.items()}
    ).T
    return merged, costs


def router_prompts() -> dict[str, list[str]]:
    """Prompts from each continent, naming one of its countries each (not the router's own prompts)."""
    return {
        c: [
            f"As someone from {country}, what do you think about raising children and caring for elders?"
            for country in countries
        ]
        for c, countries in PALETTE_CONTINENTS.items()
    }


@in_stage("11", "router shares")
def routing(session, moe: Path) -> pd.DataFrame:
    """The share of tokens routed first to each expert (columns), for prompts from each continent (rows)."""
    import seaborn as sns

    shares = router_shares(moe, router_prompts(), CONTINENTS)
    with plots.figure(session.figure_paths("11_router_shares.png"), figsize=(6, 4)) as (_, ax):
        sns.heatmap(
            shares,
            annot=True,
            fmt=".2f",
            cmap="mako",
            ax=ax,
            cbar_kws={"label": "share of tokens routed first"},
        )
        ax.set_xlabel("expert (continent agent)")
        ax.set_ylabel("prompts from")
        ax.set_title("Cultural MoErges: where the router sends each continent")
    return shares


def ties_figure(session, pair, deltas, trimmed, sign, merged, theirs, title: str = "") -> None:
    """The lesson's TIES merge as heatmaps, step by step from left to right: each continent's task vector and its
    trimmed copy (one row each), the elected sign, the hand merge and mergekit's."""
    import numpy as np
    import seaborn as sns

    panels = {
        (0, 0): (f"{pair[0]}: task vector", deltas[0]),
        (0, 1): (f"{pair[0]}: trimmed", trimmed[0]),
        (1, 0): (f"{pair[1]}: task vector", deltas[1]),
        (1, 1): (f"{pair[1]}: trimmed", trimmed[1]),
        (0, 2): ("elected sign (red +, blue −)", sign),
        (0, 3): ("disjoint mean, by hand", merged),
        (1, 3): ("mergekit's TIES", theirs),
    }
    scale = float(np.abs(np.asarray(deltas)).max()) or 1.0
    with plots.figure(session.figure_paths("11_ties_lesson.png"), 2, 4, figsize=(13, 5)) as (fig, axes):
        for (row, col), (name, values) in panels.items():
            limit = 1.0 if "sign" in name else scale
            sns.heatmap(
                values,
                cmap="vlag",
                vmin=-limit,
                vmax=limit,
                cbar=False,
                square=True,
                ax=axes[row, col],
                xticklabels=False,
                yticklabels=False,
            )
            axes[row, col].set_title(name, fontsize=9)
        axes[1, 2].axis("off")
        fig.suptitle(title)


def key_numbers(
    session,
    adapters: dict[str, Path],
    costs: pd.DataFrame,
    shares: pd.DataFrame,
    ties_lesson_error: float | None = None,
) -> dict:
    diagonal = [shares.loc[c, c] for c in CONTINENTS]
    return {
        # the lesson's TIES by hand equals mergekit's on the same task vectors (largest difference below 1e-6)
        **(
            {}
            if ties_lesson_error is None
            else {"ties_lesson_matches_mergekit": bool(ties_lesson_error < 1e-6)}
        ),
        "adapters": sorted(adapters),
        "merge_seconds": costs["seconds"].round(2).to_dict(),
        "peak_rss_gb": round(float(costs["peak RSS (GB)"].max()), 3),  # the largest merge's own process
        "notebook_peak_rss_gb": round(peak_rss_gb(), 3),  # training and the router probe
        # the share of tokens routed first to each continent's own expert, on that continent's prompts
        "router_own_share": round(float(sum(diagonal) / len(diagonal)), 4),
        # experts that get their largest share from their own continent's prompts (0–5)
        "experts_preferring_own": int(sum(shares[c].idxmax() == c for c in CONTINENTS)),
        "train_seconds": session.timings.get("train continent agents"),
    }
