"""Nothing stale: what one notebook hands to another, merges, adapters and the boards, checked where read."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from kit.config import load_params
from kit.run import artifacts


def _params(shared_data, tmp_path, *sets):
    return load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path / 'runs'}", *sets])


def test_made_by_holds_the_given_sections_and_the_model_identity_not_where_the_run_goes(
    shared_data, tmp_path
):
    from kit.config import from_notebook

    p = _params(shared_data, tmp_path)
    given = from_notebook(
        "tiny", "data", seed=3, runs_dir="elsewhere", model={"name": "tiny-random", "dtype": "float32"}
    )
    found = artifacts.made_by(given)
    assert set(found) == {"seed", "data", "model"}  # profile and runs_dir are where, not what
    assert (
        found["model"]["identity"].startswith("tiny-random") and found["model"]["backend"] == "transformers"
    )
    # the sections both were given are compared; the rest is not the reader's business
    assert artifacts.made_by_changes(found, p) == ["seed"]
    assert artifacts.made_by_changes(found, p, ignore=("seed",)) == []


def test_revision_is_part_of_a_hub_models_identity_and_reaches_training(shared_data, tmp_path):
    from kit.llm.models import model_ref, resolve_model
    from kit.train.trainers import train_parts

    p = _params(shared_data, tmp_path, "model.name=org/model", "model.revision=abc123")
    assert p.model.ref == model_ref("org/model", "abc123") == "org/model@abc123"
    resolved = resolve_model(p.model.ref)
    assert (resolved.path, resolved.revision, resolved.ref) == ("org/model", "abc123", "org/model@abc123")
    parts = {
        r: train_parts("sft", [{"messages": []}], [], model_ref("org/model", r), p.finetune, 0)["base"]
        for r in ("abc123", "def456", None)
    }
    assert parts == {
        "abc123": "hub:org/model@abc123",
        "def456": "hub:org/model@def456",
        None: "hub:org/model@main",
    }


def test_stored_agents_of_another_model_stop_the_reader_in_one_line(shared_data, tmp_path):
    from kit.agents import AgentSet
    from kit.agents.kinds import prompted

    made = _params(shared_data, tmp_path)
    run_dir = made.run_dir
    AgentSet((prompted("China"),), ("China",), {"China": ("q1",)}, made_by=artifacts.made_by(made)).save(
        run_dir
    )
    assert AgentSet.load(run_dir, made).agents[0].culture == "China"
    other = _params(shared_data, tmp_path, "model.name=smollm2-135m-instruct")
    with pytest.raises(artifacts.StaleArtifact) as e:
        AgentSet.load(run_dir, other)
    line = str(e.value)
    assert "\n" not in line and "model.identity" in line and "rerun notebook 01" in line
    with pytest.raises(artifacts.StaleArtifact, match=r"data.split_seed"):
        AgentSet.load(run_dir, _params(shared_data, tmp_path, "data.split_seed=7"))
    # an agents file of an older kit records no params: never used silently
    stored = json.loads((run_dir / "agents" / "agents.json").read_text())
    (run_dir / "agents" / "agents.json").write_text(
        json.dumps({k: v for k, v in stored.items() if k != "made_by"})
    )
    with pytest.raises(artifacts.StaleArtifact, match="records no params"):
        AgentSet.load(run_dir, made)


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


def test_a_hand_off_names_its_folders_by_content_and_ignores_the_readers_own_settings(shared_data, tmp_path):
    made = _params(shared_data, tmp_path)
    a = _adapter(tmp_path / "run" / "a", 1)
    path = artifacts.hand_off(tmp_path / "run" / "models.json", made, {"base": None, "a": a}, merged=[])
    folders, stored = artifacts.take_over(path, made, "the models", "notebook 11")
    assert folders == {"base": None, "a": str(a.resolve())} and stored["merged"] == []
    # the reader's evaluation settings change nothing it reads …
    evaluated = _params(shared_data, tmp_path, "palette.max_test_items=9")
    assert artifacts.take_over(
        path, evaluated, "the models", "notebook 11", ignore=("palette.max_test_items",)
    )[0]
    # … the recipe does
    with pytest.raises(artifacts.StaleArtifact, match=r"palette.train.trl.learning_rate changed"):
        artifacts.take_over(
            path,
            _params(shared_data, tmp_path, "palette.train.trl.learning_rate=0.003"),
            "the models",
            "notebook 11",
            ignore=("palette.max_test_items",),
        )
    # an adapter retrained on disk after the hand-off was recorded
    _adapter(a, 2)
    with pytest.raises(artifacts.StaleArtifact, match="changed on disk"):
        artifacts.take_over(path, made, "the models", "notebook 11")


def test_a_direct_adapter_left_by_an_earlier_run_is_not_evaluated(shared_data, tmp_path):
    from types import SimpleNamespace

    from kit.lessons import visa_rewriter as vr

    params = _params(shared_data, tmp_path)
    session = SimpleNamespace(params=params, run_dir=params.run_dir)
    train = params.run_dir / "visa" / "train"
    sft, grpo = _adapter(train / "sft" / "adapter", 1), _adapter(train / "grpo" / "adapter", 2)
    _adapter(train / "direct" / "adapter", 3)  # an earlier run's
    vr.save_adapters(session, sft, grpo, None)  # this run found no pair that differs
    assert vr.adapters(session)["direct_finetune"] is None
    assert vr.adapters(session)["grpo"] == str(grpo.resolve())


def test_a_merge_follows_its_adapters_content_and_keeps_one_whole_lora_cache(tmp_path):
    from kit.llm.models import resolve_model
    from kit.palette.merges import merge
    from kit.palette.prompts import CONTINENTS

    base = resolve_model("tiny-random").path
    adapters = {c: str(_adapter(tmp_path / "adapters" / c, i)) for i, c in enumerate(CONTINENTS)}
    cache, out = tmp_path / "lora-cache", tmp_path / "ties"
    (cache / ".leftover-of-a-killed-merge").mkdir(parents=True)
    recipe = ROOT / "params" / "merges" / "ties.yml"

    def weights() -> str:
        return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()

    first = merge("ties", recipe, base, adapters, out, cache)
    before = weights()
    assert [p.name for p in cache.iterdir()] == [artifacts.fingerprint(first["parts"]["inputs"])]
    assert merge("ties", recipe, base, adapters, out, cache)["fingerprint"] == first["fingerprint"]  # reused
    _adapter(Path(adapters["Africa"]), 99)  # retrained in place, same path
    second = merge("ties", recipe, base, adapters, out, cache)
    assert second["fingerprint"] != first["fingerprint"] and weights() != before
    assert [p.name for p in cache.iterdir()] == [artifacts.fingerprint(second["parts"]["inputs"])]


def test_the_boards_mark_rows_made_with_other_params_stale(shared_data, tmp_path):
    from kit.reporting import leaderboard

    params = _params(shared_data, tmp_path)
    run_dir = params.run_dir
    current = artifacts.made_by(params)
    older = {**current, "visa": {**current["visa"], "best_of": 9}}
    for nb, made in (("12_palette_table", current), ("22_visa_table", older)):
        (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics" / f"{nb}.json").write_text(json.dumps({"made_by": made, "cost": {}}))
        (run_dir / "scores" / "capability").mkdir(parents=True, exist_ok=True)
        (run_dir / "scores" / "capability" / f"{nb}.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "model": m,
                        "base": "base",
                        "moralchoice_low_accuracy": 0.5,
                        "items": 4,
                        "neutral_ppl": 9.0,
                    }
                )
                + "\n"
                for m in ("base", "trained")
            )
        )
    stale = leaderboard.stale_units(leaderboard.load(run_dir), params)
    assert stale == {"22_visa_table": "changed: visa.best_of"}
    board = leaderboard.boards(params).capability
    rows = board.groupby("unit")["stale"].first()
    assert rows["22_visa_table"] == "changed: visa.best_of" and rows["12_palette_table"] == ""
    assert leaderboard.key_numbers(leaderboard.boards(params))["stale"] == {
        "22_visa_table": "changed: visa.best_of"
    }


def test_the_manifest_keeps_per_notebook_the_params_that_ran_it(shared_data, tmp_path, monkeypatch):
    from kit import runner

    monkeypatch.setattr(runner, "execute", lambda nb, out, params, kernel, progress: 1.0)
    monkeypatch.setattr(runner, "ensure_kernel", lambda: "k")
    first = _params(shared_data, tmp_path)
    runner.run(first, "tiny.yaml", ["00", "01"])
    runner.run(_params(shared_data, tmp_path, "seed=5"), "tiny.yaml", ["01"])
    notebooks = json.loads((first.run_dir / "manifest.json").read_text())["notebooks"]
    assert notebooks["00_quickstart"]["params"]["seed"] == 0  # not run again: what it last ran with
    assert notebooks["01_cultural_agents"]["params"]["seed"] == 5
    assert (
        "agents" in notebooks["01_cultural_agents"]["params"]
        and "visa" not in notebooks["00_quickstart"]["params"]
    )
    assert yaml.safe_load(json.dumps(notebooks))  # plain JSON values


@pytest.fixture(scope="module")
def embedder():
    from kit.embed import Embedder

    return Embedder("all-minilm-l6-v2")


def test_the_trained_detector_is_a_checked_hand_off_written_whole(shared_data, tmp_path, embedder):
    """Notebook 20 writes the detector's files whole and records its content and params; notebook 22 reads it only
    with the params that fitted it (its own evaluation settings aside) and only as recorded."""
    import os
    from types import SimpleNamespace

    import numpy as np

    from kit.lessons import visa_detector
    from kit.values.schwartz import SCHWARTZ_VALUES
    from kit.values.trained import WEIGHTS, TrainedValueDetector

    params = _params(shared_data, tmp_path)
    session = SimpleNamespace(params=params, run_dir=params.run_dir)
    rng = np.random.default_rng(0)
    texts = [f"text {i} about {w}" for i, w in enumerate(["family", "power", "tradition", "nature"] * 3)]
    labels = rng.integers(-1, 2, size=(len(texts), len(SCHWARTZ_VALUES)))
    detector = TrainedValueDetector.fit(embedder, texts, labels, card={"embedder": embedder.identity})
    folder = visa_detector.folder(session) / "detector"
    detector.save(folder)
    artifacts.hand_off(
        visa_detector.folder(session) / visa_detector.DETECTOR_FILE, params, {"detector": folder}
    )
    assert visa_detector.trained_folder(session) == str(folder.resolve())
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS, "detector.json"])  # no temp file left
    # notebook 22's own settings change nothing the detector depends on
    evaluating = _params(shared_data, tmp_path, "visa.max_test_items=3", "visa.rewards={value_match: 2.0}")
    assert visa_detector.trained_folder(SimpleNamespace(params=evaluating, run_dir=params.run_dir))
    # what fitted it does
    refitted = _params(shared_data, tmp_path, "visa.detector_c=0.5")
    with pytest.raises(
        artifacts.StaleArtifact,
        match=r"the trained value detector was made with other params "
        r"\(visa.detector_c changed\): rerun notebook 20",
    ):
        visa_detector.trained_folder(SimpleNamespace(params=refitted, run_dir=params.run_dir))
    # weights rewritten after it was recorded (a refit killed before its hand-off was written)
    st = (folder / WEIGHTS).stat()
    os.utime(folder / WEIGHTS, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(artifacts.StaleArtifact, match="changed on disk since notebook 20 .* recorded it"):
        visa_detector.trained_folder(session)
