"""VISA's own params section (``visa``, unit 2x): the corpus, the trained value detector, the translator, the
GRPO rewriter and its baselines; its reward, detector and NLI names are checked against the registries that
run them. ``kit.config`` composes it."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator, model_validator

from kit.evals.params import registered_nli
from kit.run.sections import MAX_RETRIES, Section, registered, unique
from kit.train.params import TrainRecipe, registered_rewards


class VisaParams(Section):
    """Unit 2x, VISA: the corpus, the trained value detector, the translator, the GRPO rewriter, its
    baselines and the held-out table."""

    # questions the base model answers: train-split GlobalOpinionQA questions and high-ambiguity dilemmas
    n_goqa: int = Field(24, ge=0)
    n_moralchoice: int = Field(16, ge=0)
    test_fraction: float = Field(0.3, gt=0, lt=1)  # items held out from every training, by id
    answer_tokens: PositiveInt = 96
    answer_temperature: float = Field(0.0, ge=0)  # 0: greedy answers; above: one seeded sample each
    min_words: PositiveInt = 8  # a shorter answer is dropped (and listed)
    # the detector whose labels the trained detector learns (the LLM judge; the embedding proxy on
    # models too small to write the judge's JSON)
    teacher: str = "llm"
    judge_tokens: PositiveInt = 200
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES)
    detector_c: float = Field(1.0, gt=0)  # inverse L2 strength of the per-value logistic regressions
    n_targeted: int = Field(2, ge=1, le=10)  # values each target pushes up or down
    translator_tokens: PositiveInt = 64
    round_trip_targets: PositiveInt = (
        12  # sampled targets the translator reads back (beside the hand-written ones)
    )
    rewrite_tokens: PositiveInt = 96
    # reward name -> weight (trl's reward_weights); names in kit.train.rewards.REWARDS
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"value_match": 1.0, "meaning_kept": 1.0, "drift": 0.5, "format": 0.25},
        min_length=1,
    )
    reward_detector: str = "trained"  # the detector the rewards read (kit.values.DETECTORS)
    nli: str | None = None  # an NLI scorer averaged into meaning_kept (kit.evals.nli.NLI_SCORERS), or null
    max_words: PositiveInt = 120  # format: a rewrite has between min_words and max_words words
    rewriter: TrainRecipe = TrainRecipe(trl={"num_train_epochs": 1})  # trl GRPOConfig keys
    best_of: PositiveInt = 4  # samples per item for the SFT rewriter and the direct-finetuning pairs
    sample_temperature: float = Field(0.9, gt=0)
    sft: TrainRecipe = TrainRecipe(trl={"num_train_epochs": 2})
    direct: TrainRecipe = TrainRecipe(trl={"num_train_epochs": 2})  # DPO of the answering model
    eval_detector: str = "llm"  # reads the held-out rewrites; the judge the trained detector imitates
    max_test_items: PositiveInt = 40
    capability_items: PositiveInt = 24
    goqa_items: PositiveInt = 50  # held-out GlobalOpinionQA questions per country rewritten toward its values
    culture_countries: list[str] = Field(default_factory=list)  # answers made to speak for these cultures

    _once = field_validator("culture_countries")(unique)

    @field_validator("rewards")
    @classmethod
    def _registered_rewards(cls, v: dict[str, float]) -> dict[str, float]:
        return registered_rewards(v)

    @field_validator("reward_detector", "eval_detector", "teacher")
    @classmethod
    def _registered_detector(cls, v: str) -> str:
        from kit.values import DETECTORS  # loads pandas: read when a profile holds a visa section

        return registered(DETECTORS, v)

    @field_validator("teacher")
    @classmethod
    def _not_trained(cls, v: str) -> str:
        if v == "trained":
            raise ValueError("the trained detector learns from the teacher; use llm or embedding")
        return v

    @field_validator("nli")
    @classmethod
    def _registered_nli(cls, v: str | None) -> str | None:
        return registered_nli(v)

    @model_validator(mode="after")
    def _enough_questions(self) -> VisaParams:
        if self.n_goqa + self.n_moralchoice < 4:
            raise ValueError("n_goqa + n_moralchoice must be at least 4, so both splits hold items")
        return self
