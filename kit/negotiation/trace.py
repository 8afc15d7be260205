"""The negotiation trace: one JSON record per job (method, pair of agents, topic), and its validator.

Schema ``TRACE_SCHEMA`` ("negotiation-trace/2"); agent-indexed lists always hold agent A then
agent B, the order of the pair in ``NegotiationParams.pairs``.

Top level
    ``id``            ``f"{method}:{countryA}|{countryB}:{topic_id}"``, the store key.
    ``schema``        ``TRACE_SCHEMA``.
    ``method``        a protocol registered in ``kit.registry.PROTOCOLS``: ``"ncn"`` (PSRO over guidelines),
                      ``"debate"``, ``"consultancy"``, ``"none"``, or one registered since.
    ``seed``          the run seed every ``GenParams.seed`` of the job derives from.
    ``settings``      the ``NegotiationParams`` values the job ran with (rounds, ε, α β γ, candidate
                      counts, temperatures, retries, token and word limits).
    ``topic``         ``{id, text, source}``.
    ``agents``        ``[{name, culture, kind}] × 2``.
    ``initial``       ``[{response, opinion, guideline}] × 2``: ``response`` is the agent's first,
                      independent answer to the topic (the same prompt and seed for every method, so
                      all methods start from the same answers; it is the *rejected* text of preference
                      finetuning); ``opinion`` is that answer cut to 3 sentences (NCN embeds it for
                      Consist); ``guideline`` is NCN's initial ``{title, reason, description}``
                      (``null`` for the baselines, and where it never parsed).
    ``rounds``        one entry per round held, see below; ``[]`` for ``"none"``.
    ``consensus``     ``[str, str]``: each agent's final statement, at most ``statement_words`` words
                      (``["", ""]`` when the job failed).
    ``truncated``     ``[bool, bool]``: whether that statement was cut to ``statement_words`` words.
    ``rounds_used``   ``len(rounds)``.
    ``converged``     the protocol ended by its own rule rather than by the ``max_rounds`` cap: NCN's
                      utility test, both debaters' AGREE marker. Always false for consultancy and
                      ``"none"``: they have no stopping rule, so nothing was resolved by one
                      (``kit.registry.stopping_rules()``, from each protocol's spec).
    ``failed``        the job could not run to its end (an agent's initial guideline never parsed);
                      downstream code should skip failed traces.
    ``parse_failures`` how many model outputs were dropped as unreadable after ``max_retries``
                      re-requests; equals ``len(failures)``.
    ``retries``       how many re-requests were sent for unreadable outputs (successful or not).
    ``failures``      ``[{stage, agent, raw, round, kind}]``: ``stage`` is ``"guideline"`` (NCN's
                      initial guideline; the job then fails), ``"candidate"`` (a best-response
                      candidate, dropped), or ``"answer"`` / ``"statement"`` (an initial answer or a
                      final statement still degenerate after ``max_retries``, ``kit.metrics.text``:
                      kept as written, left out by the evaluations); ``agent`` is 0 or 1; ``raw`` the
                      last unreadable reply; ``round`` (0 for the initial answer and guideline) and
                      ``kind`` (candidate kind, the degenerate reason, or ``null``).

``origin``        optional: ``"ncn_release"`` for a trace read from the NCN paper's release
                  (``kit.negotiation.ncn_release``), absent on the kit's own. Such a trace keeps what the
                  release recorded: ``agents[i]`` also name the release's ``zone`` (``kind`` is
                  ``"release"``), ``initial[i].guideline`` is null, ``truncated`` is false, ``release``
                  holds the pair folder, the file, the category and the release's metadata, and its rounds
                  are those below.

``rounds[k]`` for ``"ncn"``
    ``round``         1-based round number.
    ``statements``    ``[str, str]``: each agent's position, stated from its weighted pool.
    ``candidates``    ``[[candidate…], [candidate…]]``: the readable best-response candidates, each
                      ``{kind, title, reason, description, temperature, consist, accept, novelty,
                      total}`` with ``total = α·consist + β·accept + γ·novelty``, scored against the
                      pools and weights of the start of the round.
    ``chosen``        ``[candidate | null] × 2``: the candidate that joined agent i's pool (the highest
                      total, first on ties), a copy of its ``candidates[i]`` entry plus its ``index``
                      there; ``null`` when the agent had no readable candidate.
    ``best_utility``  ``[float | null] × 2``: that candidate's total utility (what ε is tested on).
    ``pools``         ``[[title…], [title…]]`` after the round's additions, in joining order (the
                      initial guideline first); full guidelines are ``initial`` plus each ``chosen``.
    ``weights``       ``[[float…], [float…]]``: the meta-game equilibrium over ``pools`` (sums to 1).
    ``payoffs``       ``[A, B]``: the meta-game's payoff matrices (``len(pools[0]) × len(pools[1])`` lists of
                      floats; A agent A's, B agent B's), so the Nash gap can be recomputed from the trace
                      (absent in traces written before they were stored).
    ``nash_gap``      the equilibrium's exploitability on the meta-game payoffs (0 = exact).
    ``solver``        the solver that found it (``kit.negotiation.meta_solver``).

``rounds[k]`` for ``"debate"`` and ``"consultancy"``
    ``round``         1-based round number.
    ``statements``    ``[str, str]``: the debate turns of the round (A spoke first, B saw A's turn),
                      or the consultancy revisions (each written after reading the other's answer).
    ``agree``         debate only: ``[bool, bool]``, whether each turn ended with the AGREE marker.

``rounds[k]`` for any other registered protocol: at least ``round`` and ``statements`` as above.

``rounds[k]`` of a trace from the release (``origin: "ncn_release"``)
    ``ncn``           ``round``, ``statements`` (the first exchange: each side's position), ``responses`` (the
                      second exchange's restatements), ``chosen`` (``[{title, reason, description, consist,
                      accept, novelty, total} | null] × 2``: the best response the release kept — it records
                      no other candidate, kind or temperature), ``best_utility``, ``pools`` and ``weights``
                      as released (two decimals, so they need not sum to 1), ``nash_gap`` null and
                      ``solver`` ``"unrecorded"``.
    ``debate``        ``round`` and ``statements``; the release records no AGREE flag.
    ``consultancy``   none: the release keeps only the opening and the final statements.
"""

from __future__ import annotations

import math
from typing import Any

from kit.registry import PROTOCOLS, protocol_names

TRACE_SCHEMA = "negotiation-trace/2"
ORIGINS = ("ncn_release",)  # where a trace not made by the kit comes from
FAILURE_STAGES = ("answer", "guideline", "candidate", "statement")
CANDIDATE_KINDS = ("counter", "gap", "innovative")

_TOP = {
    "id": str,
    "schema": str,
    "method": str,
    "seed": int,
    "settings": dict,
    "topic": dict,
    "agents": list,
    "initial": list,
    "rounds": list,
    "consensus": list,
    "truncated": list,
    "rounds_used": int,
    "converged": bool,
    "failed": bool,
    "parse_failures": int,
    "retries": int,
    "failures": list,
}
_CANDIDATE_NUMBERS = ("temperature", "consist", "accept", "novelty", "total")
_WEIGHT_TOL = 1e-6


def validate_trace(record: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of ``record`` that breaks the schema above."""
    if not isinstance(record, dict):
        raise ValueError(f"a trace is a dict; got {type(record).__name__}")
    where = f"trace {record.get('id')!r}"
    for key, kind in _TOP.items():
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r}")
        if not _is(record[key], kind):
            raise ValueError(
                f"{where}: field {key!r} must be {kind.__name__}; got {type(record[key]).__name__}"
            )
    if record["schema"] != TRACE_SCHEMA:
        raise ValueError(f"{where}: schema {record['schema']!r} is not {TRACE_SCHEMA!r}; rerun the job")
    method = record["method"]
    if method not in PROTOCOLS:  # every registered protocol (kit.registry), none other
        raise ValueError(f"{where}: method {method!r} is not one of {protocol_names()}")
    if not record["id"].startswith(f"{method}:"):
        raise ValueError(f"{where}: id does not start with its method {method!r}")
    _fields(record["topic"], {"id": str, "text": str, "source": str}, f"{where}: topic")
    for name in ("agents", "initial", "consensus", "truncated"):
        _pair(record[name], f"{where}: {name}")
    for i in range(2):
        _fields(
            record["agents"][i],
            {"name": str, "culture": (str, type(None)), "kind": str},
            f"{where}: agents[{i}]",
        )
        initial = record["initial"][i]
        _fields(
            initial,
            {"response": str, "opinion": str, "guideline": (dict, type(None))},
            f"{where}: initial[{i}]",
        )
        if initial["guideline"] is not None:
            _fields(
                initial["guideline"],
                {"title": str, "reason": str, "description": str},
                f"{where}: initial[{i}].guideline",
            )
        if not isinstance(record["consensus"][i], str) or not isinstance(record["truncated"][i], bool):
            raise ValueError(f"{where}: consensus[{i}] must be a str and truncated[{i}] a bool")
    if record["rounds_used"] != len(record["rounds"]):
        raise ValueError(f"{where}: rounds_used {record['rounds_used']} != {len(record['rounds'])} rounds")
    if record["parse_failures"] != len(record["failures"]) or record["retries"] < 0:
        raise ValueError(f"{where}: parse_failures must equal len(failures) and retries be non-negative")
    for k, failure in enumerate(record["failures"]):
        _fields(
            failure,
            {"stage": str, "agent": int, "raw": str, "round": int, "kind": (str, type(None))},
            f"{where}: failures[{k}]",
        )
        if failure["stage"] not in FAILURE_STAGES or failure["agent"] not in (0, 1):
            raise ValueError(
                f"{where}: failures[{k}] has stage {failure['stage']!r} / agent {failure['agent']!r}; "
                f"stage is one of {FAILURE_STAGES}, agent 0 or 1"
            )
    if method == "none" and record["rounds"]:
        raise ValueError(f"{where}: method 'none' holds no rounds")
    origin = record.get("origin")
    if origin is not None and origin not in ORIGINS:
        raise ValueError(f"{where}: origin {origin!r} is not one of {ORIGINS}")
    for k, rnd in enumerate(record["rounds"]):
        (_release_round if origin else _round)(rnd, method, f"{where}: rounds[{k}]", k + 1)


def _release_round(rnd: Any, method: str, where: str, number: int) -> None:
    """A round as the NCN release recorded it (see the schema above)."""
    if not isinstance(rnd, dict) or rnd.get("round") != number:
        raise ValueError(f"{where}: expected a dict with round = {number}")
    _pair(rnd.get("statements"), f"{where}.statements")
    if not all(isinstance(s, str) for s in rnd["statements"]):
        raise ValueError(f"{where}.statements must hold two strings")
    if method == "consultancy":
        raise ValueError(f"{where}: the release's consultancy holds no rounds")
    if method != "ncn":
        return
    for name in ("responses", "chosen", "best_utility", "pools", "weights"):
        _pair(rnd.get(name), f"{where}.{name}")
    if rnd.get("nash_gap") is not None or rnd.get("solver") != "unrecorded":
        raise ValueError(f"{where}: the release records no equilibrium: nash_gap null, solver 'unrecorded'")
    for i in range(2):
        chosen, best = rnd["chosen"][i], rnd["best_utility"][i]
        if chosen is not None:
            _fields(chosen, {"title": str, "reason": str, "description": str}, f"{where}.chosen[{i}]")
        if best is not None and (not _is(best, float) or not math.isfinite(best)):
            raise ValueError(f"{where}: best_utility[{i}] must be a finite number or null")
        pool, weights = rnd["pools"][i], rnd["weights"][i]
        if not (
            isinstance(pool, list)
            and isinstance(weights, list)
            and len(pool) == len(weights)
            and all(isinstance(t, str) for t in pool)
        ):
            raise ValueError(f"{where}: pools[{i}] and weights[{i}] must be lists of one length")
        if any(not _is(w, float) or not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"{where}: weights[{i}] must be finite and non-negative; got {weights}")


def _round(rnd: Any, method: str, where: str, number: int) -> None:
    if not isinstance(rnd, dict) or rnd.get("round") != number:
        raise ValueError(f"{where}: expected a dict with round = {number}")
    _pair(rnd.get("statements"), f"{where}.statements")
    if not all(isinstance(s, str) for s in rnd["statements"]):
        raise ValueError(f"{where}.statements must hold two strings")
    if method == "debate":
        _pair(rnd.get("agree"), f"{where}.agree")
        if not all(isinstance(a, bool) for a in rnd["agree"]):
            raise ValueError(f"{where}.agree must hold two bools")
    if method != "ncn":
        return
    for name in ("candidates", "chosen", "best_utility", "pools", "weights"):
        _pair(rnd.get(name), f"{where}.{name}")
    gap = rnd.get("nash_gap")
    if (
        not _is(gap, float)
        or not math.isfinite(gap)
        or gap < -_WEIGHT_TOL
        or not isinstance(rnd.get("solver"), str)
    ):
        raise ValueError(f"{where}: nash_gap must be a finite float >= 0 and solver a str")
    for i in range(2):
        candidates, chosen = rnd["candidates"][i], rnd["chosen"][i]
        for c, cand in enumerate(candidates):
            _fields(
                cand,
                {
                    "kind": str,
                    "title": str,
                    "reason": str,
                    "description": str,
                    **{name: float for name in _CANDIDATE_NUMBERS},
                },
                f"{where}.candidates[{i}][{c}]",
            )
            if cand["kind"] not in CANDIDATE_KINDS:
                raise ValueError(
                    f"{where}.candidates[{i}][{c}].kind {cand['kind']!r} is not one of {CANDIDATE_KINDS}"
                )
        best = rnd["best_utility"][i]
        if chosen is None:
            if candidates or best is not None:
                raise ValueError(
                    f"{where}: agent {i} had candidates but chose none, "
                    "or has a best utility without a choice"
                )
        elif not (
            isinstance(chosen, dict)
            and isinstance(chosen.get("index"), int)
            and 0 <= chosen["index"] < len(candidates)
            and {**candidates[chosen["index"]], "index": chosen["index"]} == chosen
            and _is(best, float)
            and abs(best - chosen["total"]) <= 1e-9
        ):
            raise ValueError(
                f"{where}: chosen[{i}] must be a candidate of candidates[{i}] with its index, "
                f"and best_utility[{i}] its total"
            )
        pool, weights = rnd["pools"][i], rnd["weights"][i]
        if not (isinstance(pool, list) and isinstance(weights, list) and pool and len(pool) == len(weights)):
            raise ValueError(f"{where}: pools[{i}] and weights[{i}] must be non-empty lists of one length")
        if any(not _is(w, float) or w < -_WEIGHT_TOL for w in weights) or abs(sum(weights) - 1) > _WEIGHT_TOL:
            raise ValueError(f"{where}: weights[{i}] must be non-negative and sum to 1; got {weights}")
    payoffs = rnd.get("payoffs")
    if payoffs is not None:
        shape = (len(rnd["pools"][0]), len(rnd["pools"][1]))
        if not (
            isinstance(payoffs, list)
            and len(payoffs) == 2
            and all(
                isinstance(m, list)
                and len(m) == shape[0]
                and all(
                    isinstance(r, list)
                    and len(r) == shape[1]
                    and all(_is(v, float) and math.isfinite(v) for v in r)
                    for r in m
                )
                for m in payoffs
            )
        ):
            raise ValueError(f"{where}.payoffs must be two {shape[0]}×{shape[1]} matrices of finite floats")


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance where bool is not an int, and an int is a float (JSON writes 1.0 as 1.0, but be lenient)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _pair(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where} must be a list of two entries, one per agent")


def _fields(value: Any, spec: dict[str, Any], where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a dict")
    for key, kind in spec.items():
        if key not in value or not _is(value[key], kind):
            raise ValueError(f"{where}.{key} is missing or not {getattr(kind, '__name__', kind)}")


def transcript(trace: dict[str, Any], width: int = 400) -> str:
    """A negotiation as a readable transcript: openings, each round's statements and choices, consensus."""
    a, b = (x["culture"] for x in trace["agents"])
    cut = lambda s: (s or "").strip().replace("\n", " ")[:width]  # noqa: E731
    lines = [f"# {trace['method'].upper()} — {a} × {b}", f"Topic: {cut(trace['topic']['text'])}", ""]
    for who, init in zip((a, b), trace.get("initial", [])):
        g = init.get("guideline") or {}
        lines.append(f"[{who}] opening guideline: {g.get('title', '—')} — {cut(g.get('description', ''))}")
        lines.append(f"[{who}] opinion: {cut(init.get('opinion') or init.get('response'))}")
    for r, rnd in enumerate(trace.get("rounds", []), 1):
        lines.append(f"\n— round {r} —")
        for who, st in zip((a, b), rnd.get("statements", [])):
            lines.append(f"[{who}] {cut(st)}")
        for who, ch in zip((a, b), rnd.get("chosen", [])):
            if ch:
                total = ch.get("total")
                lines.append(
                    f"[{who}] adds guideline: {ch.get('title', '')} "
                    f"(U={float('nan') if total is None else total:.3f})"
                )
        if "nash_gap" in rnd:
            gap = "not recorded" if rnd["nash_gap"] is None else f"{rnd['nash_gap']:.1e}"
            lines.append(
                f"weights {a}: {_fmt_weights(rnd['weights'][0])} · {b}: {_fmt_weights(rnd['weights'][1])}"
                f" · Nash gap {gap}"
            )
    lines.append("\n— consensus —")
    for who, text in zip((a, b), trace.get("consensus", [])):
        lines.append(f"[{who}] {cut(text)}")
    return "\n".join(lines)


def _fmt_weights(w: list[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in w) + "]"


def weights_table(trace: dict[str, Any]):
    """Guideline weights per round (NCN) as a DataFrame: how the equilibrium moves as pools grow."""
    import pandas as pd

    rows = [
        {"round": r, "agent": trace["agents"][side]["culture"], "guideline": title, "weight": w}
        for r, rnd in enumerate(trace.get("rounds", []), 1)
        for side, (pool, weights) in enumerate(zip(rnd.get("pools", []), rnd.get("weights", [])))
        for title, w in zip(pool, weights)
    ]
    return pd.DataFrame(rows, columns=["round", "agent", "guideline", "weight"])
