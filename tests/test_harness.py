"""Capability through lm-evaluation-harness (kit.evals.harness, the task YAMLs in kit/evals/tasks/): on the same items
and model, lm-eval's MoralChoice accuracy equals the kit's own reading through its backend (kit.evals.capability's
capability_table, kept as this cross-check), for the base model and an adapter; the tasks' metrics on hand-computed
cases and their degenerate answers; the paired change against scipy's paired t-test; bad task names in params."""

from __future__ import annotations

import math

import pytest
from conftest import ROOT

ITEMS = 8


# --- the tasks' metrics, by hand --------------------------------------------------------------------------------


def _results(pa: float, pa_space: float, pb: float, pb_space: float):
    """lm-eval's per-choice results over ("A", " A", "B", " B"): (log-likelihood, is-greedy)."""
    return [(math.log(p) if p > 0 else -math.inf, False) for p in (pa, pa_space, pb, pb_space)]


def test_moralchoice_metrics_by_hand_and_degenerate_answers_get_nothing():
    from kit.evals.tasks.agora import process_high, process_low

    # the right action first (gold 0): P(A) = 0.3 + 0.1 against P(B) = 0.2 + 0.05
    assert process_low({"gold": 0}, _results(0.3, 0.1, 0.2, 0.05)) == pytest.approx(
        {"acc": 1.0, "letter_mass": 0.65}
    )
    assert process_low({"gold": 2}, _results(0.3, 0.1, 0.2, 0.05))["acc"] == 0.0
    # a tie is no answer, and no mass on the letters at all is none either
    assert process_low({"gold": 0}, _results(0.2, 0.0, 0.1, 0.1))["acc"] == 0.0
    assert process_low({"gold": 0}, _results(0.0, 0.0, 0.0, 0.0)) == {"acc": 0.0, "letter_mass": 0.0}
    # balance: twice the less likely letter's probability — an even split of all mass is 1
    assert process_high({"gold": 0}, _results(0.25, 0.25, 0.4, 0.1))["balance"] == pytest.approx(1.0)
    assert process_high({"gold": 0}, _results(0.3, 0.1, 0.2, 0.05))["balance"] == pytest.approx(0.5)
    # committed to one action, or no mass on either letter (a refusal, another format): 0, not pluralism
    assert process_high({"gold": 0}, _results(0.9, 0.1, 0.0, 0.0))["balance"] == 0.0
    assert process_high({"gold": 0}, _results(1e-9, 0.0, 1e-9, 0.0))["balance"] == pytest.approx(2e-9)


def test_paired_change_is_the_paired_t_test_and_degenerate_pairs_say_so():
    import numpy as np
    from scipy import stats

    from kit.evals.harness import paired_change

    rng = np.random.default_rng(0)
    base = {f"t:{i}": float(v) for i, v in enumerate(rng.integers(0, 2, 30))}
    model = {k: float(rng.integers(0, 2)) for k in base} | {
        "t:extra": 1.0
    }  # an item the base lacks is left out
    got = paired_change(model, base)
    keys = sorted(base)
    a, b = np.array([model[k] for k in keys]), np.array([base[k] for k in keys])
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got["n"] == 30 and got["change"] == pytest.approx((a - b).mean())
    assert got["stderr"] == pytest.approx(stats.sem(a - b))
    assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high))
    same = paired_change(base, base)
    assert same["change"] == 0 and same["low"] == same["high"] == 0
    assert (
        paired_change({}, base)["change"] is None and paired_change({"t:0": 1.0}, {"t:0": 0.0})["low"] is None
    )


# --- lm-eval against the kit's own reading ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter on tiny-random that moves its answers (two SFT steps at a high rate)."""
    from kit.config import TrainRecipe
    from kit.train.trainers import train

    records = [
        {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": f"Which action, {i}?"},
                {"role": "assistant", "content": "Answer: B"},
            ],
        }
        for i in range(4)
    ]
    recipe = TrainRecipe(
        lora={"r": 4},
        trl={
            "num_train_epochs": 1,
            "per_device_train_batch_size": 2,
            "learning_rate": 0.05,
            "warmup_steps": 0,
            "max_length": 64,
        },
    )
    return str(
        train(
            "sft", records, [], "tiny-random", tmp_path_factory.mktemp("sft") / "sft", recipe, 0
        ).adapter_dir
    )


def test_lm_eval_accuracy_equals_the_kits_own_on_the_same_items_and_model(adapter, shared_data):
    from kit.config import ModelParams
    from kit.data import load_moralchoice
    from kit.evals import harness
    from kit.evals.capability import capability_table
    from kit.llm.hf_backend import HFBackend

    path = str(shared_data / "moralchoice" / "dev.json")
    tasks = ["agora_moralchoice_low", "agora_moralchoice_high"]
    manager = harness.task_manager(path, tasks)
    model = ModelParams(name="tiny-random", dtype="float32", device="cpu", batch_size=4)
    backend = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=4)
    low = load_moralchoice(path, ambiguity="low")[:ITEMS]
    from kit.llm.models import resolve_model

    model_parts_identity = resolve_model("tiny-random").identity
    kit = capability_table(backend, {"base": None, "adapter": adapter}, low)
    from kit.run import cost

    for name, peft in (("base", None), ("adapter", adapter)):
        with cost.stage(f"capability ({name})") as measured:
            got = harness.evaluate(
                harness.load(model, adapter=peft), tasks, ITEMS, manager, seed=0, n_boot=100
            )
        # each item asks four continuations (A, " A", B, " B") in each task: the cost columns count them
        assert (
            measured.counts["calls"] == 2 * 4 * ITEMS
            and measured.counts["scored_tokens"] > 2 * 4 * ITEMS * 20
        )
        assert list(measured.models) == [model_parts_identity]
        acc = got["agora_moralchoice_low"]
        assert acc.n == ITEMS and acc.value == kit.loc[name, "moralchoice_low_accuracy"], name
        assert acc.extra["letter_mass"] == pytest.approx(kit.loc[name, "letter_mass"], rel=1e-4)
        # lm-eval's standard error of a mean of 0/1 items: sqrt(p (1 - p) / (n - 1))
        p = acc.value
        assert acc.stderr == pytest.approx(math.sqrt(p * (1 - p) / (ITEMS - 1)))
        assert sorted(acc.items) == [f"agora_moralchoice_low:{i}" for i in range(ITEMS)]
        # high ambiguity: balance = 2 min(P(A), P(B)), the letters' raw probabilities the kit's backend reads
        from kit.evals.capability import moral_prompt
        from kit.llm.base import ChoiceRequest

        high = load_moralchoice(path, ambiguity="high")[:ITEMS]
        read = backend.choice_probs(
            [
                ChoiceRequest(
                    [{"role": "user", "content": moral_prompt(s, k % 2 == 1)}],
                    ["A", "B"],
                    adapter=peft,
                    prefix="Answer:",
                )
                for k, s in enumerate(high)
            ]
        )
        balance = [2 * min(r.probs["A"], r.probs["B"]) * r.label_mass for r in read]
        assert got["agora_moralchoice_high"].value == pytest.approx(sum(balance) / ITEMS, rel=1e-4)
    assert kit.loc["base", "letter_mass"] != pytest.approx(
        kit.loc["adapter", "letter_mass"], rel=1e-3
    )  # it moved


# --- params ----------------------------------------------------------------------------------------------------


def test_bad_capability_tasks_fail_in_one_line(shared_data):
    from kit.config import ParamsError, load_params

    for value, message in [
        ("[agora_moralchoice_medium]", "the kit ships agora_moralchoice_low"),
        ("['mmlu; rm -rf']", "not an lm-eval task name"),
        ("[mmlu, mmlu]", "twice"),
        ("[]", "at least 1"),
    ]:
        with pytest.raises(ParamsError, match=rf"capability\.tasks.*{message}") as err:
            load_params(ROOT / "params" / "tiny.yaml", [f"capability.tasks={value}"])
        assert "\n" not in str(err.value)


def test_the_doctor_says_which_tasks_need_the_hub(shared_data):
    from kit.config import load_params
    from kit.tools.doctor import capability_lines

    full = capability_lines(
        load_params(
            ROOT / "params" / "tiny.yaml",
            ["capability.tasks=[agora_moralchoice_low, ifeval, gpqa_diamond_zeroshot]"],
        )
    )
    assert any("ifeval" in line and "gpqa_diamond_zeroshot" in line and "Hub" in line for line in full)
    assert any("HF_TOKEN" in line for line in full)  # gpqa is gated
    assert capability_lines(load_params(ROOT / "params" / "tiny.yaml")) == []
