"""Nash Consensus Negotiation (NCN), the model-free core: guidelines, utilities, the meta-game solver.

Two cultural agents negotiate by PSRO over natural-language guidelines: each round every agent
proposes candidate guidelines, keeps the one with the best utility (``utility``), and the two
pools meet in a bimatrix meta-game whose Nash equilibrium (``meta_solver``) gives the guideline
weights. ``guidelines`` reads guidelines and opinions from model output and renders pools for prompts.
"""

from kit.negotiation.guidelines import Guideline, format_guidelines, parse_guidelines, parse_opinion
from kit.negotiation.meta_solver import Equilibrium, enumerate_equilibria, nash_gap, solve_bimatrix
from kit.negotiation.engine import plan_jobs, ready, run_jobs, run_negotiations, shard_of, start_job, step
from kit.negotiation.protocols import Job, JobSpec, Need, Reply, derive_seed, job_id, truncate_words
from kit.negotiation.trace import TRACE_SCHEMA, validate_trace
from kit.negotiation.utility import (
    PARTS,
    UtilityParts,
    UtilityWeights,
    converged,
    normalise_weights,
    payoff_matrices,
    utility_matrix,
    utility_parts,
)

__all__ = [
    "PARTS",
    "TRACE_SCHEMA",
    "Job",
    "JobSpec",
    "Need",
    "Reply",
    "derive_seed",
    "job_id",
    "plan_jobs",
    "ready",
    "run_jobs",
    "run_negotiations",
    "shard_of",
    "start_job",
    "step",
    "truncate_words",
    "validate_trace",
    "Equilibrium",
    "Guideline",
    "UtilityParts",
    "UtilityWeights",
    "converged",
    "enumerate_equilibria",
    "format_guidelines",
    "nash_gap",
    "normalise_weights",
    "parse_guidelines",
    "parse_opinion",
    "payoff_matrices",
    "solve_bimatrix",
    "utility_matrix",
    "utility_parts",
]
