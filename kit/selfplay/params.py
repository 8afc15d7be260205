"""Self-play negotiation's own params section (``selfplay``, unit 3x): dilemmas and personas, self-play and
single-agent GRPO on a Collective Agency judge, the held-out table. ``kit.config`` composes it."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator, model_validator

from kit.run.sections import MAX_RETRIES, Section, registered, reward_weights
from kit.train.params import TrainRecipe
from kit.train.rewards import REWARDS


class SelfPlayParams(Section):
    """Unit 3x, learning to negotiate by self-play: dilemmas and personas, self-play and single-agent
    GRPO on a Collective Agency judge, and the held-out table."""

    n_generated: int = Field(12, ge=0)  # dilemmas (with persona pairs) the model is asked to write
    generation_tokens: PositiveInt = 200
    generation_temperature: float = Field(0.9, gt=0)
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES)
    n_moralchoice: int = Field(12, ge=0)  # high-ambiguity MoralChoice scenarios, one action per persona
    dedup_cosine: float = Field(0.9, gt=0, le=1)  # a dilemma this close to a kept one is dropped
    test_fraction: float = Field(
        0.3, gt=0, lt=1
    )  # dilemmas held out from every training, by the stem of their text
    max_turns: int = Field(6, ge=2)  # turns of a dialogue, both sides together; a speaks first
    turn_tokens: PositiveInt = 96
    turn_words: PositiveInt = 60  # the length each side is asked to keep a turn under
    # a judgement whose probability on the labels 1-5 is below this is missing (counted), never a guess
    judge_min_mass: float = Field(0.5, ge=0, le=1)
    # two sides' stated solutions agree (a dialogue is resolved) at this sentence-embedding cosine
    # (kit.selfplay.dialogue.AGREE_COSINE, validated on hand pairs in tests/test_selfplay.py)
    agree_cosine: float = Field(0.8, gt=0, le=1)
    # notebook 30 stops when fewer of the generated dilemmas than this share parsed
    min_parsed_share: float = Field(0.5, ge=0, le=1)
    # reward name -> weight (trl's reward_weights); names in kit.train.rewards.REWARDS. The paper trains on
    # Collective Agency alone, and so does the kit by default
    rewards: dict[str, float] = Field(default_factory=lambda: {"collective_agency": 1.0}, min_length=1)
    # an ablation row, self_play_grpo+joint: a second self-play policy on these rewards (null: not trained); with
    # joint_solution it rewards the very test the table's resolution_rate reads
    ablation_rewards: dict[str, float] | None = Field(
        default_factory=lambda: {"collective_agency": 1.0, "joint_solution": 0.5}
    )
    single_rewards: dict[str, float] = Field(default_factory=lambda: {"collective_agency": 1.0}, min_length=1)
    # self-play GRPO (trl GRPOConfig keys): a dialogue is long, so a group of 4 is played at once and
    # trained one rollout at a time (gradient accumulation), which keeps the logits of one dialogue in memory
    policy: TrainRecipe = TrainRecipe(
        trl={"num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4}
    )
    single: TrainRecipe = TrainRecipe(trl={"num_train_epochs": 1})  # single-agent GRPO
    # held-out dialogues: sampled at this temperature with seeds from (seed, turn), shared by every method; 0: greedy
    eval_temperature: float = Field(0.7, ge=0)
    max_test_items: PositiveInt = 40
    capability_items: PositiveInt = 24

    @field_validator("rewards", "single_rewards", "ablation_rewards")
    @classmethod
    def _registered_rewards(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("names no reward; give one, or null for no ablation row")
        for name in v:
            registered(REWARDS, name)
            if name not in ("collective_agency", "joint_solution"):
                raise ValueError(
                    f"{name!r} is not a self-play reward; use collective_agency and joint_solution"
                )
        return reward_weights(v)

    @model_validator(mode="after")
    def _enough_dilemmas(self) -> SelfPlayParams:
        if self.n_generated + self.n_moralchoice < 4:
            raise ValueError("n_generated + n_moralchoice must be at least 4, so both splits hold dilemmas")
        return self
