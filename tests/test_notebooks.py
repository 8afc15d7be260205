"""Every notebook runs headless through papermill with params/tiny.yaml; key numbers asserted.

Like the recommenders smoke tests: each notebook records its key numbers in its own output
(``Session.record_metrics``), and the test reads them back from the executed notebook.
"""

from pathlib import Path

import nbformat
import pytest

from kit.config import load_params
from kit.runner import ensure_kernel, execute, notebooks
from kit.session import METRICS_MIME

ROOT = Path(__file__).resolve().parents[1]


def recorded_metrics(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    found = [o["data"][METRICS_MIME] for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if METRICS_MIME in o.get("data", {})]
    assert len(found) == 1, f"{path.name} must record its key numbers exactly once"
    return found[0]


def check_00(m):
    assert m["model"] == "tiny-random"
    assert len(m["reply_chars"]) == 2
    assert 0 < m["letter_mass_mean"] <= 1
    assert 0 < m["s_align_mean"] <= 100
    assert m["cached_rerun_s"] < m["first_run_s"]
    assert m["cache_entries"] == 2 + 3  # two chats; three distinct option requests (vanilla asks once)


CHECKS = {"00": check_00}


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory, shared_data):
    params = load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path_factory.mktemp('runs')}"])
    return params


@pytest.mark.slow
@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_params(notebook, tiny_params):
    out = tiny_params.run_dir / "notebooks" / notebook.name
    execute(notebook, out, tiny_params, ensure_kernel())
    metrics = recorded_metrics(out)
    CHECKS[notebook.name[:2]](metrics)


def test_every_notebook_has_a_check():
    assert {nb.name[:2] for nb in notebooks()} == set(CHECKS)


def test_committed_notebooks_are_clean_and_parametrised():
    import papermill as pm

    for nb_path in notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{nb_path.name}: strip outputs"
        assert nb.cells[0].cell_type == "markdown"
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: needs exactly one cell tagged 'parameters'"
        assert set(pm.inspect_notebook(str(nb_path))) >= {"profile", "seed", "runs_dir", "model"}
