"""GPU-hours of a profile on one GPU, from its call and token counts and the engine's throughput.

Each notebook's work is counted from params (and, for the survey units, from how many questions each
country has in the data the params name): tokens the engines **generate**, tokens they **prefill**
(prompts, and the prompts and continuations that ``score`` and ``choice_probs`` read), and tokens the
trainers **train** on (every epoch). Counts are upper bounds where the params give caps (a reply of
``turn_tokens`` is counted at ``FILL`` of its cap; a negotiation at every round).

Throughput comes from a stored benchmark of the engine on this kind of GPU where one exists
(``runs/<profile>/bench/generate@vllm.json``, ``python -m kit bench generate``), else from the
roofline of an H100 (``H100``): decoding is bound by reading the weights once per step for the
whole batch, prefill and training by the GPU's bfloat16 FLOPs at a realistic utilisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.config import Params
from kit.registry import PROTOCOLS

FILL = 0.6  # the share of a reply's token cap a reply uses, on average
PROMPT = {"survey": 350, "negotiation": 1500, "palette": 700, "visa": 450, "dialogue": 1200, "judge": 1800}


@dataclass(frozen=True)
class GPU:
    name: str
    hbm_tb_s: float  # memory bandwidth, TB/s
    bf16_tflops: float  # dense bfloat16 peak
    # conservative shares of the peaks: lock-step batches are often below the engine's batch, LoRA slows both
    decode_efficiency: float = 0.35  # share of the bandwidth a decode step uses
    prefill_mfu: float = 0.35
    train_mfu: float = 0.25


H100 = GPU("H100 SXM 80GB", 3.35, 989.0)


@dataclass(frozen=True)
class Work:
    notebook: str
    what: str
    model: str  # "model" or a role (its engine), "trainer" for training
    generated: float = 0.0
    prefilled: float = 0.0
    trained: float = 0.0
    concurrency: int = 64  # requests a decode step carries


def _goqa_items(params: Params, countries: list[str], cap: int, train: bool) -> int:
    """Questions the study reads for ``countries``: each country's train (or test) questions, at most ``cap``."""
    from kit.data import goqa_split
    from kit.data.goqa import by_country

    d = params.data
    train_items, test_items = goqa_split(d.goqa_path, d.test_fraction, d.split_seed, d.goqa_test_path)
    found = by_country(train_items if train else test_items)
    return sum(min(cap, len(found.get(c, []))) for c in countries)


def workload(params: Params) -> list[Work]:
    """Every notebook's token counts (see the module docstring)."""
    p, a, n, f, pal, v, sp = (
        params,
        params.agents,
        params.negotiation,
        params.finetune,
        params.palette,
        params.visa,
        params.selfplay,
    )
    k, batch = len(a.kinds), p.model.batch_size
    train_q = _goqa_items(p, a.countries, a.max_train_items, True)
    test_q = _goqa_items(p, a.countries, a.max_test_items, False)
    grounded = "grounded" in a.kinds
    sft_records = train_q * a.samples_per_item * 0.7 if grounded else 0
    out = [
        Work(
            "00",
            "chat and survey",
            "model",
            2 * p.quickstart.max_new_tokens,
            6 * PROMPT["survey"],
            concurrency=2,
        ),
        Work("01", "survey answers", "model", prefilled=test_q * k * PROMPT["survey"] * 2),
        Work(
            "01",
            "descriptions and grounding data",
            "model",
            generated=len(a.countries) * a.description_tokens
            + train_q * a.samples_per_item * a.rewrite_tokens * FILL,
            prefilled=train_q * a.samples_per_item * PROMPT["survey"] * 2,
        ),
        Work(
            "01",
            "grounded SFT",
            "trainer",
            trained=sft_records * _epochs(a.sft.trl) * (PROMPT["survey"] + a.rewrite_tokens * FILL),
        ),
    ]
    pairs, topics = len(n.pairs), n.topics.n
    turns = sum(PROTOCOLS.get(m).turns(n) for m in n.methods) * pairs * topics  # each protocol's spec
    out += [
        Work(
            "02",
            "negotiations",
            "model",
            turns * n.turn_tokens * FILL,
            turns * PROMPT["negotiation"] * (3 if "ncn" in n.methods else 1),
        ),
        Work(
            "03",
            "acceptance and values",
            "value_judge",
            len(n.methods) * pairs * topics * 4 * 200,
            len(n.methods) * pairs * topics * 6 * PROMPT["negotiation"],
        ),
    ]
    release = _release_transcripts(p)
    out += [
        Work(
            "05",
            "the release judged and scored",
            "value_judge",
            release * 2 * 160 * FILL,
            release * (2 * PROMPT["judge"] + 4 * PROMPT["negotiation"]),
        )
    ]
    sources = len(f.from_methods)
    records = pairs * topics * 2 * (1 - n.topics.heldout_share)
    models = len(f.methods) * sources
    pref = 2  # chosen and rejected
    out += [
        Work(
            "04",
            "finetune",
            "trainer",
            trained=models * records * _epochs(f.trl) * pref * PROMPT["negotiation"],
        ),
        Work(
            "04",
            "distance, alignment and capability",
            "model",
            (models + 1) * f.heldout_topics * pairs * 2 * n.turn_tokens * FILL,
            (models + 1) * test_q * PROMPT["survey"],
        ),
    ]
    queries = pal.queries.n
    per_query = pal.response_tokens + 4 * pal.feedback_tokens + pal.aggregate_tokens
    continents = 5
    pal_test = _goqa_items(p, pal.countries, pal.max_test_items, False)
    out += [
        Work(
            "10",
            "synthesis",
            "palette_teacher",
            queries * continents * per_query * FILL,
            queries * continents * 6 * PROMPT["palette"],
        ),
        Work(
            "11",
            "ORPO continent agents and joint",
            "trainer",
            trained=2
            * queries
            * continents
            * _epochs(pal.train.trl)
            * pref
            * (PROMPT["palette"] + pal.response_tokens),
        ),
        Work(
            "12",
            "Table 1, consistency and capability",
            "model",
            pal_test * (continents + 2) * (pal.draft_tokens + pal.regulate_tokens) * FILL,
            pal_test * 12 * PROMPT["survey"] + pal.nli_items * 6 * PROMPT["palette"],
        ),
    ]
    items = (v.n_goqa + v.n_moralchoice) * (1 - v.test_fraction)
    gens = int(v.rewriter.trl.get("num_generations", 4))
    out += [
        Work(
            "20",
            "corpus, teacher and translator",
            "visa_teacher",
            (v.n_goqa + v.n_moralchoice) * (v.answer_tokens + v.judge_tokens) * FILL,
            (v.n_goqa + v.n_moralchoice) * 2 * PROMPT["visa"],
        ),
        Work(
            "21",
            "GRPO rollouts",
            "model",
            items * _epochs(v.rewriter.trl) * gens * v.rewrite_tokens * FILL,
            items * _epochs(v.rewriter.trl) * gens * PROMPT["visa"],
        ),
        Work(
            "21",
            "GRPO, SFT and DPO training",
            "trainer",
            trained=items
            * (_epochs(v.rewriter.trl) * gens + 2 * _epochs(v.sft.trl) + 2 * _epochs(v.direct.trl))
            * (PROMPT["visa"] + v.rewrite_tokens),
        ),
        Work(
            "21",
            "best-of-n and direct samples",
            "model",
            2 * items * v.best_of * v.rewrite_tokens * FILL,
            2 * items * v.best_of * PROMPT["visa"],
        ),
        Work(
            "22",
            "held-out table",
            "visa_judge",
            v.max_test_items * 6 * (v.rewrite_tokens + v.judge_tokens) * FILL,
            v.max_test_items * 12 * PROMPT["visa"],
        ),
    ]
    dilemmas = (sp.n_generated + sp.n_moralchoice) * (1 - sp.test_fraction)
    sp_gens = int(sp.policy.trl.get("num_generations", 4))
    policies = 1 + bool(sp.ablation_rewards)  # self-play, and its self_play_grpo+joint ablation
    dialogue = sp.max_turns * sp.turn_tokens * FILL
    out += [
        Work(
            "30",
            "dilemmas",
            "model",
            sp.n_generated * sp.generation_tokens * FILL,
            sp.n_generated * PROMPT["dialogue"] / 2,
        ),
        Work(
            "31",
            "self-play rollouts",
            "model",
            policies * dilemmas * _epochs(sp.policy.trl) * sp_gens * dialogue,
            policies * dilemmas * _epochs(sp.policy.trl) * sp_gens * sp.max_turns * PROMPT["dialogue"] / 4,
        ),
        Work(
            "31",
            "judge",
            "selfplay_judge",
            prefilled=dilemmas
            * (policies * _epochs(sp.policy.trl) + _epochs(sp.single.trl))
            * sp_gens
            * PROMPT["judge"],
        ),
        Work(
            "31",
            "GRPO training",
            "trainer",
            trained=dilemmas
            * sp_gens
            * (policies * _epochs(sp.policy.trl) * (512 + dialogue) + _epochs(sp.single.trl) * (512 + 256)),
        ),
        # every method's dialogues (untrained, single agent, the self-play policies), and each one's single answer
        Work(
            "32",
            "held-out dialogues and NCN study",
            "model",
            (sp.max_test_items * (2 + policies) + pairs * topics * (1 + policies)) * dialogue
            + sp.max_test_items * (2 + policies) * sp.turn_tokens * FILL,
            (sp.max_test_items * (2 + policies) + pairs * topics * (1 + policies))
            * sp.max_turns
            * PROMPT["dialogue"]
            / 4,
        ),
        Work(
            "32",
            "judge",
            "selfplay_eval_judge",
            prefilled=(sp.max_test_items * 2 * (2 + policies) + pairs * topics * (1 + policies))
            * PROMPT["judge"],
        ),
    ]
    # every unit's capability step (kit.evals.harness): the base model and each artifact through lm-eval's tasks
    out += [
        _capability(p, "01", len(a.countries) * grounded + 1, a.capability_items),
        _capability(p, "04", models + 1, f.capability_items),
        _capability(p, "12", continents + 1 + 3 + 1, pal.capability_items),
        _capability(p, "22", 4, v.capability_items),
        _capability(p, "32", 1 + 1 + policies, sp.capability_items),
    ]
    return [w for w in out if w.generated or w.prefilled or w.trained] if batch else out


# per lm-eval task: (prompt tokens read per item, tokens generated per item, items per ``limit`` item: mmlu's 57
# subtasks each take the limit); the kit's MoralChoice items read one prompt for their four one-token continuations;
# an MMLU question with its four options is under 200 tokens zero-shot, an IFEval reply a few hundred
TASK_TOKENS = {
    "agora_moralchoice_low": (150, 0, 1),
    "agora_moralchoice_high": (150, 0, 1),
    "agora_neutral_ppl": (60, 0, 0),
    "mmlu": (180, 0, 57),
    "gpqa_diamond_zeroshot": (400, 0, 1),
    "ifeval": (100, 400, 1),
}
NEUTRAL_PASSAGES = 8


def _capability(params: Params, notebook: str, models: int, limit: int) -> Work:
    """A capability step's tokens: every model through every task of ``capability.tasks``, ``limit`` items each."""
    prefilled = generated = 0.0
    for task in params.capability.tasks:
        prompt, gen, per = TASK_TOKENS.get(task, (500, 0, 1))
        items = NEUTRAL_PASSAGES if task == "agora_neutral_ppl" else limit * per
        prefilled += items * prompt
        generated += items * gen
    return Work(notebook, "capability (lm-eval)", "model", models * generated, models * prefilled)


def _release_transcripts(params: Params) -> int:
    """Transcripts notebook 05 reads from the NCN release: pairs x methods x topics (457 topics a pair)."""
    r = params.ncn_release
    pairs = len(r.pairs) if r.pairs else 5
    return pairs * len(r.methods) * (r.max_items or 457)


def _epochs(trl: dict) -> float:
    return float(trl.get("num_train_epochs", 3.0))


def _params_b(params: Params, key: str) -> float:
    from kit.plan.catalog import shape

    model = params.model if key in ("model", "trainer") else params.role_model(key)
    return shape(model.name, model.revision, model.params_b).params / 1e9


def hours(params: Params, gpu: GPU = H100, decode_tok_s: float | None = None) -> list[dict]:
    """GPU-hours per work item: decode at the measured (or roofline) rate, prefill and training at the GPU's FLOPs.
    ``decode_tok_s``: a benchmark's aggregate decode rate of the agents' model, scaled to other models by size."""
    rows = []
    base_b = _params_b(params, "model")
    for w in workload(params):
        b = _params_b(params, w.model)
        if decode_tok_s:
            decode = decode_tok_s * base_b / b
        else:  # one step reads the weights once for the whole batch
            step_s = b * 1e9 * 2 / (gpu.hbm_tb_s * 1e12 * gpu.decode_efficiency)
            decode = min(w.concurrency, params.model.batch_size) / step_s
        prefill = gpu.bf16_tflops * 1e12 * gpu.prefill_mfu / (2 * b * 1e9)
        train = gpu.bf16_tflops * 1e12 * gpu.train_mfu / (6 * b * 1e9)  # forward, backward and the recompute
        seconds = w.generated / decode + w.prefilled / prefill + w.trained / train
        rows.append(
            {
                "notebook": w.notebook,
                "work": w.what,
                "model": w.model,
                "generated_m": w.generated / 1e6,
                "prefilled_m": w.prefilled / 1e6,
                "trained_m": w.trained / 1e6,
                "gpu_hours": seconds / 3600,
            }
        )
    return rows


def measured_decode(params: Params) -> float | None:
    """The aggregate decode rate of a stored ``kit bench generate`` of this profile on vLLM, if there is one."""
    from kit.run.files import read_json

    stored = read_json(params.run_dir / "bench" / "generate@vllm.json")
    if not stored:
        return None
    result = stored.get("result", {})
    value = result.get("batched_tok_s") or result.get("tok_s")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None
