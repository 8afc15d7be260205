"""Moral dilemmas with two opposing personas: the data the self-play unit trains and is measured on.

Two sources:

- **generated**: the model writes a dilemma and two personas who disagree about it, as one JSON
  object (``{"dilemma": …, "persona_a": {"name": …, "stance": …}, "persona_b": {…}}``), seeded by
  a theme and a draw index; unreadable replies are asked again a bounded number of times and then
  kept as failures with their raw text. Each reply is stored as it arrives (resumable records).
- **moralchoice**: MoralChoice **high**-ambiguity scenarios; the two personas each hold one of the
  scenario's two actions (capability checks use the low-ambiguity ones).

Near-duplicates (embedding cosine at or above ``dedup_cosine`` with an earlier dilemma, in hash
order, or with the prompt's one-shot example, which a small model copies) are dropped. Dilemmas are split by the stem of their text (``seeds.unit(seed, "selfplay-split", stem)``): train
dilemmas feed GRPO, held-out ones only the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kit.data import load_moralchoice
from kit.data.splits import first_by_hash
from kit.engine import run
from kit.engine.retry import ask_parsed
from kit.llm.base import ChatRequest, GenParams
from kit.run import seeds
from kit.run.sections import ParamsError
from kit.values.detectors import first_json

SPLIT = "selfplay-split"
THEMES = (
    "sharing a family inheritance",
    "a workplace promotion",
    "how a village spends a common fund",
    "caring for an ageing parent",
    "a school's rules on phones",
    "noise between neighbours",
    "a company's layoffs",
    "using land for a factory or a park",
    "telling a friend a hard truth",
    "how a team divides credit",
    "a town's water during a drought",
    "a religious festival in a shared street",
)
GENERATOR_SYSTEM = (
    "You write short moral dilemmas for negotiation practice. You reply with one JSON object only."
)
EXAMPLE_DILEMMA = (
    "Two siblings inherit their mother's house. One wants to sell it to pay debts; the other wants "
    "to keep it as the family home."
)
EXAMPLE = (
    '{"dilemma": "Two siblings inherit their mother\'s house. One wants to sell it to pay debts; the other '
    'wants to keep it as the family home.", "persona_a": {"name": "Ana", "stance": "Selling frees us from '
    'debt and lets both of us start over."}, "persona_b": {"name": "Ben", "stance": "The house holds our '
    'family together and must stay with us."}}'
)


@dataclass(frozen=True)
class Persona:
    name: str
    stance: str  # what this side wants and why, in one or two sentences


@dataclass(frozen=True)
class Dilemma:
    id: str
    source: str  # generated | moralchoice
    text: str
    a: Persona
    b: Persona
    split: str = ""  # train | test, set by split()

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Dilemma:
        return cls(d["id"], d["source"], d["text"], Persona(**d["a"]), Persona(**d["b"]), d.get("split", ""))


def generation_prompt(theme: str) -> list[dict]:
    return [
        {"role": "system", "content": GENERATOR_SYSTEM},
        {
            "role": "user",
            "content": f"Example:\n{EXAMPLE}\n\nWrite a new dilemma about {theme}, in the same "
            "JSON shape: two people with names, each with a stance that conflicts with "
            "the other's.",
        },
    ]


def _persona(obj) -> Persona | None:
    if not isinstance(obj, dict):
        return None
    name, stance = obj.get("name"), obj.get("stance")
    if not (isinstance(name, str) and isinstance(stance, str)) or not name.strip() or len(stance.split()) < 3:
        return None
    return Persona(name.strip()[:40], " ".join(stance.split()))


def parse_dilemma(text: str) -> tuple[str, Persona, Persona] | None:
    """(dilemma, persona a, persona b) from the first JSON object that has them all, else None.

    A dilemma needs at least eight words, each persona a name and a stance of three words or more,
    and the two names must differ (the dialogue addresses the other side by name).
    """

    def read(obj: dict):
        dilemma = obj.get("dilemma")
        a, b = _persona(obj.get("persona_a")), _persona(obj.get("persona_b"))
        if not isinstance(dilemma, str) or len(dilemma.split()) < 8 or a is None or b is None:
            return None
        if a.name.lower() == b.name.lower():
            return None
        return " ".join(dilemma.split()), a, b

    return first_json(text, read)


def generation_ids(n: int) -> list[str]:
    return [f"generated:{k}" for k in range(n)]


def theme_of(seed: int, k: int) -> str:
    return THEMES[seeds.derive(seed, "selfplay-theme", k) % len(THEMES)]


def generate(
    backend, ids: Sequence[str], seed: int, tokens: int, temperature: float, max_retries: int
) -> list[dict]:
    """One record per id: the parsed dilemma, or ``failed`` with every raw reply. One batched step per attempt."""
    ks = [int(i.rpartition(":")[2]) for i in ids]

    def maker(k: int):
        def make(attempt: int):
            # draws of one theme are distinct samples, not one request asked twice
            return (
                ChatRequest(generation_prompt(theme_of(seed, k)), sample=k),
                GenParams(
                    temperature=temperature,
                    max_new_tokens=tokens,
                    seed=seeds.derive(seed, "selfplay-generate", attempt),
                ),
            )

        return make

    results = run(ask_parsed([maker(k) for k in ks], parse_dilemma, max_retries), backend)
    records = []
    for i, k, r in zip(ids, ks, results):
        base = {"id": i, "theme": theme_of(seed, k), "attempts": r.attempts}
        if r.value is None:
            records.append({**base, "failed": True, "raws": list(r.raws)})
        else:
            text, a, b = r.value
            records.append({**base, "failed": False, "text": text, "a": asdict(a), "b": asdict(b)})
    return records


def require_parsed(records: Sequence[dict], min_share: float) -> None:
    """Stop (one line, naming the param and the fix) when fewer than ``min_share`` of the generation records parsed:
    a unit that silently ran on MoralChoice alone would report numbers about data it was not meant to have."""
    parsed = sum(not r["failed"] for r in records)
    if records and parsed < min_share * len(records):
        raise ParamsError(
            f"selfplay.min_parsed_share: only {parsed} of {len(records)} generated dilemmas parsed "
            f"(needs {min_share:.0%}); fix: raise selfplay.max_retries or selfplay.generation_tokens, "
            "use a larger model, or lower selfplay.min_parsed_share"
        )


def from_moralchoice(path: str, n: int, seed: int) -> list[Dilemma]:
    """``n`` high-ambiguity MoralChoice scenarios (hash order); each persona holds one of the two actions."""
    scenarios = first_by_hash(
        load_moralchoice(path, ambiguity="high"), n, seed, "selfplay-moralchoice", key=lambda s: s.id
    )
    return [
        Dilemma(
            f"moralchoice:{s.id}",
            "moralchoice",
            s.context,
            Persona("Alex", f"You are convinced the right thing to do is this: {s.actions[0]}"),
            Persona("Sam", f"You are convinced the right thing to do is this: {s.actions[1]}"),
        )
        for s in scenarios
    ]


def from_records(records: Sequence[dict]) -> list[Dilemma]:
    return [
        Dilemma(r["id"], "generated", r["text"], Persona(**r["a"]), Persona(**r["b"]))
        for r in records
        if not r["failed"]
    ]


def near_duplicates(
    dilemmas: Sequence[Dilemma],
    vectors: np.ndarray,
    threshold: float,
    seed: int,
    references: dict[str, np.ndarray] | None = None,
) -> tuple[list[Dilemma], list[dict]]:
    """Kept dilemmas and the dropped ones (with what each duplicates and the cosine).

    In hash order a dilemma is kept unless its cosine with an already kept one — or with one of
    ``references`` (name -> unit vector, e.g. the prompt's one-shot example, which a small model
    copies) — reaches ``threshold``; rows of ``vectors`` are unit-norm embeddings in ``dilemmas`` order.
    """
    order = sorted(range(len(dilemmas)), key=lambda i: seeds.unit(seed, "selfplay-dedup", dilemmas[i].id))
    names = list(references or {})
    seen = [np.asarray(v, dtype=float) for v in (references or {}).values()]
    dropped = []
    for i in order:
        sims = np.array([v @ vectors[i] for v in seen])
        j = int(np.argmax(sims)) if len(sims) else -1
        if j >= 0 and sims[j] >= threshold:
            dropped.append({"id": dilemmas[i].id, "duplicate_of": names[j], "cosine": float(sims[j])})
        else:
            seen.append(vectors[i])
            names.append(dilemmas[i].id)
    kept = set(names)
    return [d for d in dilemmas if d.id in kept], dropped


def split(dilemmas: Sequence[Dilemma], seed: int, test_fraction: float) -> list[Dilemma]:
    """Each dilemma with its split by the stem of its text (``kit.data.goqa.question_stem``, as notebook 01
    splits: near-duplicates stay on one side); raises (one line, with the fix) when a side would be empty."""
    from kit.data.goqa import question_stem

    out = [
        Dilemma(
            d.id,
            d.source,
            d.text,
            d.a,
            d.b,
            "test" if seeds.unit(seed, SPLIT, question_stem(d.text)) < test_fraction else "train",
        )
        for d in dilemmas
    ]
    for side in ("train", "test"):
        if not any(d.split == side for d in out):
            raise ValueError(
                f"self-play dilemmas: no {side} dilemma among {len(out)}; fix: raise "
                "selfplay.n_generated / selfplay.n_moralchoice, or move selfplay.test_fraction toward 0.5"
            )
    return out


def overlap(
    dilemmas: Sequence[Dilemma], capability_ids: set[str], trained_ids: set[str] | None = None
) -> dict[str, int]:
    """Leak counts (all must be 0): held-out dilemmas sharing an id or a stem with a training one, capability
    scenarios among the dilemmas, and — once something trained — held-out dilemmas among the ids it trained on."""
    from kit.data.goqa import question_stem

    train = {d.id for d in dilemmas if d.split == "train"}
    stems = {question_stem(d.text) for d in dilemmas if d.split == "train"}
    test = {d.id for d in dilemmas if d.split == "test"}
    shared = {
        d.id for d in dilemmas if d.split == "test" and (d.id in train or question_stem(d.text) in stems)
    }
    scenario_ids = {d.id.partition(":")[2] for d in dilemmas if d.source == "moralchoice"}
    counts = {"train_test_dilemmas": len(shared), "capability_scenarios": len(scenario_ids & capability_ids)}
    if trained_ids is not None:
        counts["heldout_in_training"] = len(test & trained_ids)
    return counts
