"""Nash Consensus Negotiation (NCN) and its baselines.

Two cultural agents negotiate by PSRO over natural-language guidelines (``psro``): each round every
agent proposes candidate guidelines, keeps the one with the best utility (``utility``), and the
two pools meet in a bimatrix meta-game whose Nash equilibrium (``meta_solver``) gives the
guideline weights. ``baselines`` holds debate, consultancy and no negotiation; ``prompts`` every
user turn; ``guidelines`` reads guidelines from model output. Each method is a protocol
registered in ``kit.registry.PROTOCOLS``; ``run`` plans, shards and runs a study on the engine and
stores one ``trace`` per negotiation.
"""

from kit.negotiation.guidelines import Guideline, format_guidelines, parse_guidelines, parse_opinion
from kit.negotiation.meta_solver import Equilibrium, enumerate_equilibria, nash_gap, solve_bimatrix
from kit.negotiation.protocol import Context, JobSpec, job_id, settings_of, truncate_words
from kit.negotiation.run import plan_jobs, run_negotiations, shard_of, start_job
from kit.negotiation.trace import TRACE_SCHEMA, transcript, validate_trace, weights_table
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
from kit.registry import PROTOCOLS, Protocol, register_protocol

__all__ = [
    "PARTS",
    "PROTOCOLS",
    "Protocol",
    "TRACE_SCHEMA",
    "Context",
    "Equilibrium",
    "Guideline",
    "JobSpec",
    "UtilityParts",
    "UtilityWeights",
    "converged",
    "enumerate_equilibria",
    "format_guidelines",
    "job_id",
    "nash_gap",
    "normalise_weights",
    "parse_guidelines",
    "parse_opinion",
    "payoff_matrices",
    "plan_jobs",
    "register_protocol",
    "run_negotiations",
    "settings_of",
    "shard_of",
    "solve_bimatrix",
    "start_job",
    "transcript",
    "truncate_words",
    "utility_matrix",
    "utility_parts",
    "validate_trace",
    "weights_table",
]
