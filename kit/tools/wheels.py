"""``make gpu-wheels``: the kit's wheels a GPU machine without network lacks, gathered here for ``make gpu-check``.

The machine is assumed to hold CUDA torch, transformers, peft, accelerate and sentence-transformers (``HAS``)
and everything they pull in. pip resolves that set and the set ``make gpu-check`` needs (``NEEDS``) the way the
machine would (``--dry-run --report``, Python 3.11, manylinux x86_64); the difference is downloaded, and kept in
the order of what the check can do with it (``TIERS``: the plan and training first, then the notebooks, then the
merges) for as long as the folder stays under its budget (a device call carries at most 64 MiB).
``requirements.txt`` names what was kept, ``manifest.json`` also what was left out and why; ``make gpu-check``
installs the first with ``pip install --no-index --find-links``.

    python -m kit.tools.wheels gpu-wheels [--budget-mib 60] [--present runs/gpu-check/packages.txt]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kit.tools.stack import ROOT

# torch is on the machine (a CUDA build); what needs it is in this list, so it is left out of both resolutions
HAS = ["transformers>=5.10.4,<5.18", "peft>=0.17", "accelerate>=1.10", "sentence-transformers>=5"]
# what gpu-check runs: the plan and doctor, trl training, the notebooks through papermill, the merges
NEEDS = [
    "pydantic>=2.7",
    "pyyaml>=6",
    "pandas>=2.1",
    "httpx",
    "trl>=1.16,<2",
    "datasets>=4.7",
    "papermill>=2.6",
    "ipykernel>=6.29",
    "nbformat>=5.10",
    "matplotlib>=3.8",
    "seaborn>=0.13",
    "nashpy>=0.0.41",
    "gguf>=0.17",
    "mergekit>=0.1.5,<0.2",
]
# (tier, what it lets the check do, the top-level requirements whose closure it is)
TIERS = [
    ("plan and doctor", ["pydantic", "pyyaml", "pandas", "httpx"]),
    ("notebooks", ["papermill", "ipykernel", "nbformat", "matplotlib", "seaborn", "nashpy", "gguf"]),
    ("training", ["trl", "datasets"]),
    ("merges", ["mergekit"]),
]
TARGET = [
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--only-binary=:all:",
    *(
        f"--platform={tag}"
        for tag in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_26_x86_64",
            "manylinux_2_24_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux1_x86_64",
            "linux_x86_64",
        )
    ),
]


def _resolve(requirements: list[str], where: Path) -> dict[str, dict]:
    """name -> {version, requires} of pip's resolution of ``requirements`` for the target machine."""
    report = where / f"report-{len(list(where.glob('report-*')))}.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--dry-run",
            "--ignore-installed",
            *TARGET,
            "--target",
            str(where / "t"),
            "--report",
            str(report),
            *requirements,
        ],
        check=True,
    )
    out = {}
    for item in json.loads(report.read_text())["install"]:
        meta = item["metadata"]
        out[meta["name"].lower().replace("_", "-")] = {
            "version": meta["version"],
            "requires": meta.get("requires_dist") or [],
        }
    return out


def _closure(roots: list[str], resolved: dict[str, dict]) -> list[str]:
    """The resolved packages ``roots`` pull in (extras' requirements left out)."""
    import re

    seen, todo = [], [r.lower() for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in resolved:
            continue
        seen.append(name)
        for req in resolved[name]["requires"]:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return seen


def present_packages(freeze: Path | None) -> dict[str, str]:
    """``name -> version`` of a ``pip list --format=freeze`` file (``make gpu-check`` writes the machine's as
    ``packages.txt``), so a second gather leaves out what the machine was seen to hold."""
    if freeze is None:
        return {}
    found = {}
    for line in freeze.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def gather(out: Path, budget_mib: float, freeze: Path | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    present = present_packages(freeze)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = _resolve(HAS, tmp)
        full = _resolve(HAS + NEEDS, tmp)
        missing = {
            n: v["version"]
            for n, v in full.items()
            if (n not in base or base[n]["version"] != v["version"]) and n not in present
        }
        staged = tmp / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                *TARGET,
                "-d",
                str(staged),
                *(f"{n}=={v}" for n, v in missing.items()),
            ],
            check=True,
        )
        files = {p: p.stat().st_size for p in staged.glob("*.whl")}

        def wheel_of(name: str) -> Path | None:
            stem = name.replace("-", "_").lower()
            return next((p for p in files if p.name.lower().startswith(f"{stem}-")), None)

        kept, left, used = [], [], 0
        for tier, roots in TIERS:
            wanted = [n for n in _closure(roots, full) if n in missing and n not in kept]
            size = sum(files[w] for n in wanted if (w := wheel_of(n)) is not None)
            if used + size > budget_mib * 2**20:
                left.append(
                    {
                        "tier": tier,
                        "packages": wanted,
                        "mib": round(size / 2**20, 1),
                        "why": f"over the {budget_mib:g} MiB budget with {used / 2**20:.1f} MiB kept",
                    }
                )
                continue
            for n in wanted:
                if (w := wheel_of(n)) is not None:
                    shutil.copy2(w, out / w.name)
            kept += wanted
            used += size
    requirements = [f"{n}=={missing[n]}" for n in kept]
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    manifest = {
        "assumed_present": HAS + sorted(present),
        "kept": requirements,
        "kept_mib": round(used / 2**20, 1),
        "left_out": left,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kit.tools.wheels", description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(ROOT / "gpu-wheels"))
    p.add_argument("--budget-mib", type=float, default=60.0)
    p.add_argument(
        "--present", type=Path, help="the machine's pip freeze (gpu-check's packages.txt): what it holds"
    )
    args = p.parse_args(argv)
    manifest = gather(Path(args.out), args.budget_mib, args.present)
    print(f"{args.out}: {len(manifest['kept'])} wheels, {manifest['kept_mib']} MiB")
    for item in manifest["left_out"]:
        print(f"left out ({item['tier']}, {item['mib']} MiB): {', '.join(item['packages'])} — {item['why']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
