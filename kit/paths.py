"""Where things live: the project root, the run folder of a profile, the model cache."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout this package was installed from (editable install); falls back to the working
# directory for a plain install, where relative params paths are read from the caller's cwd.
_PKG_PARENT = Path(__file__).resolve().parent.parent
ROOT = _PKG_PARENT if (_PKG_PARENT / "pyproject.toml").exists() else Path.cwd()


def resolve(path: str | os.PathLike) -> Path:
    """A params path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (ROOT / p).resolve()


def model_cache_dir() -> Path:
    """Converted and generated model weights, shared by every profile (``AGORA_MODEL_CACHE``)."""
    env = os.environ.get("AGORA_MODEL_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agora"
    return base / "models"
