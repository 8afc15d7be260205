import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_backend():
    from kit.llm.hf_backend import HFBackend

    return HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=3)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "globalopinionqa" / "dev.json").exists():
        pytest.skip("../shared/data is not beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory, shared_data):
    """The tiny profile into a fresh runs folder: the notebooks test fills it in file order, and the
    resume test (its file sorts after) reads it as the run that was never killed."""
    from kit.config import load_params

    return load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path_factory.mktemp('runs')}"])
