"""The memory plan: its counts against transformers' own, its verdicts on the shipped GPU profiles, the full
profile's recipes as the plan chooses them, the session following its stages, and its estimates against
peak memory measured on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.config import load_params
from kit.plan import catalog, make_plan, memory, recipe_batches
from kit.plan.stages import Part, notebook_stages

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full():
    return load_params(ROOT / "params" / "full.yaml")


def test_parameter_counts_are_transformers_own_and_the_moe_is_mergekits():
    """The catalog's Qwen2.5-7B counts what its model card says; the MoE shape equals the parameters of the
    Qwen2-MoE config mergekit writes (every expert and the shared expert at the base's MLP width)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    base = catalog.shape("Qwen/Qwen2.5-7B-Instruct")
    assert base.params == 7_615_616_512 and base.source in ("catalog", "hub cache")
    assert base.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2  # K and V, 28 layers, 4 KV heads of 128, bfloat16
    tiny = catalog.shape("tiny-random-qwen2")
    cfg = Qwen2MoeConfig(
        hidden_size=tiny.hidden,
        intermediate_size=tiny.intermediate,
        moe_intermediate_size=tiny.intermediate,
        shared_expert_intermediate_size=tiny.intermediate,
        num_experts=5,
        num_experts_per_tok=2,
        num_hidden_layers=tiny.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=tiny.vocab,
        tie_word_embeddings=False,
        decoder_sparse_step=1,
    )
    with torch.device("meta"):
        expected = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    assert catalog.moe_shape(tiny, 5, shared_expert=True).params == expected


def test_an_engine_is_its_terms_computed_by_hand(full):
    shape = catalog.shape("Qwen/Qwen2.5-7B-Instruct")
    need = memory.engine(shape, full.model, 80.0)
    assert need.terms["weights"] == pytest.approx(7_615_616_512 * 2 / 2**30)
    assert need.terms["KV cache"] == full.model.kv_cache_gb
    # vLLM preallocates max_loras slots of max_lora_rank on every adapted layer: 28 layers x (in + out) widths
    assert need.terms["LoRA slots"] == pytest.approx(8 * 16 * 28 * 90112 * 2 / 2**30)
    assert need.terms["prompt logits"] == pytest.approx(4096 * 152064 * 8 / 2**30)
    fp8 = memory.engine(shape, full.model.model_copy(update={"quantization": "fp8"}), 80.0)
    assert fp8.terms["weights"] == pytest.approx(need.terms["weights"] / 2)


def test_the_full_profile_fits_one_80gb_gpu_and_says_why(full, capsys):
    from kit.plan.report import main

    assert main(full, 1, 80.0) == 0
    out = capsys.readouterr().out
    assert "every stage fits" in out and "GPU-hours on one GPU" in out and "disk:" in out
    plan = make_plan(full, 1, 80.0)
    assert plan.fits and {s.stage.notebook for s in plan.stages} == {
        f"{n:02d}" for n in (0, 1, 2, 3, 4, 5, 10, 11, 12, 20, 21, 22, 30, 31, 32)
    }
    hours = sum(r["gpu_hours"] for r in __import__("kit.plan.hours", fromlist=["hours"]).hours(full))
    assert hours <= 20  # the target of the full study on one H100


def test_a_24gb_gpu_is_refused_one_line_per_stage(full, capsys):
    from kit.plan.report import main

    assert main(full, 1, 24.0) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    plan = make_plan(full, 1, 24.0)
    assert len(lines) == sum(not s.fits for s in plan.stages) > 10
    for line in lines:
        assert line.startswith("refused: notebook ") and " stage '" in line and " GiB on cuda:0 of " in line
        assert "; fix: " in line


def test_the_full_profile_is_refused_on_a_machine_without_gpus(full):
    plan = make_plan(full, 0, 0.0)
    assert not plan.fits and plan.refusals()[0].startswith("no GPU is visible")


def test_full_recipes_are_gpu_recipes_with_the_plans_batches(full):
    """No CPU default leaks into a full recipe: bfloat16 and gradient checkpointing are set, and the micro-batch
    and accumulation are the plan's choice for one 80 GB GPU."""
    from kit.config import training_recipes

    for key, (recipe, _, _) in training_recipes(full).items():
        assert recipe.trl.get("bf16") is True, f"{key}.trl.bf16"
        assert recipe.trl.get("gradient_checkpointing") is True, f"{key}.trl.gradient_checkpointing"
        assert {"per_device_train_batch_size", "gradient_accumulation_steps"} <= set(recipe.trl), key
    for key, r in recipe_batches(full, 80.0).items():
        assert (r["per_device_train_batch_size"], r["gradient_accumulation_steps"]) == (
            r["planned_batch"],
            r["planned_accumulation"],
        ), key


def test_the_eight_gpu_profile_places_the_judge_and_the_merged_models_on_their_own_gpus():
    eight = load_params(ROOT / "params" / "full-8gpu.yaml")
    plan = make_plan(eight, 8, 80.0)
    assert plan.fits
    devices = {(s.stage.notebook, s.device) for s in plan.stages}
    assert ("31", "cuda:7") in devices and ("12", "cuda:1") in devices
    assert not make_plan(eight, 4, 80.0).fits  # the judge's GPU 7 is not there
    assert "GPU 7" in make_plan(eight, 4, 80.0).refusals()[0]


def test_every_notebook_has_its_stages():
    params = load_params(ROOT / "params" / "tiny.yaml")
    notebooks = {nb.name[:2] for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert set(notebook_stages(params)) == notebooks


def test_a_stage_releases_what_it_does_not_list_and_swaps_one_engine_at_a_time(
    tmp_path, shared_data, monkeypatch
):
    """Entering a training stage releases the agents' engine; in notebook 12 using a merged model releases the
    base engine; a part a stage does not list is refused in strict mode."""
    from kit.llm.base import ChatRequest, GenParams
    from kit.session import STRICT_STAGES_ENV, Session, StageError

    params = load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path}"])
    session = Session(params)
    ask = [ChatRequest([{"role": "user", "content": "hello"}])]
    gen = GenParams(max_new_tokens=2)
    with session.stage("01", "agents and descriptions"):
        session.backend.generate(ask, gen)
    resident = session._residents["model"]
    assert resident.loaded
    with session.stage("01", "grounded SFT"):
        assert not resident.loaded  # the trainer's stage starts with the engine released
    from kit.llm.models import resolve_model

    merged = session.backend_of(
        resolve_model("tiny-random").path
    )  # any model folder stands for a merged model
    merged_key = next(k for k in session._residents if k.startswith("merged:"))
    monkeypatch.setattr(
        "kit.session._part",
        lambda key: Part("merged", "moe") if key.startswith("merged:") else Part("engine", key),
    )
    with session.stage("12", "Table 1, consistency and capability"):
        session.backend.generate([ChatRequest([{"role": "user", "content": "again"}])], gen)
        assert resident.loaded
        merged.generate([ChatRequest([{"role": "user", "content": "merged"}])], gen)
        assert session._residents[merged_key].loaded and not resident.loaded
    monkeypatch.setenv(STRICT_STAGES_ENV, "1")
    with session.stage("11", "ORPO continent agents"), pytest.raises(StageError, match="does not list"):
        session.backend.generate([ChatRequest([{"role": "user", "content": "not here"}])], gen)
    snapshots = [s["resident"] for s in session.stage_log if s["stage"].startswith("12")][0]
    assert ["merged:moe"] in snapshots or any(
        "merged:moe" in snap and "engine:model" not in snap for snap in snapshots
    )


MEASURE = """
import json, os, resource, sys, tempfile
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, transformers, trl, peft, datasets  # imported before the baseline
from kit.config import TrainRecipe
from kit.train.trainers import train
def gib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
torch.set_num_threads(1)
base = gib()
batch, length, ckpt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
records = [{"id": f"r{i}", "messages": [{"role": "user", "content": "word " * (length // 4)},
            {"role": "assistant", "content": "answer " * (length // 2)}]} for i in range(2 * batch)]
recipe = TrainRecipe(lora={"r": 8}, trl={"per_device_train_batch_size": batch, "max_length": length, "bf16": False,
                                       "num_train_epochs": 1, "gradient_checkpointing": ckpt, "save_strategy": "no"})
with tempfile.TemporaryDirectory() as tmp:
    train("sft", records, [], "smollm2-135m-instruct", tmp, recipe, 0)
print(json.dumps({"delta": gib() - base}))
"""

# The plan's trainer estimate against the peak RSS a real SFT run adds on the CPU (SmolLM2-135M, float32). A plan
# may not promise less than a run takes: the estimate sits at most UNDER below the measurement, and at most OVER
# above it. Resident memory is what the kernel leaves in RAM: on a machine short of memory (other heavy jobs beside
# the tests) the measured peak falls well below what the run allocates, so this check runs on its own
# (make test-measure), not inside the suite.
UNDER, OVER = 0.25, 0.5


@pytest.mark.slow
@pytest.mark.measure
@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "no-checkpointing"])
def test_the_trainer_estimate_matches_the_measured_peak_on_the_cpu(checkpointing):
    batch, length = 4, 256
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(batch), str(length), str(int(checkpointing))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])["delta"]
    shape = catalog.shape("smollm2-135m-instruct")
    estimate = memory.trainer(
        shape, memory.Recipe("sft", False, checkpointing, batch, length, 8), on_gpu=False
    ).gib
    assert (1 - UNDER) * measured <= estimate <= (1 + OVER) * measured, (
        "estimate",
        estimate,
        "measured",
        measured,
    )


def test_the_eight_gpu_profile_is_the_full_profile_but_where_the_models_sit():
    """params/full-8gpu.yaml differs from params/full.yaml only in the placement of models: the profile's name, the
    agents' KV cache, the roles that move to GPUs of their own, and what a job asks the cluster for (the node)."""
    from kit.config import parse_yaml

    def flat(node, prefix=""):
        out = {}
        for key, value in node.items():
            out |= (
                flat(value, f"{prefix}{key}.")
                if isinstance(value, dict) and value
                else {f"{prefix}{key}": value}
            )
        return out

    full = flat(parse_yaml((ROOT / "params" / "full.yaml").read_text()))
    eight = flat(parse_yaml((ROOT / "params" / "full-8gpu.yaml").read_text()))
    placement = {"profile", "model.kv_cache_gb"}
    differ = {k for k in set(full) | set(eight) if full.get(k) != eight.get(k)}
    assert all(
        k in placement or k.startswith(("models.selfplay_judge.", "models.palette_merged.", "cluster."))
        for k in differ
    ), sorted(differ)


def test_kit_run_refuses_a_profile_that_does_not_fit_the_visible_gpus(full, monkeypatch, capsys):
    """On a node whose GPU is too small, kit run stops before any notebook (and any model) with the plan's lines."""
    from kit import runner

    monkeypatch.setattr("kit.plan.visible_gpus", lambda: [24.0])
    ran = []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: ran.append(a))
    assert runner.run(full, "params/full.yaml", ["00", "01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert ran == [] and err[-1].startswith("the memory plan says this profile does not fit the visible GPUs")
    assert all(line.startswith("refused: notebook 0") for line in err[:-1]) and len(err) > 2
