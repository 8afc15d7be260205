"""Cultural Palette: the Hofstede review parse, preference records, the mergekit recipes the kit writes,
the router prompts, the meta agent's step order, Modular Pluralism's rows and Table 1's averages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import jensenshannon

from kit.data import OpinionItem, continent_of
from kit.data.cultures import PALETTE_CONTINENTS
from kit.engine import Job, run_jobs
from kit.llm.base import Backend, ChoiceResult
from kit.palette.prompts import CONTINENTS, parse_feedback

ROOT = Path(__file__).resolve().parents[1]


# --- the cross-continent review -------------------------------------------------------------------

GRID = """Here is my review.
1. **Power Distance (PDI):** elders lead, the village follows.
Individualism vs. Collectivism: community first
- MAS: care over competition
Uncertainty avoidance - tradition: risk is met together
Long-term orientation: keeps the old ways
IVR: celebration is shared
Confusions: the part on tea ceremonies is Asian, not African"""


def test_review_grid_is_read_in_any_usual_spelling():
    review = parse_feedback(GRID)
    assert list(review.dimensions) == [
        "Power Distance",
        "Individualism",
        "Masculinity",
        "Uncertainty Avoidance",
        "Long-Term Orientation",
        "Indulgence",
    ]
    assert review.dimensions["Power Distance"] == "elders lead, the village follows."
    assert review.dimensions["Uncertainty Avoidance"] == "risk is met together"
    assert review.confusions.startswith("the part on tea ceremonies") and review.review == GRID


def test_a_review_without_enough_dimensions_is_unreadable_unless_prose_is_accepted():
    prose = "The answer reads well but mixes in European ideas about individual freedom."
    assert parse_feedback(prose) is None
    assert parse_feedback("Power distance: fine\nIndulgence: fine\nMasculinity: ok") is None  # three of six
    assert parse_feedback(prose, min_dimensions=0).review == prose  # small models: prose reviews count
    assert parse_feedback("ok", min_dimensions=0, min_words=3) is None


# --- preference records ---------------------------------------------------------------------------


def record(qid: str, final: dict[str, str | None]) -> dict:
    return {"id": qid, "query": f"Query {qid}?", "final": {c: final.get(c) for c in CONTINENTS}}


def test_each_continent_gets_four_pairs_its_own_answer_chosen():
    from kit.palette.synthesis import preference_records

    prefs = preference_records(
        [
            record("q1", {c: f"{c} answer" for c in CONTINENTS}),
            record("q2", {"Asia": "a", "Europe": "e", "Africa": None}),
        ]
    )
    assert {c: len(v) for c, v in prefs.items()} == {
        "Africa": 4,
        "America": 4,
        "Asia": 5,
        "Europe": 5,
        "Oceania": 4,
    }
    asia = [r for r in prefs["Asia"] if r["id"].startswith("q1")]
    assert {r["rejected"][0]["content"] for r in asia} == {f"{c} answer" for c in CONTINENTS if c != "Asia"}
    assert all(r["chosen"] == [{"role": "assistant", "content": "Asia answer"}] for r in asia)
    assert asia[0]["prompt"][0]["role"] == "system" and "Asia" in asia[0]["prompt"][0]["content"]
    assert asia[0]["prompt"][1] == {"role": "user", "content": "Query q1?"}
    # a continent dropped by validation gives no pair and is no one's rejected answer
    assert [r["id"] for r in prefs["Europe"] if r["id"].startswith("q2")] == ["q2:Europe:Asia"]


def test_validation_counts_add_up():
    from kit.palette.synthesis import validation_counts

    rec = record("q", {"Asia": "a"}) | {
        "dropped": {"response": ["Africa"], "feedback": ["America", "Europe"], "aggregation": ["Oceania"]}
    }
    assert validation_counts([rec]) == {
        "items": 5,
        "dropped_response": 1,
        "dropped_feedback": 2,
        "dropped_aggregation": 1,
        "kept": 1,
    }


# --- the recipes the kit writes -------------------------------------------------------------------

ADAPTERS = {c: f"/adapters/{c}" for c in CONTINENTS}


def test_ties_and_model_stock_recipes_render_to_mergekit_configs():
    from mergekit.config import MergeConfiguration

    from kit.palette.merges import render

    ties = render(ROOT / "params/merges/ties.yml", {"base": "/base", **ADAPTERS})
    assert ties == {
        "merge_method": "ties",
        "base_model": "/base",
        "parameters": {"normalize": True},
        "dtype": "bfloat16",
        "models": [
            {"model": f"/base+/adapters/{c}", "parameters": {"density": 0.5, "weight": 1.0}}
            for c in CONTINENTS
        ],
    }
    stock = render(ROOT / "params/merges/model_stock.yml", {"base": "/base", **ADAPTERS})
    assert stock["merge_method"] == "model_stock" and [m["model"] for m in stock["models"]] == [
        f"/base+/adapters/{c}" for c in CONTINENTS
    ]
    for config in (ties, stock):
        MergeConfiguration.model_validate(config)  # mergekit's own validation
    with pytest.raises(ValueError, match="unknown placeholder 'Oceania'"):
        render(
            ROOT / "params/merges/ties.yml",
            {"base": "/base", **{c: a for c, a in ADAPTERS.items() if c != "Oceania"}},
        )


def test_moe_recipe_has_one_expert_per_continent_routed_by_prompts_naming_it_and_its_countries():
    from mergekit.moe.config import MoEMergeConfig, is_bad_config

    from kit.palette.merges import render

    moe = render(ROOT / "params/merges/moe.yml", {"base": "/base", **{c: f"/merged/{c}" for c in CONTINENTS}})
    assert moe["gate_mode"] == "hidden" and moe["base_model"] == "/base" and moe["experts_per_token"] == 2
    assert [e["source_model"] for e in moe["experts"]] == [f"/merged/{c}" for c in CONTINENTS]
    for continent, expert in zip(CONTINENTS, moe["experts"]):
        prompts = " ".join(expert["positive_prompts"])
        assert continent in prompts and all(country in prompts for country in PALETTE_CONTINENTS[continent])
    assert not is_bad_config(MoEMergeConfig.model_validate(moe))


def test_router_probe_prompts_come_from_each_continents_countries():
    from kit.lessons.palette_agents import router_prompts

    prompts = router_prompts()
    assert list(prompts) == list(CONTINENTS)
    for continent, texts in prompts.items():
        assert len(texts) == len(PALETTE_CONTINENTS[continent])
        assert all(
            continent_of(next(c for c in PALETTE_CONTINENTS[continent] if c in t)) == continent for t in texts
        )


def test_a_bad_moe_recipe_is_one_line_not_an_exit(tmp_path):
    from kit.palette.merges import build_moe

    bad = tmp_path / "moe.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "base_model": "{base}",
                "gate_mode": "hidden",
                "experts_per_token": 9,
                "experts": [{"source_model": f"{{{c}}}", "positive_prompts": [c]} for c in CONTINENTS],
            }
        )
    )
    from kit.llm.models import resolve_model

    base = resolve_model("tiny-random").path
    with pytest.raises(ValueError, match="mergekit-moe refused"):
        build_moe(
            bad,
            base,
            {c: str(_adapter(tmp_path, c)) for c in CONTINENTS},
            tmp_path / "out",
            tmp_path / "cache",
        )


def _adapter(tmp_path: Path, name: str) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.llm.models import resolve_model

    out = tmp_path / "adapters" / name
    if not out.exists():
        model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random").path)
        get_peft_model(
            model, LoraConfig(r=2, target_modules=["gate_proj", "up_proj", "down_proj"])
        ).save_pretrained(out)
    return out


# --- the meta agent and the baselines, on a scripted backend --------------------------------------


class Scripted(Backend):
    """Records every call as (verb, model, requests); options answered from ``probs``."""

    identity = "scripted"

    def __init__(self, name: str, log: list, probs=(0.7, 0.2, 0.1)):
        self.name, self.log, self.probs = name, log, probs

    def generate(self, requests, params):
        self.log.append(("generate", self.name, list(requests)))
        return [f"{self.name} text {i}" for i, _ in enumerate(requests)]

    def score(self, requests):
        raise AssertionError

    def choice_probs(self, requests):
        self.log.append(("choose", self.name, list(requests)))
        return [ChoiceResult(dict(zip(r.labels, self.probs)), 0.9) for r in requests]


ITEM = OpinionItem("i", "q1", "Should children obey?", ("Yes", "No", "Depends"), "Kenya", (0.6, 0.3, 0.1))


def test_the_meta_agent_drafts_with_every_continent_then_regulates_and_decides_on_the_moe():
    from kit.palette.meta_agent import VARIANTS, palette_answer

    log: list = []
    base, moe = Scripted("base", log), Scripted("moe", log, probs=(0.1, 0.1, 0.8))
    jobs = {name: Job(name, palette_answer(v, "Kenya", ITEM, ADAPTERS, 8, 8)) for name, v in VARIANTS.items()}
    run_jobs(list(jobs.values()), base, models={"moe": moe})
    drafts = [call for call in log if call[0] == "generate" and call[1] == "base" and len(call[2]) == 5]
    assert len(drafts) == 1  # the three variants that draft share one draft step
    assert [r.adapter for r in drafts[0][2]] == [ADAPTERS[c] for c in CONTINENTS]
    assert jobs["palette"].result["p_gen"] == [0.1, 0.1, 0.8]  # decided by the MoE
    assert jobs["palette_no_moerges"].result["p_gen"] == [0.7, 0.2, 0.1]  # decided by the base model
    # regulation runs once on each meta model; no_selfreg hands the drafts over as they are
    regulated = [call for call in log if call[0] == "generate" and len(call[2]) == 1]
    assert sorted(call[1] for call in regulated) == ["base", "moe"]
    assert jobs["palette_no_selfreg"].result["memory"].startswith("[Africa] base text 0")
    assert jobs["palette_no_draft"].result["memory"] is None
    on_moe = [
        r.chat[-1]["content"] for call in log if call[0] == "choose" and call[1] == "moe" for r in call[2]
    ]
    assert sorted("Memory:" in text for text in on_moe) == [False, True, True]  # no_draft decides bare


def test_modular_distributional_averages_the_community_models():
    from kit.palette.baselines import row_program

    class PerAdapter(Scripted):
        def choice_probs(self, requests):
            out = []
            for r in requests:
                k = CONTINENTS.index(next(c for c, a in ADAPTERS.items() if a == r.adapter))
                out.append(ChoiceResult({"A": k / 10, "B": 1 - k / 10, "C": 0.0}, 0.5))
            return out

    job = Job("d", row_program("modular_distributional", [("Kenya", ITEM)], ADAPTERS, 8))
    run_jobs([job], PerAdapter("base", []))
    assert job.result[0]["p_gen"] == pytest.approx([0.2, 0.8, 0.0])  # mean of 0, .1, .2, .3, .4


def test_modular_steerable_reads_only_the_countrys_continent_comment():
    from kit.palette.baselines import row_program

    log: list = []
    jobs = [
        Job(row, row_program(row, [("Kenya", ITEM)], ADAPTERS, 8))
        for row in ("modular_overton", "modular_steerable")
    ]
    run_jobs(jobs, Scripted("base", log))
    comments = next(call for call in log if call[0] == "generate")
    assert len(comments[2]) == 5  # one comment per continent for the question, written once for both rows
    contexts = sorted(
        (r.chat[-1]["content"] for call in log if call[0] == "choose" for r in call[2]), key=len
    )
    assert [c.count("\n[") for c in contexts] == [1, 5]
    assert "[Africa]" in contexts[0] and "[Asia]" not in contexts[0]  # Kenya's continent only


# --- Table 1's averages -----------------------------------------------------------------------------


def s_align(p, q) -> float:
    """(1 − JSD) × 100 with log base 2, from scipy (which returns the square root of the divergence)."""
    return (1 - jensenshannon(p, q, base=2) ** 2) * 100


def test_continent_table_averages_country_means_by_hand():
    from kit.metrics.alignment import continent_table

    gold = [0.6, 0.4]
    rows = [
        {"agent": "x", "country": c, "question_id": f"q{k}", "p_gen": p, "p_gold": gold}
        for c, ps in {
            "Kenya": [[0.6, 0.4], [0.5, 0.5]],
            "Nigeria": [[0.9, 0.1]],
            "China": [[0.6, 0.4]],
        }.items()
        for k, p in enumerate(ps)
    ]
    table = continent_table(rows, "s_align", n_boot=200).set_index("continent")
    kenya = (s_align([0.6, 0.4], gold) + s_align([0.5, 0.5], gold)) / 2
    africa = (kenya + s_align([0.9, 0.1], gold)) / 2
    assert table.loc["Africa", "mean"] == pytest.approx(africa)
    assert table.loc["Asia", "mean"] == pytest.approx(100.0) and math.isnan(table.loc["Asia", "ci_low"])
    assert table.loc["overall", "mean"] == pytest.approx((kenya + s_align([0.9, 0.1], gold) + 100.0) / 3)
    assert table.loc["overall", "ci_low"] <= table.loc["overall", "mean"] <= table.loc["overall", "ci_high"]


def test_nli_judge_reads_entailment_from_one_forward_pass():
    from kit.evals.nli import JudgeScorer

    log: list = []
    scorer = JudgeScorer(Scripted("base", log, probs=(0.6, 0.3, 0.1)))
    answers = ("The answer says one thing.", "The answer says another thing.")
    assert scorer.entailment([("Gold.", answers[0]), ("Gold 2.", answers[1])]) == [0.6, 0.6]
    (call,) = log
    assert call[0] == "choose" and call[2][0].labels == ("A", "B", "C")
    assert (
        "Premise:\nGold." in call[2][0].chat[-1]["content"]
        and f"Hypothesis:\n{answers[0]}" in call[2][0].chat[-1]["content"]
    )


def test_nli_judge_with_no_mass_is_missing_and_a_degenerate_answer_entails_nothing():
    from kit.evals.nli import JudgeScorer, judged_entailment

    assert math.isnan(judged_entailment(ChoiceResult({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, 0.0)))  # never 1/3
    assert math.isnan(judged_entailment(ChoiceResult({"A": 0.9, "B": 0.1, "C": 0.0}, 0.05), min_mass=0.1))
    log: list = []
    scorer = JudgeScorer(Scripted("base", log, probs=(0.9, 0.05, 0.05)))
    assert (
        scorer.entailment([("Gold.", "##\n##\n##"), ("Gold.", "I have no opinion.")]) == [0.0, 0.0]
        and not log
    )


def test_continent_separation_is_the_between_group_share_of_variance():
    from kit.lessons.palette_data import continent_separation

    # continents at x = 0, 2 and 4, 6 (centre 3): total 9+1+1+9 = 20, between 2·2² + 2·2² = 16
    points = pd.DataFrame(
        {
            "pc1": [0, 2, 4, 6, 50],
            "pc2": [0, 0, 0, 0, 50],
            "group": ["Africa", "Africa", "Asia", "Asia", "query"],
        }
    )
    assert continent_separation(points) == pytest.approx(0.8)
    assert math.isnan(continent_separation(points[points["group"] != "Asia"]))


def test_cli_trains_the_palette_agents_into_the_folders_notebook_11_reuses(tmp_path, capsys):
    from kit.config import load_params
    from kit.palette.synthesis import query_split, study_store
    from kit.run.artifacts import model_parts
    from kit.train.cli import main

    args = ["--params", str(ROOT / "params/tiny.yaml"), "--set", f"runs_dir={tmp_path}"]
    assert main(["orpo", "--palette", *args]) == 2
    assert "run notebook 10" in capsys.readouterr().err
    assert main(["dpo", "--palette", *args]) == 2
    assert "python -m kit train orpo --palette" in capsys.readouterr().err

    params = load_params(ROOT / "params/tiny.yaml", [f"runs_dir={tmp_path}"])
    train, heldout = query_split(params)
    study_store(params, model_parts(params.model)).extend(
        {"id": q.id, "query": q.text, "final": {c: f"{c} says {k}" for c in CONTINENTS}}
        for k, q in enumerate([*train, *heldout])
    )
    assert main(["orpo", "--palette", *args]) == 0
    adapters = capsys.readouterr().out.strip().splitlines()[-6:]  # trl logs to stdout before
    folder = params.run_dir / "palette" / "agents"
    assert adapters == [str(folder / name / "adapter") for name in (*CONTINENTS, "joint")]
    config = json.loads((folder / "joint" / "train_config.json").read_text())
    assert config["n_train"] == len(train) * 5 * 4  # every continent's four pairs per training query


def test_jobs_naming_different_models_in_one_step_get_one_batch_per_model():
    from kit.engine import ask, choose
    from kit.llm.base import ChatRequest, ChoiceRequest, GenParams

    def program(i: int, model: str | None):
        (text,) = yield from ask(
            [(ChatRequest([{"role": "user", "content": f"q{i}"}]), GenParams())], model=model
        )
        (choice,) = yield from choose(
            [ChoiceRequest([{"role": "user", "content": text}], ("A", "B"))], model="moe"
        )
        return choice.probs["A"]

    log: list = []
    jobs = [Job(str(i), program(i, "moe" if i % 2 else None)) for i in range(4)]
    assert run_jobs(jobs, Scripted("base", log), models={"moe": Scripted("moe", log)}) == 2
    assert [(verb, model, len(requests)) for verb, model, requests in log] == [
        ("generate", "base", 2),
        ("generate", "moe", 2),
        ("choose", "moe", 4),
    ]
    with pytest.raises(ValueError, match="asked for model 'ties'; the scheduler serves \\['moe'\\]"):
        run_jobs([Job("x", program(0, "ties"))], Scripted("base", []), models={"moe": Scripted("moe", [])})


def test_the_moe_recipe_is_checked_against_the_base_family_before_anything_trains():
    """mergekit's Mixtral output takes only Llama and Mistral bases; its Qwen MoE output (one shared expert) takes
    Qwen2. kit check runs mergekit's own rules on the profile's base (a tiny Qwen2 here, the full profile's family)
    and refuses an impossible recipe in one line with mergekit's reason and the recipe that fits."""
    from kit.config import ParamsError, load_params
    from kit.palette.merges import check_moe

    with pytest.raises(ValueError, match="Mixtral requires all input models to be Llama or Mistral") as found:
        check_moe(ROOT / "params/merges/moe.yml", "tiny-random-qwen2")
    assert "moe_qwen.yml" in str(found.value) and "\n" not in str(found.value)
    check_moe(ROOT / "params/merges/moe_qwen.yml", "tiny-random-qwen2")
    check_moe(ROOT / "params/merges/moe.yml", "tiny-random")
    with pytest.raises(ValueError, match="mergekit-moe has no output architecture for a qwen2 base"):
        check_moe(ROOT / "params/merges/moe.yml", "Qwen/Qwen2.5-7B-Instruct")  # the catalog's config, offline
    merges = (
        "palette.merges={ties: params/merges/ties.yml, model_stock: params/merges/model_stock.yml, "
        "moe: params/merges/moe.yml}"
    )
    with pytest.raises(ParamsError, match=r"palette\.merges\.moe: .*Mixtral requires") as refused:
        load_params(ROOT / "params" / "tiny-full.yaml", [merges])
    assert "\n" not in str(refused.value)


def test_a_refused_moe_says_what_mergekit_logged(tmp_path):
    from kit.llm.models import resolve_model
    from kit.palette.merges import build_moe

    bad = tmp_path / "moe.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "base_model": "{base}",
                "gate_mode": "hidden",
                "experts_per_token": 2,
                "experts": [{"source_model": f"{{{c}}}", "positive_prompts": ["same"]} for c in CONTINENTS],
            }
        )
    )
    base = resolve_model("tiny-random").path
    with pytest.raises(ValueError, match="mergekit-moe refused the recipe: .+") as found:
        build_moe(
            bad,
            base,
            {c: str(_adapter(tmp_path, c)) for c in CONTINENTS},
            tmp_path / "out",
            tmp_path / "cache",
        )
    assert "no reason given" not in str(found.value)


def _hand_ties(deltas, density):
    """TIES by hand (Yadav et al. 2023): each task vector's top-``density`` magnitudes kept, the sign of their sum
    elected per entry, the kept entries of that sign averaged."""
    import numpy as np

    deltas = np.asarray(deltas, dtype=np.float64)
    k = max(1, int(density * deltas[0].size))
    trimmed = np.zeros_like(deltas)
    for i, d in enumerate(deltas):
        keep = np.argsort(-np.abs(d).ravel())[:k]
        trimmed[i].flat[keep] = d.flat[keep]
    sign = np.where(trimmed.sum(0) >= 0, 1.0, -1.0)
    agree = np.sign(trimmed) == sign
    return (trimmed * agree).sum(0) / np.maximum(agree.sum(0), 1)


def test_mergekit_ties_is_trim_elect_and_disjoint_mean_by_hand():
    import numpy as np

    from kit.palette.merges import mergekit_ties

    a = np.array([[1.0, -2.0, 0.5], [3.0, -0.1, -4.0]])
    b = np.array([[-3.0, 1.5, 0.2], [1.0, 0.3, 2.0]])
    # density 0.5 keeps three entries each: a's −4, 3, −2 and b's −3, 2, 1.5; [0, 1] elects −2 + 1.5 < 0: a's alone
    assert mergekit_ties([a, b], 0.5) == pytest.approx(np.array([[-3.0, -2.0, 0.0], [3.0, 0.0, -4.0]]))
    # density 1 trims nothing: the agreeing entries' mean, e.g. [0, 2]: (0.5 + 0.2) / 2
    assert mergekit_ties([a, b], 1.0) == pytest.approx(np.array([[-3.0, -2.0, 0.35], [2.0, 0.3, -4.0]]))
    rng = np.random.default_rng(0)
    tensors = rng.normal(size=(3, 5, 7))
    for density in (0.1, 0.3, 0.5, 0.9):
        assert mergekit_ties(tensors, density) == pytest.approx(_hand_ties(tensors, density), abs=1e-6)
    # a weight scales its task vector and counts in the mean's divisor
    assert mergekit_ties([a, b], 0.5, weights=[1.0, 3.0]) == pytest.approx(
        np.array([[-3.0, 1.5, 0.0], [3.0, 0.0, 2.0]])
    )


def test_a_lora_delta_is_what_peft_adds_to_the_weight_when_it_merges(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.llm.models import resolve_model
    from kit.palette.merges import lora_delta, lora_modules

    base = resolve_model("tiny-random").path
    torch.manual_seed(0)
    for rslora in (False, True):
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(
                r=4,
                lora_alpha=8,
                target_modules=["down_proj", "up_proj"],
                init_lora_weights=False,
                use_rslora=rslora,
            ),
        )
        model.save_pretrained(tmp_path / str(rslora))
        before = model.base_model.model.model.layers[0].mlp.down_proj.base_layer.weight.detach().clone()
        merged = model.merge_and_unload()
        after = merged.model.layers[0].mlp.down_proj.weight.detach()
        assert "model.layers.0.mlp.down_proj" in lora_modules(tmp_path / str(rslora))
        delta = lora_delta(tmp_path / str(rslora), "layers.0.mlp.down_proj")
        assert delta.shape == tuple(after.shape)
        assert delta == pytest.approx((after - before).numpy(), abs=1e-5)
    with pytest.raises(ValueError, match="LoRA weights match"):
        lora_delta(tmp_path / "False", "mlp.down_proj")  # one per layer: not one weight
