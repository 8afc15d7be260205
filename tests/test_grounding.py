"""Grounded agents: proportional sampling, rewrite parsing, the batched judge, retries, SFT records,
training with reuse, skips and the test-leak check. The trainer is faked with a real tiny PEFT adapter."""

from __future__ import annotations

import json
import logging
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kit.agents import culture_instruction
from kit.agents.grounding import (
    build_all,
    parse_rewrite,
    rewrite_requests,
    sample_answers,
    train_grounded_agents,
)
from kit.config import AgentsParams
from kit.data import OpinionItem, question_id
from kit.data.leaks import assert_no_test_leak
from kit.llm.base import Backend, ChoiceResult, GenParams

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def build_one(backend, country, items, params, seed, **kwargs):
    return build_all(backend, [country], {country: items}, params, seed, **kwargs)[country]


PARAMS = AgentsParams(
    min_train_items=2, max_train_items=10, samples_per_item=2, max_retries=1, answer_tokens=8
)


def item(country: str, n: int, dist=(0.6, 0.3, 0.1)) -> OpinionItem:
    question = f"How important is tradition number {n} in everyday life?"
    options = tuple(f"Option {k}" for k in range(len(dist)))
    qid = question_id(question, options)
    return OpinionItem(f"{qid}:{country}", qid, question, options, country, tuple(dist))


def items_of(country: str, k: int) -> list[OpinionItem]:
    return [item(country, n) for n in range(k)]


class Fake(Backend):
    """Scripted replies; counts calls and remembers every batch and its GenParams."""

    name = identity = "fake"

    def __init__(
        self,
        reply=lambda req, call: "Question: Why?\nAnswer: Because.\n\nAnd more.",
        p_consistent=lambda req, call: 0.9,
        choice=None,
    ):
        self.reply, self.p_consistent, self.choice = reply, p_consistent, choice
        self.generate_batches: list[list] = []
        self.gen_params: list[GenParams] = []
        self.choice_batches: list[list] = []

    def generate(self, requests, params):
        call = len(self.generate_batches)
        self.generate_batches.append(list(requests))
        self.gen_params.append(params)
        return [self.reply(r, call) for r in requests]

    def score(self, requests):
        raise AssertionError("grounding never scores")

    def choice_probs(self, requests):
        call = len(self.choice_batches)
        self.choice_batches.append(list(requests))
        if self.choice is not None:
            return self.choice.choice_probs(requests)
        out = []
        for r in requests:
            p = self.p_consistent(r, call)
            out.append(ChoiceResult({"A": p, "B": 1 - p}, 0.5))
        return out


# --- sampling ------------------------------------------------------------------------------


def test_sampling_matches_shares():
    shares = (0.5, 0.3, 0.15, 0.05)
    n = 20_000
    picks = [k for _, k in sample_answers([item("Mexico", 0, shares)], n, seed=3)]
    counts = np.bincount(picks, minlength=len(shares))
    assert stats.chisquare(counts, np.array(shares) * n).pvalue > 1e-3


def test_sampling_is_stable_per_item():
    a, b = item("Mexico", 0), item("Mexico", 1)
    one = sample_answers([a, b], 5, seed=0)
    assert one == sample_answers([a, b], 5, seed=0)
    swapped = sample_answers([b, a], 5, seed=0)
    assert one[:5] == swapped[5:] and one[5:] == swapped[:5]
    assert [k for _, k in sample_answers([item("Mexico", 0, (0.25,) * 4)], 50, seed=0)] != [
        k for _, k in sample_answers([item("Mexico", 0, (0.25,) * 4)], 50, seed=1)
    ]


def test_sampling_never_picks_a_zero_share():
    assert {k for _, k in sample_answers([item("Iraq", 0, (0.0, 1.0, 0.0))], 100, seed=0)} == {1}


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Question: Why?\nAnswer: Because.\n\nMore.", ("Why?", "Because.\n\nMore.")),
        (
            "Sure, here it is.\n**Question:** Why?\n**Answer:** Yes.\nQuestion: another\nAnswer: x",
            ("Why?", "Yes."),
        ),
        ("## Open-ended question: What matters?\n## Answer:\nFamily.", ("What matters?", "Family.")),
    ],
)
def test_parse_rewrite_good(text, expected):
    assert parse_rewrite(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gibberish ĠĠ x",
        "Question: \nAnswer: x",
        "Question: q\nAnswer:   ",
        "Answer: x\nQuestion: y",
        "Question: q Answer: inline",
    ],
)
def test_parse_rewrite_bad(text):
    assert parse_rewrite(text) is None


def test_rewrite_request_asks_for_the_format():
    it = item("China", 0)
    (req,) = rewrite_requests("China", [(it, 2)])
    text = req.chat[-1]["content"]
    assert (
        it.question in text
        and "Their answer: Option 2" in text
        and "Question: <" in text
        and "Answer: <" in text
    )


# --- building data -------------------------------------------------------------------------


def test_well_formed_rewrites_give_exact_sft_records():
    fake = Fake()
    res = build_all(
        fake,
        ["China", "Mexico"],
        {"China": items_of("China", 3), "Mexico": items_of("Mexico", 2)},
        PARAMS,
        seed=0,
    )
    # both countries in one call per sample index (the k-th samples share a seed), one judge call
    assert [len(b) for b in fake.generate_batches] == [5, 5]
    assert fake.gen_params[0].seed != fake.gen_params[1].seed
    # one judge call; a judge request repeated by two samples (same item, option and reply) is sent once
    assert (
        len(fake.choice_batches) == 1
        and len(set(fake.choice_batches[0])) == len(fake.choice_batches[0]) <= 10
    )
    china = res["China"]
    assert china.stats | {"judgments": None, "unparsable_raw": None} == {
        "samples": 6,
        "parsed": 6,
        "unparsable": 0,
        "judged": 6,
        "inconsistent": 0,
        "kept": 6,
        "attempts": 1,
        "skipped": None,
        "judgments": None,
        "unparsable_raw": None,
    }
    assert all(j["p_consistent"] == pytest.approx(0.9) for j in china.stats["judgments"])
    rec = china.records[0]
    assert set(rec) == {"messages", "id", "question_id"}
    assert rec["messages"] == [
        {"role": "system", "content": culture_instruction("China")},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "Because.\n\nAnd more."},
    ]
    assert len({r["id"] for r in china.records + res["Mexico"].records}) == 10
    assert {r["question_id"] for r in china.records} == {it.question_id for it in items_of("China", 3)}


def test_judge_is_one_choice_call_over_parsed_pairs(tiny_backend):
    """Half the rewrites parse; all parsed pairs go to the real model in one choice_probs call."""
    fake = Fake(
        reply=lambda r, call: (
            "Question: Why?\nAnswer: x" if "number 0" in r.chat[-1]["content"] else "ĠĠ junk"
        ),
        choice=tiny_backend,
    )
    res = build_one(fake, "Iraq", items_of("Iraq", 2), PARAMS.model_copy(update={"max_retries": 0}), seed=0)
    assert [len(b) for b in fake.choice_batches] == [2]
    assert all(r.labels == ("A", "B") for r in fake.choice_batches[0])
    st = res.stats
    assert (st["parsed"], st["unparsable"], st["judged"]) == (2, 2, 2)
    assert [j["consistent"] for j in st["judgments"]] == [j["p_consistent"] > 0.5 for j in st["judgments"]]
    assert st["kept"] == 2 - st["inconsistent"] == len(res.records)
    assert len(st["unparsable_raw"]) == 2 and all(u["text"] == "ĠĠ junk" for u in st["unparsable_raw"])


def test_only_failures_are_retried_with_new_seeds():
    # attempt 0: everything parses but is judged inconsistent; attempt 1: consistent
    fake = Fake(p_consistent=lambda r, call: 0.2 if call == 0 else 0.8)
    res = build_one(fake, "Spain", items_of("Spain", 2), PARAMS, seed=0)
    assert [len(b) for b in fake.generate_batches] == [2, 2, 2, 2]  # two sample indices, two attempts
    assert len({p.seed for p in fake.gen_params}) == 4
    assert res.stats["attempts"] == 2 and res.stats["inconsistent"] == 4 and res.stats["kept"] == 4


def test_retries_are_bounded():
    fake = Fake(
        reply=lambda r, call: "no format" if call < 2 else "Question: q\nAnswer: a",
        p_consistent=lambda r, call: 0.1,
    )
    res = build_one(fake, "Spain", items_of("Spain", 2), PARAMS.model_copy(update={"max_retries": 2}), seed=0)
    assert [len(b) for b in fake.generate_batches] == [2, 2, 2, 2, 2, 2]
    assert len(fake.choice_batches) == 2  # nothing parsed in attempt 0: no judge call
    st = res.stats
    assert (st["attempts"], st["unparsable"], st["parsed"], st["inconsistent"], st["kept"]) == (3, 4, 8, 8, 0)
    assert res.records == []


def test_gibberish_model_is_handled(tiny_backend):
    params = PARAMS.model_copy(update={"min_train_items": 1})
    res = build_one(
        tiny_backend,
        "Mexico",
        items_of("Mexico", 1),
        params,
        seed=0,
        gen=GenParams(temperature=0.7, max_new_tokens=8),
    )
    st = res.stats
    assert st["samples"] == 2 and 1 <= st["attempts"] <= params.max_retries + 1
    assert st["parsed"] + st["unparsable"] >= st["samples"]
    assert len(st["unparsable_raw"]) == st["unparsable"] and st["kept"] == len(res.records) <= 2


def test_thin_country_is_skipped_without_model_calls(caplog):
    fake = Fake()
    with caplog.at_level(logging.WARNING, logger="kit.agents.grounding"):
        res = build_all(
            fake,
            ["Iraq", "Spain"],
            {"Iraq": items_of("Iraq", 1), "Spain": items_of("Spain", 2)},
            PARAMS,
            seed=0,
        )
    assert "min_train_items" in res["Iraq"].stats["skipped"] and res["Iraq"].records == []
    assert "Iraq" in caplog.text
    assert all("Spain" in r.chat[-1]["content"] for r in fake.generate_batches[0])


def test_items_of_another_country_are_refused():
    with pytest.raises(ValueError, match="Iraq"):
        build_all(Fake(), ["Spain"], {"Spain": items_of("Iraq", 3)}, PARAMS, seed=0)


# --- training ------------------------------------------------------------------------------


@dataclass
class FakeTrainResult:
    adapter_dir: Path
    log_history: list
    train_tokens: int
    seconds: float
    reused: bool = False


@pytest.fixture
def fake_trainer(monkeypatch, tiny_backend):
    """Stands in for kit.train.trainers.train: writes a real tiny LoRA adapter."""
    calls: list[dict] = []

    def train(method, train_records, eval_records, base_model, output_dir, recipe, seed):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        assert method == "sft"
        calls.append(
            {"train": train_records, "eval": eval_records, "base_model": base_model, "recipe": recipe}
        )
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_backend.resolved.path),
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        )
        model.save_pretrained(Path(output_dir) / "adapter")  # where the real trainer saves it
        return FakeTrainResult(Path(output_dir) / "adapter", [{"loss": 1.0}], 123, 0.1)

    monkeypatch.setitem(sys.modules, "kit.train.trainers", types.SimpleNamespace(train=train))
    return calls


def test_train_grounded_agents_trains_then_reuses_its_data(tmp_path, fake_trainer, caplog):
    data = {"China": items_of("China", 3), "Iraq": items_of("Iraq", 1)}
    fake = Fake()
    with caplog.at_level(logging.WARNING, logger="kit.agents.grounding"):
        first = train_grounded_agents(fake, "tiny-random", ["China", "Iraq"], data, PARAMS, 0, tmp_path)
    assert first["Iraq"].adapter_dir is None and "min_train_items" in first["Iraq"].stats["skipped"]
    adapter = first["China"].adapter_dir
    assert adapter == tmp_path / "China" / "sft" / "adapter" and all(
        (adapter / f).is_file() for f in ADAPTER_FILES
    )
    assert len(fake_trainer) == 1 and fake_trainer[0]["base_model"] == "tiny-random"
    call = fake_trainer[0]
    assert len(call["train"]) + len(call["eval"]) == 6 and call["train"]
    assert {r["question_id"] for r in call["train"]}.isdisjoint({r["question_id"] for r in call["eval"]})
    lines = (tmp_path / "China" / "sft.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        r["id"] for r in call["train"] + call["eval"]
    )
    assert first["China"].stats["train"]["train_tokens"] == 123

    second = train_grounded_agents(fake, "tiny-random", ["China", "Iraq"], data, PARAMS, 0, tmp_path)
    assert len(fake.generate_batches) == 2  # the data was reused: no rewrite asked again
    # the trainer gets the very same records, so its own fingerprint reuses the adapter (kit.train.trainers)
    assert (
        len(fake_trainer) == 2
        and fake_trainer[1]["train"] == call["train"]
        and fake_trainer[1]["eval"] == call["eval"]
    )
    assert second["China"].adapter_dir == adapter and second["Iraq"].adapter_dir is None
    assert second["China"].stats["kept"] == 6 and second["China"].records == first["China"].records


def test_grounding_data_is_rebuilt_when_what_made_it_changed(tmp_path, fake_trainer, caplog):
    data = {"China": items_of("China", 2)}
    fake = Fake()
    train_grounded_agents(fake, "tiny-random", ["China"], data, PARAMS, 0, tmp_path)
    assert len(fake.generate_batches) == 2
    with caplog.at_level(logging.WARNING, logger="kit.run.artifacts"):
        train_grounded_agents(
            fake, "tiny-random", ["China"], data, PARAMS.model_copy(update={"rewrite_tokens": 9}), 0, tmp_path
        )
    assert len(fake.generate_batches) == 4  # asked again
    assert "grounding data of China was made from other inputs (changed: gen.max_new_tokens)" in caplog.text
    train_grounded_agents(
        fake, "tiny-random", ["China"], data, PARAMS.model_copy(update={"rewrite_tokens": 9}), 1, tmp_path
    )
    assert len(fake.generate_batches) == 6 and "seed" in caplog.text.splitlines()[-1]


def test_country_with_no_kept_record_is_skipped(tmp_path, fake_trainer, caplog):
    fake = Fake(p_consistent=lambda r, call: 0.0)
    with caplog.at_level(logging.WARNING, logger="kit.agents.grounding"):
        res = train_grounded_agents(
            fake, "tiny-random", ["Spain"], {"Spain": items_of("Spain", 2)}, PARAMS, 0, tmp_path
        )
    assert res["Spain"].adapter_dir is None and "no consistent" in res["Spain"].stats["skipped"]
    assert fake_trainer == [] and "Spain" in caplog.text


# --- leak check ----------------------------------------------------------------------------


def test_leak_check_catches_an_injected_test_question():
    train, test = items_of("China", 3), [item("China", 7)]
    clean = ["A description of China.", json.dumps({"messages": [{"content": train[0].question}]})]
    assert_no_test_leak(train, test, clean)
    injected = clean + ["Some text.\n" + test[0].question.upper().replace(" ", "  ")]
    with pytest.raises(ValueError, match="text #2"):
        assert_no_test_leak(train, test, injected)


def test_leak_check_refuses_a_question_on_both_sides_with_other_options():
    # the split is by stem: a question asked with another option set is the same question, never a test item
    train = items_of("China", 1)
    same_text = OpinionItem(
        "x",
        question_id(train[0].question, ("Yes", "No")),
        train[0].question,
        ("Yes", "No"),
        "China",
        (0.5, 0.5),
    )
    with pytest.raises(ValueError, match="both train and test"):
        assert_no_test_leak(train, [same_text], [train[0].question])


def test_leak_check_refuses_overlapping_splits():
    train = items_of("China", 2)
    with pytest.raises(ValueError, match="both train and test"):
        assert_no_test_leak(train, train[:1], [])
    with pytest.raises(ValueError, match="both train and test"):
        build_all(Fake(), ["China"], {"China": train}, PARAMS, seed=0, test_items=train[:1])
