"""The tiny-full profile stands for params/full.yaml on a CPU: the same keys, the same values but for model ids,
sizes, the machine and what a random model cannot do; its notebooks run in the slow tier, and what each stage held
in memory is what the memory plan says it holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kit.config import load_params, parse_yaml

ROOT = Path(__file__).resolve().parents[1]

# keys whose values name models (tiny random models of the same architectures) or the machine
MODEL_IDS = re.compile(r"^(model|models\.\w+|embedder)\.name$")
MACHINE = {
    "profile",
    "model.backend",
    "model.device",
    "cell_timeout_s",
    # vLLM's own settings: the transformers backend on the CPU has no fp8
    "models.selfplay_judge.quantization",
    "models.palette_merged.quantization",
}
# keys that size the run: tiny-full's value is at most full's (a list: a part of full's)
SIZES = re.compile(
    r"(^|\.)(n|n_\w+|\w+_items|\w+_tokens|\w+_words|max_\w+|batch_size|per_device_train_batch_size|"
    r"gradient_accumulation_steps|num_train_epochs|num_generations|r|lora_alpha|samples_per_item|best_of|"
    r"heldout_topics|kv_cache_gb|n_boot|countries|pairs|culture_countries|max_retries|\w+_dialogues|n_choice|"
    r"from_methods)$"
)
# what a random model cannot do, and why tiny-full's value differs
RANDOM_MODEL = {
    "negotiation.agent_kind": "a random model writes no grounding data, so notebook 01 builds no grounded agent",
    "finetune.require_converged": "a random model's negotiations never converge",
    "finetune.eval_fraction": "a handful of records leaves none to hold out",
    "palette.queries.source": "PRISM is read from the hub; the tests are offline",
    "capability.tasks": "lm-eval's ifeval, gpqa and mmlu read the hub; the tests are offline",
    "palette.min_words": "a random model's answers are a few tokens",
    "palette.min_dimensions": "a random model writes no review grid",
    "visa.teacher": "a random model writes no judge JSON, so there is no label to learn from",
    "visa.answer_temperature": "greedy, a random model writes only newlines",
    "visa.min_words": "a random model's answers are a few tokens",
    "selfplay.min_parsed_share": "a random model writes no dilemma that parses",
    "selfplay.judge_min_mass": "a random model puts almost no mass on the labels 1-5",
    "evals.min_label_mass": "a random model puts about 1 % of its mass on the option letters",
}


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _profiles():
    return (
        _flat(parse_yaml((ROOT / "params" / "full.yaml").read_text())),
        _flat(parse_yaml((ROOT / "params" / "tiny-full.yaml").read_text())),
    )


def test_tiny_full_has_every_key_of_full_and_its_values_but_models_sizes_and_the_machine():
    full, tiny = _profiles()
    assert set(tiny) == set(full), (
        f"keys only in full: {sorted(set(full) - set(tiny))}; only in tiny-full: "
        f"{sorted(set(tiny) - set(full))}"
    )
    for key in full:
        a, b = full[key], tiny[key]
        if a == b or MODEL_IDS.match(key) or key in MACHINE or key in RANDOM_MODEL:
            continue
        assert SIZES.search(key), f"{key}: {b!r} differs from full's {a!r} and is not a size"
        if a is None and isinstance(b, (list, int)) and SIZES.search(key):
            continue  # full's null is "all of them": any list or count is a part of it
        if isinstance(a, list):
            assert all(x in a for x in b), f"{key}: {b} is not a part of full's {a}"
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            assert b <= a, f"{key}: {b} is larger than full's {a}"
        else:
            raise AssertionError(f"{key}: {b!r} differs from full's {a!r}")


def test_tiny_full_models_have_the_architectures_of_fulls():
    from kit.plan.catalog import shape

    full, tiny = load_params(ROOT / "params" / "full.yaml"), load_params(ROOT / "params" / "tiny-full.yaml")
    pairs = [
        (full.model.name, tiny.model.name),
        (full.embedder.name, tiny.embedder.name),
        *((full.models[r].name, tiny.models[r].name) for r in ("selfplay_judge", "nli")),
    ]
    for big, small in pairs:
        assert shape(big).model_type == shape(small).model_type, (big, small)
    assert {shape(small).model_type for _, small in pairs} == {"qwen2", "mpnet", "deberta-v2"}


@pytest.fixture(scope="module")
def tiny_full_run(tmp_path_factory, shared_data):
    """Every notebook run headless on tiny-full into a fresh runs folder, once for the module."""
    from kit.runner import ensure_kernel, execute, notebooks

    params = load_params(ROOT / "params" / "tiny-full.yaml", [f"runs_dir={tmp_path_factory.mktemp('runs')}"])
    kernel = ensure_kernel()
    ran, failed = [], None
    for nb in notebooks():
        try:
            execute(nb, params.run_dir / "notebooks" / nb.name, params, kernel)
            ran.append(nb.stem)
        except Exception as e:  # the first failure fails the test with its notebook named
            failed = f"{nb.name}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
            break
    return params, ran, failed


@pytest.mark.slow
def test_every_notebook_runs_on_tiny_full(tiny_full_run):
    params, ran, failed = tiny_full_run
    assert failed is None, failed
    recorded = {f.stem for f in (params.run_dir / "metrics").glob("*.json")}
    assert set(ran) <= recorded


@pytest.mark.slow
def test_what_each_stage_held_is_what_the_plan_says(tiny_full_run):
    """Every set of parts resident at once in a stage is the stage's parts plus at most one swapped engine."""
    from kit.plan.stages import Part, notebook_stages
    from kit.run.files import read_json

    params, ran, _ = tiny_full_run
    stages = {s.label: s for sts in notebook_stages(params).values() for s in sts}
    seen = 0
    for stem in ran:
        kept: set = (
            set()
        )  # encoders a stage of this notebook loaded stay for its later stages, as the plan counts
        for entry in read_json(params.run_dir / "metrics" / f"{stem}.json").get("plan_stages", []):
            stage = stages[entry["stage"]]
            for snapshot in entry["resident"]:
                parts = [Part(*p.split(":", 1)) if ":" in p else Part(p) for p in snapshot]
                assert all(stage.allows(p) or p in kept for p in parts), (entry["stage"], snapshot)
                kept |= {p for p in parts if p.kind in ("embedder", "cross-encoder")}
                assert sum(p in stage.swap for p in parts) <= 1, (entry["stage"], snapshot)
                seen += bool(parts)
    assert seen > 10
