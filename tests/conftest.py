import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# a model used outside its memory stage (kit.plan.stages) is an error in every test and notebook the tests run
os.environ.setdefault("AGORA_STRICT_STAGES", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("AGORA_SHARED_DATA", ROOT.parent / "shared" / "data")
)  # tests/test_ci.py moves it
# CI (the CI variable set): a test that cannot run here fails instead of skipping, but for one skip that is part
# of the design: the main virtualenv has no vLLM (its tests run in .venv-gpu-stack, where make sets
# AGORA_EXPECT_VLLM and an absent or broken vLLM fails too).
CI = bool(os.environ.get("CI"))
EXPECT_VLLM = bool(os.environ.get("AGORA_EXPECT_VLLM"))
VLLM_ABSENT = "vLLM is not installed here"
# the GPU node's own checks (make gpu-check runs them there, where a missing GPU fails: AGORA_EXPECT_CUDA)
NO_CUDA = "no CUDA GPU here"
EXPECT_CUDA = bool(os.environ.get("AGORA_EXPECT_CUDA"))


def expected_skip(reason: str) -> bool:
    return (reason.startswith(VLLM_ABSENT) and not EXPECT_VLLM) or (
        reason.startswith(NO_CUDA) and not EXPECT_CUDA
    )


def missing(reason: str) -> None:
    """What a test needs is not here: a failure under CI, a skip elsewhere."""
    if CI:
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


def require_vllm() -> None:
    """At the top of a vLLM test module: vLLM absent is a skip (a failure where make expects it); installed but
    failing to import is a failure under CI, never a quiet skip."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        reason = f"{VLLM_ABSENT}: `make test-vllm` builds .venv-gpu-stack with it"
        if CI and EXPECT_VLLM:
            pytest.fail(f"{reason} (AGORA_EXPECT_VLLM is set)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 — a broken build says what it is
        reason = f"vLLM is installed but does not import: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_unexpected_skip(report) -> None:
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report).removeprefix("Skipped: ")
        if not expected_skip(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI, where it must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


def pytest_collection_modifyitems(config, items):
    """Opt-in tests: llama.cpp's live tests (make test-llamacpp builds the server and names it in LLAMA_SERVER), and
    the measurements of a process's peak memory (make test-measure sets AGORA_MEASURE: resident memory depends on the
    machine's other load, so they run on a machine left to them, not inside the suite)."""
    opt_in = {
        "llamacpp": bool(os.environ.get("LLAMA_SERVER")),
        "measure": bool(os.environ.get("AGORA_MEASURE")),
    }
    dropped = [
        item for item in items if any(item.get_closest_marker(m) and not on for m, on in opt_in.items())
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_terminal_summary(terminalreporter):
    if CI:
        skipped = terminalreporter.stats.get("skipped", [])
        unexpected = [r for r in skipped if not expected_skip(_skip_reason(r).removeprefix("Skipped: "))]
        terminalreporter.write_line(
            f"CI: {len(skipped)} skipped, {len(unexpected)} unexpected "
            f"(expected: '{VLLM_ABSENT}' outside .venv-gpu-stack, '{NO_CUDA}' off a GPU node)"
        )


@pytest.fixture(scope="session")
def tiny_backend():
    from kit.llm.hf_backend import HFBackend

    return HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=3)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "globalopinionqa" / "dev.json").exists():
        missing("../shared/data is not beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory, shared_data):
    """The tiny profile into a fresh runs folder: the notebooks test fills it in file order, and the
    resume test (its file sorts after) reads it as the run that was never killed. Its trainers and notebooks
    report to trackio, whose dashboard tests/test_tracking.py (sorting after too) opens."""
    from kit.config import load_params

    return load_params(
        ROOT / "params" / "tiny.yaml",
        [f"runs_dir={tmp_path_factory.mktemp('runs')}", "tracking.backend=trackio"],
    )
