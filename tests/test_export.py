"""python -m kit export (kit/tools/export.py): a run's record stores round-trip as parquet datasets with cards whose YAML
huggingface_hub parses, licences inherited from the inputs; adapters come with model cards holding the base model,
the recipe, the training data, the capability metrics with their intervals and the leak counts. Offline: --push
needs HF_TOKEN and is refused without it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

TRACES = [  # records of more than one shape, as negotiation traces are (a guideline or none, rounds of any length)
    {
        "id": "t1",
        "method": "ncn",
        "pair": ["United States", "China"],
        "rounds": [{"a": "x", "u": 0.5}],
        "guideline": {"fields": {"principle": "Share."}},
        "converged": True,
    },
    {
        "id": "t2",
        "method": "none",
        "pair": ["United States", "China"],
        "rounds": [],
        "guideline": None,
        "converged": False,
    },
    {
        "id": "t3",
        "method": "debate",
        "pair": ["Mexico", "Kenya"],
        "rounds": [{"a": "y", "u": 1}, {"a": "z", "u": 2}],
        "guideline": "plain text",
        "converged": None,
    },
]
MADE_BY = {"negotiation": {"agent_kind": "described", "topics": {"source": "moralchoice"}}, "seed": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as python -m kit run leaves it: manifest, metrics, a record store of each kind, two adapters
    of notebook 04 (the study's NCN and the NCN release's) and their capability rows."""
    from kit.config import TrainRecipe
    from kit.run.files import atomic_write_json
    from kit.train.trainers import train

    r = tmp_path_factory.mktemp("runs") / "tiny"
    params = {
        "profile": "tiny",
        "model": {"name": "tiny-random", "revision": None},
        "negotiation": MADE_BY["negotiation"],
        "palette": {"queries": {"source": "goqa"}},
        "finetune": {"methods": ["sft"], "from_methods": ["ncn", "ncn_release:ncn"]},
    }
    atomic_write_json(r / "manifest.json", {"params": params})
    atomic_write_json(r / "metrics" / "02_negotiation.json", {"negotiations": 3, "made_by": MADE_BY})
    atomic_write_json(
        r / "metrics" / "04_finetune_on_negotiation.json",
        {"made_by": MADE_BY, "leaks": {"topics_in_goqa_test": 0, "heldout_topics_negotiated": 0}},
    )
    (r / "records" / "negotiations").mkdir(parents=True)
    (r / "records" / "negotiations" / "abc123.jsonl").write_text(
        "".join(json.dumps(t) + "\n" for t in TRACES)
    )
    (r / "records" / "selfplay_generated_0a1b.jsonl").write_text(
        json.dumps({"id": "d1", "text": "A dilemma."}) + "\n"
    )
    records = [
        {
            "id": f"r{i}",
            "messages": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": "A"}],
        }
        for i in range(2)
    ]
    recipe = TrainRecipe(
        lora={"r": 4}, trl={"num_train_epochs": 1, "per_device_train_batch_size": 2, "max_length": 64}
    )
    for source in ("ncn", "ncn_release_ncn"):
        train("sft", records, [], "tiny-random", r / "train" / source / "sft", recipe, 0)
    task = {
        "metric": "acc",
        "value": 0.5,
        "stderr": 0.19,
        "n": 8,
        "change": -0.125,
        "change_low": -0.42,
        "change_high": 0.17,
    }
    rows = [
        {"model": "base", "base": "base", "tasks": {"agora_moralchoice_low": {**task, "change": None}}},
        {"model": "sft@ncn", "base": "base", "tasks": {"agora_moralchoice_low": task}},
    ]
    (r / "scores" / "capability").mkdir(parents=True)
    (r / "scores" / "capability" / "04_finetune_on_negotiation.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in rows)
    )
    return r


def test_record_stores_round_trip_as_parquet_datasets_with_cards(run, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from kit.run.artifacts import fingerprint
    from kit.tools.export import export

    done = export(run, tmp_path / "export")
    names = {p.name for p in done["datasets"]}
    assert names == {"negotiations-abc123", "selfplay-generated-0a1b"}
    folder = tmp_path / "export" / "datasets" / "negotiations-abc123"
    back = load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"), split="train")
    card = DatasetCard.load(str(folder / "README.md"))
    text_columns = [
        c for c in back.column_names if f"`{c}`" in card.text.split("JSON text")[1].splitlines()[0]
    ]
    assert "guideline" in text_columns and "rounds" not in text_columns  # only the column of several shapes
    got = [{k: (json.loads(v) if k in text_columns else v) for k, v in row.items()} for row in back]
    assert got == TRACES
    # the card: licence inherited (described agents read GlobalOpinionQA), notebook, fingerprint, counts
    assert card.data.license == "cc-by-nc-sa-4.0" and "02_negotiation" in card.data.tags
    assert card.data.configs[0]["data_files"][0]["path"] == "data/train-00000-of-00001.parquet"
    assert f"`{fingerprint(MADE_BY)}`" in card.text and "Records: 3" in card.text
    dilemmas = DatasetCard.load(
        str(tmp_path / "export" / "datasets" / "selfplay-generated-0a1b" / "README.md")
    )
    assert dilemmas.data.license == "cc-by-4.0"  # MoralChoice only


def test_adapters_come_with_model_cards_metrics_intervals_and_leaks(run, tmp_path):
    from huggingface_hub import ModelCard
    from peft import PeftConfig

    from kit.tools.export import export

    done = export(run, tmp_path / "export")
    assert {p.name for p in done["models"]} == {"sft-ncn", "sft-ncn_release_ncn"}
    folder = tmp_path / "export" / "models" / "sft-ncn"
    assert PeftConfig.from_pretrained(str(folder)).r == 4  # the adapter loads from the exported folder
    card = ModelCard.load(str(folder / "README.md"))
    assert card.data.base_model == "tiny-random" and card.data.library_name == "peft"
    assert card.data.license == "cc-by-nc-sa-4.0" and "sft" in card.data.tags
    assert "| agora_moralchoice_low | acc | 0.5 | 0.19 | -0.125 | [-0.42, 0.17] |" in card.text
    assert (
        '"topics_in_goqa_test": 0' in card.text
        and '"method": "sft"' in card.text
        and '"n_train": 2' in card.text
    )
    release = ModelCard.load(str(tmp_path / "export" / "models" / "sft-ncn_release_ncn" / "README.md"))
    assert release.data.license == "apache-2.0"  # the NCN release's own transcripts
    assert "(no capability row of this model)" in release.text


def test_licences_take_the_most_restrictive_input():
    from kit.tools.export import licence

    assert licence(["ncn_release", "moralchoice"]) == "cc-by-4.0"
    assert licence(["moralchoice", "globalopinionqa", "ncn_release"]) == "cc-by-nc-sa-4.0"
    assert licence(["ncn_release"]) == "apache-2.0"
    assert licence(["prism"]) == licence([]) == "other"  # a licence the kit does not know is not guessed


def test_push_needs_hf_token_and_export_needs_a_run(run, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_TOKEN"} | {"HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit",
            "export",
            str(run),
            "--out",
            str(tmp_path / "e"),
            "--push",
            "agora-lab",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 2 and out.stderr.startswith(
        "error: --push needs a Hugging Face token in HF_TOKEN"
    )
    assert (
        "\n" not in out.stderr.strip() and not (tmp_path / "e").exists()
    )  # refused before anything is written
    bad = subprocess.run(
        [sys.executable, "-m", "kit", "export", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2 and "no manifest.json" in bad.stderr
