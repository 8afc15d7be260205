"""Direction goldens: training moves the model the way its objective says, and a merge of identical adapters is the
adapter. A trainer with its loss's sign flipped, or a merge that scales or drops what it should keep, fails here.

On the tiny random model with a large learning rate, a few steps: DPO, ORPO and SimPO raise the chosen-minus-rejected
log-probability margin of their own training pairs; GRPO raises the log-probability of the completions it rewarded
above their group (the advantage-weighted change is positive); TIES (at density 1) and Model Stock of five copies of
one adapter are that adapter merged into the base, and TIES at the recipe's density keeps the adapter's largest half.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

PAIRS = [
    (
        "Who should care for elderly parents?",
        "Their children should, at home, with love.",
        "Nobody at all should bother.",
    ),
    (
        "Should neighbours share a well?",
        "Yes, they should share it fairly by need.",
        "No, the strongest should take it all.",
    ),
]


def _pref_records():
    return [
        {
            "id": f"p{k}",
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        for k, (q, c, r) in enumerate(PAIRS)
    ]


def _margins(backend, adapter) -> np.ndarray:
    """Σ log p(chosen) − Σ log p(rejected) of each training pair under the adapter (None: the base model)."""
    from kit.llm.base import ScoreRequest

    reqs = [
        ScoreRequest([{"role": "user", "content": q}], text, adapter=adapter)
        for q, c, r in PAIRS
        for text in (c, r)
    ]
    sums = [float(np.sum(lp)) for lp in backend.score(reqs)]
    return np.array(sums[0::2]) - np.array(sums[1::2])


@pytest.fixture(scope="module")
def scorer():
    """A backend of its own: loading adapters wraps its model in peft, which the session's shared backend must not see."""
    from kit.llm.hf_backend import HFBackend

    return HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=4)


@pytest.mark.parametrize("method", ["dpo", "orpo", "simpo"])
def test_preference_training_raises_the_chosen_minus_rejected_margin(method, tmp_path, scorer):
    from kit.config import FinetuneParams
    from kit.train import train

    recipe = FinetuneParams(
        trl={
            "num_train_epochs": 4,
            "per_device_train_batch_size": 2,
            "max_length": 64,
            "learning_rate": 2e-2,
            "warmup_steps": 0.0,
            "logging_steps": 1,
        }
    )
    result = train(method, _pref_records(), [], "tiny-random", tmp_path / method, recipe, seed=0)
    assert result.global_step == 4
    before, after = _margins(scorer, None), _margins(scorer, str(result.adapter_dir))
    assert (after > before).all(), (method, before.tolist(), after.tolist())
    assert (after - before).mean() > 0.5  # a clear move, not rounding


def test_grpo_raises_the_completions_it_rewarded():
    """One GRPO step on the tiny model: the completions of the step, scored by the trained adapter against the base,
    moved by Σ advantage · Δ log p > 0 — up where the reward was above the group's mean, down where below."""
    import tempfile

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.config import TrainRecipe
    from kit.llm.models import resolve_model
    from kit.train import train
    from kit.train.rollouts import grpo_recipe

    seen = []

    def reward(completions, completion_ids, prompts, **_):
        # tells completions apart by their tokens, so a group's advantages are not all 0
        values = [float(sum(ids) % 13) for ids in completion_ids]
        seen.extend(
            zip(
                [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts],
                [list(ids) for ids in completion_ids],
                values,
            )
        )
        return values

    path = resolve_model("tiny-random").path
    records = [{"id": "q", "prompt": [{"role": "user", "content": "Say something kind about neighbours."}]}]
    recipe = grpo_recipe(
        TrainRecipe(
            lora={"r": 4},
            trl={
                "num_generations": 8,
                "per_device_train_batch_size": 8,
                "max_steps": 1,
                "learning_rate": 0.05,
                "warmup_steps": 0,
                "temperature": 1.0,
                "max_completion_length": 6,
                "beta": 0.0,
            },
        ),
        {"r": 1.0},
        None,
    )
    with tempfile.TemporaryDirectory() as out:
        result = train(
            "grpo",
            records,
            None,
            path,
            Path(out) / "grpo",
            recipe,
            0,
            reward_funcs=[reward],
            rewards={"r": 1.0},
        )
        tok = AutoTokenizer.from_pretrained(path)
        base = AutoModelForCausalLM.from_pretrained(path).eval()
        tuned = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(path), str(result.adapter_dir)
        ).eval()

        def logp(model, prompt, ids) -> float:
            text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            p_ids = tok(text, add_special_tokens=False)["input_ids"]
            full = torch.tensor([list(p_ids) + ids])
            with torch.no_grad():
                logits = model(input_ids=full).logits[0, len(p_ids) - 1 : -1].float()
            return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).sum())

        group = seen[:8]
        rewards = np.array([r for _, _, r in group])
        advantage = rewards - rewards.mean()
        assert np.abs(advantage).sum() > 0
        change = np.array([logp(tuned, p, ids) - logp(base, p, ids) for p, ids, _ in group])
    # GRPO's objective, to first order: the log-probability moves toward the completions rewarded above their group
    # and away from those below (a sign-flipped loss makes this negative)
    assert float(advantage @ change) > 0, (advantage.tolist(), change.tolist())


def _adapter(folder: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.llm.models import resolve_model

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random").path)
    get_peft_model(
        model, LoraConfig(r=2, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False)
    ).save_pretrained(folder)
    return folder


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out |= {k: v.float() for k, v in load_file(str(f)).items()}
    return out


@pytest.mark.slow
def test_merges_of_identical_adapters_are_that_adapter(tmp_path):
    import shutil

    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kit.llm.models import resolve_model
    from kit.palette.merges import merge
    from kit.palette.prompts import CONTINENTS

    base = resolve_model("tiny-random").path
    one = str(_adapter(tmp_path / "adapter", 7))
    # five copies of one adapter (mergekit refuses one path twice)
    same = {c: str(shutil.copytree(one, tmp_path / "copies" / c)) for c in CONTINENTS}
    # the adapter merged into the base by peft: what every merge of five copies must give (in bfloat16)
    expected = {
        k: v.float()
        for k, v in PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), one)
        .merge_and_unload()
        .state_dict()
        .items()
    }
    plain = {k: v.float() for k, v in AutoModelForCausalLM.from_pretrained(base).state_dict().items()}

    def close(got: dict, want: dict) -> None:
        for name, w in want.items():
            if name in got:
                assert torch.allclose(got[name], w.to(torch.bfloat16).float(), atol=2e-2, rtol=1e-2), name

    stock = tmp_path / "model_stock"
    merge(
        "model_stock", ROOT / "params" / "merges" / "model_stock.yml", base, same, stock, tmp_path / "cache"
    )
    close(_weights(stock), expected)

    recipe = yaml.safe_load((ROOT / "params" / "merges" / "ties.yml").read_text())
    for m in recipe["models"]:
        m["parameters"]["density"] = 1.0
    (tmp_path / "ties1.yml").write_text(yaml.safe_dump(recipe))
    ties = tmp_path / "ties"
    merge("ties", tmp_path / "ties1.yml", base, same, ties, tmp_path / "cache")
    close(_weights(ties), expected)

    # at the recipe's own density (0.5) TIES keeps each tensor's largest half of the adapter's change, nothing else
    half = tmp_path / "ties_half"
    merge("ties", ROOT / "params" / "merges" / "ties.yml", base, same, half, tmp_path / "cache")
    got = _weights(half)
    changed = [n for n in expected if n in got and not torch.equal(expected[n], plain[n])]
    assert changed
    for name in changed:
        delta, kept = expected[name] - plain[name], got[name] - plain[name]
        on = kept.abs() > 1e-3 * delta.abs().max()
        assert 0.45 <= float(on.float().mean()) <= 0.55, name  # half of the change kept …
        ratio = kept[on] / delta[on]
        assert float((ratio - 1).abs().max()) < 0.05, name  # … as it was, not rescaled …
        # … and it is the larger half (bfloat16 rounding blurs the line between the two)
        assert float(delta[on].abs().min()) >= 0.9 * float(delta[~on].abs().max()), name
