"""Every notebook runs headless through papermill with params/tiny.yaml; key numbers asserted.

Like the recommenders smoke tests: each notebook records its key numbers in its own output
(``Session.record_metrics``), and the test reads them back from the executed notebook.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

from kit.runner import ensure_kernel, execute, notebooks
from kit.session import METRICS_MIME

ROOT = Path(__file__).resolve().parents[1]


def recorded_metrics(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    found = [
        o["data"][METRICS_MIME]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if METRICS_MIME in o.get("data", {})
    ]
    assert len(found) == 1, f"{path.name} must record its key numbers exactly once"
    return found[0]


# The tiny model is random: its letter probabilities are close to uniform and it puts little mass
# on the letters at all. The checks lean on that: scoring or bookkeeping that goes wrong moves a
# number away from what a near-uniform answer must give.


def check_00(m):
    assert m["model"] == "tiny-random"
    assert len(m["reply_chars"]) == 2
    assert m["letter_mass_mean"] < 0.1  # a random 512-token model: the letters get little mass
    assert abs(m["s_align_mean"] - m["s_align_uniform"]) < 2  # a near-uniform answer scores like uniform
    assert m["cached_rerun_s"] < m["first_run_s"]
    assert m["cache_entries"] == 2 + 3  # two chats; three distinct option requests (vanilla asks once)


def check_01(m):
    assert m["countries"] == 3 and m["test_items"] == 12 and m["skipped_countries"] == []
    assert m["leaks"] == {"train_test_stems": 0, "test_questions_in_agent_texts": 0}
    kinds = {"vanilla", "prompted", "described"}
    refs = {"uniform", "other-countries mean", "neighbour prior", "entropy-matched"}
    assert kinds | refs <= set(m["js_similarity"]) and kinds | refs <= set(m["js_similarity_e"])
    # tiny's floor is 0: only an answer with no mass on the letters at all would be missing; every kind is counted
    assert set(m["missing_answers"]) >= kinds and all(v == 0 for v in m["missing_answers"].values())
    # twelve test rows are fewer than verdicts.min_items: no verdict says more than "too few"
    assert {v for k in kinds for v in m["verdict"][k].values()} == {"too few"}
    # the references that know world opinion beat the uniform answer on real survey data …
    assert m["js_similarity"]["other-countries mean"] > m["js_similarity"]["uniform"] + 5
    assert m["js_similarity"]["neighbour prior"] > m["js_similarity"]["uniform"] + 5
    # the natural-log score is the higher one for the same distributions
    assert all(m["js_similarity_e"][k] >= m["js_similarity"][k] for k in kinds | refs)
    # … and a random model answers about as a uniform one does, and is never credited with beating it
    assert all(abs(m["js_similarity"][k] - m["js_similarity"]["uniform"]) < 3 for k in kinds)
    assert all(m["verdict"][k]["other-countries mean"] != "beats" for k in kinds)
    assert all(m["verdict"][k]["neighbour prior"] != "beats" for k in kinds)
    assert all(m["coverage"][k] == 1.0 for k in kinds)
    assert m["letter_mass_mean"] < 0.1
    assert set(m["grounded_records_kept"]) == {"United States", "China", "Mexico"}
    assert "base" in m["moralchoice_low_accuracy"] and set(m["neutral_ppl"]) == set(
        m["moralchoice_low_accuracy"]
    )


def check_02(m):
    # 1 pair × 2 topics × 4 methods. The tiny model writes gibberish: a guideline whose prose is
    # too short fails its NCN job (raw text recorded, the run goes on); the others negotiate.
    assert m["negotiations"] == 8
    assert m["failed"] <= 2 and m["parse_failures"] >= m["failed"]
    assert m["rounds_mean"]["ncn"] > 0  # at least one NCN negotiation held rounds
    assert set(m["rounds_mean"]) == {"ncn", "debate", "consultancy", "none"}
    # consultancy has no stopping rule, so nothing of it counts as converged
    assert m["converged_share"]["consultancy"] == 0.0 and m["rounds_mean"]["debate"] == 2
    assert m["max_nash_gap"] <= 1e-6
    # the lesson's negotiation, scored again in the notebook by utility_matrix: the terms the run stored, and
    # the meta-game it solves there is at an equilibrium
    lesson = m["lesson"]
    assert lesson["rounds"] >= 0 and lesson["terms_max_diff"] < 1e-5 and lesson["nash_gap"] <= 1e-6


def check_03(m):
    degenerate = sum(m["degenerate"].values())
    assert m["evaluated"] + m["failed"] + degenerate == 8 and m["evaluated"] >= 4
    assert set(m["degenerate"]) == {"ncn", "debate", "consultancy", "none"}
    # every summary reads the items every method scored
    assert 1 <= m["common_items"] <= 2 and {"debate", "consultancy", "none"} <= set(m["mean_d_ratio"])
    # final statements are the opening answers: no change, by construction, and never named a winner
    assert m["mean_d_ratio"]["none"] == 1.0 and m["rel_logppl_change"]["none"] == 0.0
    assert not any(k.startswith("none:") for k in m["vs_none"])
    assert set(m["vs_none"].values()) <= {"better", "worse", "no difference", "too few"}
    # one row recomputed by hand in the notebook equals the kit's
    h = m["by_hand"]
    assert h["d_initial"] == pytest.approx(h["kit_d_initial"], rel=1e-4) and h["d_initial"] >= 0
    assert h["self_consistency_a"] == pytest.approx(h["kit_self_consistency_a"], nan_ok=True)


# tiny trains on the study's NCN and on the NCN paper's own NCN transcripts (ncn_release:ncn)
ADAPTERS = sorted(
    f"{method}@{source}"
    for method in ("dpo", "simpo", "orpo", "sft")
    for source in ("ncn", "ncn_release:ncn")
)


def check_04(m):
    assert m["trained"] == ADAPTERS and all(n > 0 for n in m["records"].values())
    assert m["leaks"] == {
        "topics_in_goqa_test": 0,
        "heldout_topics_negotiated": 0,
        "train_prompts_in_eval": 0,
    }
    refs = {"uniform", "other-countries mean", "neighbour prior", "entropy-matched"}
    assert set(m["missing_answers"]) == {"base", *ADAPTERS}
    assert set(m["js_similarity"]) == {"base", *ADAPTERS, *refs, "paired", "paired_diff"}
    # every adapter is judged against the base on shared rows; a random LoRA is never credited with a gain
    assert set(m["js_similarity"]["paired"]) == set(ADAPTERS)
    assert all(
        v in ("no difference", "worse", "beats", "too few") for v in m["js_similarity"]["paired"].values()
    )
    assert all(low <= d <= high for d, low, high in m["js_similarity"]["paired_diff"].values())
    assert m["js_similarity"]["neighbour prior"] > m["js_similarity"]["uniform"]
    # the distance reduction is read on the items every model answered, with an interval
    assert m["distance_items"] >= 0 and set(m["distance_reduction_ci"]) == set(ADAPTERS)
    # between-culture distance: the model's answers as each culture, beside the survey's — on questions two
    # studied countries share (the tiny split's four per country share none, so the table is empty there)
    assert m["between_culture_items"] >= 0
    if m["between_culture_items"]:
        assert set(m["between_culture_distance"]) == {"base", *ADAPTERS} and m["between_culture_gold"] > 0
    else:
        assert m["between_culture_distance"] == {} and m["between_culture_gold"] is None
    items = m["moralchoice_items"]
    assert items == 4 and all(
        m["moralchoice_low_accuracy"][k] == m["moralchoice_correct"][k] / items
        for k in m["moralchoice_correct"]
    )
    assert all(0 <= v <= 1 for v in m["moralchoice_letter_mass"].values())
    # lm-eval's byte perplexity of a random model on the neutral passages; one tiny LoRA epoch barely moves it
    base = m["neutral_ppl"]["base"]
    assert 10 < base < 1000
    assert all(abs(v - base) / base < 0.2 for v in m["neutral_ppl"].values())
    # every lm-eval task with its standard error, and each adapter's paired change against the base in its interval
    capability = m["capability"]
    assert set(capability) == {"agora_moralchoice_low", "agora_moralchoice_high", "agora_neutral_ppl"}
    assert capability["agora_moralchoice_low"]["base"]["value"] == m["moralchoice_low_accuracy"]["base"]
    for task in ("agora_moralchoice_low", "agora_moralchoice_high"):
        assert capability[task]["base"]["change"] is None and capability[task]["base"]["stderr"] is not None
        for name in ADAPTERS:
            c = capability[task][name]
            assert c["change_low"] <= c["change"] <= c["change_high"], (task, name, c)


CLAIMS = {
    f"{claim} vs {baseline}"
    for claim in ("value_consensus_gain", "self_consistency", "d_ratio")
    for baseline in ("debate", "consultancy")
}


def check_05(m):
    # the release's evaluation files are read whole in every profile: every number of every summary of the five
    # pairs (and every perplexity file's derived numbers) recomputed, and equal to 1e-9
    assert len(m["pairs"]) == 5 and set(m["reproduced"]) == set(m["pairs"])
    assert m["reproduced_keys"] == m["reproduced_equal"] > 500
    for methods in m["reproduced"].values():
        assert set(methods) == {"ncn", "debate", "consultancy"}
        assert all(v["equal"] for keys in methods.values() for v in keys.values())
    cosine = m["reproduced"]["Catholic_Europe and West_and_South_Asia"]["ncn"]["average_cosine_sim_init"]
    assert (
        round(cosine["release"], 4) == round(cosine["kit"], 4) == 0.6389
        and round(cosine["kit_own"], 4) == 0.6724
    )
    assert {
        "average_cosine_sim_init",
        "average_response_vector_consistency",
        "PPL_distance_difference",
    } <= set(m["kit_defines_differently"])
    assert m["topic_leaks"] == {"topics_in_goqa_test": 0}
    # transcripts: one topic of each of tiny's two pairs, per method; the evaluations of all five read whole
    assert m["traces_read"] == 6 and m["evaluation_rows"] > 6000
    assert m["skipped"]["empty evaluation records"] > 0 and m["skipped"]["older summary versions"] > 0
    # the claims on the paper's own data, paired, each with its interval and a verdict
    assert set(m["claims"]) == CLAIMS
    for claim in m["claims"].values():
        assert claim["ci"][0] <= claim["mean_diff"] <= claim["ci"][1] and claim["n"] > 1000
        assert claim["verdict"] in ("better", "worse", "no difference")  # over 1000 items: never "too few"
    assert len(m["verdict"]) == 4 and all(line.startswith("NCN ") for line in m["verdict"][1:])
    # a random judge writes no JSON: nothing read, nothing credited; the embedding proxy reads every text
    llm, proxy = m["judge_agreement"]["llm (tiny-random)"], m["judge_agreement"]["embedding"]
    assert llm["readable"] == 0 and "kappa" not in llm and llm["cosine_spearman"]["n"] == 0
    assert proxy["readable"] == proxy["texts"] > 0 and len(proxy["kappa"]) == 10
    for point, low, high in proxy["kappa"].values():
        assert point is None or (-1 <= point <= 1 and (low is None or low <= high))
    assert set(m["acceptance"]) == {"ncn", "debate", "consultancy"} and all(
        a["n"] > 0 for a in m["acceptance"].values()
    )
    # the run's agents where notebook 01 built one, a prompted one for the other cultures
    assert m["acceptance_agents"] == {
        "China": "described",
        "Iraq": "prompted",
        "United States": "described",
        "Thailand": "prompted",
    }


def check_10(m):
    # 3 training + 1 held-out query × 5 continents; the tiny profile accepts any non-empty text
    assert (
        m["queries"] == 4
        and m["items"] == 20
        and m["kept"] + sum(m[f"dropped_{s}"] for s in ("response", "feedback", "aggregation")) == 20
    )
    # four pairs per training query and continent whose answers all survived
    assert all(n == 12 for n in m["preference_pairs"].values()) and 0 <= m["continent_separation"] <= 1


def check_11(m):
    assert m["adapters"] == ["Africa", "America", "Asia", "Europe", "Oceania", "joint"]
    assert set(m["merge_seconds"]) == {"ties", "model_stock", "moe"} and m["peak_rss_gb"] < 6
    assert 0 <= m["router_own_share"] <= 1 and 0 <= m["experts_preferring_own"] <= 5
    # the lesson's TIES merge by hand (trim, elect, disjoint mean) is mergekit's on the same two task vectors
    assert m["ties_lesson_matches_mergekit"] is True


PALETTE_ROWS = {
    "vanilla",
    "prompted",
    "joint",
    "ties",
    "model_stock",
    "moe_routing",
    "modular_overton",
    "modular_steerable",
    "modular_distributional",
    "palette",
    "palette_no_moerges",
    "palette_no_draft",
    "palette_no_selfreg",
    "uniform",
    "other-countries mean",
    "neighbour prior",
    "entropy-matched",
}


def check_12(m):
    assert set(m["js_similarity"]) == set(m["s_align"]) == set(m["js_similarity_e"]) == PALETTE_ROWS
    assert m["leaks"] == {
        "train_queries_in_test": 0,
        "heldout_queries_in_test": 0,
        "heldout_queries_in_training": 0,
        "training_prompts_in_test": 0,
        "router_prompts_in_test": 0,
    }
    assert m["s_align"]["neighbour prior"] > m["s_align"]["uniform"] + 3
    # near-uniform tiny answers score like the uniform row; the world-opinion reference beats both
    assert all(
        abs(v - m["s_align"]["uniform"]) < 2
        for k, v in m["s_align"].items()
        if k not in ("other-countries mean", "neighbour prior")
    )
    assert m["s_align"]["other-countries mean"] > m["s_align"]["uniform"] + 3
    assert all(v["vanilla"] != "beats" for v in m["verdict"].values())
    assert all(
        m["coverage"][row] == 1.0
        for row in PALETTE_ROWS - {"other-countries mean", "neighbour prior", "entropy-matched"}
    )
    assert set(m["missing_answers"]) == PALETTE_ROWS - {
        "uniform",
        "other-countries mean",
        "neighbour prior",
        "entropy-matched",
    }
    assert m["nli_scorer"].startswith("judge:") and set(m["semantic_consistency"]) == {
        "prompted",
        "joint",
        "ties",
        "model_stock",
        "moe_routing",
        "moe",
    }
    # a random model's answers are mostly degenerate, and a degenerate answer entails nothing (0)
    assert all(0 <= v < 1 for v in m["semantic_consistency"].values())
    artifacts = {
        "base",
        "Africa",
        "America",
        "Asia",
        "Europe",
        "Oceania",
        "joint",
        "ties",
        "model_stock",
        "moe",
    }
    assert set(m["moralchoice_low_accuracy"]) == set(m["neutral_ppl"]) == artifacts
    # every Table 1 row's own cost was measured (the rows ran one at a time)
    assert PALETTE_ROWS - {"uniform", "other-countries mean", "neighbour prior", "entropy-matched"} <= set(
        m["cost"]["rows"]
    )
    assert all(c["calls"] > 0 for c in m["cost"]["rows"].values())


def check_20(m):
    assert m["overlap"] == {"train_test_items": 0, "goqa_test_questions": 0, "capability_scenarios": 0}
    assert m["items"]["train"] > 0 and m["items"]["test"] > 0 and m["dropped"] == 0
    # tiny's teacher is the embedding proxy, which agrees with itself perfectly
    assert m["teacher"] == "embedding" and m["teacher_failures"] == 0 and m["embedding_macro_f1"] == 1.0
    assert 0 <= m["detector_macro_f1"] <= 1 and len(m["detector_macro_f1_per_value"]) == 10
    assert m["translator_failures"] == 12  # a random model writes no JSON: all 4 + 8 counted, none invented


def check_21(m):
    assert m["grpo_records"] == m["sft_records"] > 0 and m["grpo_steps"] >= 1
    assert m["direct_pairs"] + m["direct_ties"] == m["grpo_records"] and m["direct_pairs"] > 0
    assert m["reward_first"] is not None and m["reward_last"] is not None
    assert m["reward_fell"] in (True, False, None) and m["reward_detector"] == "trained"
    # the reward of rewrites that rewrite nothing, beside GRPO's (copy: meaning kept in full, no drift)
    assert m["reward_copy"] is not None and m["reward_keywords"] is not None
    # the lesson's GRPO group: its advantages by hand are trl's for the same rewards (float32 in trl)
    assert 0 <= m["grpo_group_advantage_max_error"] < 1e-4


def check_22(m):
    assert set(m["methods"]) == {"prompting", "sft", "grpo", "direct_finetune", "copy", "keywords"}
    for scores in m["methods"].values():
        assert 0 <= scores["value_f1"] <= 1 and 0 <= scores["drift"] <= 1
    shielded = {m["methods"][k]["moralchoice_low_accuracy"] for k in ("prompting", "sft", "grpo")}
    assert len(shielded) == 1  # the answering model is the base model: one capability …
    # … but the rewrite can change the answer: the shielded methods' tax is read through the pipeline
    for k in ("prompting", "sft", "grpo"):
        assert 0 <= m["methods"][k]["pipeline_moralchoice_accuracy"] <= 1
    assert "pipeline_moralchoice_accuracy" not in m["methods"]["direct_finetune"]
    assert 0 <= m["pipeline_unrewritten_accuracy"] <= 1
    # the copy reads as the original (drift 0) unless it is unreadable, which scores the worst drift (1)
    assert m["methods"]["copy"]["drift"] == pytest.approx(m["unreadable"]["copy"] / m["n_items"])
    assert m["verdict_score"] == "visa_composite" and m["grpo_beats_copy"] in {
        "better",
        "worse",
        "no difference",
        "too few",
    }
    assert all(-1.5 <= v["visa_composite"] <= 2.25 for v in m["methods"].values())
    assert set(m["grpo_vs"]) == {"prompting", "sft", "direct_finetune", "copy", "keywords"}
    # the rewriters on notebook 01's held-out survey questions, beside the unrewritten answer
    assert set(m["goqa_js_similarity"]) == {
        "original",
        "prompting",
        "sft",
        "grpo",
        "uniform",
        "other-countries mean",
        "neighbour prior",
        "entropy-matched",
    }
    assert m["goqa_overlap"] == {"corpus_questions_in_survey": 0, "countries_without_target": 0}


def check_30(m):
    assert m["overlap"] == {"train_test_dilemmas": 0, "capability_scenarios": 0}
    # a random model writes no dilemma JSON: every request is a recorded failure after its retry, none invented
    assert m["generation_requests"] == m["generation_failures"] == 2 and m["generated_parsed"] == 0
    assert m["generation_attempts"] == 4
    assert m["by_source"] == {"generated": 0, "moralchoice": 6 - m["duplicates_dropped"]}
    assert m["dilemmas"]["train"] > 0 and m["dilemmas"]["test"] > 0


def check_31(m):
    assert m["heldout_in_training"] == 0
    policies = ("self_play_grpo", "self_play_grpo+joint", "single_agent_grpo")
    assert (
        m["records"]["self_play_grpo"]
        == m["records"]["single_agent_grpo"]
        == m["records"]["self_play_grpo+joint"]
        > 0
    )
    # self-play trains on Collective Agency alone, as the paper does; the joint-solution reward is the ablation's
    assert m["rewards"] == {
        "self_play_grpo": {"collective_agency": 1.0},
        "single_agent_grpo": {"collective_agency": 1.0},
        "self_play_grpo+joint": {"collective_agency": 1.0, "joint_solution": 0.5},
    }
    for method in policies:
        assert m[method]["steps"] >= 1 and 0 <= m[method]["reward_first"] <= 1.5
        assert m[method]["reward_fell"] in (True, False, None)  # None: a single logged step says nothing
    # tiny trains on the CPU in transformers: each policy samples its own rollouts, so trl corrects nothing; the
    # self-play rollouts still return their sampling log-probabilities and log the share of own tokens that have one
    sampling = m["sampling"]
    assert {s["sampler"] for s in sampling.values()} == {"trainer"} and not any(
        s["correction"] for s in sampling.values()
    )
    assert (
        0 < sampling["self_play_grpo"]["logprob_known"] <= 1
        and sampling["single_agent_grpo"]["logprob_known"] is None
    )
    # the lesson's dialogue: its env_mask is 1 exactly on the learning side's turns of the rendered chat
    assert m["selfplay_lesson_mask_matches_turns"] is True


def check_32(m):
    policies = {"untrained", "single_agent_grpo", "self_play_grpo", "self_play_grpo+joint"}
    assert set(m["methods"]) == policies | {"trivial solution"}
    for method in policies:
        scores = m["methods"][method]
        assert {"collective_agency", "resolution_rate", "moralchoice_low_accuracy"} <= set(scores)
        assert 1 <= scores["collective_agency"] <= 5 and 0 <= scores["resolution_rate"] <= 1
    assert (
        m["rewards"]["self_play_grpo"] == {"collective_agency": 1.0}
        and "joint_solution" in m["rewards"]["self_play_grpo+joint"]
    )
    # every method also in the single-agent baseline's own format: one solution after the marker, judged alike
    assert set(m["single_answer"]) == policies
    assert all(
        1 <= v["collective_agency"] <= 5 and 0 <= v["stated_rate"] <= 1 for v in m["single_answer"].values()
    )
    assert set(m["single_agent_vs"]) == policies - {"single_agent_grpo"}
    assert set(m["single_agent_vs"].values()) == {"too few"}  # a handful of dilemmas is no evidence
    # tiny names no evaluation judge: the reward judge grades, and the metrics say so; judge_min_mass 0 misses none
    assert m["eval_judge"] == {"name": "tiny-random", "is_reward_judge": True}
    assert m["judge_missing"] == dict.fromkeys(policies | {"trivial solution"}, 0)
    assert 1 <= m["methods"]["trivial solution"]["collective_agency"] <= 5
    assert m["overlap"] == {"train_test_dilemmas": 0, "heldout_in_training": 0, "capability_scenarios": 0}
    assert m["n_dilemmas"] > 0
    # the policies on notebook 02's topics and pairs, beside every negotiation method, one evaluation for all
    study = m["ncn_study"]
    methods = {"ncn", "debate", "consultancy", "none", *policies}
    # resolution belongs to the dialogues: only the policies have a rate
    assert set(study["collective_agency"]) == methods and set(study["resolution_rate"]) == methods - {
        "ncn",
        "debate",
        "consultancy",
        "none",
    }
    assert study["counts"] == {"study_topics_in_selfplay_training": 0, "dialogues_per_policy": 2}
    assert all(1 <= v <= 5 for v in study["collective_agency"].values())


def check_90(m):
    # every unit ran before it: every board row scored, none "not run"
    assert m["not_run"] == []
    alignment = m["alignment"]
    assert {
        "01 · described",
        "04 · dpo@ncn",
        "12 · palette",
        "12 · modular_steerable",
        "22 · grpo",
        "22 · original",
    } <= set(alignment)
    scored = {k: v for k, v in alignment.items() if v["status"] == "scored"}
    assert all(
        v["verdict"] in {"beats", "worse", "no difference", "too few"} and v["calls"] > 0
        for v in scored.values()
    )
    # a random model never beats its unit's best reference
    assert all(v["verdict"] != "beats" for v in scored.values())
    assert {k for k, v in alignment.items() if v["status"] == "reference"} >= {
        "01 · uniform",
        "01 · neighbour prior",
        "12 · other-countries mean",
        "01 · entropy-matched",
        "22 · entropy-matched",
    }
    assert {"32 · ncn", "32 · debate", "32 · self_play_grpo"} <= set(m["consensus"])
    # every consensus row is read on the items every method scored, and none is a reference, never scored
    consensus = m["consensus"]
    assert len({v["common_items"] for v in consensus.values() if v["status"] in ("scored", "reference")}) == 1
    assert consensus["32 · none"]["status"] == "reference" and consensus["32 · none"]["verdict"] is None
    assert all(
        v["verdict"] in {"better", "worse", "no difference", "too few"}
        for k, v in consensus.items()
        if v["status"] == "scored"
    )
    assert all(
        v["agency_judge"] == "the policies' reward judge"
        for v in consensus.values()
        if v.get("collective_agency") is not None
    )
    assert all(v["verdict"] == "too few" for v in m["capability"].values() if v["status"] == "scored")
    assert {
        "04 · sft@ncn",
        "12 · moe",
        "22 · grpo",
        "32 · self_play_grpo",
        "32 · self_play_grpo+joint",
    } <= set(m["capability"])


CHECKS = {
    "00": check_00,
    "01": check_01,
    "02": check_02,
    "03": check_03,
    "04": check_04,
    "05": check_05,
    "10": check_10,
    "11": check_11,
    "12": check_12,
    "20": check_20,
    "21": check_21,
    "22": check_22,
    "30": check_30,
    "31": check_31,
    "32": check_32,
    "90": check_90,
}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_params(notebook, tiny_params, capfd):
    # parametrised in file order: later notebooks read what earlier ones stored in the run folder
    out = tiny_params.run_dir / "notebooks" / notebook.name
    execute(notebook, out, tiny_params, ensure_kernel(), progress=True)
    nb = nbformat.read(out, as_version=4)  # with the cell papermill injects
    assert (
        f"{len(nb.cells)}/{len(nb.cells)}" in capfd.readouterr().err
    )  # the live progress reached the terminal …
    assert not any(
        "cell/s" in str(o) or "it/s" in str(o) for c in nb.cells for o in c.get("outputs", [])
    )  # … not the notebook
    # no Python warning reaches a cell (the kit's own log lines, which count failures, may)
    warned = [
        o["text"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("name") == "stderr" and re.search(r"\w+Warning: ", o["text"])
    ]
    assert not warned, warned[0][:300]
    inline = any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    saved = list((tiny_params.run_dir / "figures").glob(f"{notebook.name[:2]}_*.png"))
    assert inline == bool(saved)  # every saved figure is also shown in the notebook
    CHECKS[notebook.name[:2]](recorded_metrics(out))


@pytest.mark.slow
def test_the_tiny_runs_nash_gaps_recompute_from_the_stored_weights_and_payoffs(tiny_params):
    """After notebook 02: every NCN round's Nash gap, recomputed from the payoffs and weights its trace stored, is the
    reported one (and an equilibrium's: near 0) — the integration tests never take the solver's word for it."""
    import numpy as np

    rounds = [
        r
        for f in (tiny_params.run_dir / "records" / "negotiations").glob("*.jsonl")
        for line in f.read_text().splitlines()
        if line.strip()
        for t in [json.loads(line)]
        if t.get("method") == "ncn"
        for r in t.get("rounds", [])
    ]
    assert rounds and all("payoffs" in r for r in rounds)
    for r in rounds:
        A, B = (np.asarray(m, float) for m in r["payoffs"])
        x, y = (np.asarray(w, float) for w in r["weights"])
        gap = max(float((A @ y).max() - x @ A @ y), float((x @ B).max() - x @ B @ y))
        assert abs(gap - r["nash_gap"]) < 1e-9 and gap <= 1e-6


@pytest.mark.slow
def test_the_tiny_run_alignment_intervals_stay_in_the_scale(tiny_params):
    """After the notebooks above: every interval of the alignment boards lies in [0, 100] and holds its point."""
    import pandas as pd

    report = tiny_params.run_dir / "report"
    if not (report / "alignment.csv").is_file():
        pytest.skip("notebook 90 did not run in this session (run the whole module)")
    board = pd.read_csv(report / "alignment.csv")
    scored = board[board["status"].isin(["scored", "reference"])]
    for score in ("s_align", "js_similarity", "js_similarity_e"):
        low, point, high = (scored[f"{score}{end}"] for end in ("_low", "", "_high"))
        assert (low >= 0).all() and (high <= 100).all(), score
        assert (low <= point + 1e-9).all() and (point <= high + 1e-9).all(), score
    by = pd.read_csv(report / "alignment_by_continent.csv").dropna(subset=["ci_low"])
    assert (by["ci_low"] >= 0).all() and (by["ci_high"] <= 100).all()
    assert (by["ci_low"] <= by["mean"] + 1e-9).all() and (by["mean"] <= by["ci_high"] + 1e-9).all()


@pytest.mark.slow
def test_the_tiny_run_report_shows_every_board_row_notebook_90_recorded(tiny_params):
    """After the notebooks above: the report page holds every row of the boards in notebook 90's metrics."""
    from html.parser import HTMLParser

    recorded = tiny_params.run_dir / "metrics" / "90_leaderboard.json"
    if not recorded.is_file():
        pytest.skip("notebook 90 did not run in this session (run the whole module)")
    metrics = json.loads(recorded.read_text())

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells = []

        def handle_data(self, data):
            self.cells.append(data.strip())

    parser = Cells()
    parser.feed((tiny_params.run_dir / "report" / "index.html").read_text())
    rows = [row for board in ("alignment", "consensus", "capability") for row in metrics[board]]
    assert len(rows) > 40 and not [row for row in rows if row not in parser.cells]


def test_every_notebook_has_a_check():
    assert {nb.name[:2] for nb in notebooks()} == set(CHECKS)


def test_committed_notebooks_are_clean_and_parametrised():
    import papermill as pm

    for nb_path in notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), (
            f"{nb_path.name}: strip outputs"
        )
        assert nb.cells[0].cell_type == "markdown"
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: needs exactly one cell tagged 'parameters'"
        assert set(pm.inspect_notebook(str(nb_path))) >= {"profile", "runs_dir"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", [["-f", "params/tiny.yaml"], ["-p", "profile", "tiny"]], ids=["dash-f", "dash-p-profile"]
)
def test_papermill_runs_a_profile_on_its_own(how, tmp_path, shared_data):
    """`papermill -p profile tiny` (or `-f params/tiny.yaml`, which injects its `profile: tiny`) runs the tiny
    profile without the kit's runner: the cell's smoke values of the keys it shows are left to the profile."""
    import subprocess
    import sys

    out = tmp_path / "00.ipynb"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "notebooks/00_quickstart.ipynb",
            str(out),
            *how,
            "-p",
            "runs_dir",
            str(tmp_path / "runs"),
            "-k",
            ensure_kernel(),
            "--no-progress-bar",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert recorded_metrics(out)["model"] == "tiny-random"
    printed = "".join(
        o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])
    )
    # the cell's smoke values (quickstart's countries and prompt) left tiny's alone; only the -p runs_dir applied
    assert [
        line.split(" = ")[0] for line in printed.splitlines() if line.startswith("the parameters cell sets")
    ] == ["the parameters cell sets runs_dir"]
    assert (tmp_path / "runs" / "tiny" / "metrics" / "00_quickstart.json").is_file()


def _leaves(value, prefix=""):
    """``{dotted key: value}`` of every leaf of a nested mapping (a list is a leaf)."""
    if isinstance(value, dict) and value:
        return {
            k: v
            for key, inner in value.items()
            for k, v in _leaves(inner, f"{prefix}.{key}" if prefix else key).items()
        }
    return {prefix: value}


def test_parameters_cells_show_the_smoke_profiles_values():
    """Opened by hand, a notebook runs the smoke profile, and each key its parameters cell shows equals
    params/smoke.yaml's value: the committed notebook shows what `make run` uses. A cell shows a few keys, not
    copies of whole sections."""
    import ast

    import papermill as pm
    import yaml

    from kit.config import NOTEBOOK_PROFILE

    smoke = yaml.safe_load((ROOT / "params" / f"{NOTEBOOK_PROFILE}.yaml").read_text())
    for nb_path in notebooks():
        declared = pm.inspect_notebook(str(nb_path))
        assert ast.literal_eval(declared.pop("profile")["default"]) == NOTEBOOK_PROFILE, nb_path.name
        shown = {}
        for name, spec in declared.items():
            assert name in smoke, f"{nb_path.name}: {name} is not a top-level key of smoke.yaml"
            shown.update(_leaves(ast.literal_eval(spec["default"]), name))
        assert len(shown) <= 7, (
            f"{nb_path.name}: the parameters cell shows {len(shown)} keys; show the lesson's few"
        )
        for key, value in shown.items():
            want = smoke
            for k in key.split("."):
                assert isinstance(want, dict) and k in want, f"{nb_path.name}: {key} is not in smoke.yaml"
                want = want[k]
            assert value == want, f"{nb_path.name}: {key} = {value!r}, smoke.yaml has {want!r}"


def _from_notebook_call(nb_path: Path) -> str:
    """The ``from_notebook(...)`` expression of a notebook's setup cell (the cell after its parameters)."""
    import ast

    nb = nbformat.read(nb_path, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    tree = ast.parse(nb.cells[i + 1].source)
    call = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "from_notebook"
    )
    return ast.unparse(call)


def test_an_injected_run_reads_the_profile_as_given(shared_data, tmp_path):
    """What `python -m kit run` injects (the run's params file, and the run's values of the keys a cell shows) gives
    each notebook the run's own params, `--set` overrides included, for exactly the sections it reads: what its
    stored artifacts record (`made_by`) is what the run's sections give, as when the runner injected whole sections."""
    from kit.config import from_notebook, load_params, validate
    from kit.run.artifacts import made_by
    from kit.runner import notebook_values, read_sections

    run = load_params(
        ROOT / "params" / "tiny.yaml",
        [
            f"runs_dir={tmp_path / 'runs'}",
            "tracking.backend=trackio",
            "negotiation.epsilon=0.05",
            "model.batch_size=3",
        ],
    )
    sections = run.sections()
    for nb_path in notebooks():
        namespace = {"from_notebook": from_notebook, **notebook_values(nb_path, run)}
        given = eval(_from_notebook_call(nb_path), namespace)  # noqa: S307 — the committed notebook's own call
        read = given.model_fields_set
        assert {"profile", "runs_dir", "seed", "model"} <= read, nb_path.name
        assert read == set(read_sections(nb_path, run)), nb_path.name  # what the manifest records it read
        assert given.model_dump(include=read) == run.model_dump(include=read), nb_path.name
        assert made_by(given) == made_by(validate({k: sections[k] for k in read})), nb_path.name


def test_a_changed_value_in_a_parameters_cell_overrides_the_profile_and_is_checked(shared_data, capsys):
    from kit.config import ParamsError, from_notebook

    shown = {
        "weights": {"alpha": 0.5, "beta": 0.3, "gamma": 0.2},
        "epsilon": 0.02,
    }  # smoke's: tiny's are kept
    tiny = from_notebook("tiny", "seed model", negotiation=shown)
    assert tiny.negotiation.epsilon == from_notebook("tiny", "seed model").negotiation.epsilon
    changed = from_notebook(
        "tiny", "seed model", negotiation={**shown, "weights": {"alpha": 0.9, "beta": 0.3}}
    )
    assert (changed.negotiation.weights.alpha, changed.negotiation.weights.beta) == (
        0.9,
        tiny.negotiation.weights.beta,
    )
    assert "the parameters cell sets negotiation.weights.alpha = 0.9" in capsys.readouterr().out
    for bad, key in [({"epsilon": -1}, "negotiation.epsilon"), ({"epsilom": 0.1}, "negotiation.epsilom")]:
        with pytest.raises(ParamsError) as err:
            from_notebook("tiny", "seed", negotiation=bad)
        assert "\n" not in str(err.value) and f"the parameters cell's {key}: {key}:" in str(err.value)
    with pytest.raises(ParamsError, match="profile=tinny: no such params file"):
        from_notebook("tinny")
    with pytest.raises(ParamsError, match="negotiations: not a top-level key"):
        from_notebook("tiny", "seed negotiations")
