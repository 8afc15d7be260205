"""The training package's own params: a LoRA training recipe (``TrainRecipe``, used by every section that
trains), notebook 04's ``finetune`` section (``FinetuneParams``), the reward weights of the GRPO sections, and
the check of every recipe of a profile by building its trl and peft configs (``check_recipes``). ``kit.config``
composes them; the names they validate against are this package's registries (``TRAINERS``, ``REWARDS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, PositiveInt, field_validator, model_validator

from kit.llm.models import module_names
from kit.registry import PROTOCOLS
from kit.run.sections import Section, registered, reward_weights, unique
from kit.train.recipes import TRAINERS, check
from kit.train.rewards import REWARDS

if TYPE_CHECKING:  # annotations only: kit.config composes this module
    from kit.config import Params


class TrainRecipe(Section):
    """A LoRA training recipe in the libraries' own keys, as alignment-handbook recipes are written.

    ``lora`` holds ``peft.LoraConfig`` keys and ``trl`` the keys of the trl configs (``DPOConfig``,
    ``SFTConfig`` …, i.e. ``transformers.TrainingArguments`` plus each method's own); both are
    merged over the kit's defaults (``kit.train.recipes``) and checked by building the configs.
    """

    lora: dict[str, Any] = Field(default_factory=dict)
    trl: dict[str, Any] = Field(default_factory=dict)


RELEASE_SOURCE = (
    "ncn_release:"  # finetune.from_methods: the NCN paper's own transcripts of a method (ncn_release section)
)
RELEASE_METHODS = ("ncn", "debate", "consultancy")  # the methods the release holds, as the kit names them


def release_source(name: str) -> str:
    method = name.removeprefix(RELEASE_SOURCE)
    if method not in RELEASE_METHODS:
        raise ValueError(
            f"{name!r}: the NCN release holds {', '.join(RELEASE_SOURCE + m for m in RELEASE_METHODS)}"
        )
    return name


class FinetuneParams(TrainRecipe):
    """Notebook 04 and ``python -m kit train``: DPO / SimPO / ORPO / SFT with LoRA on negotiation data.

    ``trl`` keys apply to every method whose trl config has them (``beta`` to DPO, SimPO and ORPO,
    not SFT); ``per_method`` overrides them for one method, e.g. ``{orpo: {beta: 0.2}}``.
    """

    methods: list[str] = Field(default_factory=lambda: ["dpo", "simpo", "orpo", "sft"], min_length=1)
    # the negotiation methods whose traces train: one adapter per (source, method), so a gain is
    # credited to the method that made the data; ncn_release:<method> trains on the NCN paper's own
    # transcripts of that method (the ncn_release section says which)
    from_methods: list[str] = Field(default_factory=lambda: ["ncn"], min_length=1)
    per_method: dict[str, dict[str, Any]] = Field(default_factory=dict)
    eval_fraction: float = Field(0.2, ge=0, lt=1)
    # Preference pairs from converged negotiations only (small smoke runs rarely converge); it filters
    # only the protocols with a stopping rule (kit.registry.stopping_rules()); the others have no rule to meet.
    require_converged: bool = True
    # Every source's training set cut to the smallest non-empty one (a seeded subsample), so that
    # method@source compares the methods' data, not its size.
    equal_sources: bool = True
    heldout_topics: PositiveInt = 2
    capability_items: PositiveInt = 40

    @field_validator("methods")
    @classmethod
    def _registered_trainers(cls, v: list[str]) -> list[str]:
        return unique([registered(TRAINERS, name) for name in v])

    @field_validator("from_methods")
    @classmethod
    def _registered_sources(cls, v: list[str]) -> list[str]:
        return unique(
            [
                release_source(name) if name.startswith(RELEASE_SOURCE) else registered(PROTOCOLS, name)
                for name in v
            ]
        )

    @model_validator(mode="after")
    def _per_method(self):
        unused = sorted(set(self.per_method) - set(self.methods))
        if unused:
            raise ValueError(f"per_method names {unused}, which methods does not list ({self.methods})")
        return self


def registered_rewards(v: dict[str, float]) -> dict[str, float]:
    """Reward name -> weight (trl's ``reward_weights``): names in ``REWARDS``, weights ≥ 0 with one above 0."""
    for name in v:
        registered(REWARDS, name)
    return reward_weights(v)


def training_recipes(params: Params) -> dict[str, tuple[TrainRecipe, list[str], dict[str, dict[str, Any]]]]:
    """Every training recipe of a profile: params key -> (recipe, the methods it trains, per-method keys)."""
    f, v, sp = params.finetune, params.visa, params.selfplay
    return {
        "agents.sft": (params.agents.sft, ["sft"], {}),
        "finetune": (f, f.methods, f.per_method),
        "palette.train": (params.palette.train, ["orpo"], {}),
        "visa.rewriter": (v.rewriter, ["grpo"], {}),
        "visa.sft": (v.sft, ["sft"], {}),
        "visa.direct": (v.direct, ["dpo"], {}),
        "selfplay.policy": (sp.policy, ["grpo"], {}),
        "selfplay.single": (sp.single, ["grpo"], {}),
    }


def check_recipes(params: Params, values: dict) -> None:
    """Training recipes are checked by building their trl and peft configs (imports trl: only for
    the sections given)."""
    names: list[
        dict[str, str] | None
    ] = []  # the model's module names, read once and only when a recipe lists some

    def modules() -> dict[str, str] | None:
        if not names:
            names.append(
                module_names(params.model.name, params.model.revision, params.model.trust_remote_code)
            )
        return names[0]

    for where, (recipe, methods, per_method) in training_recipes(params).items():
        if where.partition(".")[0] in values:
            check(recipe.lora, recipe.trl, methods, per_method, where, modules)
