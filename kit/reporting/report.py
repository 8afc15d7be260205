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
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from kit.registry import stopping_rules
from kit.reporting import leaderboard, plots
from kit.run.files import atomic_write_text
from kit.runner import notebooks

# Tables fit the window: long text wraps, intervals share one cell, cost columns fold away.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { margin-top: 1.4em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; overflow-wrap: break-word; }
th { background: #f3f3f3; cursor: pointer; user-select: none; } th[aria-sort]::after { content: " ↕"; color: #999; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td:first-child, th:first-child, td.text { text-align: left; } td.interval { white-space: nowrap; }
tr.notrun td { color: #a33; font-style: italic; } tr.reference td { color: #666; }
tr.stale td { background: #fff4d6; }
ul.verdicts { font-size: 1.05em; line-height: 1.5; } ul.verdicts li { margin: 0.2em 0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
p.note { color: #555; max-width: 60em; } details { margin: 0.4em 0; } summary { cursor: pointer; color: #345; }
"""

# Click a column head to sort its table (numbers by value, the rest as text, blank cells last either way);
# no build step, no library.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.setAttribute("aria-sort", "none");
    th.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (r) { var c = r.cells[col]; return c.dataset.sort !== undefined ? c.dataset.sort : c.textContent.trim(); };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        if ((x === "") !== (y === "")) return x === "" ? 1 : -1;
        var cmp = (isNaN(nx) || isNaN(ny)) ? (isNaN(nx) - isNaN(ny)) || x.localeCompare(y) : nx - ny;
        return down ? -cmp : cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
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
    f"(share_converged: {', '.join(stopping_rules())}), dialogues resolved (resolution_rate: self-play only), the "
    "judge's Collective Agency (1–5), rounds. 'none' is a reference row: its statements are its "
    "opening answers.",
    "capability": "Every trained artifact against its base model: MoralChoice low-ambiguity accuracy and the "
    "perplexity of neutral text (ratio > 1: worse).",
}
COST_NOTE = (
    "Cost columns: model calls, tokens generated, tokens scored, wall seconds and peak memory (GiB) that the "
    "row's method's notebooks spent under its name (building or training it, and scoring it)."
)


# Columns read as counts (no decimals), and those folded under "cost and coverage" below each board.
FOLDED = {
    "unit",
    "calls",
    "generated_tokens",
    "scored_tokens",
    "seconds",
    "peak_rss_gb",
    "models",
    "countries",
    "questions",
    "pairs",
    "js_similarity_e",
    "js_similarity_e_low",
    "js_similarity_e_high",
}


def _bounds(columns: list[str], c: str) -> tuple[str, str] | None:
    """The interval columns of ``c``, if the board has them (``x_low``/``x_high``; ``diff_low`` for the
    difference; ``ci_low`` for the by-continent board's ``mean``)."""
    for low, high in (
        (f"{c}_low", f"{c}_high"),
        ("diff_low", "diff_high") if c == "diff_vs_best" else ("", ""),
        ("ci_low", "ci_high") if c == "mean" else ("", ""),
    ):
        if low in columns and high in columns:
            return low, high
    return None


def arrow(column: str) -> str:
    """`` ↑`` or `` ↓`` after a board column that is a registered score (``kit.metrics.scorers``): which way is
    better, read from the registry (``mean_rel_logppl_change`` reads ``rel_logppl_change``)."""
    from kit.metrics.scorers import SCORERS

    name = column.removeprefix("mean_")
    name = {
        "consensus": "value_consensus",
        "accuracy_change": "moralchoice_low_accuracy",
        "diff_vs_best": "js_similarity",
    }.get(name, name)
    found = SCORERS.get(name)
    return "" if found is None else (" ↑" if found.direction == "higher" else " ↓")


def _cell(column: str, v) -> str:
    if isinstance(v, str):
        return f"<td class='text'>{html.escape(v)}</td>"
    if v is None or pd.isna(v):
        return "<td></td>"
    shown = leaderboard.cell(column, v)
    return f"<td data-sort='{float(v)!r}'>{shown}</td>"


def _table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A board as a sortable HTML table: rows classed by status (``not run`` rows stand out), numbers to two
    decimals (two significant ones below 1), a column with an interval shown as ``point [lo, hi]``."""
    if df.empty:
        return "<p class='note'>nothing stored yet.</p>"
    every = list(df.columns)
    columns = columns or every
    bounds = {c: _bounds(every, c) for c in columns}
    hidden = {b for pair in bounds.values() if pair for b in pair}
    shown = [c for c in columns if c not in hidden]
    head = "".join(
        f"<th>{html.escape(c + arrow(c) + (' [95 % CI]' if bounds[c] else ''))}</th>" for c in shown
    )
    body = []
    for _, r in df.iterrows():
        status = str(r.get("status", ""))
        cls = {leaderboard.NOT_RUN: "notrun", leaderboard.NO_ROWS: "notrun", "reference": "reference"}.get(
            status, ""
        )
        cls = "stale" if str(r.get("stale", "") or "") else cls
        cells = []
        for c in shown:
            if bounds[c] and pd.notna(r[c]) and not isinstance(r[c], str):
                text = leaderboard.interval(r[c], r[bounds[c][0]], r[bounds[c][1]])
                cells.append(f"<td class='interval' data-sort='{float(r[c])!r}'>{html.escape(text)}</td>")
            else:
                cells.append(_cell(c, r[c]))
        body.append(f"<tr class='{cls}'>{''.join(cells)}</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _board(df: pd.DataFrame) -> str:
    """The board's comparison columns, and its cost and coverage columns folded beneath, row by row."""
    if df.empty:
        return _table(df)
    # the row's name first; a stale column only where some row is stale
    main = [
        "row",
        *[
            c
            for c in df.columns
            if c not in FOLDED and c != "row" and not (c == "stale" and not df[c].astype(bool).any())
        ],
    ]
    folded = ["row", *[c for c in df.columns if c in FOLDED]]
    out = _table(df, main)
    if len(folded) > 1:
        out += f"<details><summary>cost and coverage columns</summary>{_table(df, folded)}</details>"
    return out


def _by_continent(df: pd.DataFrame) -> str:
    """js_similarity per row and continent in one table (a column per continent); every metric, long, folded."""
    if df.empty or "metric" not in df.columns:
        return _table(df)
    js = df[df["metric"] == "js_similarity"]
    wide = js.pivot_table(index="row", columns="continent", values="mean", aggfunc="first", sort=False)
    for what in ("ci_low", "ci_high"):
        part = js.pivot_table(index="row", columns="continent", values=what, aggfunc="first", sort=False)
        wide = wide.join(part.add_suffix(f"_{what}"))
    continents = sorted(js["continent"].unique())
    # pivot_table drops a column with no value at all: a continent whose every interval is missing (too few rows)
    wide = wide.reindex(columns=[f"{c}{end}" for c in continents for end in ("", "_ci_low", "_ci_high")])
    table = pd.DataFrame(
        {
            "row": wide.index,
            **{
                c: [
                    leaderboard.interval(wide.at[r, c], wide.at[r, f"{c}_ci_low"], wide.at[r, f"{c}_ci_high"])
                    if pd.notna(wide.at[r, c])
                    else ""
                    for r in wide.index
                ]
                for c in continents
            },
        }
    )
    return (
        f"<p class='note'>js_similarity [95 % CI] per continent.</p>{_table(table)}"
        f"<details><summary>every metric ({len(df)} rows)</summary>{_table(df)}</details>"
    )


def forest(ax, alignment: pd.DataFrame) -> None:
    """js_similarity of every scored row with its 95 % interval, coloured by unit (decade); references in grey."""
    a = alignment[alignment["status"].isin(["scored", "reference"])] if len(alignment) else alignment
    if len(a):
        y = np.arange(len(a))[::-1]
        colors = ["#999999" if s == "reference" else f"C{int(u[0])}" for s, u in zip(a["status"], a["unit"])]
        err = [a["js_similarity"] - a["js_similarity_low"], a["js_similarity_high"] - a["js_similarity"]]
        # clipped: a point at the scale's end can sit a rounding error outside its percentile interval
        ax.errorbar(
            a["js_similarity"],
            y,
            xerr=np.clip(np.nan_to_num(np.asarray(err, float)), 0, None),
            fmt="none",
            ecolor=colors,
        )
        ax.scatter(a["js_similarity"], y, c=colors, zorder=3)
        ax.set_yticks(y, a["row"], fontsize=7)
    ax.set_xlabel("js_similarity (×100), 95 % CI, held-out GlobalOpinionQA")
    ax.set_title("Cultural alignment across every method")


def forest_png(alignment: pd.DataFrame) -> bytes:
    plt = plots.pyplot()
    n = int(alignment["status"].isin(["scored", "reference"]).sum()) if len(alignment) else 0
    fig, ax = plt.subplots(figsize=(9, max(2.0, 0.8 + 0.22 * n)))
    try:
        forest(ax, alignment)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI)
        return buffer.getvalue()
    finally:
        plt.close(fig)


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


def _png(name: str, data: bytes) -> str:
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"


def _figure(path: Path) -> str:
    return f"<h4>{html.escape(path.name)}</h4>{_png(path.stem, path.read_bytes())}"


def render(params, b: leaderboard.Boards, stored: leaderboard.Stored, writer: str | None = None) -> str:
    """The page. ``writer`` is the notebook writing it (90), listed as ran though its metrics come after."""
    units = [nb.stem for nb in notebooks()]
    session = {u: stored.metrics.get(u, {}).get("cost", {}).get("session", {}) for u in units}
    stale = leaderboard.stale_units(stored, params)
    status = pd.DataFrame(
        [
            {
                "unit": u,
                "status": "ran"
                if u in stored.metrics
                else "ran (writing this page)"
                if u == writer
                else leaderboard.NOT_RUN,
                "stale": stale.get(u, ""),
                "minutes": (session[u].get("seconds") or np.nan) / 60,
                "peak_rss_gb": session[u].get("peak_rss_gb"),
            }
            for u in units
        ]
    )
    verdicts = leaderboard.verdicts(b)
    parts = [
        f"<h1>Agora run report · {html.escape(params.profile)}</h1>",
        f"<p class='note'>Model {html.escape(params.model.name)}, seed {params.seed}, run folder "
        f"{html.escape(str(params.run_dir))}; written {_dt.datetime.now().isoformat(timespec='seconds')}. "
        "Every number is read from what the units stored; a unit whose metrics were made with other params "
        "than these is marked stale (highlighted), with the keys that changed. Click a column head to sort.</p>",
        "<section id='verdicts'><h2>Verdicts</h2><ul class='verdicts'>"
        + "".join(f"<li><b><a href='#{k}'>{k}</a></b>: {html.escape(v)}</li>" for k, v in verdicts.items())
        + "</ul></section>",
        "<h2 id='forest'>Alignment at a glance</h2>",
        _png("alignment forest plot", forest_png(b.alignment)),
        "<h2>Units</h2>",
        _table(status),
    ]
    for name, df in b.tables().items():
        parts += [
            f"<h2 id='{name}'>Board: {name.replace('_', ' ')}</h2>",
            f"<p class='note'>{BOARD_NOTES[name]}</p>",
        ]
        if name != "alignment_by_continent":
            parts.append(f"<p class='note'>{COST_NOTE}</p>")
        parts.append(_by_continent(df) if name == "alignment_by_continent" else _board(df))
    parts.append("<h2>Units: key numbers and figures</h2>")
    figures = sorted((Path(params.run_dir) / "figures").glob("*.png"))
    for u in units:
        parts.append(f"<h3 id='{u}'>{html.escape(u)}</h3>")
        if u not in stored.metrics:
            parts.append(
                f"<p class='note'>{'its key numbers are recorded after this page' if u == writer else leaderboard.NOT_RUN}</p>"
            )
            continue
        parts.append(
            f"<details><summary>key numbers</summary>{_table(_scalars(stored.metrics[u]))}</details>"
        )
        parts += [_figure(f) for f in figures if f.name[:2] == u[:2]]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>Agora report · {html.escape(params.profile)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}<script>{SORT_SCRIPT}</script></body></html>"
    )


def write(params, b: leaderboard.Boards | None = None, writer: str | None = None) -> Path:
    """The report page and the boards' CSV files in ``<run_dir>/report``; returns the page's path."""
    stored = leaderboard.load(params.run_dir)
    b = b or leaderboard.boards(params, stored)
    out = Path(params.run_dir) / "report"
    for name, df in b.tables().items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out / "boards.json", json.dumps(leaderboard.key_numbers(b), indent=1, default=str))
    return atomic_write_text(out / "index.html", render(params, b, stored, writer))
