"""The multi-agent Cultural Palette (§4.2): cultural draft, self-regulated aggregation, final decision.

For a user country and a survey question, one engine program:

1. **Cultural Draft** — each continent agent (its LoRA adapter on the base model) drafts the
   answer from the country's perspective;
2. **Self-regulated aggregation** — the meta agent (the Cultural MoErges model) distils the
   drafts into what fits the country;
3. **Final decision** — the meta agent answers, as option probabilities (``choice_probs``)
   given the aggregation in its memory.

The ablations drop one part each (``VARIANTS``). All programs of an evaluation run together on the
engine: every stage is one batch per model across all countries, questions and variants, and a
stage two variants share (the drafts) is computed once. Decoding is greedy, so every answer is
reproducible and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kit.data import OpinionItem, option_labels
from kit.engine import Program, ask, choose
from kit.llm.base import GenParams
from kit.palette.prompts import CONTINENTS, decision_request, draft_request, regulate_request

META = "moe"  # the engine's name for the Cultural MoErges model


@dataclass(frozen=True)
class Variant:
    """Which parts of the pipeline run, and which model is the meta agent (``None``: the base model)."""

    draft: bool = True
    regulate: bool = True
    meta: str | None = META


VARIANTS = {
    "palette": Variant(),
    "palette_no_moerges": Variant(meta=None),  # the base model as meta agent
    "palette_no_draft": Variant(draft=False, regulate=False),  # nothing to aggregate either
    "palette_no_selfreg": Variant(regulate=False),  # the drafts go to the decision as they are
}


def palette_answer(
    variant: Variant,
    country: str,
    item: OpinionItem,
    adapters: Mapping[str, str],
    draft_tokens: int,
    regulate_tokens: int,
) -> Program:
    """One country and question through the pipeline; returns its score row fields."""
    labels = option_labels(len(item.options))
    drafts: list[tuple[str, str]] = []
    if variant.draft:
        texts = yield from ask(
            [
                (draft_request(c, country, item, adapters[c]), GenParams(max_new_tokens=draft_tokens))
                for c in CONTINENTS
            ]
        )
        drafts = list(zip(CONTINENTS, texts))
    memory = None
    if drafts and variant.regulate:
        (memory,) = yield from ask(
            [(regulate_request(country, item, drafts), GenParams(max_new_tokens=regulate_tokens))],
            model=variant.meta,
        )
    elif drafts:
        memory = "\n".join(f"[{c}] {text.strip()}" for c, text in drafts)
    (choice,) = yield from choose([decision_request(country, item, memory, labels)], model=variant.meta)
    return {
        "country": country,
        "question_id": item.question_id,
        "p_gen": [choice.probs[lab] for lab in labels],
        "p_gold": list(item.distribution),
        "letter_mass": choice.label_mass,
        "memory": memory,
    }
