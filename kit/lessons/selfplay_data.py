"""Notebook 30 · moral dilemmas with opposing personas: generated ones and MoralChoice ones, deduplicated and split.

Generated dilemmas are stored as the model writes them (``records/selfplay_generated_<inputs>.jsonl``,
one file per set of generation inputs, so a changed model or setting never reuses old replies);
a killed run resumes with the ids not yet stored. Notebooks 31 and 32 call :func:`dilemmas` too:
everything after generation is deterministic and cached.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.data import load_moralchoice
from kit.run import artifacts
from kit.run.cache import cache_key
from kit.selfplay import dilemmas as sd
from kit.session import in_stage


def folder(session) -> Path:
    return session.run_dir / "selfplay"


def generation_store(session):
    p, sp = session.params, session.params.selfplay
    inputs = {
        "model": artifacts.model_parts(p.model),
        "seed": p.seed,
        "tokens": sp.generation_tokens,
        "temperature": sp.generation_temperature,
        "max_retries": sp.max_retries,
        "prompt": sd.generation_prompt(""),
    }
    return session.records(f"selfplay_generated_{cache_key(inputs)[:12]}")


def generated_records(session) -> list[dict]:
    """One record per generation id (parsed or failed with its raw replies), generated in stored chunks."""
    p, sp = session.params, session.params.selfplay
    store = generation_store(session)
    ids = sd.generation_ids(sp.n_generated)
    todo = store.pending(ids)
    chunk = max(p.model.batch_size, 1)
    with session.timed("generate dilemmas"):
        for start in range(0, len(todo), chunk):
            store.extend(
                sd.generate(
                    session.backend,
                    todo[start : start + chunk],
                    p.seed,
                    sp.generation_tokens,
                    sp.generation_temperature,
                    sp.max_retries,
                )
            )
    return [store.get(i) for i in ids]


@in_stage("30", "dilemmas")
def dilemmas(session) -> tuple[list[sd.Dilemma], dict]:
    """The unit's split dilemmas, and how they came about (records, duplicates dropped). Stops with one line
    when fewer than ``selfplay.min_parsed_share`` of the generated dilemmas parsed."""
    p, sp = session.params, session.params.selfplay
    records = generated_records(session)
    sd.require_parsed(records, sp.min_parsed_share)
    found = sd.from_records(records) + sd.from_moralchoice(p.data.moralchoice_path, sp.n_moralchoice, p.seed)
    vectors = session.embedder.encode([d.text for d in found] + [sd.EXAMPLE_DILEMMA])
    kept, dropped = sd.near_duplicates(
        found, vectors[:-1], sp.dedup_cosine, p.seed, references={"one-shot example": vectors[-1]}
    )
    return sd.split(kept, p.seed, sp.test_fraction), {"records": records, "duplicates": dropped}


def capability_ids(session) -> set[str]:
    p = session.params
    return {
        s.id
        for s in load_moralchoice(p.data.moralchoice_path, ambiguity="low")[: p.selfplay.capability_items]
    }


def stats(found: list[sd.Dilemma]) -> pd.DataFrame:
    """Dilemmas per source and split, with their mean length in words."""
    df = pd.DataFrame([{"source": d.source, "split": d.split, "words": len(d.text.split())} for d in found])
    return (
        df.groupby(["source", "split"]).agg(dilemmas=("words", "size"), mean_words=("words", "mean")).round(1)
    )


def examples(found: list[sd.Dilemma], n: int = 4) -> pd.DataFrame:
    """A few dilemmas with their personas, generated ones first."""
    ordered = sorted(found, key=lambda d: d.source != "generated")[:n]
    return pd.DataFrame(
        [
            {
                "id": d.id,
                "split": d.split,
                "dilemma": d.text,
                "persona a": f"{d.a.name}: {d.a.stance}",
                "persona b": f"{d.b.name}: {d.b.stance}",
            }
            for d in ordered
        ]
    ).set_index("id")


def failures(info: dict) -> pd.DataFrame:
    """Generations that never parsed, with the last raw reply (kept, counted, never silently replaced)."""
    rows = [
        {"id": r["id"], "theme": r["theme"], "attempts": r["attempts"], "last raw reply": r["raws"][-1][:300]}
        for r in info["records"]
        if r["failed"]
    ]
    return pd.DataFrame(rows, columns=["id", "theme", "attempts", "last raw reply"])


def key_numbers(session, found: list[sd.Dilemma], info: dict, counts: dict) -> dict:
    records = info["records"]
    return {
        "generation_requests": len(records),
        "generated_parsed": sum(not r["failed"] for r in records),
        "generation_failures": sum(r["failed"] for r in records),
        "generation_attempts": sum(r["attempts"] for r in records),
        "duplicates_dropped": len(info["duplicates"]),
        "dilemmas": {split: sum(d.split == split for d in found) for split in ("train", "test")},
        "by_source": {src: sum(d.source == src for d in found) for src in ("generated", "moralchoice")},
        "overlap": counts,
        "seconds": {k: session.timings.get(k) for k in ("generate dilemmas",)},
    }
