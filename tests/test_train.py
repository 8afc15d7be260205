"""Training package: records from traces, the four LoRA trainers on the tiny model, resume, CLI, speed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kit.agents import culture_instruction
from kit.config import FinetuneParams, ModelParams, Params, TrainRecipe
from kit.train.records import SFT_TARGET, preference_records, sft_records, split_records, to_dataset

ROOT = Path(__file__).resolve().parents[1]


def trace(tid: str, *, consensus=("We agree to respect elders and youth alike.", "Both sides share duties fairly."),
          responses=("Elders decide.", "Youth decide."), converged=True, failed=False, statements=None,
          method="ncn") -> dict:
    rounds = [{"round": 1, "statements": list(s)} for s in (statements or [])]
    return {
        "id": tid, "method": method, "topic": {"id": f"topic-{tid}", "text": f"Who should decide? ({tid})", "source": "test"},
        "agents": [{"name": "a", "culture": "Japan", "kind": "described"}, {"name": "b", "culture": "Brazil", "kind": "described"}],
        "initial": [{"opinion": "o", "guideline": "g", "response": r} for r in responses],
        "rounds": rounds, "consensus": list(consensus), "rounds_used": len(rounds),
        "converged": converged, "failed": failed, "parse_failures": 0,
    }


# --- records ------------------------------------------------------------------------------------

def test_preference_records_format_filters_and_counts():
    good = trace("t1")
    dup = copy.deepcopy(good) | {"id": "t1-again"}
    traces = [
        good,
        trace("t2", failed=True),
        trace("t3", converged=False),
        trace("t4", consensus=("Same text.", "Different."), responses=("Same text.", "Other.")),
        trace("t5", consensus=("", "Kept consensus.")),
        dup,
    ]
    records, counts = preference_records(traces)
    assert counts == {"traces": 6, "kept": 4, "dropped_failed": 1, "dropped_not_converged": 1,
                      "dropped_identical": 1, "dropped_empty": 1, "dropped_duplicate": 2}
    assert [r["id"] for r in records] == ["t1:0", "t1:1", "t4:1", "t5:1"]
    r = records[1]
    assert r["prompt"] == [{"role": "system", "content": culture_instruction("Brazil")},
                           {"role": "user", "content": "Who should decide? (t1)"}]
    assert r["chosen"] == [{"role": "assistant", "content": "Both sides share duties fairly."}]
    assert r["rejected"] == [{"role": "assistant", "content": "Youth decide."}]
    assert r["culture"] == "Brazil" and r["topic"] == "topic-t1"
    # Without the convergence requirement the non-converged trace contributes both agents.
    _, loose = preference_records(traces, require_converged=False)
    assert loose["kept"] == 6 and "dropped_not_converged" not in loose


def test_records_match_trl_conversational_format(tiny_backend):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    records, _ = preference_records([trace("t1")])
    rendered = maybe_apply_chat_template({k: records[0][k] for k in ("prompt", "chosen", "rejected")}, tiny_backend.tokenizer)
    assert is_conversational(records[0])
    assert rendered["prompt"].endswith("<|im_start|>assistant\n") and "Japan" in rendered["prompt"]
    assert rendered["chosen"].startswith("We agree")
    sft, _ = sft_records([trace("t1", statements=[("s0", "s1")])])
    assert is_conversational(sft[0])


def test_record_tokens_count_prompt_once_and_cap_each_sequence(tiny_backend):
    from kit.train.trainers import record_tokens

    tok = tiny_backend.tokenizer
    r, _ = preference_records([trace("t1")])

    def n(msgs, gen=False):
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    p, pc, pr = n(r[0]["prompt"], True), n(r[0]["prompt"] + r[0]["chosen"]), n(r[0]["prompt"] + r[0]["rejected"])
    assert record_tokens(tok, r[0]) == pc + pr - p
    assert record_tokens(tok, r[0], max_length=p) == p  # both sequences cut back to the prompt
    s, _ = sft_records([trace("t1", statements=[("s0", "s1")])])
    assert record_tokens(tok, s[0]) == n(s[0]["messages"])


def test_sft_records_use_last_statement_then_consensus():
    t = trace("t1", statements=[("first A", "first B"), ("last A", "")])
    records, counts = sft_records([t, trace("t2"), trace("t3", failed=True)])
    assert counts == {"traces": 3, "kept": 2, "dropped_failed": 1, "dropped_no_reasoning": 2}
    a, b = records
    assert a["messages"][:2] == [{"role": "system", "content": culture_instruction("Japan")},
                                 {"role": "user", "content": "Who should decide? (t1)"}]
    assert a["messages"][2] == {"role": "assistant", "content": SFT_TARGET.format(
        reasoning="last A", consensus="We agree to respect elders and youth alike.")}
    # Agent B said nothing in the last round: its latest non-empty statement is used.
    assert b["messages"][2]["content"].startswith("first B\n\n")


def test_split_is_deterministic_stable_and_roughly_proportional():
    records = [{"id": f"r{i}"} for i in range(1000)]
    train, held = split_records(records, 0.2, seed=0)
    assert (train, held) == split_records(records, 0.2, seed=0)
    assert len(train) + len(held) == 1000 and 150 < len(held) < 250
    # Adding records never moves an existing one; another seed gives another split.
    _, held_more = split_records(records + [{"id": "new"}], 0.2, seed=0)
    assert {r["id"] for r in held} <= {r["id"] for r in held_more}
    assert split_records(records, 0.2, seed=1)[1] != held
    assert split_records(records, 0.0)[1] == []
    with pytest.raises(ValueError, match="eval_fraction"):
        split_records(records, 1.0)


def test_to_dataset_keeps_columns():
    records, _ = preference_records([trace("t1")])
    ds = to_dataset(records)
    assert len(ds) == 2 and {"prompt", "chosen", "rejected", "id"} <= set(ds.column_names)
    with pytest.raises(ValueError, match="no records"):
        to_dataset([])


# --- trainers -----------------------------------------------------------------------------------

# Warmup off and a large rate, so one step visibly moves the adapter.
CFG = FinetuneParams(trl={"num_train_epochs": 1, "per_device_train_batch_size": 2, "max_length": 128,
                          "learning_rate": 5e-2, "warmup_steps": 0.0, "logging_steps": 1})


@pytest.fixture(scope="module")
def pref():
    records, _ = preference_records([trace("t1"), trace("t2", consensus=("Fair shares.", "Mutual respect."))])
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pref):
    from kit.train import train

    sft, _ = sft_records([trace("t1", statements=[("s0", "s1")])])
    out = tmp_path_factory.mktemp("train")
    return {m: train(m, sft if m == "sft" else pref[:2], pref[2:] if m != "sft" else [], "tiny-random", out / m, CFG, seed=0)
            for m in ("dpo", "simpo", "orpo", "sft")}


def test_each_method_saves_a_peft_adapter_and_logs(trained):
    for method, result in trained.items():
        out = result.adapter_dir.parent
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in result.adapter_dir.iterdir()}, method
        assert json.loads((out / "log_history.json").read_text()) == result.log_history
        config = json.loads((out / "train_config.json").read_text())
        assert config["method"] == method and config["global_step"] == result.global_step == 1
        assert result.train_tokens > 0 and result.seconds > 0 and any("loss" in e for e in result.log_history)
    adapter_cfg = json.loads((trained["dpo"].adapter_dir / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 8 and adapter_cfg["lora_alpha"] == 16  # the kit's LoRA defaults


def test_trained_adapters_load_in_hf_backend_and_change_scores(trained, pref):
    from kit.llm.base import ScoreRequest
    from kit.llm.hf_backend import HFBackend

    backend = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=4)
    msgs, answer = pref[0]["prompt"], pref[0]["chosen"][0]["content"]
    adapters = [None] + [str(r.adapter_dir) for r in trained.values()]
    scores = backend.score([ScoreRequest(msgs, answer, adapter=a) for a in adapters])
    base = scores[0]
    for method, s in zip(trained, scores[1:]):
        assert len(s) == len(base)
        assert max(abs(x - y) for x, y in zip(s, base)) > 1e-3, method


def test_resume_continues_from_last_checkpoint(tmp_path, pref):
    from kit.train import train

    first = train("orpo", pref[:2], [], "tiny-random", tmp_path, CFG)
    assert first.global_step == 1 and first.resumed_from is None and (tmp_path / "checkpoint-1").is_dir()
    more = train("orpo", pref[:2], [], "tiny-random", tmp_path, CFG.model_copy(update={"trl": {**CFG.trl, "num_train_epochs": 2}}))
    assert more.resumed_from.endswith("checkpoint-1") and more.global_step == 2
    assert len(more.step_seconds) == 1  # only the new step ran
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert json.loads((tmp_path / "train_config.json").read_text())["resumed_from"].endswith("checkpoint-1")


def test_bad_inputs(pref, tmp_path):
    from kit.train import train

    with pytest.raises(ValueError, match="unknown training method"):
        train("ppo", pref, [], "tiny-random", tmp_path, CFG)
    with pytest.raises(ValueError, match="no training records"):
        train("dpo", [], [], "tiny-random", tmp_path, CFG)


# --- CLI, speed, accelerate configs -------------------------------------------------------------

def _params_file(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "profile": "t", "runs_dir": str(tmp_path / "runs"), "model": {"name": "tiny-random"},
        "finetune": {"trl": {"num_train_epochs": 1, "per_device_train_batch_size": 2, "max_length": 128,
                             "logging_steps": 1}, "eval_fraction": 0.0},
    }))
    return path


def test_cli_trains_from_traces(tmp_path, capsys):
    from kit.train.cli import main

    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(trace(f"t{i}", statements=[("s0", "s1")])) + "\n" for i in range(2)))
    assert main(["sft", "--params", str(_params_file(tmp_path)), "--data", str(data), "--output", str(tmp_path / "o")]) == 0
    adapter = Path(capsys.readouterr().out.strip().splitlines()[-1])  # the trainer prints its logs before
    assert adapter == tmp_path / "o" / "adapter" and (adapter / "adapter_model.safetensors").exists()
    # Missing data: exit 2 with one line naming the file.
    assert main(["dpo", "--params", str(_params_file(tmp_path))]) == 2
    assert "negotiations.jsonl" in capsys.readouterr().err


def test_train_benchmark_reports_rate_and_memory():
    from kit.bench.train import STEPS, run

    params = Params(profile="t", model=ModelParams(name="tiny-random"),
                    finetune=FinetuneParams(trl={"per_device_train_batch_size": 1, "max_length": 128}))
    out = run(params)
    assert out["steps"] == STEPS and out["train_tok_s"] > 0 and out["tokens_per_step"] > 0
    assert 0 < out["peak_rss_gb"] < 64


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("zero3", "DEEPSPEED")])
def test_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "params" / "accelerate" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] == kind and raw["num_machines"] == 1 and raw["mixed_precision"] == "no"
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == kind
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_init_flag"]
