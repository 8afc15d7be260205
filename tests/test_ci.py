"""CI fails instead of skipping: with ``CI`` set, missing ``../shared/data``, a missing Chromium and a vLLM that is
installed but does not import are failures (conftest.py); only vLLM's absence from the main virtualenv is an
expected skip. Each case runs pytest in a subprocess on a small test file that uses the project's conftest."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

CASES = """
import pytest


def test_needs_the_data(shared_data):
    pass


def test_needs_vllm():
    from conftest import require_vllm

    require_vllm()


@pytest.mark.skipif(True, reason="Chromium is not installed (make chromium installs Debian's package)")
def test_needs_chromium():
    pass
"""


def _pytest(tmp_path, ci: bool, broken_vllm: bool = False, expect_vllm: bool = False):
    (tmp_path / "test_cases.py").write_text(CASES)
    path = [str(ROOT / "tests"), str(ROOT)]
    if broken_vllm:  # a vLLM that is there but fails to import, as a wheel built for another CUDA does
        (tmp_path / "site" / "vllm").mkdir(parents=True)
        (tmp_path / "site" / "vllm" / "__init__.py").write_text(
            "raise ImportError('libcudart.so.12: cannot open')\n"
        )
        path.insert(0, str(tmp_path / "site"))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "AGORA_EXPECT_VLLM")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(path),
            "AGORA_SHARED_DATA": str(tmp_path / "no-data"),
            **({"CI": "true"} if ci else {}),
            **({"AGORA_EXPECT_VLLM": "1"} if expect_vllm else {}),
        }
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_cases.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.returncode, out.stdout


def test_outside_ci_what_is_missing_skips(tmp_path):
    import importlib.util

    rc, out = _pytest(tmp_path, ci=False)
    # vLLM, where it is installed (.venv-gpu-stack), imports and its case passes
    expected = "1 passed, 2 skipped" if importlib.util.find_spec("vllm") is not None else "3 skipped"
    assert rc == 0 and expected in out, out


def test_under_ci_what_is_missing_fails(tmp_path):
    rc, out = _pytest(tmp_path, ci=True, broken_vllm=True)
    assert rc == 1, out
    assert "1 failed, 2 errors" in out, out  # the fixture and the skip marker fail in setup, vLLM in the call
    assert "../shared/data is not beside the project (CI must provide it)" in out
    assert "vLLM is installed but does not import: ImportError: libcudart.so.12: cannot open" in out
    assert "skipped under CI, where it must run: Chromium is not installed" in out
    assert "CI: 0 skipped, 0 unexpected" in out


def test_under_ci_only_vllm_absent_from_the_main_venv_may_skip(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:  # in .venv-gpu-stack vLLM is there: nothing to show
        return
    rc, out = _pytest(tmp_path, ci=True)
    assert (
        "SKIPPED" in out and "vLLM is not installed here" in out and "CI: 1 skipped, 0 unexpected" in out
    ), out
    rc, out = _pytest(tmp_path, ci=True, expect_vllm=True)  # make test-gpu-stack expects it: absence fails
    assert (
        "vLLM is not installed here: `make test-vllm` builds .venv-gpu-stack with it (AGORA_EXPECT_VLLM is set)"
        in out
    )
    assert "CI: 0 skipped" in out
