"""Cultural Palette on the engine vs one item at a time: the data synthesis (an item is a query) and the
meta agent (an item is a country and a question), plus raw batched generation of the synthesis calls."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kit.bench.common import Recorder, timed
from kit.config import Params


def fresh_adapters(
    model_name: str, revision: str | None, names: Sequence[str], folder: Path
) -> dict[str, str]:
    """A LoRA adapter per name on the MLP projections, as trained agents have, saved as PEFT folders.

    peft starts ``lora_B`` at zero, so each answers as the base model does; what is timed is serving
    five adapters (one group per adapter in a batch), not what they learned.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.config import MLP_PROJECTIONS
    from kit.llm.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(model_name, revision).path)
    out = {}
    for i, name in enumerate(names):
        torch.manual_seed(i)  # distinct lora_A, so each folder is its own adapter to the backend
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=list(MLP_PROJECTIONS)))
        model.save_pretrained(folder / name)
        base = model.unload()
        out[name] = str(folder / name)
    return out


def _per_item(backend, jobs: Callable[[], list], n: int, k: int, engine_backend=None) -> dict[str, float]:
    """Seconds per item for all ``n`` items through the engine at once (on ``engine_backend``, e.g. a
    recorder, when given) and for the first ``k`` one at a time; and the engine's generated tokens/s."""
    from kit.engine import run_jobs

    before = backend.stats["generated_tokens"]
    _, engine = timed(lambda: run_jobs(jobs(), engine_backend or backend))
    tokens = backend.stats["generated_tokens"] - before
    _, sequential = timed(lambda: [run_jobs([job], backend) for job in jobs()[:k]])
    return {
        "engine_s_per_item": engine / n,
        "sequential_s_per_item": sequential / k,
        "engine_tok_s": tokens / engine,
    }


def run(params: Params) -> dict:
    """Seconds per item on the engine and one item at a time, for ``bench.palette_queries`` queries (× five
    continents, three steps) and ``bench.palette_items`` (country, question) items of the meta agent.

    The one-at-a-time loops run ``bench.sequential_palette_queries`` / ``bench.sequential_palette_items`` of
    the same items with the same seeds, since their rate is what is compared. ``engine_vs_sequential`` is
    the time both loops would take for the whole workload over the engine's time. The meta agent here
    decides with the base model (no MoE is built) and drafts with fresh adapters.
    """
    from kit.data.topics import pick, topic_pools
    from kit.engine import Job
    from kit.llm import load_backend
    from kit.palette.evaluation import test_items
    from kit.palette.meta_agent import Variant, palette_answer
    from kit.palette.prompts import CONTINENTS
    from kit.palette.synthesis import synthesise

    b, palette, seed = params.bench, params.palette, params.seed
    pool, _ = topic_pools(params.data, palette.queries, seed)
    queries = pick(pool, b.palette_queries, seed, "bench")
    test, _ = test_items(params)
    pairs = [(country, item) for country, its in test.items() for item in its][: b.palette_items]
    backend = load_backend(
        params.model.model_copy(update={"batch_size": max(params.model.batch_size, 16)}), None, seed=seed
    )
    recorder = Recorder(backend)

    synthesis = _per_item(
        backend,
        lambda: [Job(q.id, synthesise(q, palette, seed)) for q in queries],
        len(queries),
        b.sequential_palette_queries,
        engine_backend=recorder,
    )
    before = backend.stats["generated_tokens"]
    _, raw = timed(lambda: [backend.generate(r, p) for r, p in recorder.calls])  # the engine's own batches
    raw_tok_s = (backend.stats["generated_tokens"] - before) / raw

    with tempfile.TemporaryDirectory() as tmp:
        adapters = fresh_adapters(params.model.name, params.model.revision, CONTINENTS, Path(tmp))
        variant = Variant(meta=None)
        meta = _per_item(
            backend,
            lambda: [
                Job(
                    f"{c}:{it.question_id}",
                    palette_answer(variant, c, it, adapters, palette.draft_tokens, palette.regulate_tokens),
                )
                for c, it in pairs
            ],
            len(pairs),
            b.sequential_palette_items,
        )

    def ratio(part: dict) -> float:
        return part["sequential_s_per_item"] / part["engine_s_per_item"]

    engine_total = synthesis["engine_s_per_item"] * len(queries) + meta["engine_s_per_item"] * len(pairs)
    sequential_total = synthesis["sequential_s_per_item"] * len(queries) + meta[
        "sequential_s_per_item"
    ] * len(pairs)
    return {
        "model": params.model.name,
        "queries": len(queries),
        "meta_items": len(pairs),
        "synthesis_generate_calls": len(recorder.calls),
        "synthesis_engine_s_per_query": round(synthesis["engine_s_per_item"], 2),
        "synthesis_sequential_s_per_query": round(synthesis["sequential_s_per_item"], 2),
        "synthesis_engine_vs_sequential": round(ratio(synthesis), 2),
        "meta_engine_s_per_item": round(meta["engine_s_per_item"], 2),
        "meta_sequential_s_per_item": round(meta["sequential_s_per_item"], 2),
        "meta_engine_vs_sequential": round(ratio(meta), 2),
        "engine_vs_sequential": round(sequential_total / engine_total, 2),
        "synthesis_engine_tok_s": round(synthesis["engine_tok_s"], 2),
        "raw_tok_s": round(raw_tok_s, 2),
        "overhead_vs_raw": round(raw_tok_s / synthesis["engine_tok_s"] - 1, 3),
    }
