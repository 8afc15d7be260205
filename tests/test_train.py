"""Training package: records from traces, the four LoRA trainers on the tiny model, resume, CLI, speed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kit.agents import culture_instruction
from kit.config import FinetuneParams, ModelParams, Params
from kit.train.records import SFT_TARGET, preference_records, sft_records, split_records, to_dataset

ROOT = Path(__file__).resolve().parents[1]


def trace(
    tid: str,
    *,
    consensus=("We agree to respect elders and youth alike.", "Both sides share duties fairly."),
    responses=("Elders decide.", "Youth decide."),
    converged=True,
    failed=False,
    statements=None,
    method="ncn",
) -> dict:
    rounds = [{"round": 1, "statements": list(s)} for s in (statements or [])]
    return {
        "id": tid,
        "method": method,
        "topic": {"id": f"topic-{tid}", "text": f"Who should decide? ({tid})", "source": "test"},
        "agents": [
            {"name": "a", "culture": "Japan", "kind": "described"},
            {"name": "b", "culture": "Brazil", "kind": "described"},
        ],
        "initial": [{"opinion": "o", "guideline": "g", "response": r} for r in responses],
        "rounds": rounds,
        "consensus": list(consensus),
        "rounds_used": len(rounds),
        "converged": converged,
        "failed": failed,
        "parse_failures": 0,
    }


# --- records ------------------------------------------------------------------------------------


def test_preference_records_format_filters_and_counts():
    good = trace("t1")
    dup = copy.deepcopy(good) | {"id": "t1-again"}
    traces = [
        good,
        trace("t2", failed=True),
        trace("t3", converged=False),
        trace(
            "t4",
            consensus=("The same text as before.", "A different text this time."),
            responses=("The same text as before.", "Other."),
        ),
        trace("t5", consensus=("", "The consensus that is kept.")),
        dup,
        # a consensus statement the evaluation leaves out trains nothing: markup, or the other side's opening copied
        trace("t6", consensus=("##\n##\n##", "Both sides share duties fairly.")),
        trace(
            "t7",
            consensus=("Youth decide what is best for all.", "Both sides share duties fairly."),
            responses=("Elders decide.", "Youth decide what is best for all."),
        ),
    ]
    records, counts = preference_records(traces)
    assert counts == {
        "traces": 8,
        "kept": 4,
        "dropped_failed": 1,
        "dropped_not_converged": 1,
        "dropped_identical": 1,
        "dropped_empty": 1,
        "dropped_duplicate": 2,
        "dropped_degenerate": 2,
    }
    assert [r["id"] for r in records] == ["t1:0", "t1:1", "t4:1", "t5:1"]
    r = records[1]
    assert r["prompt"] == [
        {"role": "system", "content": culture_instruction("Brazil")},
        {"role": "user", "content": "Who should decide? (t1)"},
    ]
    assert r["chosen"] == [{"role": "assistant", "content": "Both sides share duties fairly."}]
    assert r["rejected"] == [{"role": "assistant", "content": "Youth decide."}]
    assert r["culture"] == "Brazil" and r["topic"] == "topic-t1"
    # Without the convergence requirement the non-converged trace contributes both agents.
    _, loose = preference_records(traces, require_converged=False)
    assert loose["kept"] == 6 and "dropped_not_converged" not in loose and loose["dropped_degenerate"] == 2


def test_records_match_trl_conversational_format(tiny_backend):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    records, _ = preference_records([trace("t1")])
    rendered = maybe_apply_chat_template(
        {k: records[0][k] for k in ("prompt", "chosen", "rejected")}, tiny_backend.tokenizer
    )
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

    p, pc, pr = (
        n(r[0]["prompt"], True),
        n(r[0]["prompt"] + r[0]["chosen"]),
        n(r[0]["prompt"] + r[0]["rejected"]),
    )
    assert record_tokens(tok, r[0]) == pc + pr - p
    assert record_tokens(tok, r[0], max_length=p) == p  # both sequences cut back to the prompt
    s, _ = sft_records([trace("t1", statements=[("s0", "s1")])])
    assert record_tokens(tok, s[0]) == n(s[0]["messages"])


def test_sft_records_use_last_statement_then_consensus():
    t = trace("t1", statements=[("first A", "first B"), ("last A", "")])
    records, counts = sft_records([t, trace("t2"), trace("t3", failed=True)])
    assert counts == {"traces": 3, "kept": 2, "dropped_failed": 1, "dropped_no_reasoning": 2}
    a, b = records
    assert a["messages"][:2] == [
        {"role": "system", "content": culture_instruction("Japan")},
        {"role": "user", "content": "Who should decide? (t1)"},
    ]
    assert a["messages"][2] == {
        "role": "assistant",
        "content": SFT_TARGET.format(
            reasoning="last A", consensus="We agree to respect elders and youth alike."
        ),
    }
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
CFG = FinetuneParams(
    trl={
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "max_length": 128,
        "learning_rate": 5e-2,
        "warmup_steps": 0.0,
        "logging_steps": 1,
    }
)


@pytest.fixture(scope="module")
def pref():
    records, _ = preference_records([trace("t1"), trace("t2", consensus=("Fair shares.", "Mutual respect."))])
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pref):
    from kit.train import train

    sft, _ = sft_records([trace("t1", statements=[("s0", "s1")])])
    out = tmp_path_factory.mktemp("train")
    return {
        m: train(
            m,
            sft if m == "sft" else pref[:2],
            pref[2:] if m != "sft" else [],
            "tiny-random",
            out / m,
            CFG,
            seed=0,
        )
        for m in ("dpo", "simpo", "orpo", "sft")
    }


def test_each_method_saves_a_peft_adapter_and_logs(trained):
    for method, result in trained.items():
        out = result.adapter_dir.parent
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
            p.name for p in result.adapter_dir.iterdir()
        }, method
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


def test_finished_runs_drop_checkpoints_failed_ones_resume_and_fingerprints_decide(
    tmp_path, pref, monkeypatch
):
    import kit.train.trainers as trainers
    from kit.train import train

    two_steps = CFG.model_copy(update={"trl": {**CFG.trl, "num_train_epochs": 2}})
    meter = trainers._meter

    def failing_meter():
        m = meter()
        original = m.on_step_end

        def on_step_end(args, state, control, **kw):
            original(args, state, control, **kw)
            if state.global_step == 2:
                raise RuntimeError("killed")

        m.on_step_end = on_step_end
        return m

    monkeypatch.setattr(trainers, "_meter", failing_meter)
    with pytest.raises(RuntimeError, match="killed"):
        train("orpo", pref[:2], [], "tiny-random", tmp_path, two_steps)
    assert (tmp_path / "checkpoint-1").is_dir()  # a failed run keeps its checkpoints for the resume
    assert json.loads((tmp_path / "fingerprint.json").read_text())["finished"] is False
    monkeypatch.setattr(trainers, "_meter", meter)
    # a newer checkpoint half-written by a kill: its state cut short, its weights a stub
    broken = tmp_path / "checkpoint-10"
    broken.mkdir()
    (broken / "trainer_state.json").write_text('{"global_step": 1')
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 8)

    done = train("orpo", pref[:2], [], "tiny-random", tmp_path, two_steps)
    assert not broken.exists()
    assert (
        done.resumed_from.endswith("checkpoint-1") and done.global_step == 2 and len(done.step_seconds) == 1
    )
    assert not list(tmp_path.glob("checkpoint-*"))  # optimizer state gone; the adapter stays
    assert (done.adapter_dir / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "fingerprint.json").read_text())["finished"] is True

    again = train("orpo", pref[:2], [], "tiny-random", tmp_path, two_steps)
    assert again.reused and again.global_step == 2 and again.adapter_dir == done.adapter_dir

    other = train("orpo", pref[:1], [], "tiny-random", tmp_path, two_steps)  # other records: trained anew
    assert not other.reused and other.resumed_from is None and other.global_step == 2


def test_bad_inputs(pref, tmp_path):
    from kit.train import train

    with pytest.raises(ValueError, match="unknown training method"):
        train("ppo", pref, [], "tiny-random", tmp_path, CFG)
    with pytest.raises(ValueError, match="no training records"):
        train("dpo", [], [], "tiny-random", tmp_path, CFG)
    mine = tmp_path / "mine"  # a folder the kit did not make is never cleared for a run
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds files the kit did not write"):
        train("dpo", pref, [], "tiny-random", mine, CFG)
    assert (mine / "notes.txt").read_text() == "keep me"


# --- CLI, speed, accelerate configs -------------------------------------------------------------


def _params_file(tmp_path: Path, **finetune) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profile": "t",
                "runs_dir": str(tmp_path / "runs"),
                "model": {"name": "tiny-random"},
                "finetune": {
                    "trl": {
                        "num_train_epochs": 1,
                        "per_device_train_batch_size": 2,
                        "max_length": 128,
                        "logging_steps": 1,
                    },
                    "eval_fraction": 0.0,
                    **finetune,
                },
            }
        )
    )
    return path


def test_cli_trains_each_source_method_with_the_notebooks_filters(tmp_path, capsys):
    from kit.train.cli import main

    data = tmp_path / "traces.jsonl"
    traces = [trace(f"ncn:t{i}", method="ncn", statements=[("s0", "s1")]) for i in range(2)] + [
        trace("debate:t0", method="debate", statements=[("d0", "d1")]),
        trace("debate:t1", method="debate", statements=[("d2", "d3")], converged=False),  # filtered out
        trace("consultancy:t0", method="consultancy", statements=[("c0", "c1")]),
    ]  # not a source
    data.write_text("".join(json.dumps(t) + "\n" for t in traces))
    params = _params_file(tmp_path, from_methods=["ncn", "debate"])
    assert main(["sft", "--params", str(params), "--data", str(data), "--output", str(tmp_path / "o")]) == 0
    adapters = [Path(line) for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    assert adapters == [
        tmp_path / "o" / "ncn" / "sft" / "adapter",
        tmp_path / "o" / "debate" / "sft" / "adapter",
    ]
    assert all((a / "adapter_model.safetensors").exists() for a in adapters)
    config = json.loads((tmp_path / "o" / "debate" / "sft" / "train_config.json").read_text())
    assert config["n_train"] == 2  # the converged debate trace's two agents; never the consultancy one

    records, _ = preference_records([trace("r1")])
    ready = tmp_path / "records.jsonl"
    ready.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["dpo", "--params", str(params), "--data", str(ready), "--output", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "r" / "dpo" / "adapter")
    # No data given and no study run: exit 2 with one line saying what to run first.
    assert main(["dpo", "--params", str(params)]) == 2
    assert "run notebook 01" in capsys.readouterr().err


def test_cli_data_funnel_matches_the_notebooks(tmp_path):
    from kit.config import load_params
    from kit.train.cli import training_data
    from kit.train.records import training_sets

    params = load_params(_params_file(tmp_path, from_methods=["ncn", "debate"]))
    traces = [trace(f"ncn:t{i}", method="ncn") for i in range(3)] + [trace("debate:t0", method="debate")]
    cli = training_data("dpo", params, traces)
    notebook = training_sets(traces, params.finetune, params.seed)
    assert cli == {source: notebook[(source, "dpo")] for source in ("ncn", "debate")}
    with pytest.raises(ValueError, match="neither a trace nor a dpo record"):
        training_data("dpo", params, [{"id": "x", "prompt": []}])


def test_train_benchmark_reports_rate_and_memory():
    from kit.bench.train import STEPS, run

    params = Params(
        profile="t",
        model=ModelParams(name="tiny-random"),
        finetune=FinetuneParams(trl={"per_device_train_batch_size": 1, "max_length": 128}),
    )
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


def test_recipes_give_each_method_its_loss_and_parameters(tmp_path):
    """The configs trl gets: SimPO is CPO with the simpo loss and no BC term, ORPO's beta is λ, DPO's
    loss is sigmoid; recipe keys reach every method whose config has them; the kit's CPU defaults."""
    from kit.train.recipes import config_kwargs, training_config

    trl = {"beta": 0.2, "learning_rate": 3e-4, "max_length": 256}
    dpo = training_config("dpo", trl, {}, str(tmp_path), 5, has_eval=True)
    simpo = training_config("simpo", trl, {"simpo_gamma": 0.8}, str(tmp_path), 5, has_eval=False)
    orpo = training_config("orpo", trl, {}, str(tmp_path), 5, has_eval=False)
    sft = training_config("sft", trl, {}, str(tmp_path), 5, has_eval=False)
    assert type(dpo).__name__ == "DPOConfig" and dpo.loss_type == ["sigmoid"] and dpo.beta == 0.2
    assert type(simpo).__name__ == "CPOConfig" and simpo.loss_type == "simpo" and simpo.cpo_alpha == 0.0
    assert simpo.simpo_gamma == 0.8 and simpo.beta == 0.2
    assert type(orpo).__name__ == "ORPOConfig" and orpo.beta == 0.2  # λ
    assert type(sft).__name__ == "SFTConfig" and not hasattr(sft, "beta")
    for config in (dpo, simpo, orpo, sft):
        assert (
            config.learning_rate == 3e-4 and config.max_length == 256 and config.seed == config.data_seed == 5
        )
        assert not config.bf16 and not config.gradient_checkpointing and config.lr_scheduler_type == "cosine"
        assert config.warmup_steps == 0.1 and config.report_to == [] and config.save_total_limit == 2
    assert dpo.eval_strategy == "epoch" and sft.eval_strategy == "no"
    # defaults per method, and a fixed key the recipe cannot change
    assert config_kwargs("simpo", {}, {}, str(tmp_path), 0, False)["simpo_gamma"] == 0.5
    assert (
        config_kwargs("simpo", {"loss_type": "sigmoid"}, {}, str(tmp_path), 0, False)["loss_type"] == "simpo"
    )
    assert config_kwargs("dpo", {}, {}, str(tmp_path), 0, False)["per_device_eval_batch_size"] == 2


@pytest.mark.parametrize(
    "section, message",
    [
        ({"trl": {"learning_rat": 0.1}}, "finetune.trl.learning_rat: not a key of DPOConfig"),
        (
            {"per_method": {"dpo": {"simpo_gamma": 1}}},
            "finetune.per_method.dpo.simpo_gamma: not a key of DPOConfig",
        ),
        ({"per_method": {"simpo": {"loss_type": "sigmoid"}}}, "fixed by the kit"),
        ({"lora": {"rank": 4}}, "finetune.lora.rank: not a peft LoraConfig key"),
        ({"trl": {"lr_scheduler_type": "wobbly"}}, "finetune.trl (dpo): wobbly is not a valid SchedulerType"),
        ({"per_method": {"ppo": {}}}, "per_method names ['ppo']"),
    ],
)
def test_bad_recipes_fail_in_one_line_before_training(section, message):
    from kit.config import ParamsError, validate

    with pytest.raises(
        ParamsError,
        match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
    ) as err:
        validate({"profile": "t", "finetune": section})
    assert "\n" not in str(err.value)


def test_a_nan_loss_or_gradient_marks_the_run_diverged():
    from kit.train.trainers import diverged_at

    history = [
        {"step": 1, "loss": 2.0, "grad_norm": 1.5},
        {"step": 2, "loss": 1.8, "grad_norm": float("nan")},
        {"step": 3, "loss": float("nan")},
        {"train_runtime": 3.0},
    ]
    assert diverged_at(history)["step"] == 2
    assert diverged_at([h for h in history if h.get("step") != 2])["step"] == 3
    assert diverged_at(history[:1] + history[3:]) is None


def test_sources_train_on_equal_sets_and_consultancy_is_not_filtered_as_unconverged():
    from kit.train.records import equalise_sources, training_sets

    finetune = FinetuneParams(
        methods=["sft"],
        from_methods=["ncn", "debate", "consultancy"],
        eval_fraction=0.0,
        require_converged=True,
    )
    said = [("We share the duty.", "We share it too.")]
    traces = (
        [trace(f"ncn:t{i}", method="ncn", statements=said) for i in range(3)]
        + [
            trace("debate:t0", method="debate", statements=said),
            trace("debate:t1", method="debate", statements=said, converged=False),
        ]
        # consultancy has no stopping rule: its converged flag is always false and never filters it
        + [
            trace(f"consultancy:t{i}", method="consultancy", statements=said, converged=False)
            for i in range(2)
        ]
    )
    sets = training_sets(traces, finetune, seed=0)
    sizes = {source: len(tr) for (source, _), (tr, _, _) in sets.items()}
    assert sizes == {"ncn": 2, "debate": 2, "consultancy": 2}  # each agent of the one converged debate trace
    assert (
        sets[("ncn", "sft")][2]["subsampled_from"] == 6
        and "subsampled_from" not in sets[("debate", "sft")][2]
    )
    unequal = training_sets(traces, finetune.model_copy(update={"equal_sources": False}), seed=0)
    assert len(unequal[("ncn", "sft")][0]) == 6 and len(unequal[("consultancy", "sft")][0]) == 4
    # the cut is a seeded hash order, a subset in input order; another seed draws another subset
    kept = sets[("ncn", "sft")][0]
    full = unequal[("ncn", "sft")][0]
    assert [r for r in full if r in kept] == kept
    other = equalise_sources(unequal, seed=1)[("ncn", "sft")][0]
    assert len(other) == 2
    # an empty source stays empty and does not empty the others
    empty = {**unequal, ("debate", "sft"): ([], [], {})}
    assert len(equalise_sources(empty, 0)[("ncn", "sft")][0]) == 4


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    import torch
    from safetensors.torch import save_file

    from kit.train.trainers import last_complete_checkpoint

    def checkpoint(step: int, state: str | None = '{"global_step": 1}', weights: bool = True):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
        if weights:
            save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
        return folder

    assert last_complete_checkpoint(tmp_path) is None
    two, nine = checkpoint(2), checkpoint(9)  # 9 < 10 although "checkpoint-9" > "checkpoint-10" as text
    checkpoint(10, state='{"global_step"')  # cut short by a kill
    checkpoint(11, weights=False)
    checkpoint(12, state=None)
    assert last_complete_checkpoint(tmp_path) == nine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-9"]
    (nine / "adapter_model.safetensors").write_bytes(b"\x00" * 16)  # a full disk's stub
    assert last_complete_checkpoint(tmp_path) == two


def test_trl_group_advantages_are_the_weighted_rewards_centred_on_the_group_and_scaled_by_its_std():
    import numpy as np

    from kit.train.trainers import trl_group_advantages

    parts = {"value_match": [0.5, 0.0, 1.0, 0.25], "format": [1.0, 1.0, 0.0, 1.0]}
    weights = {"value_match": 1.0, "format": 0.5}
    total = np.array([0.5 + 0.5, 0.0 + 0.5, 1.0 + 0.0, 0.25 + 0.5])  # by hand
    centred = total - total.mean()
    sample_std = np.sqrt(np.sum(centred**2) / (len(total) - 1))  # Bessel-corrected, as trl's nanstd
    assert trl_group_advantages(parts, weights) == pytest.approx(centred / (sample_std + 1e-4), abs=1e-5)
    assert trl_group_advantages(parts, weights, {"scale_rewards": "none"}) == pytest.approx(centred, abs=1e-6)
    # a group whose completions all score alike teaches nothing: every advantage 0
    assert trl_group_advantages({"format": [1.0, 1.0, 1.0]}, {"format": 1.0}) == pytest.approx(
        [0.0, 0.0, 0.0]
    )
    with pytest.raises(ValueError, match="GRPO group"):
        trl_group_advantages({"format": [1.0]}, {"format": 1.0})
