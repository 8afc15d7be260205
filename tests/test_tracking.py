"""Tracking (kit.run.tracking): every trl trainer reports to the profile's tracker through trl's report_to, every
notebook logs its key numbers there with the run's fingerprint, and python -m kit track serves trackio's dashboard
on 127.0.0.1, where headless Chromium finds the tiny run's GRPO reward curve; the trainers' own curves are drawn
from their log histories (kit.reporting.curves).

What reached the tracker is read back from trackio's SQLite file with sqlite3, not through trackio."""

from __future__ import annotations

import json
import math
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, missing

CHROMIUM = next(
    (
        p
        for p in (__import__("shutil").which(n) for n in ("chromium", "chromium-browser", "google-chrome"))
        if p
    ),
    None,
)


def tracked(db: Path) -> dict[str, dict]:
    """Per run name: its run ids, and its logged metrics by step (merged), read straight from trackio's file."""
    out: dict[str, dict] = {}
    with sqlite3.connect(db) as c:
        for run_id, name, step, metrics in c.execute("select run_id, run_name, step, metrics from metrics"):
            run = out.setdefault(name, {"ids": set(), "steps": {}})
            run["ids"].add(run_id)
            run["steps"].setdefault(step, {}).update(json.loads(metrics))
        for name, config in c.execute("select run_name, config from configs"):
            out.setdefault(name, {"ids": set(), "steps": {}})["config"] = json.loads(config)
    return out


# --- pure parts ---------------------------------------------------------------------------------------------------


def test_flat_numbers_keep_every_finite_number_by_its_path():
    from kit.run.tracking import flat_numbers

    got = flat_numbers(
        {
            "a": 1,
            "b": {"c": 2.5, "d": True, "e": {"f": -3}},
            "s": "text",
            "n": None,
            "l": [1, 2],
            "inf": math.inf,
            "nan": math.nan,
            "off": False,
        }
    )
    assert got == {"a": 1.0, "b/c": 2.5, "b/d": 1.0, "b/e/f": -3.0, "off": 0.0}
    assert flat_numbers({}) == {} and flat_numbers({"only": "strings"}) == {}


def test_run_names_say_profile_notebook_what_and_fingerprint():
    from kit.run.tracking import Tracker

    t = Tracker("trackio", "agora", Path("/r/tiny/tracking"), "tiny", notebook="21")
    assert t.run_name("visa/train/grpo", "743b418d0123abcd") == "tiny-21-visa_train_grpo-743b418d"
    assert (
        t.run_name("agents/grounded/United States/sft", "0" * 16)
        == "tiny-21-agents_grounded_United_States_sft-00000000"
    )
    assert t.run_name("key_numbers", "f" * 16, notebook="90") == "tiny-90-key_numbers-ffffffff"
    # no tracker: the trainers report nowhere, the notebooks log nothing
    off = Tracker("none", "agora", Path("/r/tiny/tracking"), "tiny")
    assert (
        off.trainer_args("x", "y") == {"report_to": "none"}
        and off.log_numbers("00", {"a": 1}, "f" * 16) is None
    )


def test_bad_tracking_params_fail_in_one_line(shared_data):
    import importlib.util

    from kit.config import ParamsError, load_params

    with pytest.raises(ParamsError, match=r"tracking\.backend: .*(none|trackio)") as err:
        load_params(ROOT / "params" / "tiny.yaml", ["tracking.backend=tensorboard"])
    assert "\n" not in str(err.value)
    with pytest.raises(ParamsError, match=r"tracking\.project"):
        load_params(ROOT / "params" / "tiny.yaml", ["tracking.project=../elsewhere"])
    for client in ("wandb", "mlflow"):  # a backend whose client is absent is refused before anything runs
        if importlib.util.find_spec(client) is None:
            with pytest.raises(
                ParamsError, match=rf"tracking\.backend: '{client}' is not installed.*fix: pip install"
            ):
                load_params(ROOT / "params" / "tiny.yaml", [f"tracking.backend={client}"])
        else:
            assert (
                load_params(ROOT / "params" / "tiny.yaml", [f"tracking.backend={client}"]).tracking.backend
                == client
            )
    # where a trainer reports is the tracking section's to say, for every trainer alike
    with pytest.raises(ParamsError, match=r"finetune\.trl\.report_to: .*tracking\.backend"):
        load_params(ROOT / "params" / "tiny.yaml", ["finetune.trl.report_to=wandb"])
    # the tracker is where a run goes, not what it makes: hand-offs and stored artifacts ignore it
    from kit.run.artifacts import made_by

    on = load_params(ROOT / "params" / "tiny.yaml", ["tracking.backend=trackio"])
    off = load_params(ROOT / "params" / "tiny.yaml")
    assert "tracking" not in made_by(on) and made_by(on) == made_by(off)


# --- a trainer and a notebook report to trackio ---------------------------------------------------------------------

TRAIN_AND_LOG = """
import json, sys
from kit.config import TrainRecipe, load_params
from kit.run import tracking
from kit.train.trainers import train

params = load_params("params/tiny.yaml", [f"runs_dir={sys.argv[1]}", "tracking.backend=trackio"])
tracker = tracking.activate(params)
tracker.notebook = "21"

def reward(completions, **_):  # tells any two completions apart, so the group's advantages are not all 0
    return [sum(map(ord, c[0]["content"] if isinstance(c, list) else c)) % 97 / 97 for c in completions]

def short(completions, **_):
    return [1.0 / (1 + len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]

records = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"Say something about {t}."}]}
           for i, t in enumerate(["family", "freedom"])]
recipe = TrainRecipe(lora={"r": 4}, trl={"num_generations": 2, "per_device_train_batch_size": 2, "max_steps": 3,
                                         "max_completion_length": 6, "logging_steps": 1})
result = train("grpo", records, None, "tiny-random", params.run_dir / "visa" / "train" / "grpo", recipe, 0,
               reward_funcs=[reward, short], rewards={"reward": 1.0, "short": 1.0})
name = tracker.log_numbers("21_value_rewriter", {"grpo_steps": 3, "reward": {"first": 0.25, "fell": False},
                                                 "verdict": "no difference", "made_by": {"seed": 0}}, "0123456789abcdef")
print(json.dumps({"history": result.log_history, "numbers_run": name,
                  "config": json.load(open(result.adapter_dir.parent / "train_config.json"))["args"]}))
"""


def test_a_grpo_trainer_and_a_notebook_report_to_trackio_in_the_run_folder(tmp_path):
    """One GRPO run in a fresh process (trackio reads its store's folder once per process): every step trl logged
    reaches the tracker under the run's name, as the trainer's own log history holds it; the notebook's numbers
    and the fingerprint go to the same project; nothing is written outside the run folder."""
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_LOG, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRACKIO_DIR": ""},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["config"]["report_to"] == ["trackio"] and got["config"]["project"] == "agora"
    store = tmp_path / "tiny" / "tracking"
    assert sorted(p.name for p in store.glob("*.db")) == ["agora.db"]
    runs = tracked(store / "agora.db")
    trainer = got["config"]["run_name"]
    assert re.fullmatch(r"tiny-21-visa_train_grpo-[0-9a-f]{8}", trainer)
    assert set(runs) == {trainer, got["numbers_run"]} and got["numbers_run"] == "tiny-21-key_numbers-01234567"
    assert all(
        len(r["ids"]) == 1 for r in runs.values()
    )  # the kit's open and trl's callback made one run, not two
    # every logged step's reward, components and loss, equal to the trainer's log history
    logged = [h for h in got["history"] if "reward" in h]
    assert len(logged) == 3
    steps = runs[trainer]["steps"]
    for h in logged:
        at = next(m for m in steps.values() if m.get("train/global_step") == h["step"])
        assert at["train/reward"] == pytest.approx(h["reward"]) and at["train/loss"] == pytest.approx(
            h["loss"]
        )
        assert at["train/rewards/short/mean"] == pytest.approx(h["rewards/short/mean"])
        assert at["train/rewards/reward/mean"] == pytest.approx(h["rewards/reward/mean"])
    # the run's config is the trainer's (its arguments, its LoRA); the name carries the training's fingerprint
    config = runs[trainer]["config"]
    assert config["run_name"] == trainer and config["peft_config"]["default"]["r"] == 4
    stamp = json.loads((tmp_path / "tiny" / "visa" / "train" / "grpo" / "fingerprint.json").read_text())
    assert trainer.endswith(stamp["fingerprint"][:8])
    numbers = runs[got["numbers_run"]]
    assert numbers["steps"] == {0: {"grpo_steps": 3.0, "reward/first": 0.25, "reward/fell": 0.0}}
    assert {
        k: v for k, v in numbers["config"].items() if not k.startswith("_")
    } == {  # trackio's own keys start with _
        "profile": "tiny",
        "notebook": "21_value_rewriter",
        "fingerprint": "0123456789abcdef",
    }


# --- the curves a notebook draws from a trainer's log history ---------------------------------------------------------


def test_training_curves_read_losses_rewards_and_components(tmp_path):
    from kit.reporting.curves import fell_windows, figure, training_curves

    grpo, dpo = tmp_path / "grpo", tmp_path / "dpo"
    (grpo / "adapter").mkdir(parents=True)
    dpo.mkdir()
    (grpo / "log_history.json").write_text(
        json.dumps(
            [
                {
                    "step": s,
                    "loss": 0.1 * s,
                    "reward": r,
                    "rewards/a/mean": r / 2,
                    "rewards/b/mean": r / 2,
                    "rewards/a/std": 9.0,
                }
                for s, r in [(1, 0.9), (2, 0.8), (3, 0.5), (4, 0.2)]
            ]
            + [{"step": 4, "train_runtime": 1.0, "train_loss": 0.2}]
        )
    )
    (dpo / "log_history.json").write_text(
        json.dumps([{"step": 1, "loss": 0.69, "rewards/chosen": 0.1}, {"step": 1, "eval_loss": 0.7}])
    )
    curves = training_curves(
        {"grpo": grpo / "adapter", "dpo": dpo}
    )  # an adapter folder or its training folder
    assert set(curves["metric"]) == {"loss", "eval_loss", "reward", "reward/a", "reward/b"}
    assert curves[(curves["run"] == "grpo") & (curves["metric"] == "reward")]["value"].tolist() == [
        0.9,
        0.8,
        0.5,
        0.2,
    ]
    assert curves[curves["run"] == "dpo"]["metric"].tolist() == [
        "loss",
        "eval_loss",
    ]  # DPO's implicit rewards are not GRPO's
    # the windows reward_fell compares: a quarter of the steps at each end, at least one
    assert fell_windows([1, 2, 3, 4]) == ((1, 1), (4, 4)) and fell_windows(list(range(8))) == ((0, 1), (6, 7))
    assert fell_windows([3]) is None
    figure(tmp_path / "curves.png", curves, "test")
    figure(tmp_path / "empty.png", training_curves({"none": tmp_path / "missing"}), "nothing logged")
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "empty.png").is_file()


# --- the tiny notebook run's tracker, in a browser ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_tiny_run_tracked_every_trainer_and_every_notebook(tiny_params):
    """After the notebooks (tests/test_notebooks.py): a run in the tracker for every trainer that trained (each
    training folder with a log history) and for every notebook's key numbers."""
    from kit.run.tracking import name_part
    from kit.runner import notebooks

    db = tiny_params.run_dir / "tracking" / "agora.db"
    if not (tiny_params.run_dir / "metrics" / "90_leaderboard.json").is_file():
        pytest.skip("the tiny notebooks did not run in this session (run tests/test_notebooks.py first)")
    runs = tracked(db)
    numbers = {n.split("-")[1] for n in runs if "-key_numbers-" in n}
    assert numbers == {nb.name[:2] for nb in notebooks()}
    trained = sorted(p.parent for p in tiny_params.run_dir.rglob("log_history.json"))
    assert (
        len(trained) >= 19
    )  # 04's eight adapters, 11's six, 21's three, 31's two (and 01's grounded agents, where any)
    # each training folder's run: <profile>-<notebook>-<folder>-<the fingerprint stamped beside its adapter>
    missed = []
    for folder in trained:
        fingerprint = json.loads((folder / "fingerprint.json").read_text())["fingerprint"]
        tail = f"-{name_part(str(folder.relative_to(tiny_params.run_dir)))}-{fingerprint[:8]}"
        if not any(name.startswith("tiny-") and name.endswith(tail) for name in runs):
            missed.append(tail)
    assert not missed, f"trainers with no run in the tracker: {missed}"
    for name, run in runs.items():  # every trainer logged; a run shorter than logging_steps logs its end only
        if "-key_numbers-" not in name:
            assert any("train/global_step" in m for m in run["steps"].values()), name
    grpo = [
        n for n in runs if re.search(r"-(visa_train_grpo|selfplay_train_(self_play|single_agent)_grpo)-", n)
    ]
    assert len(grpo) == 3 and all(any("train/reward" in m for m in runs[n]["steps"].values()) for n in grpo)


@pytest.mark.slow
def test_kit_track_serves_the_dashboard_where_chromium_finds_a_grpo_reward_curve(tiny_params, tmp_path):
    if CHROMIUM is None:
        missing("Chromium is not installed (make chromium installs Debian's package)")
    if not (tiny_params.run_dir / "tracking" / "agora.db").is_file():
        pytest.skip("the tiny notebooks did not run in this session (run tests/test_notebooks.py first)")
    port = _free_port()
    params_file = tmp_path / "tiny.yaml"  # the tiny profile into the tiny run's folder, as the tests ran it
    params_file.write_text((ROOT / "params" / "tiny.yaml").read_text())
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit",
            "track",
            str(params_file),
            "--port",
            str(port),
            "--set",
            f"runs_dir={tiny_params.runs_dir}",
            "--set",
            "tracking.backend=trackio",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line or server.poll() is None, "python -m kit track ended before serving"
            found = re.search(r"(http://127\.0\.0\.1:\d+/\?project=agora)", line)
            url = found.group(1) if found else None
        assert url and f":{port}/" in url, "no dashboard URL on 127.0.0.1"
        assert "write_token" not in url
        assert urllib.request.urlopen(url, timeout=30).status == 200
        import psutil  # bound to the loopback address only

        bound = {
            c.laddr.ip
            for c in psutil.Process(server.pid).net_connections("inet")
            if c.laddr.port == port and c.status == psutil.CONN_LISTEN
        }
        assert bound == {"127.0.0.1"}, bound
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1400,900",
                "--virtual-time-budget=20000",
                "--dump-dom",
                url + "&metric_filter=%5Etrain/reward%24",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(30)
    plots = re.split(r'(?=<div class="plot-container)', dom)[1:]
    reward = [p for p in plots if 'data-metric="train/reward"' in p[:400]]
    assert reward, "the dashboard shows no train/reward plot"
    assert "<canvas" in reward[0], "the reward plot was not drawn"
    legend = set(re.findall(r"legend-label[^>]*>([^<]+)<", reward[0]))
    # the GRPO trainers of notebooks 21 and 31, by their runs' names
    assert {n for n in legend if re.fullmatch(r"tiny-21-visa_train_grpo-[0-9a-f]{8}", n)}, legend
    assert {n for n in legend if re.fullmatch(r"tiny-31-selfplay_train_self_play_grpo-[0-9a-f]{8}", n)}, (
        legend
    )
