"""``python -m kit report params/<profile>.yaml``: one self-contained HTML page of a run, and the boards as CSV.

``runs/<profile>/report/index.html`` holds the three cross-method boards (``kit.reporting.leaderboard``), each
unit's key numbers, and every figure the units drew (embedded, so the page can be mailed or
archived alone); ``report/<board>.csv`` the boards. Everything is read from the run folder: the
report asks no model anything, and a unit that has not run says so.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

import pandas as pd

from kit.reporting import leaderboard
from kit.run.files import atomic_write_text
from kit.run.runner import notebooks

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child, td.text { text-align: left; }
tr.notrun td { color: #a33; font-style: italic; } tr.reference td { color: #666; }
tr.stale td { background: #fff4d6; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
p.note { color: #555; max-width: 60em; }
"""

BOARD_NOTES = {
    "alignment": "GlobalOpinionQA held-out questions. S_align = (1 − JSD) × 100 and js_similarity = (1 − √JSD) × 100 "
                 "(log base 2; js_similarity_e: natural log, as the Modular Pluralism release computes it), the mean "
                 "of country means with a 95 % interval resampling questions (inside [0, 100] by construction); each "
                 "row is paired with the best of the uniform answer, the other countries' mean and the neighbour "
                 "prior (the k countries answering most like this one on train questions) on its own (country, "
                 "question) pairs (verdict: the interval of the js_similarity difference). Coverage: the share of "
                 "its unit's most complete row.",
    "alignment_by_continent": "The same rows per continent.",
    "consensus": "Every negotiation method and self-play policy on the same study topics and culture pairs: "
                 "the change of log PPL_other − log PPL_base on each side's text (< 0: each side's statement became "
                 "likelier under the other's persona than under the plain model), the paper's D_final / D_initial "
                 "and share improved, value consensus and self-consistency (cosine), the stopping rule met "
                 "(share_converged: NCN, debate), dialogues resolved (resolution_rate: self-play only), the "
                 "judge's Collective Agency (1–5), rounds. 'none' is a reference row: its statements are its "
                 "opening answers.",
    "capability": "Every trained artifact against its base model: MoralChoice low-ambiguity accuracy and the "
                  "perplexity of neutral text (ratio > 1: worse).",
}
COST_NOTE = ("Cost columns: model calls, tokens generated, tokens scored, wall seconds and peak memory (GiB) that the "
             "row's method's notebooks spent under its name (building or training it, and scoring it).")


def _table(df: pd.DataFrame) -> str:
    """A board as HTML, rows classed by status (``not run`` rows stand out), numbers to 3 decimals."""
    if df.empty:
        return "<p class='note'>nothing stored yet.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        status = str(r.get("status", ""))
        cls = {leaderboard.NOT_RUN: "notrun", leaderboard.NO_ROWS: "notrun", "reference": "reference"}.get(status, "")
        cls = "stale" if str(r.get("stale", "") or "") else cls
        cells = "".join(f"<td class='text'>{html.escape(str(v))}</td>" if isinstance(v, str) else
                        f"<td>{'' if pd.isna(v) else format(v, '.3f') if isinstance(v, float) else v}</td>"
                        for v in r.tolist())
        body.append(f"<tr class='{cls}'>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _scalars(metrics: dict) -> pd.DataFrame:
    """A unit's key numbers, flattened one level ("a.b") and without the cost ledger."""
    flat = {}
    for k, v in metrics.items():
        if k in ("cost", "made_by"):
            continue
        if isinstance(v, dict):
            flat |= {f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}
        elif not isinstance(v, list):
            flat[k] = v
    return pd.DataFrame({"key": list(flat), "value": [str(v) for v in flat.values()]})


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<h4>{html.escape(path.name)}</h4><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def render(params, b: leaderboard.Boards, stored: leaderboard.Stored) -> str:
    units = [nb.stem for nb in notebooks()]
    session = {u: stored.metrics.get(u, {}).get("cost", {}).get("session", {}) for u in units}
    stale = leaderboard.stale_units(stored, params)
    status = pd.DataFrame([{"unit": u, "status": "ran" if u in stored.metrics else leaderboard.NOT_RUN,
                            "stale": stale.get(u, ""),
                            "seconds": session[u].get("seconds"), "peak_rss_gb": session[u].get("peak_rss_gb")}
                           for u in units])
    parts = [f"<h1>Agora run report · {html.escape(params.profile)}</h1>",
             f"<p class='note'>Model {html.escape(params.model.name)}, seed {params.seed}, run folder "
             f"{html.escape(str(params.run_dir))}; written {_dt.datetime.now().isoformat(timespec='seconds')}. "
             "Every number is read from what the units stored; a unit whose metrics were made with other params "
             "than these is marked stale (highlighted), with the keys that changed.</p>",
             "<h2>Units</h2>", _table(status)]
    for name, df in b.tables().items():
        parts += [f"<h2 id='{name}'>Board: {name.replace('_', ' ')}</h2>", f"<p class='note'>{BOARD_NOTES[name]}</p>"]
        if name != "alignment_by_continent":
            parts.append(f"<p class='note'>{COST_NOTE}</p>")
        parts.append(_table(df))
    parts.append("<h2>Units: key numbers and figures</h2>")
    figures = sorted((Path(params.run_dir) / "figures").glob("*.png"))
    for u in units:
        parts.append(f"<h3 id='{u}'>{html.escape(u)}</h3>")
        if u not in stored.metrics:
            parts.append(f"<p class='note'>{leaderboard.NOT_RUN}</p>")
            continue
        parts.append(_table(_scalars(stored.metrics[u])))
        parts += [_figure(f) for f in figures if f.name[:2] == u[:2]]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Agora report · {html.escape(params.profile)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write(params, b: leaderboard.Boards | None = None) -> Path:
    """The report page and the boards' CSV files in ``<run_dir>/report``; returns the page's path."""
    stored = leaderboard.load(params.run_dir)
    b = b or leaderboard.boards(params, stored)
    out = Path(params.run_dir) / "report"
    for name, df in b.tables().items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out / "boards.json", json.dumps(leaderboard.key_numbers(b), indent=1, default=str))
    return atomic_write_text(out / "index.html", render(params, b, stored))
