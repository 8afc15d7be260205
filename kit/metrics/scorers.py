"""One contract for every scorer: each metric, reward and verdict the kit reports is a named spec here.

A :class:`ScorerSpec` says what a number is — its direction (``higher`` or ``lower`` is better), its
range, the notebooks that report it, what it reads (``text``, ``distribution``, ``vector``, ``verdict``)
and so which degenerate outputs of :data:`BATTERY` it must not reward — and names a *probe*, the function
that feeds one battery case through the code path the units use (``"module:function"``, loaded lazily).
``tests/test_scorer_contract.py`` enumerates :data:`SCORERS` and feeds every spec every case it reads,
beside a real, faithful output: a degenerate case must come back *missing* (``None`` or NaN: left out and
counted) or no better than the faithful one (strictly worse for a verdict). A scorer registered later is
covered without a new test; a case that cannot apply to a scorer is named in ``exempt`` with the reason.

The evaluation code, the boards, the report and the docs read names, directions, ranges and worst values
from here (:func:`spec`, :func:`worst`, :func:`better`); ``docs/metrics.md`` lists every spec (a test
keeps it in step).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

Direction = Literal["higher", "lower"]
Kind = Literal["metric", "reward", "verdict", "check"]

# --- the battery: the degenerate outputs every scorer is fed ---------------------------------------------------

HEADINGS_ONLY = (
    "## Core Values\n## Accepted Behaviors\n## Rejected Phenomena\n## Perspectives\n"
    "## Attitude toward other worldviews"
)
BARE_MARKER = (
    "AGREE\nJOINT SOLUTION:"  # the debate's and the self-play dialogue's markers, nothing after them
)
NO_OPINION = "I have no opinion."
TEXT_CASES = (
    "empty",
    "hashes",
    "one word repeated",
    "bare marker",
    "source copied",
    "opponent copied",
    "headings only",
    "no opinion",
)
DISTRIBUTION_CASES = ("zero label mass", "flat", "half-flattened")
VECTOR_CASES = ("all-zero vectors",)
# a verdict on two items; one whose method failed (and dropped) the items it would lose; a reference row as winner
VERDICT_CASES = ("too few items", "failures dropped", "reference row")
BATTERY: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"text": TEXT_CASES, "distribution": DISTRIBUTION_CASES, "vector": VECTOR_CASES, "verdict": VERDICT_CASES}
)


def text_case(case: str, source: str, opponent: str) -> str:
    """The battery's text for ``case``: ``source`` is what the scored text was written from (the answer a
    rewrite starts from, a side's own opening), ``opponent`` the other side's text."""
    return {
        "empty": "",
        "hashes": "##\n" * 12,
        "one word repeated": "values " * 40,
        "bare marker": BARE_MARKER,
        "source copied": source,
        "opponent copied": opponent,
        "headings only": HEADINGS_ONLY,
        "no opinion": NO_OPINION,
    }[case]


def distribution_case(case: str, faithful: Any) -> tuple[np.ndarray, float]:
    """The battery's (option probabilities, label mass) for ``case`` beside a faithful answer: what a backend
    returns when no probability fell on the option letters (uniform, mass 0), the uniform answer, and the
    faithful answer mixed half-and-half with uniform."""
    p = np.asarray(faithful, dtype=float)
    p = p / p.sum()
    flat = np.full(p.size, 1.0 / p.size)
    return {"zero label mass": (flat, 0.0), "flat": (flat, 1.0), "half-flattened": ((p + flat) / 2, 1.0)}[
        case
    ]


def vector_case(case: str, size: int = 10) -> np.ndarray:
    return {"all-zero vectors": np.zeros(size)}[case]


# --- specs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer's contract (module docstring)."""

    name: str
    kind: Kind
    direction: Direction
    low: float
    high: float
    units: tuple[str, ...]  # the notebooks that report it
    reads: tuple[str, ...]  # keys of BATTERY
    probe: str  # "module:function": probe(case, faithful) -> score, None or NaN when missing
    doc: str
    exempt: Mapping[str, str] = field(default_factory=dict)  # battery case -> why it does not apply
    # a model scores the text (a perplexity, a judge): a degenerate text must be left out (missing) or given the
    # worst value before any model reads it, never compared with the faithful one's score by chance
    gated: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(
                f"scorer {self.name!r}: direction must be 'higher' or 'lower', got {self.direction!r}"
            )
        if not self.low < self.high:
            raise ValueError(f"scorer {self.name!r}: range [{self.low}, {self.high}] is empty")
        unknown = [r for r in self.reads if r not in BATTERY]
        if unknown:
            raise ValueError(f"scorer {self.name!r} reads {unknown}; choose from {sorted(BATTERY)}")
        stray = [c for c in self.exempt if c not in self.all_cases]
        if stray:
            raise ValueError(f"scorer {self.name!r} exempts {stray}, which it does not read")
        if not self.units:
            raise ValueError(f"scorer {self.name!r} names no notebook that reports it")

    @property
    def all_cases(self) -> tuple[str, ...]:
        return tuple(c for r in self.reads for c in BATTERY[r])

    @property
    def cases(self) -> tuple[str, ...]:
        """The battery cases this scorer is fed (all it reads, less the exempt ones)."""
        return tuple(c for c in self.all_cases if c not in self.exempt)

    @property
    def worst(self) -> float:
        """The worst value in range: what a failure is scored as where failures count against a method."""
        return self.low if self.direction == "higher" else self.high

    @property
    def best(self) -> float:
        return self.high if self.direction == "higher" else self.low

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.direction == "higher" else a < b

    def signed(self, diff: float) -> float:
        """A difference of this score with its sign turned so that above 0 is better."""
        return diff if self.direction == "higher" else -diff

    def in_range(self, value: float, tol: float = 1e-9) -> bool:
        return self.low - tol <= value <= self.high + tol

    def run_probe(self) -> Callable[..., Any]:
        module, _, attr = self.probe.partition(":")
        return getattr(importlib.import_module(module), attr)


SCORERS: dict[str, ScorerSpec] = {}


def register(s: ScorerSpec) -> ScorerSpec:
    if s.name in SCORERS and SCORERS[s.name] != s:
        raise ValueError(f"scorer {s.name!r} is registered twice")
    SCORERS[s.name] = s
    return s


def spec(name: str) -> ScorerSpec:
    if name not in SCORERS:
        import difflib

        close = difflib.get_close_matches(name, list(SCORERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown scorer {name!r}{hint}; registered in kit.metrics.scorers: {', '.join(SCORERS)}"
        )
    return SCORERS[name]


def direction(name: str) -> Direction:
    return spec(name).direction


def worst(name: str) -> float:
    return spec(name).worst


def better(name: str, a: float, b: float) -> bool:
    return spec(name).better(a, b)


def missing(value: Any) -> bool:
    """A probe's answer that says "not scored": None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


INF = math.inf
_P = "kit.evals.contract:"
_NONE_ROW = (
    "the `none` reference row is the opening copied by construction: a reference, never scored as a method"
)
_NEVER_SEES = "the answering model never sees the gold response or another continent's"

for _name, _high, _doc in (
    ("s_align", 100.0, "Cultural Palette's (1 − JS divergence) × 100, log base 2"),
    ("js_similarity", 100.0, "(1 − JS distance) × 100, log base 2 (Durmus et al., Modular Pluralism)"),
    ("js_similarity_e", 100.0, "(1 − JS distance) × 100, natural log (the Modular Pluralism release)"),
    ("argmax_agree", 1.0, "the most likely options coincide (ties shared)"),
):
    register(
        ScorerSpec(
            _name,
            "metric",
            "higher",
            0.0,
            _high,
            ("01", "04", "12", "22", "90"),
            ("distribution",),
            _P + "alignment",
            _doc + "; an answer below evals.min_label_mass is missing",
        )
    )

register(
    ScorerSpec(
        "rel_logppl_change",
        "metric",
        "lower",
        -INF,
        INF,
        ("03", "05", "32", "90"),
        ("text",),
        _P + "acceptance",
        "change of log PPL_other − log PPL_base on each side's text, initial → final "
        "(below 0: each side came to accept the other's text)",
        {"source copied": _NONE_ROW},
        gated=True,
    )
)
register(
    ScorerSpec(
        "rel_logppl",
        "metric",
        "lower",
        -INF,
        INF,
        ("32",),
        ("text",),
        _P + "selfplay_acceptance",
        "a self-play solution's log PPL under each persona − log PPL of the plain model, averaged; no "
        "solution is left out",
        gated=True,
    )
)
register(
    ScorerSpec(
        "d_ratio",
        "metric",
        "lower",
        0.0,
        INF,
        ("03", "90"),
        ("text",),
        _P + "acceptance",
        "NCN's D_final / D_initial, D = |PPL_B(r_A) − PPL_A(r_B)|",
        {"source copied": _NONE_ROW},
        gated=True,
    )
)
register(
    ScorerSpec(
        "share_improved",
        "metric",
        "higher",
        0.0,
        1.0,
        ("03", "90"),
        ("text",),
        _P + "acceptance",
        "share of items whose D fell",
        {"source copied": _NONE_ROW},
        gated=True,
    )
)
register(
    ScorerSpec(
        "value_consensus",
        "metric",
        "higher",
        -1.0,
        1.0,
        ("03", "05", "90"),
        ("text", "vector"),
        _P + "value_metric",
        "cos(v(final_A), v(final_B)); an all-zero vector is missing",
    )
)
register(
    ScorerSpec(
        "self_consistency",
        "metric",
        "higher",
        -1.0,
        1.0,
        ("03", "05", "90"),
        ("text", "vector"),
        _P + "value_metric",
        "cos(v(final), v(initial)) per side; an all-zero vector is missing",
        {"source copied": _NONE_ROW},
    )
)
register(
    ScorerSpec(
        "value_distance",
        "metric",
        "lower",
        0.0,
        2 * math.sqrt(10),
        ("03", "04"),
        ("text", "vector"),
        _P + "value_metric",
        "Euclidean distance of two value vectors; an all-zero vector is missing",
    )
)
register(
    ScorerSpec(
        "distance_reduction",
        "metric",
        "higher",
        -INF,
        100.0,
        ("03", "04"),
        ("text", "vector"),
        _P + "value_metric",
        "(before − after) / before × 100 of the value distance",
        {"source copied": _NONE_ROW},
    )
)
register(
    ScorerSpec(
        "moralchoice_low_accuracy",
        "metric",
        "higher",
        0.0,
        1.0,
        ("01", "04", "12", "22", "32", "90"),
        ("distribution",),
        _P + "moralchoice",
        "the right action strictly more likely; no mass on the letters is no answer",
    )
)
register(
    ScorerSpec(
        "semantic_consistency",
        "metric",
        "higher",
        0.0,
        1.0,
        ("12",),
        ("text", "distribution"),
        _P + "entailment",
        "P(gold entails answer) by the NLI scorer; a judge with no mass on A/B/C is "
        "missing, a degenerate answer scores 0",
        {"source copied": _NEVER_SEES, "opponent copied": _NEVER_SEES},
        gated=True,
    )
)
register(
    ScorerSpec(
        "value_f1",
        "metric",
        "higher",
        0.0,
        1.0,
        ("22", "90"),
        ("text", "vector"),
        _P + "visa_metric",
        "F1 of the targeted values' readings; silence earns nothing, 'less' needs the meaning kept",
    )
)
register(
    ScorerSpec(
        "value_precision",
        "metric",
        "higher",
        0.0,
        1.0,
        ("22",),
        ("text", "vector"),
        _P + "visa_metric",
        "precision of the targeted values' readings",
    )
)
register(
    ScorerSpec(
        "value_recall",
        "metric",
        "higher",
        0.0,
        1.0,
        ("22",),
        ("text", "vector"),
        _P + "visa_metric",
        "recall of the targeted values' readings",
    )
)
register(
    ScorerSpec(
        "drift",
        "metric",
        "lower",
        0.0,
        1.0,
        ("22",),
        ("text", "vector"),
        _P + "visa_metric",
        "share of untargeted values whose reading moved; an unreadable rewrite scores 1",
        {
            "source copied": "a copy moves nothing by construction; the composite and its verdict against "
            "the copy row judge it"
        },
    )
)
register(
    ScorerSpec(
        "meaning_kept",
        "metric",
        "higher",
        -1.0,
        1.0,
        ("22",),
        ("text", "vector"),
        _P + "visa_metric",
        "embedding cosine of rewrite and original; an unreadable rewrite scores −1",
        {
            "source copied": "a copy keeps all its meaning by construction; the composite and its verdict "
            "against the copy row judge it"
        },
    )
)
register(
    ScorerSpec(
        "visa_composite",
        "metric",
        "higher",
        -1.5,
        2.25,
        ("22", "90"),
        ("text", "vector"),
        _P + "visa_metric",
        "the GRPO reward's weighted sum (visa.rewards) of value F1, meaning kept, "
        "−drift and format; VISA's verdict reads it against the copy row",
    )
)
register(
    ScorerSpec(
        "collective_agency",
        "metric",
        "higher",
        1.0,
        5.0,
        ("32", "90"),
        ("text", "distribution"),
        _P + "collective_agency",
        "the judge's expected 1–5 score; no solution scores 1, a judge with no mass on the labels is missing",
        gated=True,
    )
)
register(
    ScorerSpec(
        "resolution_rate",
        "metric",
        "higher",
        0.0,
        1.0,
        ("32", "90"),
        ("text",),
        _P + "resolution",
        "both sides stated one readable solution after the marker",
    )
)
register(
    ScorerSpec(
        "description_complete",
        "check",
        "higher",
        0.0,
        1.0,
        ("01",),
        ("text",),
        _P + "description",
        "every section heading of a culture description, with words under it",
    )
)

# rewards (kit.train.rewards.REWARDS): "reward:<name>", and the weighted sums GRPO optimises
for _name, _low, _high, _doc, _exempt in (
    ("value_match", 0.0, 1.0, "value F1 of the rewrite", {}),
    (
        "meaning_kept",
        -1.0,
        1.0,
        "embedding cosine with the original (and entailment with an NLI scorer)",
        {
            "source copied": "a copy keeps all its meaning by construction; reward:visa, the sum GRPO optimises, "
            "must not reward it"
        },
    ),
    (
        "drift",
        -1.0,
        0.0,
        "− share of untargeted values moved",
        {"source copied": "a copy moves nothing by construction; reward:visa must not reward it"},
    ),
    ("format", 0.0, 1.0, "the rewrite's length within bounds", {}),
):
    register(
        ScorerSpec(
            f"reward:{_name}",
            "reward",
            "higher",
            _low,
            _high,
            ("21",),
            ("text",),
            _P + "visa_reward",
            _doc,
            _exempt,
        )
    )
register(
    ScorerSpec(
        "reward:visa",
        "reward",
        "higher",
        -1.5,
        2.25,
        ("21",),
        ("text",),
        _P + "visa_reward",
        "the weighted sum of VISA's rewards (visa.rewards defaults)",
    )
)
register(
    ScorerSpec(
        "reward:collective_agency",
        "reward",
        "higher",
        0.0,
        1.0,
        ("31",),
        ("text", "distribution"),
        _P + "selfplay_reward",
        "the judge's CA score mapped to [0, 1]; missing judgements score 0",
        gated=True,
    )
)
register(
    ScorerSpec(
        "reward:joint_solution",
        "reward",
        "higher",
        0.0,
        1.0,
        ("31",),
        ("text",),
        _P + "selfplay_reward",
        "a readable solution stated after the marker (ablation row self_play_grpo+joint)",
    )
)
# NLI scorers (kit.evals.nli.NLI_SCORERS): "nli:<name>"
register(
    ScorerSpec(
        "nli:judge",
        "metric",
        "higher",
        0.0,
        1.0,
        ("12", "21"),
        ("distribution",),
        _P + "nli_judge",
        "P(A = entailment) renormalised over A/B/C; no mass on the letters is missing",
    )
)
register(
    ScorerSpec(
        "nli:cross-encoder",
        "metric",
        "higher",
        0.0,
        1.0,
        ("12", "21"),
        ("text",),
        _P + "nli_cross_encoder",
        "a sentence-transformers NLI cross-encoder's entailment probability; a degenerate answer scores 0",
        {"source copied": _NEVER_SEES, "opponent copied": _NEVER_SEES},
        gated=True,
    )
)
# verdicts
_RELEASE = "the release's own evaluation files: a missing record is the release's gap, not a method's failure"
for _name, _units, _doc, _exempt in (
    (
        "verdict:paired",
        ("03", "22", "32"),
        "a method minus another on common items, paired bootstrap; a failed item scores the worst value",
        {},
    ),
    (
        "verdict:reference",
        ("01", "04", "12", "22", "90"),
        "an agent against a reference row on common rows; a missing answer scores the worst value",
        {},
    ),
    (
        "verdict:claims",
        ("05",),
        "the NCN paper's claims on its own data, paired bootstrap",
        {"failures dropped": _RELEASE, "reference row": "the claims compare NCN with its two baselines only"},
    ),
):
    register(
        ScorerSpec(
            _name,
            "verdict",
            "higher",
            -1.0,
            1.0,
            _units,
            ("verdict",),
            _P + _name.split(":")[1] + "_verdict",
            _doc + "; 1 better, 0 no difference or too few items (verdicts.min_items), −1 worse",
            _exempt,
        )
    )


def _bound(x: float) -> str:
    return "−∞" if x == -INF else "∞" if x == INF else f"{x:g}".replace("-", "−")


def scorer_table() -> str:
    """The markdown table of every spec that ``docs/metrics.md`` carries verbatim (a test compares them)."""
    lines = [
        "| scorer | kind | better | range | notebooks | reads | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SCORERS.values():
        reads = ", ".join(s.reads)
        lines.append(
            f"| `{s.name}` | {s.kind} | {s.direction} | `[{_bound(s.low)}, {_bound(s.high)}]` | "
            f"{', '.join(s.units)} | {reads} | {s.doc.replace('|', '/')} |"
        )
    return "\n".join(lines)
