"""Params are validated before any model loads; every problem is one line with exit code 2."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit.config import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]

GOOD = """profile: t
model: {name: tiny-random}
data: {goqa_path: %(goqa)s, moralchoice_path: %(goqa)s}
"""

BAD = {
    "unknown_key": ("profile: t\nmodel: {name: tiny-random, batchsize: 4}\n", "model.batchsize: unknown key"),
    "wrong_type": ("profile: t\nmodel: {name: tiny-random, batch_size: many}\n", "model.batch_size"),
    "negative_size": ("profile: t\nmodel: {name: tiny-random, batch_size: -3}\n", "model.batch_size"),
    "missing_data": ("profile: t\ndata: {goqa_path: no/such/file.json}\n", "data.goqa_path: file not found"),
    "bad_model": ("profile: t\nmodel: {name: gpt-5-secret}\n", "model.name: unknown model"),
    "empty": ("", "empty"),
    "not_yaml": ("profile: t\nmodel: {name: [tiny\n", "not valid YAML"),
    "list_top": ("- profile\n- model\n", "expected a mapping"),
    "missing_profile": ("model: {name: tiny-random}\n", "profile: Field required"),
    "bad_shard": (
        "profile: t\nnegotiation: {shard_index: 2, shard_count: 2}\n",
        "negotiation: shard_index 2 must be below",
    ),
    "bad_backend": ("profile: t\nmodel: {name: tiny-random, backend: llamacpp}\n", "model.backend"),
    "unknown_country": (
        "profile: t\nagents: {countries: [Mexico, Atlantis]}\n",
        "agents.countries[1]: unknown country 'Atlantis'; closest known labels: ",
    ),
    "pair_without_agent": (
        "profile: t\nagents: {countries: [Mexico, Iraq]}\nnegotiation: {pairs: [[Mexico, Japan]]}\n",
        "negotiation.pairs[0][1]: 'Japan' is not in agents.countries",
    ),
    "pair_unknown": (
        "profile: t\nnegotiation: {pairs: [[Mexico, Mexicoo]]}\n",
        "negotiation.pairs[0][1]: unknown country 'Mexicoo'; closest known labels: 'Mexico'",
    ),
    "palette_attention_lora": (
        "profile: t\npalette: {countries: [Brazil], train: {lora: {target_modules: [q_proj]}}}\n",
        "palette.train: lora.target_modules must be ['gate_proj', 'up_proj', 'down_proj']",
    ),
    "palette_missing_recipe": (
        "profile: t\npalette: {countries: [Brazil], merges: {ties: params/merges/ties.yml}}\n",
        "palette.merges: needs a recipe for ['model_stock', 'moe']",
    ),
    "palette_unknown_nli": (
        "profile: t\npalette: {countries: [Brazil], nli: roberta}\n",
        "palette.nli: unknown NLI scorer 'roberta'; registered: judge, cross-encoder",
    ),
    "palette_country": (
        "profile: t\npalette: {countries: [Mexico]}\n",
        "palette.countries: 'Mexico' is not a Cultural Palette country; choose one of Kenya",
    ),
    "visa_unknown_reward": (
        "profile: t\nvisa: {rewards: {fluency: 1.0}}\n",
        "visa.rewards: unknown reward function 'fluency'; registered: value_match, meaning_kept",
    ),
    "visa_trained_teacher": (
        "profile: t\nvisa: {teacher: trained}\n",
        "visa.teacher: the trained detector learns from the teacher; use llm or embedding",
    ),
    "visa_culture": (
        "profile: t\nvisa: {culture_countries: [Atlantis]}\n",
        "visa.culture_countries[0]: unknown country 'Atlantis'",
    ),
}

# A GlobalOpinionQA file with one question answered by a few countries (the Modular Pluralism format).
COUNTRIES = ("Mexico", "Iraq", "Japan", "Brazil", "India (Current national sample)")


@pytest.fixture
def goqa(tmp_path):
    f = tmp_path / "g.json"
    f.write_text(
        json.dumps(
            [
                {
                    "question": "Question: Is family important?\nOptions: A. Yes B. No\nAnswer:",
                    "options": ["Yes", "No"],
                    "attribute": c,
                    "gold_distribution": [0.7, 0.3],
                    "id": k,
                }
                for k, c in enumerate(COUNTRIES)
            ]
        )
    )
    return f


def _write(tmp_path, name, text, goqa):
    f = tmp_path / f"{name}.yaml"
    if "data:" not in text and text.startswith("profile"):
        text += f"data: {{goqa_path: {goqa}, moralchoice_path: {goqa}}}\n"
    f.write_text(text)
    return f


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_params_fail_in_one_line(tmp_path, goqa, case):
    text, expected = BAD[case]
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, case, text, goqa))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg


def test_cli_check_exit_codes_and_no_model_load(tmp_path, goqa):
    """One subprocess checks every bad file: exit 2, one line, and no model module imported."""
    files = [_write(tmp_path, c, t, goqa) for c, (t, _) in sorted(BAD.items())]
    script = (
        "import sys; from kit.tools.cli import main\n"
        "codes = [main(['check', f]) for f in sys.argv[1:]]\n"
        "heavy = [m for m in ('torch', 'transformers', 'kit.llm.hf_backend') if m in sys.modules]\n"
        "print('CODES', codes, 'HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, files)], capture_output=True, text=True, cwd=ROOT
    )
    assert f"CODES {[2] * len(files)} HEAVY []" in out.stdout, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(files) == len(out.stderr.strip().splitlines())


def test_shipped_profiles_are_valid(shared_data):
    for name in ("tiny", "smoke", "full"):
        p = load_params(ROOT / "params" / f"{name}.yaml")
        assert p.profile == name
    assert load_params(ROOT / "params/full.yaml").model.backend == "vllm"


def test_every_section_round_trips_as_a_notebook_receives_it(shared_data):
    """A notebook validates the whole dump of its sections (every key, defaults included): no setting may read
    as a credential (a key named ``*_key`` is refused) or fail its own check."""
    from kit.config import ModelParams, validate

    for name in ("tiny", "smoke", "full"):
        p = load_params(ROOT / "params" / f"{name}.yaml")
        assert validate(p.sections(), name) == p
    served = ModelParams(
        name="tiny-random", backend="openai", base_url=["http://127.0.0.1:9/v1"], api_key_env="K"
    )
    assert validate({"profile": "s", "model": served.model_dump(mode="json")}, "served").model == served


def test_overrides(tmp_path, goqa):
    f = _write(tmp_path, "ok", GOOD % {"goqa": goqa}, goqa)
    p = load_params(f, ["model.batch_size=3", "quickstart.countries=[Iraq, Mexico]"])
    assert p.model.batch_size == 3 and p.quickstart.countries == ["Iraq", "Mexico"]
    with pytest.raises(ParamsError, match="model.batch_size"):
        load_params(f, ["model.batch_size=0"])
    with pytest.raises(ParamsError, match="key=value"):
        load_params(f, ["model.batch_size"])


def test_relative_paths_resolve_from_project_root(tmp_path, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # papermill or a user may start anywhere
    assert load_params(ROOT / "params/tiny.yaml").data.goqa_path.startswith("../shared")


def _documented_commands(config: Path) -> list[str]:
    """The `accelerate launch … -m kit train …` command a config's opening comment documents, joined over `\\`."""
    text = " ".join(
        line.lstrip("# ").rstrip("\\").strip()
        for line in config.read_text().splitlines()
        if line.startswith("#")
    )
    return [
        c.strip()
        for c in re.findall(r"accelerate launch (.*?-m kit train [^\s].*?--params \S+(?: --set \S+)*)", text)
    ]


@pytest.mark.parametrize(
    "config", sorted((ROOT / "params" / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_accelerate_config_documents_a_command_that_passes_kit_check(config):
    import shlex

    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    from kit.train.cli import _parser

    commands = _documented_commands(config)
    assert commands, f"{config.name} documents no accelerate launch command"
    for command in commands:
        args = shlex.split(command)
        assert "--num_processes" in args, "the process count comes from the node (accelerate needs it given)"
        train = _parser().parse_args(args[args.index("kit") + 2 :])
        load_params(ROOT / train.params, train.set)  # kit check: exits 2 on an unknown key
    values = yaml.safe_load(config.read_text())
    assert "num_processes" not in values, "processes come from the machine, not a fixed count"
    ClusterConfig(**{**values, "num_processes": 8})  # accelerate takes the file with the node's process count
