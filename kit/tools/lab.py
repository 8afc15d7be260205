"""``python -m kit lab [--port N] [--profile NAME]``: JupyterLab on the notebooks, in this environment.

Starts ``jupyter lab`` from the running interpreter (the project's ``.venv``) with the notebooks
folder open and the ``agora-kit`` kernel as the default for new notebooks; no browser is opened
(the URL with its token is printed, to open from wherever you are). With ``--profile full`` (or a
params file) every notebook opened in this session reads that profile instead of the one its
parameters cell names (``AGORA_PARAMS``, see :func:`kit.config.from_notebook`).
"""

from __future__ import annotations

import os
import sys

from kit.config import PARAMS_ENV, profile_file
from kit.run import paths
from kit.runner import KERNEL, ensure_kernel


def command(port: int, ip: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--ip={ip}",
        f"--port={port}",
        f"--ServerApp.root_dir={paths.ROOT / 'notebooks'}",
        f"--MultiKernelManager.default_kernel_name={KERNEL}",
        # containers and CI nodes often run as root, where jupyter refuses to start without it
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


def environment(profile: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PARAMS_ENV, None)
    if profile:
        env[PARAMS_ENV] = str(profile_file(profile))
    return env


def main(port: int = 8888, profile: str | None = None, ip: str = "127.0.0.1") -> int:
    ensure_kernel()
    env = environment(profile)
    print(
        f"JupyterLab on the notebooks, kernel {KERNEL}"
        + (
            f", profile {env[PARAMS_ENV]}"
            if profile
            else ", the profile each notebook's parameters cell names (smoke)"
        ),
        flush=True,
    )
    # JupyterLab takes this process's place: a signal to it (Ctrl-C, a test's terminate) reaches the server itself,
    # which no child left behind would
    argv = command(port, ip)
    os.execvpe(argv[0], argv, env)
    return 0  # not reached
