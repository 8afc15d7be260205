"""The JupyterLab path: ``python -m kit lab`` serves the notebooks with the kit's kernel, a notebook
run interactively (no papermill) gives the headless run's numbers, and an executed notebook exports
to HTML with its figures."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from kit.config import PARAMS_ENV, load_params
from kit.runner import KERNEL, ensure_kernel, execute, local_kernel_manager
from kit.session import METRICS_MIME

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_lab_serves_the_notebooks_with_the_kit_kernel_as_default(tmp_path):
    port, token = free_port(), "agora-test"
    env = {**__import__("os").environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "lab", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        specs = None
        for _ in range(120):
            try:
                specs = get_json(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stdout.read())
                time.sleep(0.5)
        assert specs is not None, "JupyterLab did not answer in 60 s"
        assert specs["default"] == KERNEL and KERNEL in specs["kernelspecs"]
        names = {
            f["name"] for f in get_json(f"http://127.0.0.1:{port}/api/contents?token={token}")["content"]
        }
        assert "00_quickstart.ipynb" in names  # the notebooks folder is the root
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def metrics_of(nb) -> dict:
    return next(
        o["data"][METRICS_MIME]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if METRICS_MIME in o.get("data", {})
    )


@pytest.mark.slow
def test_a_notebook_run_interactively_gives_the_headless_numbers(tmp_path, monkeypatch, shared_data):
    from nbclient import NotebookClient

    notebook = ROOT / "notebooks" / "00_quickstart.ipynb"
    params = load_params(ROOT / "params" / "tiny.yaml")
    execute(notebook, tmp_path / "headless.ipynb", params, ensure_kernel())
    headless = metrics_of(nbformat.read(tmp_path / "headless.ipynb", as_version=4))

    # As in JupyterLab: the notebook as committed, no injected cell, the profile chosen by AGORA_PARAMS
    monkeypatch.setenv(PARAMS_ENV, "tiny")
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(ROOT)}},
        kernel_manager_class=local_kernel_manager(),
    ).execute()
    interactive = metrics_of(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "parameters from params/tiny.yaml (AGORA_PARAMS)" in printed
    # this run's own: its seconds, and which engines each stage loaded (the second run reads the first's cache)
    timing = {"first_run_s", "cached_rerun_s", "cost", "plan_stages"}
    assert {k: v for k, v in interactive.items() if k not in timing} == {
        k: v for k, v in headless.items() if k not in timing
    }

    def counts(
        m,
    ):  # what each stage asked of the model; its seconds and memory are this run's own, and a stage
        # that asked nothing (loading a model a fresh checkout's first run needs, the rerun's cache does not) too
        rows = [
            (s["stage"], s["calls"], s["generated_tokens"], s["scored_tokens"]) for s in m["cost"]["stages"]
        ]
        return [r for r in rows if any(r[1:])]

    assert counts(interactive) == counts(headless)


def test_a_bad_profile_name_fails_in_one_line(monkeypatch):
    from kit.config import ParamsError, from_notebook

    monkeypatch.setenv(PARAMS_ENV, "fulll")
    with pytest.raises(ParamsError, match="AGORA_PARAMS=fulll: no such params file") as err:
        from_notebook(profile="x")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_an_executed_notebook_exports_to_html_with_its_figures(tmp_path):
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from kit.reporting import plots\nfrom kit.config import load_params\nfrom kit.session import Session\n"
            "import pandas as pd\n"
            "S = Session(load_params('params/tiny.yaml'))\n"
            f"with plots.figure({str(tmp_path / 'f.png')!r}) as (fig, ax):\n    ax.plot([1, 2, 3])\n"
            "pd.DataFrame({'x': range(50)})"
        )
    ]
    NotebookClient(
        nb,
        kernel_name=ensure_kernel(),
        resources={"metadata": {"path": str(ROOT)}},
        kernel_manager_class=local_kernel_manager(),
    ).execute()
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert (tmp_path / "f.png").is_file() and html.count(
        'src="data:image/png;base64,'
    ) == 1  # saved and inline
    assert "50 rows × 1 columns" in html  # pandas would show all 50; the kit shows head, tail and the size
