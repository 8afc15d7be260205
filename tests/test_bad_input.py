"""Malformed params, each caught by ``python -m kit check`` in one line with exit 2, before any model loads.

Every case edits the tiny profile (``--set`` overrides) or writes a small file; the expected text names
the key at fault. One case is valid by design: ``1e-4`` is a float under YAML 1.2, not a string.
``PROBE`` keeps the twenty edits of the third probe (served models, credentials, bounds, hostile YAML).
"""

import time

import pytest
from conftest import ROOT

from kit.config import load_params
from kit.tools.cli import main

TINY = str(ROOT / "params" / "tiny.yaml")

# (overrides, text the one error line contains)
SET = {
    # the run folder and seeds
    "profile_dotdot": (["profile=.."], "profile"),
    "profile_dot": (["profile=."], "profile"),
    "seed_negative": (["seed=-1"], "seed"),
    "n_boot_one": (["n_boot=1"], "n_boot"),
    # numbers and their ranges
    "lr_negative": (["finetune.trl.learning_rate=-0.1"], "finetune.trl.learning_rate"),
    "lr_string": (["finetune.trl.learning_rate='1e-4'"], "finetune.trl.learning_rate: '1e-4' is a str"),
    "epochs_zero": (["finetune.trl.num_train_epochs=0"], "finetune.trl.num_train_epochs"),
    "lora_r_zero": (["finetune.lora.r=0"], "finetune.lora.r"),
    "lora_target_missing": (
        ["finetune.lora.target_modules=[no_such_proj]"],
        "finetune.lora.target_modules: the model has no module 'no_such_proj'",
    ),
    "temperature_inf": (["negotiation.temperature_high=.inf"], "negotiation.temperature_high"),
    "temperatures_swapped": (
        ["negotiation.temperature_low=0.9", "negotiation.temperature_high=0.5"],
        "temperature_low 0.9 is above temperature_high 0.5",
    ),
    "weights_all_zero": (
        ["negotiation.weights={alpha: 0, beta: 0, gamma: 0}"],
        "alpha, beta and gamma are all 0",
    ),
    "reward_negative": (["visa.rewards.value_match=-1"], "visa.rewards"),
    "retries_huge": (["selfplay.max_retries=100000"], "selfplay.max_retries"),
    "batch_negative": (["model.batch_size=-3"], "model.batch_size"),
    "batch_not_int": (["model.batch_size=many"], "model.batch_size"),
    "test_fraction_one": (["data.test_fraction=1.5"], "data.test_fraction"),
    "shard_out_of_range": (
        ["negotiation.shard_index=2", "negotiation.shard_count=2"],
        "shard_index 2 must be below",
    ),
    # names the kit must know
    "unknown_key": (["model.batchsize=4"], "model.batchsize: unknown key"),
    "unknown_section": (["negociation={n_gap: 1}"], "negociation: unknown key"),
    "unknown_model": (["model.name=gpt-5-secret"], "model.name: unknown model"),
    "unknown_backend": (["model.backend=llamacpp"], "model.backend"),
    "device_upper": (["model.device=CPU"], "model.device"),
    "unknown_method": (["negotiation.methods=[ncn, parley]"], "negotiation.methods"),
    "method_twice": (["negotiation.methods=[ncn, ncn, debate]"], "lists 'ncn' twice"),
    "trainer_twice": (["finetune.methods=[dpo, dpo]"], "lists 'dpo' twice"),
    "unknown_reward": (["visa.rewards={fluency: 1.0}"], "visa.rewards: unknown reward function 'fluency'"),
    "unknown_nli": (["palette.nli=roberta"], "palette.nli: unknown NLI scorer 'roberta'"),
    # files
    "missing_data": (["data.goqa_path=no/such/file.json"], "data.goqa_path: file not found"),
    "topics_file_no_path": (["negotiation.topics.source=file"], "source file needs path"),
    # countries, pairs and the agents they need
    "unknown_country": (
        ["agents.countries=[Mexico, Atlantis]"],
        "agents.countries[1]: unknown country 'Atlantis'",
    ),
    "country_twice_by_alias": (["agents.countries=[United States, USA, China]"], "two names of one country"),
    "pair_alias_same": (["negotiation.pairs=[[United States, USA]]"], "negotiate with itself"),
    "pair_twice": (["negotiation.pairs=[[United States, China], [China, United States]]"], "twice"),
    "pair_without_agent": (
        ["negotiation.pairs=[[Mexico, Japan]]"],
        "negotiation.pairs[0][1]: 'Japan' is not in agents.countries",
    ),
    "palette_country": (
        ["palette.countries=[Mexico]"],
        "palette.countries: 'Mexico' is not a Cultural Palette country",
    ),
    "visa_culture_not_agent": (
        ["visa.culture_countries=[Japan]"],
        "visa.culture_countries[0]: 'Japan' is not in agents.countries",
    ),
    "kind_not_built": (
        ["agents.kinds=[vanilla, prompted]"],
        "negotiation.agent_kind: 'described' is not in agents.kinds",
    ),
    # credentials belong in the environment, not in files the kit copies everywhere
    "hub_token": (
        ["finetune.trl.hub_token=hf_abcdefghijklmnop"],
        "finetune.trl.hub_token: a credential in params",
    ),
    # the command line itself
    "set_not_yaml": (["model.name=[oops"], "--set model.name=[oops: the value is not valid YAML"),
    "set_without_equals": (["model.batch_size"], "expected key=value"),
}

# (file text, text the one error line contains)
FILES = {
    "key_twice": (
        "profile: t\nmodel: {name: tiny-random}\nmodel: {name: smollm2-135m-instruct}\n",
        "key 'model' given twice (the last would win silently) at line 3",
    ),
    "not_yaml": ("profile: t\nmodel: {name: [tiny\n", "not valid YAML"),
    "empty": ("", "file is empty"),
    "list_top": ("- profile\n- model\n", "expected a mapping"),
    "missing_profile": ("model: {name: tiny-random}\n", "profile: Field required"),
}


def _check(args: list[str], capsys) -> tuple[int, list[str]]:
    rc = main(["check", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def _assert_one_error(rc: int, err: list[str], expected: str) -> None:
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0], err[0]


@pytest.mark.parametrize("case", sorted(SET))
def test_bad_override(case, capsys, shared_data):
    overrides, expected = SET[case]
    rc, err = _check([TINY, *(a for o in overrides for a in ("--set", o))], capsys)
    _assert_one_error(rc, err, expected)


@pytest.mark.parametrize("case", sorted(FILES))
def test_bad_file(case, tmp_path, capsys):
    path = tmp_path / f"{case}.yaml"
    path.write_text(FILES[case][0])
    rc, err = _check([str(path)], capsys)
    _assert_one_error(rc, err, FILES[case][1])


def test_missing_params_file(tmp_path, capsys):
    rc, err = _check([str(tmp_path / "nope.yaml")], capsys)
    _assert_one_error(rc, err, "no such params file")


def test_yaml_12_numbers_are_floats(capsys, shared_data):
    """``1e-4`` is the float YAML 1.2 reads (PyYAML's 1.1 rules make it a string, which AdamW rejects)."""
    assert main(["check", TINY, "--set", "finetune.trl.learning_rate=1e-4"]) == 0
    assert capsys.readouterr().err == ""
    assert load_params(TINY, ["finetune.trl.learning_rate=1e-4"]).finetune.trl["learning_rate"] == 1e-4
    assert load_params(TINY, ["finetune.trl.learning_rate=5E-5"]).finetune.trl["learning_rate"] == 5e-5


# The third probe: twenty edits, each refused in one line naming the key and the fix, none echoing a secret.
# (overrides or a file's text, text the one error line contains, text it must not contain)
SECRET = "sk-SECRET-7f3a"
_OPENAI = ["model.backend=openai"]
PROBE = {
    "url_userinfo": (
        [*_OPENAI, f"model.base_url=http://user:{SECRET}@127.0.0.1:9/v1"],
        "model.base_url: http://127.0.0.1:9/v1 carries a credential (userinfo (user:password@))",
    ),
    "url_query_api_key": (
        [*_OPENAI, f"model.base_url=http://127.0.0.1:9/v1?api_key={SECRET}"],
        "carries a credential (query parameter 'api_key')",
    ),
    "url_query_token_in_list": (
        [*_OPENAI, f"model.base_url=[http://127.0.0.1:9/v1, 'https://h/v1?access_token={SECRET}']"],
        "https://h/v1 carries a credential (query parameter 'access_token')",
    ),
    "url_role_signed": (
        [f"models={{nli: {{backend: openai, base_url: 'https://h/v1?sig={SECRET}'}}}}"],
        "models.nli.base_url: https://h/v1 carries a credential (query parameter 'sig')",
    ),
    "url_query_other": (
        [*_OPENAI, "model.base_url=http://127.0.0.1:9/v1?debug=1"],
        "a base URL has no query or fragment",
    ),
    "url_not_http": ([*_OPENAI, "model.base_url=ftp://127.0.0.1/v1"], "is not an http(s) URL"),
    "key_over_plain_http": (
        [*_OPENAI, "model.base_url=http://node7:8000/v1", "model.api_key_env=AGORA_KEY"],
        "is plain http to another machine, so the API key (AGORA_KEY) would cross the network",
    ),
    "key_value_as_name": (
        [*_OPENAI, "model.base_url=http://127.0.0.1:9/v1", f"model.api_key_env={SECRET}"],
        "model.api_key_env: String should match pattern",
    ),
    "n_boot_huge": (["n_boot=1000000000"], "n_boot: Input should be less than or equal to 100000"),
    "neighbour_k_huge": (["references.neighbour_k=1000000"], "references.neighbour_k"),
    "neighbour_k_above_countries": (["references.neighbour_k=900"], "other countries in"),
    "min_shared_huge": (["references.min_shared=1000000000"], "references.min_shared"),
    "timeout_huge": (["model.timeout_s=1e9"], "model.timeout_s"),
    "retry_after_negative": (["model.retry_after_max_s=-1"], "model.retry_after_max_s"),
    "response_size_zero": (["model.max_response_mb=0"], "model.max_response_mb"),
    "concurrency_huge": (["model.max_concurrency=100000"], "model.max_concurrency"),
    "cell_timeout_zero": (["cell_timeout_s=0"], "cell_timeout_s"),
    "set_alias": (["model.batch_size=*size"], "alias *size (params files use no YAML aliases)"),
}
_BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else 'lol'}]\n"
        for prev, name in zip([None, *"abcdefghi"], "abcdefghij")
    )
    + "profile: t\n"
)
PROBE_FILES = {
    # nine aliases nested ten deep (9^10 nodes), then a valid profile: once a hang past a minute
    "alias_bomb": (_BOMB, "alias *a (params files use no YAML aliases) at line 2; fix: write the value out"),
    "nested_deep": ("profile: t\nmodel: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels deep"),
}


@pytest.mark.parametrize("case", sorted(PROBE))
def test_third_probe_edit_is_one_line(case, capsys, shared_data):
    overrides, expected = PROBE[case]
    rc, err = _check(["--offline", TINY, *(a for o in overrides for a in ("--set", o))], capsys)
    _assert_one_error(rc, err, expected)
    assert SECRET not in err[0]


@pytest.mark.parametrize("case", sorted(PROBE_FILES))
def test_third_probe_file_fails_in_one_line_within_a_second(case, tmp_path, capsys):
    path = tmp_path / f"{case}.yaml"
    path.write_text(PROBE_FILES[case][0])
    start = time.perf_counter()
    rc, err = _check([str(path)], capsys)
    assert time.perf_counter() - start < 1.0
    _assert_one_error(rc, err, PROBE_FILES[case][1])


def test_third_probe_counts_twenty_edits():
    assert len(PROBE) + len(PROBE_FILES) == 20


def test_a_file_of_many_megabytes_fails_before_it_is_parsed(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text("profile: t\n" + "# padding\n" * 200_000)
    start = time.perf_counter()
    rc, err = _check([str(path)], capsys)
    assert time.perf_counter() - start < 1.0
    _assert_one_error(rc, err, "more than a params file holds")
