"""Grounded agents: LoRA adapters trained on survey answers rewritten into open-ended answers.

The data follows NCN (METHODS §1), scaled by :class:`~kit.config.AgentsParams`:

1. each TRAIN item is sampled ``samples_per_item`` times in proportion to the country's answer
   shares (:func:`sample_answers`);
2. an LLM rewrites (question, chosen option) into an open-ended question and a multi-paragraph
   answer that keeps the stance, in the strict format ``Question: …`` / ``Answer: …``;
3. a judge checks that the answer is consistent with the chosen option. It is one forward pass
   per pair (``backend.choice_probs`` over labels A = Consistent, B = Inconsistent), not a
   generation: the pair is kept iff P(A) > 0.5 after renormalising over the two labels. The
   judge is the base model without adapter (NCN used a second, larger LLM; a stronger judge
   is a drop-in backend). NCN's 1–5 sub-scores are not computed;
4. unparsable or inconsistent samples are rewritten again with a new seed, at most
   ``max_retries`` times; consistent pairs become SFT records with the instruction
   ``culture_instruction(country)`` as system prompt.

The whole data build is one engine program over all samples of all countries: one
``generate`` and one ``choice_probs`` call per attempt (``kit.engine.retry.ask_parsed`` with the
judge as its check).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.agents.kinds import culture_instruction
from kit.data import OpinionItem, base_country, option_labels, split_questions
from kit.data.leaks import assert_no_test_leak
from kit.engine import ask_parsed, choose, run
from kit.llm.base import Backend, ChatRequest, ChoiceRequest, GenParams, backend_parts
from kit.run import artifacts, seeds
from kit.run.cache import cache_key
from kit.run.files import atomic_write_json, atomic_write_text, read_json, read_jsonl
from kit.run.paths import file_stem

if TYPE_CHECKING:  # annotations only: kit.config composes the packages' sections
    from kit.config import AgentsParams

log = logging.getLogger(__name__)

JUDGE_LABELS = ("A", "B")  # A = Consistent, B = Inconsistent
EVAL_FRACTION = 0.1  # share of questions whose records evaluate the SFT run instead of training it
_SFT_FILE = "sft.jsonl"
_DATA_STATS = "grounding_stats.json"
_DATA_STAMP = "data.json"

# "Question:" / "**Question:**" / "## Open-ended question:" at the start of a line.
_LABEL = r"^[ \t>#*_-]*(?:{name})[ \t]*(?:\*\*|__|\*|_)?[ \t]*:[ \t]*(?:\*\*|__|\*|_)?[ \t]*"
_QUESTION = re.compile(_LABEL.format(name=r"(?:open[- ]ended[ \t]+)?question"), re.I | re.M)
_ANSWER = re.compile(_LABEL.format(name=r"answer"), re.I | re.M)


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class GroundingResult:
    """SFT records of one country and what happened on the way.

    ``stats``: ``samples``; per-attempt event counts ``parsed``, ``unparsable``, ``judged``,
    ``inconsistent`` (a sample that fails twice counts twice); ``kept``; ``attempts`` (rewrite
    rounds run); ``skipped`` (a reason, or None); ``judgments`` (id, attempt, p_consistent,
    label_mass, consistent) and ``unparsable_raw`` (id, attempt, text).
    """

    records: list[dict]
    stats: dict[str, Any]


@dataclass(frozen=True)
class GroundedAgentResult:
    """``adapter_dir`` is None when the country was skipped (``stats["skipped"]`` says why);
    ``records`` is the SFT data (read back from ``sft.jsonl`` when reused)."""

    adapter_dir: Path | None
    stats: dict[str, Any] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class _Sample:
    id: str
    item: OpinionItem
    option: int
    k: int  # which sample of its item: samples of one item and option differ by their seed


def sample_answers(
    items: Sequence[OpinionItem], samples_per_item: int, seed: int
) -> list[tuple[OpinionItem, int]]:
    """``samples_per_item`` option indices per item, drawn with the country's answer shares.

    Each item has its own generator seeded by (seed, country, question_id), so an item's
    samples do not change when other items are added, removed or reordered.
    """
    if samples_per_item < 1:
        raise ValueError(f"samples_per_item must be at least 1, got {samples_per_item}")
    out: list[tuple[OpinionItem, int]] = []
    for item in items:
        rng = np.random.default_rng(seeds.derive(seed, "survey-sample", item.country, item.question_id))
        p = np.asarray(item.distribution, dtype=float)
        picks = rng.choice(len(p), size=samples_per_item, p=p / p.sum())
        out.extend((item, int(k)) for k in picks)
    return out


def _options_block(item: OpinionItem) -> str:
    return "\n".join(f"{lab}. {opt}" for lab, opt in zip(option_labels(len(item.options)), item.options))


REWRITE_PROMPT = (
    "A person from {country} answered this survey question.\n"
    "Survey question: {question}\nOptions:\n{options}\n"
    "Their answer: {answer}\n\n"
    "Rewrite this into an open-ended question on the same topic (do not list options) and a "
    "detailed answer of two to four paragraphs, in the first person, by this person from {country}. "
    "The answer must clearly take the stance of their survey answer and explain it through "
    "{country}'s cultural values. Do not mention the survey or its options.\n"
    "Reply in exactly this format and nothing else:\n"
    "Question: <the open-ended question>\nAnswer: <the multi-paragraph answer>"
)
JUDGE_PROMPT = (
    "A person from {country} chose an answer to a survey question, then answered an open-ended "
    "version of it.\n\nSurvey question: {question}\nChosen answer: {answer}\n\n"
    "Open-ended question: {open_question}\nTheir answer:\n{open_answer}\n\n"
    "Is their answer consistent with the chosen survey answer (does it take the same stance)?\n"
    "A. Consistent\nB. Inconsistent\nAnswer with A or B."
)


def rewrite_request(country: str, item: OpinionItem, option: int) -> ChatRequest:
    """Ask for an open question + multi-paragraph answer that keeps the stance of ``option``."""
    prompt = REWRITE_PROMPT.format(
        country=base_country(country),
        question=item.question,
        options=_options_block(item),
        answer=item.options[option],
    )
    return ChatRequest([{"role": "user", "content": prompt}])


def rewrite_requests(country: str, samples: Sequence[tuple[OpinionItem, int]]) -> list[ChatRequest]:
    """One rewrite request per (item, option) sample."""
    return [rewrite_request(country, item, option) for item, option in samples]


def parse_rewrite(text: str) -> tuple[str, str] | None:
    """(open question, answer) from a ``Question: … Answer: …`` reply, or None.

    Tolerates markdown decoration of the labels and text before the first label; the answer
    stops where a second ``Question:`` begins (a model that goes on with another pair).
    """
    q = _QUESTION.search(text)
    if q is None:
        return None
    a = _ANSWER.search(text, q.end())
    if a is None:
        return None
    nxt = _QUESTION.search(text, a.end())
    question = text[q.end() : a.start()].strip().strip("*_").strip()
    answer = text[a.end() : nxt.start() if nxt else len(text)].strip()
    return (question, answer) if question and answer else None


def judge_request(country: str, item: OpinionItem, option: int, question: str, answer: str) -> ChoiceRequest:
    """A/B request: is ``answer`` consistent with the chosen survey option (A) or not (B)?"""
    prompt = JUDGE_PROMPT.format(
        country=base_country(country),
        question=item.question,
        answer=item.options[option],
        open_question=question,
        open_answer=answer,
    )
    return ChoiceRequest([{"role": "user", "content": prompt}], JUDGE_LABELS, prefix="Answer:")


def sft_record(sample_id: str, item: OpinionItem, question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": culture_instruction(item.country)},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        "id": sample_id,
        "question_id": item.question_id,
    }


def _empty_stats() -> dict[str, Any]:
    return {
        "samples": 0,
        "parsed": 0,
        "unparsable": 0,
        "judged": 0,
        "inconsistent": 0,
        "kept": 0,
        "attempts": 0,
        "skipped": None,
        "judgments": [],
        "unparsable_raw": [],
    }


def country_samples(
    country: str, items: Sequence[OpinionItem], params: AgentsParams, seed: int
) -> tuple[list[_Sample], str | None]:
    """The (item, option) samples of one country's first ``max_train_items`` train items, or the reason
    it is skipped (fewer than ``min_train_items``)."""
    items = list(items)[: params.max_train_items]
    wrong = sorted({it.country for it in items} - {country})
    if wrong:
        raise ValueError(
            f"train_by_country[{country!r}] holds items of {wrong}; pass each country its own items"
        )
    if len(items) < params.min_train_items:
        return [], f"{len(items)} train items < min_train_items={params.min_train_items}"
    samples, counter = [], {}
    for item, option in sample_answers(items, params.samples_per_item, seed):
        k = counter[item.question_id] = counter.get(item.question_id, -1) + 1
        samples.append(_Sample(f"{country}:{item.question_id}:{k}", item, option, k))
    return samples, None


def _rewrite_params(params: AgentsParams, gen: GenParams | None) -> GenParams:
    return gen or GenParams(temperature=0.7, top_p=0.95, max_new_tokens=params.rewrite_tokens)


def build_all(
    backend: Backend,
    countries: Sequence[str],
    train_by_country: Mapping[str, Sequence[OpinionItem]],
    params: AgentsParams,
    seed: int,
    *,
    gen: GenParams | None = None,
    test_items: Sequence[OpinionItem] = (),
) -> dict[str, GroundingResult]:
    """SFT data for every country, batched across countries: one generate + one judge call per attempt.

    Uses each country's first ``params.max_train_items`` train items (in the order given); a
    country with fewer than ``params.min_train_items`` is skipped (``stats["skipped"]``).
    ``gen`` defaults to temperature 0.7 with ``params.rewrite_tokens`` new tokens; its seed
    is derived from ``seed``, the attempt and the sample's index within its item. ``test_items``,
    when given, are checked against the rewrite prompts before any model call.
    """
    countries = list(dict.fromkeys(countries))
    stats = {c: _empty_stats() for c in countries}
    samples: list[_Sample] = []
    for country in countries:
        found, reason = country_samples(country, train_by_country.get(country, ()), params, seed)
        if reason:
            log.warning("grounded agent for %s skipped: %s", country, reason)
            stats[country]["skipped"] = reason
        samples += found
        stats[country]["samples"] = len(found)

    if test_items and samples:
        prompts = [rewrite_request(s.item.country, s.item, s.option).chat[-1]["content"] for s in samples]
        assert_no_test_leak([s.item for s in samples], test_items, prompts)

    gen = _rewrite_params(params, gen)
    # The k-th samples of all items share a seed, so they batch into one call per k and attempt; two
    # samples of one item that drew the same option still get two different rewrites.
    makers = [
        lambda attempt, s=s: (
            rewrite_request(s.item.country, s.item, s.option),
            dataclasses.replace(gen, seed=seeds.derive(seed, "rewrite", attempt, s.k)),
        )
        for s in samples
    ]

    def judge(parsed: list[tuple[int, tuple[str, str]]], attempt: int):
        """Each attempt's check: one choice_probs call over every (question, answer) that parsed."""
        verdicts = yield from choose(
            [
                judge_request(samples[k].item.country, samples[k].item, samples[k].option, q, a)
                for k, (q, a) in parsed
            ],
            retry=attempt,
        )
        p_consistent = [v.probs[JUDGE_LABELS[0]] for v in verdicts]
        for (k, _), p, verdict in zip(parsed, p_consistent, verdicts):
            stats[samples[k].item.country]["judgments"].append(
                {
                    "id": samples[k].id,
                    "attempt": attempt,
                    "p_consistent": p,
                    "label_mass": verdict.label_mass,
                    "consistent": p > 0.5,
                }
            )
        return [p > 0.5 for p in p_consistent]

    outcomes = (
        run(ask_parsed(makers, parse_rewrite, params.max_retries, check=judge), backend) if samples else []
    )
    records: dict[str, list[dict]] = {c: [] for c in countries}
    for s, outcome in zip(samples, outcomes):
        st = stats[s.item.country]
        st["attempts"] = max(st["attempts"], outcome.attempts)
        st["unparsable"] += outcome.unreadable
        st["parsed"] += outcome.attempts - outcome.unreadable
        st["judged"] += outcome.attempts - outcome.unreadable
        st["inconsistent"] += len(outcome.rejected)
        st["unparsable_raw"] += [
            {"id": s.id, "attempt": a, "text": text}
            for a, text in enumerate(outcome.raws)
            if parse_rewrite(text) is None
        ]
        if outcome.value is not None:
            records[s.item.country].append(sft_record(s.id, s.item, *outcome.value))
    results = {}
    for country in countries:
        recs = sorted(records[country], key=lambda r: r["id"])
        stats[country]["kept"] = len(recs)
        results[country] = GroundingResult(recs, stats[country])
    return results


def data_parts(
    backend: Backend, samples: Sequence[_Sample], gen: GenParams, params: AgentsParams, seed: int
) -> dict[str, Any]:
    """What a country's SFT data depends on: the model, the exact rewrite prompts, the judge, the sampling."""
    return {
        "model": backend_parts(backend),
        "judge": JUDGE_PROMPT,
        "gen": gen.key(),
        "prompts": cache_key(
            [[s.id, rewrite_request(s.item.country, s.item, s.option).key()] for s in samples]
        ),
        "max_retries": params.max_retries,
        "seed": seed,
    }


# ---------------------------------------------------------------------------------------------
# training


def train_grounded_agents(
    backend: Backend,
    base_model: str,
    countries: Sequence[str],
    train_by_country: Mapping[str, Sequence[OpinionItem]],
    params: AgentsParams,
    seed: int,
    out_dir: Path,
    *,
    gen: GenParams | None = None,
    test_items: Sequence[OpinionItem] = (),
    room: Callable[[], ContextManager] = nullcontext,
) -> dict[str, GroundedAgentResult]:
    """One LoRA adapter per country in ``out_dir/<country>/``, resumable and fingerprinted.

    A country's SFT data (``sft.jsonl``) is reused while ``data.json`` says it was made from the
    same prompts, model and sampling (:func:`data_parts`); its adapter (``sft/adapter``) while the
    trainer's fingerprint says it was trained on the same records with the same recipe
    (``kit.train.trainers.train``). Anything else is rebuilt. Countries with too few train items or
    no kept record are skipped with a warning, never an error. The adapters train inside ``room()`` (the
    session's training stage, which puts the inference engines to sleep), after all data is written.
    """
    out_dir = Path(out_dir)
    countries = list(dict.fromkeys(countries))
    folders = {c: out_dir / file_stem(c) for c in countries}
    gen = _rewrite_params(params, gen)
    data: dict[str, tuple[list[dict], dict]] = {}
    build: dict[str, dict] = {}
    for country in countries:
        samples, reason = country_samples(country, train_by_country.get(country, ()), params, seed)
        parts = data_parts(backend, samples, gen, params, seed)
        folder = folders[country]
        if (
            reason is None
            and (folder / _SFT_FILE).is_file()
            and artifacts.reusable(folder / _DATA_STAMP, parts, f"grounding data of {country}")
        ):
            data[country] = (read_jsonl(folder / _SFT_FILE), read_json(folder / _DATA_STATS, {}))
        else:
            build[country] = parts
    if build:
        built = build_all(
            backend, list(build), train_by_country, params, seed, gen=gen, test_items=test_items
        )
        for country, res in built.items():
            if res.stats["skipped"] is None:
                folder = folders[country]
                atomic_write_json(folder / _DATA_STATS, res.stats)
                atomic_write_text(
                    folder / _SFT_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in res.records)
                )
                artifacts.stamp(
                    folder / _DATA_STAMP, build[country]
                )  # last: a stamp means the data is complete
            data[country] = (res.records, res.stats)

    results: dict[str, GroundedAgentResult] = {}
    with room():
        for country in countries:
            records, stats = data[country]
            if stats.get("skipped") is None and not records:
                stats = {**stats, "skipped": "no consistent SFT record was kept"}
                log.warning(
                    "grounded agent for %s skipped: %s (%d samples, %d unparsable, %d inconsistent)",
                    country,
                    stats["skipped"],
                    stats["samples"],
                    stats["unparsable"],
                    stats["inconsistent"],
                )
            if stats["skipped"] is not None:
                results[country] = GroundedAgentResult(None, stats, records)
                continue
            train_records, evals = split_questions(
                records, EVAL_FRACTION, seed, "grounding-eval", key=lambda r: r["question_id"]
            )
            if not train_records:  # too few questions to hold any out
                train_records, evals = records, []
            from kit.train.trainers import train  # heavy (trl): imported only when something trains

            res = train("sft", train_records, evals, base_model, folders[country] / "sft", params.sft, seed)
            info = {
                "train_records": len(train_records),
                "eval_records": len(evals),
                "train_tokens": res.train_tokens,
                "seconds": res.seconds,
                "reused": res.reused,
                "log_history": res.log_history,
            }
            results[country] = GroundedAgentResult(Path(res.adapter_dir), {**stats, "train": info}, records)
    return {c: results[c] for c in countries}
