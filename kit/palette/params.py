"""The Cultural Palette's own params section (``palette``, unit 1x) and its checks across sections: every
palette country has held-out questions (``check_items``), the MoE recipe has an output architecture for the
profile's base (``check_merges``). ``kit.config`` composes them; the checks read this package's data split and
mergekit's rules, imported when a profile holds a palette section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, PositiveInt, field_validator

from kit.data.cultures import continent_of
from kit.data.params import TopicsParams
from kit.evals.params import registered_nli
from kit.run import paths
from kit.run.sections import MAX_RETRIES, Section, existing_file, unique
from kit.train.params import TrainRecipe

if TYPE_CHECKING:  # annotations only: kit.config composes this module
    from kit.config import Params


MLP_PROJECTIONS = ["gate_proj", "up_proj", "down_proj"]


class PaletteParams(Section):
    """Unit 1x, Cultural Palette: the palette data, continent agents, merges, the meta agent, Table 1."""

    # user queries to synthesise responses for; the held-out pool is kept for semantic consistency
    queries: TopicsParams = TopicsParams(source="goqa", n=8)
    # train from published data instead of synthesising (HF hub id with query, response,
    # rejected_response and a continent column; online runs)
    dataset: str | None = None
    dataset_continent_field: str = "continent"
    response_tokens: PositiveInt = 192
    feedback_tokens: PositiveInt = 160
    aggregate_tokens: PositiveInt = 192
    min_words: PositiveInt = 8  # validation: a shorter response or aggregation is dropped
    min_dimensions: int = Field(
        4, ge=0, le=6
    )  # validation: a review must cover this many Hofstede dimensions
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES)
    # ORPO continent agents and the joint model (paper: λ 0.1, lr 5e-5, 2 epochs); LoRA on the MLP
    # projections only, since an MoE merge copies attention from the base model
    train: TrainRecipe = TrainRecipe(
        lora={"target_modules": MLP_PROJECTIONS},
        trl={"learning_rate": 5e-5, "num_train_epochs": 2, "beta": 0.1},
    )
    # mergekit recipes in mergekit's own YAML; the kit fills in the base model and the experts
    merges: dict[str, str] = Field(
        default_factory=lambda: {
            "ties": "params/merges/ties.yml",
            "model_stock": "params/merges/model_stock.yml",
            "moe": "params/merges/moe.yml",
        }
    )
    countries: list[str] = Field(
        default_factory=lambda: [
            "United States",
            "Canada",
            "Bolivia",
            "Brazil",
            "Britain",
            "Netherlands",
            "Germany",
            "Ukraine",
            "China",
            "Russia",
            "India",
            "Thailand",
            "Kenya",
            "Nigeria",
            "Ethiopia",
            "Zimbabwe",
            "Australia",
            "New Zealand",
        ],
        min_length=1,
    )
    max_test_items: PositiveInt = 50
    draft_tokens: PositiveInt = 128
    regulate_tokens: PositiveInt = 192
    comment_tokens: PositiveInt = 128  # Modular Pluralism's community comments
    nli: str = "judge"  # a name in kit.evals.nli.NLI_SCORERS
    nli_items: PositiveInt = 20
    capability_items: PositiveInt = 40  # MoralChoice low-ambiguity items for every palette artifact

    @field_validator("merges")
    @classmethod
    def _merge_recipes(cls, v: dict[str, str]) -> dict[str, str]:
        missing = sorted({"ties", "model_stock", "moe"} - set(v))
        if missing:
            raise ValueError(f"needs a recipe for {missing}")
        for path in v.values():
            existing_file(path)
        return v

    @field_validator("countries")
    @classmethod
    def _palette_countries(cls, v: list[str]) -> list[str]:
        for country in v:
            continent_of(country)
        return unique(v)

    @field_validator("nli")
    @classmethod
    def _registered_nli(cls, v: str) -> str:
        return registered_nli(v)

    @field_validator("train")
    @classmethod
    def _mlp_only(cls, v: TrainRecipe) -> TrainRecipe:
        targets = v.lora.get("target_modules", MLP_PROJECTIONS)
        if sorted(targets) != sorted(MLP_PROJECTIONS):
            raise ValueError(
                f"lora.target_modules must be {MLP_PROJECTIONS}: mergekit-moe copies attention, "
                "norms and embeddings from the base model, so other LoRA deltas would be lost"
            )
        return v.model_copy(update={"lora": {**v.lora, "target_modules": MLP_PROJECTIONS}})


def check_items(params: Params, values: dict) -> None:
    """Every palette country has held-out questions (notebook 12 scores each country on its own)."""
    if "palette" not in values or "data" not in values:
        return
    import logging

    from kit.palette.evaluation import test_items

    logging.disable(
        logging.WARNING
    )  # the split's own line on each skipped country: the error below says it once
    try:
        test_items(params)
    except ValueError as e:
        raise ValueError(
            f"palette.countries: {e}; fix: drop them from palette.countries, or point "
            "data.goqa_test_path at data that holds them"
        ) from None
    finally:
        logging.disable(logging.NOTSET)


def check_merges(params: Params, values: dict) -> None:
    """The MoE recipe has an output architecture for the profile's base (mergekit's own rules, before any training)."""
    if "palette" in values:
        from kit.palette.merges import check_moe

        try:
            check_moe(paths.resolve(params.palette.merges["moe"]), params.model.name, params.model.revision)
        except ValueError as e:
            raise ValueError(f"palette.merges.moe: {e}") from None
