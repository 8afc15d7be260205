"""python -m kit export on the tiny run the notebook tests made (this file sorts after tests/test_notebooks.py, which
fills the session's tiny run folder): every record store round-trips as a parquet dataset, every adapter and merge
has a model card."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_the_tiny_run_exports_every_store_and_model(tiny_params, tmp_path):
    """After the notebooks: every record store of the tiny run round-trips, every adapter and merge has a card."""
    from datasets import load_dataset
    from huggingface_hub import DatasetCard, ModelCard

    from kit.run.records import write_manifest
    from kit.tools.export import Run, export, read_jsonl, stores

    if not (tiny_params.run_dir / "metrics" / "90_leaderboard.json").is_file():
        pytest.skip("the tiny notebooks did not run in this session (run tests/test_notebooks.py first)")
    if not (
        tiny_params.run_dir / "manifest.json"
    ).is_file():  # the notebooks test runs them one by one: no kit run
        write_manifest(tiny_params.run_dir, tiny_params.sections(), seeds={"seed": tiny_params.seed})

    done = export(tiny_params.run_dir, tmp_path)
    found = [
        s for s in stores(Run.read(tiny_params.run_dir)) if read_jsonl(s.path)
    ]  # a store may hold nothing
    assert len(done["datasets"]) == len(found) >= 2  # negotiations and palette records at least
    for store, folder in zip(found, done["datasets"]):
        back = load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"), split="train")
        assert (
            len(back) == len(read_jsonl(store.path))
            and DatasetCard.load(str(folder / "README.md")).data.license
        )
    # 04's eight adapters, 11's six and three merges, 21's three, 31's two
    assert len(done["models"]) >= 22
    for folder in done["models"]:
        card = ModelCard.load(str(folder / "README.md"))
        assert card.data.base_model == "tiny-random" and card.data.license in (
            "cc-by-nc-sa-4.0",
            "cc-by-4.0",
            "apache-2.0",
        )
