"""The cross-method boards and the report: hand-computed numbers, cost counting, "not run", the HTML."""

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from kit.config import load_params
from kit.data import goqa_split
from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
from kit.llm.cached import CachedBackend
from kit.reporting import leaderboard
from kit.run import cost
from kit.run.cache import Cache
from kit.session import Session

ROOT = Path(__file__).resolve().parents[1]


# --- cost ---------------------------------------------------------------------------------------


def test_stages_count_every_request_cached_or_not(tiny_backend, tmp_path):
    backend = CachedBackend(tiny_backend, Cache(tmp_path / "c.sqlite"))
    chat = [ChatRequest([{"role": "user", "content": f"say {w}"}]) for w in ("yes", "no")]
    scored = ScoreRequest([{"role": "user", "content": "hi"}], "hello there")
    choice = ChoiceRequest([{"role": "user", "content": "A or B?"}], ["A", "B"], prefix="Answer:")
    tok = tiny_backend.tokenizer

    def run():
        with cost.stage("outer", row="x") as outer, cost.stage("inner") as inner:
            texts = backend.generate(chat, GenParams(temperature=0.0, max_new_tokens=4))
            backend.score([scored])
            backend.choice_probs([choice])
        return outer, inner, texts

    first, inner, texts = run()
    generated = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert first.counts["calls"] == inner.counts["calls"] == 4  # nested stages both count
    assert first.counts["generated_tokens"] == generated
    assert first.counts["scored_tokens"] > len(tok("hello there", add_special_tokens=False)["input_ids"])
    again, _, _ = run()  # every answer now comes from the cache: the same cost is recorded
    assert again.counts == first.counts
    assert first.models == again.models == {tiny_backend.identity: 4}  # who served the calls, cached or not
    assert first.peak_rss_gb > 0 and first.seconds > 0
    assert not cost.measuring()  # no stage left open


def test_row_costs_sum_stages_and_keep_the_largest_peak():
    stages = [
        {
            "stage": "train",
            "row": "a",
            "calls": 0,
            "generated_tokens": 0,
            "scored_tokens": 0,
            "seconds": 2.0,
            "peak_rss_gb": 3.0,
        },
        {
            "stage": "eval",
            "row": "a",
            "calls": 5,
            "generated_tokens": 7,
            "scored_tokens": 11,
            "seconds": 1.5,
            "peak_rss_gb": 1.0,
        },
        {
            "stage": "load",
            "row": None,
            "calls": 1,
            "generated_tokens": 1,
            "scored_tokens": 1,
            "seconds": 9.0,
            "peak_rss_gb": 9.0,
        },
    ]
    assert cost.row_costs(stages) == {
        "a": {"calls": 5, "generated_tokens": 7, "scored_tokens": 11, "seconds": 3.5, "peak_rss_gb": 3.0}
    }


def test_session_records_stage_costs_with_the_metrics(tmp_path):
    params = load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path}"])
    session = Session(params)
    with session.timed("work", row="r"):
        sum(range(1000))
    session.record_cost("merge m", "m", 1.25, 0.5)
    session.record_metrics("99_x", {"k": 1})
    m = json.loads((params.run_dir / "metrics" / "99_x.json").read_text())
    assert m["k"] == 1 and [s["stage"] for s in m["cost"]["stages"]] == ["work", "merge m"]
    assert set(m["cost"]["rows"]) == {"r", "m"} and m["cost"]["rows"]["m"]["seconds"] == 1.25
    assert m["cost"]["session"]["seconds"] >= 0 and m["cost"]["session"]["peak_rss_gb"] > 0


# --- a run folder written by hand ----------------------------------------------------------------


def _js(p, q):
    return (1 - jensenshannon(np.asarray(p) / np.sum(p), np.asarray(q) / np.sum(q), base=2)) * 100


def _write(run_dir: Path, board: str, notebook: str, rows: list[dict]) -> None:
    f = run_dir / "scores" / board / f"{notebook}.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _metrics(run_dir: Path, notebook: str, rows: dict) -> None:
    f = run_dir / "metrics" / f"{notebook}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(
        json.dumps({"cost": {"stages": [], "rows": rows, "session": {"seconds": 1.0, "peak_rss_gb": 1.0}}})
    )


@pytest.fixture
def run(tmp_path, shared_data):
    """Notebook 01 scored two kinds on two countries' held-out questions (enough for a verdict); nothing else ran.
    ``vanilla`` answers at random: its answers, flattened, are the entropy-matched reference."""
    params = load_params(ROOT / "params" / "tiny.yaml", [f"runs_dir={tmp_path}"])
    _, test = goqa_split(params.data.goqa_path, params.data.test_fraction, params.data.split_seed)
    by_country = {}
    for it in test:
        by_country.setdefault(it.country, []).append(it)
    countries = ["United States", "Kenya"]
    items = [it for c in countries for it in by_country[c][:16]]
    rng = np.random.default_rng(0)
    rows = []
    for it in items:
        rows.append(
            {
                "agent": "echo",
                "country": it.country,
                "question_id": it.question_id,
                "p_gen": list(it.distribution),
                "p_gold": list(it.distribution),
            }
        )  # a perfect answer
        rows.append(
            {
                "agent": "vanilla",
                "country": it.country,
                "question_id": it.question_id,
                "p_gen": list(rng.dirichlet(np.ones(len(it.options)))),
                "p_gold": list(it.distribution),
            }
        )
    _write(params.run_dir, "alignment", "01_cultural_agents", rows)
    _metrics(
        params.run_dir,
        "01_cultural_agents",
        {
            "echo": {
                "calls": 6,
                "generated_tokens": 0,
                "scored_tokens": 60,
                "seconds": 2.0,
                "peak_rss_gb": 1.5,
            }
        },
    )
    _metrics(
        params.run_dir,
        "04_finetune_on_negotiation",
        {"echo": {"calls": 4, "generated_tokens": 8, "scored_tokens": 0, "seconds": 1.0, "peak_rss_gb": 2.5}},
    )
    _metrics(
        params.run_dir,
        "12_palette_table",
        {
            "echo": {
                "calls": 100,
                "generated_tokens": 0,
                "scored_tokens": 0,
                "seconds": 50.0,
                "peak_rss_gb": 9.0,
            }
        },
    )
    return params, rows, test


def test_alignment_board_by_hand(run):
    params, rows, test = run
    b = leaderboard.boards(params)
    board = b.alignment.set_index("row")
    for agent in ("echo", "vanilla"):
        per_country = (
            pd.DataFrame(
                [
                    {"country": r["country"], "js": _js(r["p_gen"], r["p_gold"])}
                    for r in rows
                    if r["agent"] == agent
                ]
            )
            .groupby("country")["js"]
            .mean()
        )
        assert board.loc[f"01 · {agent}", "js_similarity"] == pytest.approx(per_country.mean())
        assert board.loc[f"01 · {agent}", "countries"] == 2 and board.loc[f"01 · {agent}", "pairs"] == 32
        assert board.loc[f"01 · {agent}", "questions"] == len({r["question_id"] for r in rows})
    assert board.loc["01 · echo", "js_similarity"] == pytest.approx(100)
    # the uniform reference on the same pairs, by hand
    pairs = {(r["country"], r["question_id"]) for r in rows}
    uni = (
        pd.DataFrame(
            [
                {"country": it.country, "js": _js(np.ones(len(it.options)), it.distribution)}
                for it in test
                if (it.country, it.question_id) in pairs
            ]
        )
        .groupby("country")["js"]
        .mean()
    )
    assert board.loc["01 · uniform", "js_similarity"] == pytest.approx(uni.mean())
    assert board.loc["01 · uniform", "status"] == board.loc["01 · entropy-matched", "status"] == "reference"
    # a perfect answer beats the better reference on its own pairs
    assert board.loc["01 · echo", "verdict"] == "beats" and board.loc["01 · echo", "diff_vs_best"] > 0
    assert board.loc["01 · echo", "best_reference"] in leaderboard.REFERENCES
    # cost: the units of its own decade (01, 04), not notebook 12's row of the same name
    assert board.loc["01 · echo", "calls"] == 10 and board.loc["01 · echo", "seconds"] == 3.0
    assert board.loc["01 · echo", "peak_rss_gb"] == 2.5
    # per continent: Kenya is Africa, the United States America
    continents = b.alignment_by_continent
    assert set(continents[continents["row"] == "01 · vanilla"]["continent"]) == {"Africa", "America"}
    # units that stored nothing are rows that say why: 04 and 12 ran (their metrics exist) but scored no
    # question, 22 never ran
    assert (
        board.loc["04_finetune_on_negotiation", "status"]
        == board.loc["12_palette_table", "status"]
        == leaderboard.NO_ROWS
    )
    assert board.loc["22_visa_table", "status"] == leaderboard.NOT_RUN
    assert leaderboard.NOT_RUN in set(b.consensus["status"]) and leaderboard.NOT_RUN in set(
        b.capability["status"]
    )


def test_consensus_board_prefers_the_judged_evaluation(run):
    params, _, _ = run
    base = {
        "topic_id": "t",
        "culture_a": "A",
        "culture_b": "B",
        "pair": "A vs B",
        "d_initial": 2.0,
        "self_consistency_a": 0.5,
        "self_consistency_b": 0.7,
        "value_consensus": 0.4,
        "value_distance_initial": 2.0,
        "value_distance_final": 1.0,
        "distance_reduction": 0.5,
    }
    judged = [
        {
            **base,
            "id": f"{m}{i}",
            "method": m,
            "rounds_used": i + 1,
            "d_final": 1.0 + i,
            # NCN's flag is its stopping rule; a self-play policy's dialogues carry resolved instead
            "converged": (i == 0) if m == "ncn" else None,
            "resolved": None if m == "ncn" else i == 0,
            "d_ratio": (1.0 + i) / 2.0,
            "improved": i == 0,
            "collective_agency": 2.0 + i,
        }
        for m in ("ncn", "untrained")
        for i in range(2)
    ]
    plain = [{**r, "method": "ncn", "collective_agency": None} for r in judged[:2]] + [
        {**judged[0], "id": "d0", "method": "debate"}
    ]
    _write(params.run_dir, "consensus", "32_selfplay_table", judged)
    _write(params.run_dir, "consensus", "03_consensus_evaluation", plain)
    board = leaderboard.boards(params).consensus.set_index("row")
    assert board.loc["32 · ncn", "collective_agency"] == pytest.approx(2.5)  # (2 + 3) / 2, from notebook 32
    assert board.loc["32 · ncn", "share_converged"] == 0.5 and board.loc["32 · ncn", "mean_rounds"] == 1.5
    # "resolved" belongs to dialogues only: NaN for NCN, the policy's share for the policy
    assert (
        math.isnan(board.loc["32 · ncn", "resolution_rate"])
        and board.loc["32 · untrained", "resolution_rate"] == 0.5
    )
    assert math.isnan(board.loc["32 · untrained", "share_converged"])
    assert board.loc["32 · ncn", "mean_d_ratio"] == pytest.approx((0.5 + 1.0) / 2)
    assert board.loc["32 · ncn", "mean_self_consistency"] == pytest.approx(0.6)
    assert "03 · debate" in board.index  # a method only notebook 03 holds still shows
    assert leaderboard.NOT_RUN not in set(board["status"])


def test_consensus_board_reads_common_items_counts_failures_and_never_scores_none(run):
    params, _, _ = run
    rng = np.random.default_rng(0)
    rows = []
    for k in range(30):
        for method, shift in (("none", 0.0), ("ncn", -0.2), ("debate", 0.0)):
            if (
                method == "debate" and k >= 25
            ):  # debate failed on five items: dropped for every method, counted
                continue
            rows.append(
                {
                    "id": f"{method}{k}",
                    "method": method,
                    "topic_id": f"t{k}",
                    "pair": "A vs B",
                    "culture_a": "A",
                    "culture_b": "B",
                    "rounds_used": 1,
                    "converged": None,
                    "resolved": None,
                    "d_initial": 2.0,
                    "d_final": 1.0,
                    "d_ratio": 0.5,
                    "improved": True,
                    "rel_logppl_change": shift + rng.normal(0, 0.05),
                    "self_consistency_a": 0.5,
                    "self_consistency_b": 0.5,
                    "value_consensus": 0.4,
                    "value_distance_initial": 2.0,
                    "value_distance_final": 1.0,
                    "distance_reduction": 50.0,
                    # NCN's best items are those debate failed on: over all of its own items it would look better
                    "collective_agency": 5.0 if (method == "ncn" and k >= 25) else 3.0,
                }
            )
    _write(params.run_dir, "consensus", "03_consensus_evaluation", rows)
    board = leaderboard.boards(params).consensus.set_index("row")
    assert set(board.loc[["03 · none", "03 · ncn", "03 · debate"], "common_items"]) == {25}
    assert board.loc["03 · debate", "failed"] == 5 and board.loc["03 · ncn", "failed"] == 0
    assert board.loc["03 · none", "status"] == "reference" and board.loc["03 · ncn", "status"] == "scored"
    assert board.loc["03 · ncn", "collective_agency"] == pytest.approx(3.0)  # the common items only
    # each method paired against none on the common items, in the score's direction (lower is better)
    assert board.loc["03 · ncn", "verdict"] == "better" and board.loc["03 · ncn", "vs_none_high"] < 0
    assert board.loc["03 · debate", "verdict"] == "no difference" and pd.isna(
        board.loc["03 · none", "verdict"]
    )
    v = leaderboard.verdicts(leaderboard.boards(params))["consensus"]
    assert v.startswith("most acceptable to the other side: 03 · ncn") and "25 common items: better" in v


def test_capability_board_against_each_base(run):
    params, _, _ = run
    _write(
        params.run_dir,
        "capability",
        "22_visa_table",
        [
            {
                "model": "base",
                "base": "base",
                "moralchoice_low_accuracy": 0.75,
                "correct": 3,
                "items": 4,
                "neutral_ppl": 20.0,
            },
            {
                "model": "grpo",
                "base": "base",
                "moralchoice_low_accuracy": 0.5,
                "correct": 2,
                "items": 4,
                "neutral_ppl": 25.0,
            },
        ],
    )
    board = leaderboard.boards(params).capability.set_index("row")
    assert list(board[board["status"] == "scored"].index) == ["22 · grpo"]
    assert board.loc["22 · grpo", "accuracy_change"] == pytest.approx(-0.25)
    assert board.loc["22 · grpo", "ppl_ratio"] == pytest.approx(1.25)
    # one item of four is no evidence: an interval that holds the point, and too few items for a verdict
    low, high = board.loc["22 · grpo", ["accuracy_change_low", "accuracy_change_high"]]
    assert -1 <= low <= -0.25 <= high <= 1 and board.loc["22 · grpo", "verdict"] == "too few"
    assert leaderboard.verdicts(leaderboard.boards(params))["capability"].startswith(
        "largest MoralChoice accuracy drop -0.25 ["
    )


def test_the_accuracy_change_interval_is_a_difference_of_two_binomials():
    # 60/100 against 40/100: the normal approximation's interval is 0.2 ± 1.96·sqrt(2·0.24/100) ≈ [0.064, 0.336]
    low, high = leaderboard.accuracy_change_interval(60, 100, 40, 100, n_boot=20000, seed=0)
    assert low == pytest.approx(0.2 - 1.96 * math.sqrt(0.0048), abs=0.02)
    assert high == pytest.approx(0.2 + 1.96 * math.sqrt(0.0048), abs=0.02)


# --- the report ----------------------------------------------------------------------------------


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.images, self.notrun_rows, self._in, self._row_class = [], 0, 0, False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in = tag in ("td", "th")
        if tag == "tr":
            self.notrun_rows += a.get("class") == "notrun"
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1

    def handle_data(self, data):
        if self._in:
            self.cells.append(data.strip())

    def handle_endtag(self, tag):
        self._in = False


def test_report_shows_every_board_row(run):
    from kit.reporting import report

    params, _, _ = run
    figures = params.run_dir / "figures"
    figures.mkdir(parents=True)
    (figures / "01_fidelity_heatmap.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = report.write(params)
    parser = _Cells()
    parser.feed(page.read_text())
    numbers = leaderboard.key_numbers(leaderboard.boards(params))
    for board in ("alignment", "consensus", "capability"):
        for row in numbers[board]:
            assert row in parser.cells, f"{board} row {row!r} missing from the report"
    assert "01 · echo" in numbers["alignment"] and numbers["not_run"]
    assert (
        parser.notrun_rows >= len(numbers["not_run"]) and parser.images == 2
    )  # the forest plot and the figure
    csv = pd.read_csv(page.parent / "alignment.csv")
    assert set(csv["row"]) == set(numbers["alignment"])


def test_report_command_on_an_empty_run(tmp_path, capsys):
    from kit.tools.cli import main

    assert main(["report", str(ROOT / "params" / "tiny.yaml"), "--set", f"runs_dir={tmp_path}"]) == 0
    page = tmp_path / "tiny" / "report" / "index.html"
    assert page.is_file() and "not run" in page.read_text()
    assert str(page) in capsys.readouterr().out


# --- the self-play policies on NCN's study ---------------------------------------------------------


def test_a_dialogue_becomes_a_study_trace_with_each_sides_last_turn():
    from kit.evals.traces import trace_texts
    from kit.selfplay.dialogue import Dialogue, Turn
    from kit.selfplay.ncn_study import as_trace, dilemma_of, starts

    start = {
        "id": "none|t",
        "method": "none",
        "failed": False,
        "topic": {"id": "t", "source": "x", "text": "Lie?"},
        "agents": [
            {"culture": "Kenya", "kind": "described", "name": "described:Kenya"},
            {"culture": "China", "kind": "described", "name": "described:China"},
        ],
        "initial": [{"response": "Never lie. " * 40}, {"response": "Sometimes."}],
        "consensus": ["", ""],
    }
    d = dilemma_of(start)
    assert (d.a.name, d.b.name, d.text) == ("Kenya", "China", "Lie?") and len(d.a.stance.split()) == 60
    turns = (
        Turn("a", "I hold firm."),
        Turn("b", "JOINT SOLUTION: tell kindly"),
        Turn("a", "JOINT SOLUTION: agreed"),
    )
    trace = as_trace(start, "self_play_grpo", Dialogue(d.id, 0, turns, False, "agreed"))
    texts = trace_texts(trace)
    assert (texts["final_a"], texts["final_b"]) == ("JOINT SOLUTION: agreed", "JOINT SOLUTION: tell kindly")
    assert texts["initial_a"] == start["initial"][0]["response"] and trace["rounds_used"] == 2
    assert trace["converged"] is False and trace["method"] == "self_play_grpo"
    # only untouched, non-failed "none" traces seed dialogues, and trained topics are left out
    assert (
        starts([start]) == [start]
        and starts([start], {"t"}) == []
        and starts([{**start, "failed": True}]) == []
    )


def test_a_corrupt_stored_file_is_one_clear_line(run, capsys):
    from kit.tools.cli import main

    params, _, _ = run
    (params.run_dir / "scores" / "alignment" / "01_cultural_agents.jsonl").write_text('{"agent": "echo"\n')
    assert (
        main(["report", str(ROOT / "params" / "tiny.yaml"), "--set", f"runs_dir={params.run_dir.parent}"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "01_cultural_agents.jsonl:1 is not valid JSON" in err


def test_row_costs_name_the_models_that_served_them():
    from kit.reporting.leaderboard import model_label

    stages = [
        {
            "stage": "gen",
            "row": "a",
            "calls": 3,
            "seconds": 1.0,
            "peak_rss_gb": 1.0,
            "models": {"hub:Qwen/Qwen2.5-7B-Instruct@main": 2, "judge@http://n9:8000/v1": 1},
        },
        {
            "stage": "eval",
            "row": "a",
            "calls": 2,
            "seconds": 1.0,
            "peak_rss_gb": 1.0,
            "models": {"hub:Qwen/Qwen2.5-7B-Instruct@main": 2},
        },
    ]
    assert cost.row_costs(stages)["a"]["models"] == {
        "hub:Qwen/Qwen2.5-7B-Instruct@main": 4,
        "judge@http://n9:8000/v1": 1,
    }
    assert [
        model_label(m)
        for m in (
            "hub:Qwen/Qwen2.5-7B-Instruct@main",
            "judge@http://n9:8000/v1",
            "smollm2-135m-instruct:gguf-sha256:0123",
            "local:/runs/x/palette/models/ties:ab12",
        )
    ] == ["Qwen/Qwen2.5-7B-Instruct", "judge", "smollm2-135m-instruct", "ties"]


def test_numbers_are_shown_to_two_decimals_and_intervals_as_brackets():
    assert [leaderboard.fmt(v) for v in (83.416, 0.012345, -0.00544, 0.0, 1234.5, float("nan"), None)] == [
        "83.42",
        "0.012",
        "-0.0054",
        "0.00",
        "1234.50",
        "",
        "",
    ]
    assert leaderboard.interval(0.1234, -0.05, 0.3) == "0.12 [-0.050, 0.30]"
    assert leaderboard.interval(3.0, float("nan"), None) == "3.00"
    assert [leaderboard.fmt(24), leaderboard.cell("calls", 24.0), leaderboard.cell("seconds", 24.0)] == [
        "24",
        "24",
        "24.00",
    ]


def test_verdicts_say_each_board_in_a_line(run):
    params, _, _ = run
    v = leaderboard.verdicts(leaderboard.boards(params))
    # echo answers with the gold distribution: it beats every reference; vanilla (random) does not
    assert v["alignment"].startswith("1 of 2 scored rows beat the better of their references (01 · echo)")
    assert v["consensus"] == "nothing scored yet." and v["capability"] == "nothing scored yet."


def test_the_report_lists_the_unit_writing_it_as_ran(run):
    from kit.reporting import report

    params, _, _ = run
    page = report.write(params, writer="90_leaderboard").read_text()
    assert "ran (writing this page)" in page and page.index("id='verdicts'") < page.index("<h2>Units</h2>")


# --- the report in a browser ---------------------------------------------------------------------

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)
WINDOW = (1400, 900)
# appended to a copy of the page: what the browser laid out, written where --dump-dom shows it
MEASURE = """<script>document.body.setAttribute("data-measure", JSON.stringify({
  scroll_width: document.documentElement.scrollWidth, width: window.innerWidth, height: window.innerHeight,
  verdicts_bottom: document.getElementById("verdicts") ? document.getElementById("verdicts").getBoundingClientRect().bottom : 1e9}));
</script>"""


def _chromium(*args: str) -> str:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


# clicks the column head named %s (in the first table that has one) twice and writes the column's sort
# keys after each click
SORT_PROBE = """<script>(function () {
  var starts = function (h) { return h.textContent.indexOf("%s") === 0; };
  var table = Array.prototype.find.call(document.querySelectorAll("table.sortable"), function (t) {
    return Array.prototype.some.call(t.tHead.rows[0].cells, starts); });
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells), col = heads.findIndex(starts);
  var read = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
    var c = r.cells[col]; return c.dataset.sort === undefined ? null : parseFloat(c.dataset.sort); }); };
  heads[col].click(); var up = read(); heads[col].click(); var down = read();
  document.body.setAttribute("data-measure", JSON.stringify({up: up, down: down, arrow: heads[col].getAttribute("aria-sort")}));
})();</script>"""


def _layout(page: Path, tmp_path: Path, probe_script: str = MEASURE) -> dict:
    probe = tmp_path / f"probe_{page.stem}.html"
    # after the page's own scripts, so the sort handlers are in place
    probe.write_text(page.read_text().replace("</body>", probe_script + "</body>"))
    dom = _chromium("--dump-dom", probe.as_uri())
    found = re.search(r'data-measure="([^"]+)"', dom)
    assert found, "the browser did not run the page's scripts"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.fixture
def wide_run(run):
    """The run above with forty long-named rows on the alignment board, as a full run has."""
    params, rows, _ = run
    many = [{**r, "agent": f"{r['agent']}_with_a_long_descriptive_name_{k}"} for k in range(20) for r in rows]
    _write(params.run_dir, "alignment", "01_cultural_agents", rows + many)
    return params


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (make chromium installs Debian's package); "
    "under CI this skip is a failure (conftest.py)",
)
def test_the_report_fits_the_window_and_opens_on_the_verdicts(wide_run, tmp_path):
    from kit.reporting import report

    page = report.write(wide_run)
    layout = _layout(page, tmp_path)
    assert layout["width"] == WINDOW[0]
    assert layout["scroll_width"] == layout["width"], f"the page is wider than the window: {layout}"
    assert layout["verdicts_bottom"] <= layout["height"], f"the verdicts are below the first screen: {layout}"
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", page.as_uri())
    width, height = np.frombuffer(shot.read_bytes()[16:24], dtype=">u4")  # the PNG header's IHDR
    assert (width, height) == WINDOW


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (make chromium installs Debian's package); "
    "under CI this skip is a failure (conftest.py)",
)
def test_a_click_on_a_column_head_sorts_its_board_by_value_with_blanks_last(run, tmp_path):
    from kit.reporting import report

    params, _, _ = run
    page = report.write(params)
    # diff_vs_best: numbers for the scored rows, blank for the reference rows
    got = _layout(page, tmp_path, SORT_PROBE % "diff_vs_best")
    numbers = [v for v in got["up"] if v is not None]
    assert len(numbers) >= 2 and None in got["up"]
    assert got["up"] == sorted(numbers) + [None] * (len(got["up"]) - len(numbers))
    assert got["down"] == sorted(numbers, reverse=True) + [None] * (len(got["down"]) - len(numbers))
    assert got["arrow"] == "descending"


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (make chromium installs Debian's package); "
    "under CI this skip is a failure (conftest.py)",
)
def test_the_browser_check_sees_a_page_wider_than_the_window(tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text(
        "<html><body><section id='verdicts'>v</section><pre>" + "x" * 600 + "</pre></body></html>"
    )
    layout = _layout(wide, tmp_path)
    assert layout["scroll_width"] > layout["width"]


def test_the_by_continent_table_shows_a_continent_whose_intervals_are_all_missing():
    # one country in Africa: its rows have no interval; the table keeps the point instead of failing
    from kit.reporting import report

    df = pd.DataFrame(
        [
            {
                "row": "12 · ties",
                "continent": "Africa",
                "metric": "js_similarity",
                "mean": 80.0,
                "ci_low": np.nan,
                "ci_high": np.nan,
            },
            {
                "row": "12 · ties",
                "continent": "Asia",
                "metric": "js_similarity",
                "mean": 70.0,
                "ci_low": 65.0,
                "ci_high": 75.0,
            },
        ]
    )
    html = report._by_continent(df)
    assert f">{leaderboard.fmt(80.0)}</td>" in html and "<th>Africa</th>" in html
    assert leaderboard.interval(70.0, 65.0, 75.0) in html
