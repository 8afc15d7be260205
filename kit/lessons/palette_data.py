"""Notebook 10 · the Pentachromatic Cultural Palette data: five continents' answers to every query.

Queries come from ``palette.queries`` (GlobalOpinionQA train-split questions without their options,
MoralChoice scenarios, a file, or PRISM from the hub), split into a training pool and a held-out
pool; both are synthesised (``kit.palette.synthesis``), the held-out answers serving as gold for
notebook 12's semantic consistency. Notebooks 11 and 12 read the same store through :func:`dataset`.
"""

from __future__ import annotations

import pandas as pd

from kit.data import Topic
from kit.llm.base import backend_parts
from kit.palette.prompts import CONTINENTS
from kit.palette.synthesis import query_split, run_synthesis, study_store, training_data, validation_counts
from kit.reporting import plots
from kit.run.records import RecordStore
from kit.session import in_stage


def queries(session) -> tuple[list[Topic], list[Topic]]:
    """(training queries, held-out queries) of this profile."""
    return query_split(session.params)


def store(session) -> RecordStore:
    """The synthesis records of this profile's model, queries and settings."""
    return study_store(session.params, backend_parts(session.role_backend("palette_teacher")))


@in_stage("10", "synthesis")
def synthesise(session, train: list[Topic], heldout: list[Topic]) -> list[dict]:
    """Every query's record (training queries first), synthesised or read back."""
    with session.timed("synthesis"):
        return run_synthesis(
            session.role_backend("palette_teacher"),
            [*train, *heldout],
            session.params.palette,
            store(session),
            session.params.seed,
        )


def dataset(session) -> tuple[dict[str, list[dict]], list[dict]]:
    """(preference records per continent, held-out query records) for notebooks 11 and 12."""
    return training_data(session.params, backend_parts(session.role_backend("palette_teacher")))


def side_by_side(record: dict) -> pd.DataFrame:
    """One query's five continent responses, before and after the cross-continent feedback."""
    return pd.DataFrame({"response": record["responses"], "after feedback": record["final"]}).loc[
        list(CONTINENTS)
    ]


def review_example(record: dict) -> pd.DataFrame:
    """The Hofstede reviews one continent's response got."""
    continent = next((c for c in CONTINENTS if record["reviews"].get(c)), CONTINENTS[0])
    reviews = record["reviews"].get(continent, {})
    return pd.DataFrame(
        {
            f"{reviewer} on {continent}": {
                "review": r["review"],
                **r["dimensions"],
                "confusions": r["confusions"],
            }
            for reviewer, r in reviews.items()
        }
    )


def funnel(records: list[dict], prefs: dict[str, list[dict]]) -> pd.DataFrame:
    counts = validation_counts(records)
    return pd.DataFrame(
        {"count": {**counts, **{f"preference pairs ({c})": len(prefs[c]) for c in CONTINENTS}}}
    )


@in_stage("10", "synthesis")
def embedding_map(session, records: list[dict]) -> pd.DataFrame:
    """The paper's Figure 3: the queries and each continent's final responses, embedded and projected
    onto their first two principal components; returns the points."""
    import seaborn as sns
    from sklearn.decomposition import PCA

    texts, groups = [r["query"] for r in records], ["query"] * len(records)
    for r in records:
        for c in CONTINENTS:
            if r["final"].get(c):
                texts.append(r["final"][c])
                groups.append(c)
    xy = PCA(n_components=2, random_state=0).fit_transform(session.embedder.encode(texts))
    points = pd.DataFrame({"pc1": xy[:, 0], "pc2": xy[:, 1], "group": groups})
    with plots.figure(session.figure_paths("10_palette_map.png"), figsize=(6.5, 4.5)) as (_, ax):
        sns.scatterplot(points, x="pc1", y="pc2", hue="group", style="group", ax=ax, s=40)
        ax.set_title("Queries and continent responses (sentence embeddings, PCA)")
        ax.legend(fontsize=7)
    return points


def continent_separation(points: pd.DataFrame) -> float:
    """How far apart the continents' responses sit: the between-continent share of the 2-D variance."""
    resp = points[points["group"] != "query"]
    if resp["group"].nunique() < 2:
        return float("nan")
    centre = resp[["pc1", "pc2"]].mean()
    total = ((resp[["pc1", "pc2"]] - centre) ** 2).sum().sum()
    between = sum(len(g) * ((g[["pc1", "pc2"]].mean() - centre) ** 2).sum() for _, g in resp.groupby("group"))
    return float(between / total) if total > 0 else float("nan")


def key_numbers(session, records: list[dict], prefs: dict[str, list[dict]], points: pd.DataFrame) -> dict:
    return {
        "queries": len(records),
        **validation_counts(records),
        "preference_pairs": {c: len(prefs[c]) for c in CONTINENTS},
        "continent_separation": round(continent_separation(points), 4),
        "seconds": session.timings.get("synthesis"),
    }
