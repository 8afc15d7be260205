"""The round-synchronous negotiation engine: batching, resume after kills, parse failures, NCN traces, shards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kit.agents import prompted
from kit.config import NegotiationParams
from kit.data.topics import Topic
from kit.engine import Job, ready, run_jobs, step
from kit.llm.base import Backend
from kit.negotiation import plan_jobs, run_negotiations, shard_of, start_job, truncate_words, validate_trace
from kit.negotiation.prompts import KIND_INSTRUCTIONS, RETRY_NOTE, agrees
from kit.negotiation.psro import candidate_slots
from kit.run import seeds
from kit.run.records import RecordStore, merge_record_files

REPO = Path(__file__).resolve().parents[1]
COUNTRIES = ("Japan", "Brazil")
AGENTS = {country: prompted(country) for country in COUNTRIES}
TOPICS = [
    Topic("lie", "Is it right to lie to protect a friend?", "test"),
    Topic("elders", "Should elderly parents live with their adult children?", "test"),
]
WORDS = [
    "family",
    "duty",
    "freedom",
    "harmony",
    "respect",
    "tradition",
    "fairness",
    "community",
    "innovation",
    "care",
    "honesty",
    "equality",
    "elders",
    "children",
    "work",
    "faith",
]
GARBAGE = "%% ?? unreadable ##"


def negotiation(**overrides) -> NegotiationParams:
    values = dict(
        pairs=[list(COUNTRIES)],
        methods=["ncn", "debate", "consultancy", "none"],
        max_rounds=2,
        n_counter=1,
        n_gap=1,
        n_innovative=1,
        temperature_low=0.0,
        temperature_high=0.0,
        max_retries=2,
        turn_tokens=16,
        statement_words=40,
    )
    return NegotiationParams(**(values | overrides))


class FakeBackend(Backend):
    """Deterministic text from (request, params): JSON guidelines where a prompt asks for them, prose otherwise.

    ``garbage(user_text, system_text)`` marks requests answered with unreadable text; ``off_topic``
    candidates after round 1 make best utilities drop; ``agree`` ends debate turns with AGREE.
    """

    name = identity = "fake"

    def __init__(self, garbage=None, agree=False, off_topic=False, statement_words=12):
        self.garbage, self.agree, self.off_topic, self.statement_words = (
            garbage,
            agree,
            off_topic,
            statement_words,
        )
        self.calls: list[tuple[list, object]] = []

    def generate(self, requests, params):
        self.calls.append((list(requests), params))
        return [self._reply(request, params) for request in requests]

    def _reply(self, request, params) -> str:
        chat = request.chat
        user, system = chat[-1]["content"], chat[0]["content"]
        if self.garbage and self.garbage(user, system):
            return GARBAGE
        digest = hashlib.sha256(json.dumps([request.key(), params.key()], sort_keys=True).encode()).digest()
        w = [WORDS[b % len(WORDS)] for b in digest[:6]]
        if '"title"' in user:
            if (
                self.off_topic and user.count("Description:") > 2
            ):  # the pools hold more than the initial guidelines
                return json.dumps(
                    {
                        "title": "Quarterly bond yields",
                        "reason": "Markets.",
                        "description": "The stock exchange closed higher after Tuesday's bond auction.",
                    }
                )
            return json.dumps(
                {
                    "title": f"{w[0].title()} before {w[1]}",
                    "reason": f"{w[2].title()} matters to us.",
                    "description": f"People should put {w[0]} and {w[3]} first when {w[4]} meets {w[5]}.",
                }
            )
        if "at most" in user and "words" in user:  # a final statement: longer than statement_words
            return " ".join(f"{w[k % 6]}" for k in range(self.statement_words))
        text = f"We value {w[0]} and {w[1]}. {w[2].title()} guides {w[3]}. {w[4].title()} shapes {w[5]}."
        return text + "\nAGREE" if self.agree and "AGREE" in user else text

    def score(self, requests):
        raise NotImplementedError

    def choice_probs(self, requests):
        raise NotImplementedError


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode(self, texts):
        self.calls += 1
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def one_thread():
    import torch

    # On a shared 2-core machine two torch threads spin against each other (seen: 15x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def embedder(one_thread):
    from kit.embed import Embedder

    return Embedder("all-minilm-l6-v2")


def assert_same(a, b, path="trace"):
    """Equal structures; floats within 1e-6 (embeddings of a text move in the last bits with batch padding)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{k}]")
    else:
        assert a == b, path


def traces_of(jobs: list[Job]) -> dict[str, dict]:
    # The store's JSON round trip, as run_negotiations returns them.
    return {job.id: json.loads(json.dumps(job.result)) for job in jobs}


# -- 1. batching changes nothing -------------------------------------------------------------


def test_jobs_batched_together_equal_each_job_alone(embedder):
    params = negotiation(methods=["ncn", "debate"])
    specs = plan_jobs(AGENTS, TOPICS, params)
    assert len(specs) == 4
    together = [start_job(spec, params, seed=7) for spec in specs]
    run_jobs(together, FakeBackend(), embedder)
    alone = []
    for spec in specs:
        job = start_job(spec, params, seed=7)
        run_jobs([job], FakeBackend(), embedder)
        alone.append(job)
    batched, single = traces_of(together), traces_of(alone)
    assert list(batched) == [spec.id for spec in specs]
    for job_id in batched:
        validate_trace(batched[job_id])
        assert_same(batched[job_id], single[job_id], job_id)
    assert any(trace["rounds"] for trace in batched.values())


def test_tiny_model_jobs_batched_together_equal_each_job_alone(tiny_backend, embedder):
    params = negotiation(methods=["ncn", "consultancy"], turn_tokens=4, max_retries=1)
    specs = plan_jobs(AGENTS, TOPICS, params)
    together = [start_job(spec, params, seed=7) for spec in specs]
    run_jobs(together, tiny_backend, embedder)
    for spec, batched in zip(specs, together):
        job = start_job(spec, params, seed=7)
        run_jobs([job], tiny_backend, embedder)
        assert job.result == batched.result
        validate_trace(job.result)
    # gibberish: the NCN jobs fail on their initial guidelines, the run itself does not
    assert [job.result["failed"] for job in together] == [True, False, True, False]


# -- 2. one generate call per distinct GenParams per step ------------------------------------


def _count_calls(topics, embedder) -> tuple[int, int, int]:
    params = negotiation()
    backend, counting = FakeBackend(), CountingEmbedder(embedder)
    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, topics, params)]
    steps = widest = 0
    while any(not job.done for job in jobs):
        needs = [job.pending() for job in ready(jobs)]
        distinct = {gen for need in needs for _, gen in need.generate}
        calls, encodes = len(backend.calls), counting.calls
        step(jobs, backend, counting)
        assert len(backend.calls) - calls == len(distinct)
        assert counting.calls - encodes == (1 if any(need.embed for need in needs) else 0)
        widest = max([widest] + [len(requests) for requests, _ in backend.calls[calls:]])
        steps += 1
    for job in jobs:
        validate_trace(job.result)
    assert all(call[1].seed is not None for call in backend.calls)
    return len(backend.calls), steps, widest


def test_one_generate_call_per_distinct_params_per_step(embedder):
    calls_one, steps_one, _ = _count_calls(TOPICS[:1], embedder)
    calls_two, steps_two, widest = _count_calls(TOPICS, embedder)
    # twice the jobs, the same number of model calls: the calls carry more requests instead
    assert (calls_two, steps_two) == (calls_one, steps_one)
    assert widest >= 4


def test_jobs_that_re_ask_are_waited_for_so_later_steps_stay_one_call(embedder):
    # One topic's counter-proposals are unreadable once: its jobs re-ask while the others wait.
    def garbage(user, system):
        return TOPICS[0].text in user and KIND_INSTRUCTIONS["counter"] in user and RETRY_NOTE not in user

    params = negotiation(methods=["ncn"], max_retries=1)
    backend = FakeBackend(garbage=garbage)
    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, TOPICS, params)]
    served = []
    while any(not job.done for job in jobs):
        active, now = [job for job in jobs if not job.done], ready(jobs)
        served.append((now[0].position, len(now), len(active)))
        step(jobs, backend, embedder)
    # a re-ask serves only the jobs that re-ask; every new step serves every unfinished job
    assert any(retry and n < total for (_, retry), n, total in served)
    assert all(n == total for (_, retry), n, total in served if not retry)
    retry_calls = [
        requests
        for requests, gen in backend.calls
        if any(RETRY_NOTE in r.chat[-1]["content"] for r in requests)
    ]
    assert retry_calls and all(
        TOPICS[0].text in r.chat[-1]["content"] for requests in retry_calls for r in requests
    )
    # every non-retry call after the first re-ask serves both topics' jobs together
    first_retry = next(k for k, (requests, _) in enumerate(backend.calls) if requests in retry_calls)
    later = [requests for requests, _ in backend.calls[first_retry:] if requests not in retry_calls]
    assert later and all(
        {TOPICS[0].text in r.chat[-1]["content"] for r in requests} == {True, False} for requests in later
    )
    for job in jobs:
        validate_trace(job.result)
        assert job.result["retries"] == (
            2 * job.result["rounds_used"] if TOPICS[0].text in job.result["topic"]["text"] else 0
        )


def test_seeds_derive_from_run_seed_round_and_role():
    assert seeds.derive(0, 1, "position") == seeds.derive(0, 1, "position")
    assert (
        len(
            {
                seeds.derive(0, 1, "position"),
                seeds.derive(1, 1, "position"),
                seeds.derive(0, 2, "position"),
                seeds.derive(0, 1, "counter0"),
            }
        )
        == 4
    )
    assert 0 <= seeds.derive(123, 4, "statement") < 2**31
    expected = int.from_bytes(hashlib.sha256(b"5:2:gap0").digest()[:4], "big") >> 1
    assert seeds.derive(5, 2, "gap0") == expected


# -- 3. resume -------------------------------------------------------------------------------


def test_resume_with_a_fresh_store_doubles_nothing(tmp_path, embedder):
    params, path = negotiation(), tmp_path / "traces.jsonl"
    first = run_negotiations(FakeBackend(), embedder, AGENTS, TOPICS[:1], params, RecordStore(path), seed=0)
    assert len(first) == 4
    backend = FakeBackend()
    seen = []
    traces = run_negotiations(
        backend,
        embedder,
        AGENTS,
        TOPICS,
        params,
        RecordStore(path),
        seed=0,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert [t["id"] for t in traces] == [spec.id for spec in plan_jobs(AGENTS, TOPICS, params)]
    assert traces[:4] == first
    # only the new topic reached the model, and progress counted only the new jobs
    assert all(TOPICS[1].text in r.chat[-1]["content"] for requests, _ in backend.calls for r in requests)
    assert seen[-1] == (4, 4)
    lines = path.read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(line)["id"] for line in lines}) == 8
    again = FakeBackend()
    assert run_negotiations(again, embedder, AGENTS, TOPICS, params, RecordStore(path), seed=0) == traces
    assert again.calls == []


WORKER = textwrap.dedent("""
    import hashlib, json, sys, time
    import numpy as np
    from kit.agents import prompted
    from kit.config import NegotiationParams
    from kit.data.topics import Topic
    from kit.llm.hf_backend import HFBackend
    from kit.negotiation import run_negotiations
    from kit.run.records import RecordStore

    class Slow:  # keeps the run alive long enough to be killed between steps
        def __init__(self, inner):
            self.inner = inner
        def generate(self, requests, params):
            time.sleep(0.15)
            return self.inner.generate(requests, params)

    class HashEmbedder:  # the tiny model's text never needs meaningful embeddings
        def encode(self, texts):
            rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), np.uint8)[:16] + 1.0 for t in texts]
            return np.array([r / np.linalg.norm(r) for r in rows], np.float32)

    store = RecordStore(sys.argv[1])
    before = len(store)
    params = NegotiationParams(**json.loads(sys.argv[2]))
    topics = [Topic(str(k), f"Topic number {k}: is tradition worth keeping?", "test") for k in range(2)]
    agents = {c: prompted(c) for c in ("Japan", "Brazil")}
    backend = Slow(HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8))
    traces = run_negotiations(backend, HashEmbedder(), agents, topics, params, store, seed=3)
    print(before, len(traces))
""")


def test_killed_run_resumes_to_exactly_the_expected_traces(tmp_path):
    path = tmp_path / "traces.jsonl"
    params = json.dumps(
        dict(
            pairs=[list(COUNTRIES)],
            methods=["ncn", "debate", "consultancy", "none"],
            max_rounds=2,
            n_counter=1,
            n_gap=1,
            n_innovative=1,
            temperature_low=0.0,
            temperature_high=0.0,
            max_retries=1,
            turn_tokens=4,
        )
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-c", WORKER, str(path), params]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + 120
    while not (path.exists() and b"\n" in path.read_bytes()):
        assert proc.poll() is None, "the worker ended before its first trace landed"
        assert time.monotonic() < deadline, "the worker wrote no trace"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    landed = path.read_bytes().count(b"\n")
    assert 1 <= landed < 8, "the kill came too late to test a resume"

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    before, total = map(int, done.stdout.split())
    assert 1 <= before <= landed and total == 8
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    for record in records:
        validate_trace(record)
        assert record["seed"] == 3
    # the tiny model writes gibberish: NCN's guidelines never parse, and the run lives on
    ncn = [r for r in records if r["method"] == "ncn"]
    assert ncn and all(r["failed"] and any(f["stage"] == "guideline" for f in r["failures"]) for r in ncn)
    assert all(not r["failed"] for r in records if r["method"] != "ncn")


# -- 4. parse failures -----------------------------------------------------------------------


def test_unreadable_candidates_are_retried_then_dropped_and_counted(embedder):
    def garbage(user, system):  # every gap-filler, and counter-proposals until they are re-asked
        return KIND_INSTRUCTIONS["gap"] in user or (
            KIND_INSTRUCTIONS["counter"] in user and RETRY_NOTE not in user
        )

    params = negotiation(methods=["ncn"], max_retries=2)
    backend = FakeBackend(garbage=garbage)
    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, TOPICS, params)]
    run_jobs(jobs, backend, embedder)
    gap_requests = sum(
        KIND_INSTRUCTIONS["gap"] in r.chat[-1]["content"] for requests, _ in backend.calls for r in requests
    )
    total_rounds = 0
    for job in jobs:
        trace = job.result
        validate_trace(trace)
        rounds = trace["rounds_used"]
        total_rounds += rounds
        assert not trace["failed"] and rounds >= 1
        assert trace["parse_failures"] == 2 * rounds  # one gap-filler per agent per round, dropped
        assert trace["retries"] == 2 * rounds * (params.max_retries + 1)  # gap: 2 re-asks, counter: 1
        assert {(f["stage"], f["kind"], f["raw"]) for f in trace["failures"]} == {
            ("candidate", "gap", GARBAGE)
        }
        for rnd in trace["rounds"]:
            assert [sorted(c["kind"] for c in cands) for cands in rnd["candidates"]] == [
                ["counter", "innovative"]
            ] * 2
    assert gap_requests == 2 * total_rounds * (params.max_retries + 1)


def test_initial_guideline_never_readable_fails_only_that_job(embedder, tmp_path):
    def garbage(user, system):  # Brazil never writes a readable guideline
        return "Brazil" in system and '"title"' in user

    params = negotiation(methods=["ncn", "debate"], max_retries=1)
    backend = FakeBackend(garbage=garbage)
    traces = run_negotiations(
        backend, embedder, AGENTS, TOPICS[:1], params, RecordStore(tmp_path / "t.jsonl"), seed=0
    )
    ncn, debate = traces
    assert ncn["failed"] and ncn["rounds"] == [] and ncn["consensus"] == ["", ""]
    assert ncn["failures"] == [{"stage": "guideline", "agent": 1, "raw": GARBAGE, "round": 0, "kind": None}]
    assert ncn["parse_failures"] == 1 and ncn["retries"] == 1
    assert ncn["initial"][0]["guideline"] is not None and ncn["initial"][1]["guideline"] is None
    assert not debate["failed"] and all(debate["consensus"])
    asked = sum(
        "Brazil" in r.chat[0]["content"] and '"title"' in r.chat[-1]["content"]
        for requests, _ in backend.calls
        for r in requests
    )
    assert asked == 1 + params.max_retries


# -- 5. NCN traces ---------------------------------------------------------------------------


def test_ncn_traces_weights_gaps_utilities_and_statements(embedder):
    params = negotiation(
        methods=["ncn"],
        max_rounds=3,
        temperature_low=0.6,
        temperature_high=0.8,
        weights={"alpha": 0.6, "beta": 0.3, "gamma": 0.1},
        statement_words=8,
    )
    jobs = [start_job(spec, params, seed=1) for spec in plan_jobs(AGENTS, TOPICS, params)]
    run_jobs(jobs, FakeBackend(statement_words=12), embedder)
    alpha, beta, gamma = 0.6, 0.3, 0.1
    for job in jobs:
        trace = traces_of([job])[job.id]
        validate_trace(trace)
        assert trace["settings"]["weights"] == {"alpha": alpha, "beta": beta, "gamma": gamma}
        for rnd in trace["rounds"]:
            assert rnd["nash_gap"] <= 1e-6
            # the gap recomputed from the stored payoffs and weights, by its definition, not the solver's number
            A, B = (np.asarray(m) for m in rnd["payoffs"])
            x, y = (np.asarray(w) for w in rnd["weights"])
            assert A.shape == B.shape == (len(rnd["pools"][0]), len(rnd["pools"][1]))
            regret = max(max(A @ y) - x @ A @ y, max(x @ B) - x @ B @ y)
            assert regret == pytest.approx(rnd["nash_gap"], abs=1e-9) and regret <= 1e-6
            for i in range(2):
                assert sum(rnd["weights"][i]) == pytest.approx(1.0, abs=1e-9)
                assert min(rnd["weights"][i]) >= 0 and len(rnd["pools"][i]) == rnd["round"] + 1
                totals = [c["total"] for c in rnd["candidates"][i]]
                for c in rnd["candidates"][i]:
                    assert c["total"] == pytest.approx(
                        alpha * c["consist"] + beta * c["accept"] + gamma * c["novelty"]
                    )
                assert [c["temperature"] for c in rnd["candidates"][i]] == [0.6, 0.7, 0.8]
                assert rnd["chosen"][i]["index"] == int(np.argmax(totals)) and rnd["best_utility"][i] == max(
                    totals
                )
                assert rnd["pools"][i][-1] == rnd["chosen"][i]["title"]
        # round 1 against an independent computation: cosines of fresh embeddings
        first = trace["rounds"][0]
        for i in range(2):
            own, other = trace["initial"][i], trace["initial"][1 - i]
            guide = lambda g: f"{g['title']}: {g['description']}"  # noqa: E731
            texts = [guide(c) for c in first["candidates"][i]]
            cand, opinion, opp, mine = (
                embedder.encode(texts),
                embedder.encode([own["opinion"]])[0],
                embedder.encode([guide(other["guideline"])])[0],
                embedder.encode([guide(own["guideline"])])[0],
            )
            got = np.array([[c["consist"], c["accept"], c["novelty"]] for c in first["candidates"][i]])
            np.testing.assert_allclose(
                got, np.stack([cand @ opinion, cand @ opp, 1 - cand @ mine], axis=1), atol=1e-5
            )
        # the stopping rule: absolute change of both best utilities, never in round 1
        bests = [rnd["best_utility"] for rnd in trace["rounds"]]
        stops = [
            all(abs(b - a) < params.epsilon for a, b in zip(prev, new)) for prev, new in zip(bests, bests[1:])
        ]
        assert not any(stops[:-1])
        assert trace["converged"] == (bool(stops) and stops[-1])
        assert trace["converged"] or trace["rounds_used"] == params.max_rounds
        assert trace["truncated"] == [True, True] and all(len(s.split()) == 8 for s in trace["consensus"])


def test_a_drop_in_utility_does_not_count_as_convergence(embedder):
    params = negotiation(methods=["ncn"], max_rounds=3, epsilon=0.02)
    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, TOPICS[:1], params)]
    run_jobs(jobs, FakeBackend(off_topic=True), embedder)
    trace = jobs[0].result
    validate_trace(trace)
    first, second = trace["rounds"][0]["best_utility"], trace["rounds"][1]["best_utility"]
    assert all(b < a - params.epsilon for a, b in zip(first, second))  # off-topic candidates: a clear drop
    assert trace["rounds_used"] == 3  # the anchor's signed test would have stopped after round 2


def test_baselines_debate_agreement_and_consultancy_exchange(embedder):
    params = negotiation(methods=["debate", "consultancy", "none"], max_rounds=3)
    backend = FakeBackend(agree=True)
    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, TOPICS[:1], params)]
    run_jobs(jobs, backend, embedder)
    debate, consult, none = (job.result for job in jobs)
    for trace in (debate, consult, none):
        validate_trace(trace)
    assert debate["converged"] and debate["rounds_used"] == 1 and debate["rounds"][0]["agree"] == [True, True]
    # every method starts from the same initial answers
    assert debate["initial"] == consult["initial"] == none["initial"]
    assert none["consensus"] == [r["response"] for r in none["initial"]] and none["rounds"] == []
    # consultancy shows each side the OTHER side's first answer
    revise = [
        r.chat[-1]["content"]
        for requests, _ in backend.calls
        for r in requests
        if "Revise your answer" in r.chat[-1]["content"]
    ]
    answers = [entry["response"] for entry in consult["initial"]]
    assert len(revise) == 2 and answers[1] in revise[0] and answers[0] in revise[1]
    assert consult["consensus"] == consult["rounds"][0]["statements"]

    jobs = [start_job(spec, params, seed=0) for spec in plan_jobs(AGENTS, TOPICS[:1], params)]
    run_jobs(jobs, FakeBackend(agree=False), embedder)
    assert not jobs[0].result["converged"] and jobs[0].result["rounds_used"] == params.max_rounds


def test_agreement_marker_truncation_and_temperatures():
    assert agrees("We share this now.\nAGREE") and agrees("Fine, we share it.\n**I agree.**\n")
    assert not agrees("I do not agree") and not agrees("AGREE\nbut not really") and not agrees("")
    # a bare marker, or markup before it, agrees to nothing: a debate does not converge on it
    assert (
        not agrees("AGREE")
        and not agrees("We agree!")
        and not agrees("##\n##\nAGREE")
        and not agrees("Fine.\nAGREE")
    )
    assert truncate_words("  a b  c ", 3) == ("a b  c", False) and truncate_words("a b c d", 2) == (
        "a b",
        True,
    )
    assert [t for _, _, t in candidate_slots(2, 2, 1, 0.6, 0.8)] == [0.6, 0.65, 0.7, 0.75, 0.8]
    assert candidate_slots(0, 0, 1, 0.6, 0.8) == [("innovative", 0, 0.6)]


# -- 6. shards and merging -------------------------------------------------------------------


def test_shards_partition_the_jobs_and_merge_dedupes(tmp_path, embedder):
    base = dict(methods=["debate", "consultancy", "none"], max_rounds=1)
    all_ids = [spec.id for spec in plan_jobs(AGENTS, TOPICS, negotiation(**base))]
    paths, shards = [], []
    for index in range(3):
        path = tmp_path / f"shard{index}.jsonl"
        run_negotiations(
            FakeBackend(),
            embedder,
            AGENTS,
            TOPICS,
            negotiation(**base, shard_index=index, shard_count=3),
            RecordStore(path),
            seed=0,
        )
        ids = RecordStore(path).ids()
        assert all(shard_of(i, 3) == index for i in ids)
        paths.append(path)
        shards.append(set(ids))
    assert sorted(set().union(*shards)) == sorted(all_ids) and sum(map(len, shards)) == len(all_ids)
    assert shard_of("ncn:Japan|Brazil:lie", 3) == int(seeds.unit(0, "shard", "ncn:Japan|Brazil:lie") * 3)

    out = tmp_path / "merged.jsonl"
    written = [p for p in paths if p.exists()]  # a shard that drew no job writes no file
    assert merge_record_files([*written, written[0]], out) == len(all_ids)
    merged = RecordStore(out)
    assert sorted(merged.ids()) == sorted(all_ids)
    for rid in merged.ids():
        validate_trace(merged.get(rid))

    clash = tmp_path / "clash.jsonl"
    record = dict(RecordStore(written[0]).to_list()[0])
    RecordStore(clash).append(record | {"consensus": ["changed", "changed"]})
    with pytest.raises(ValueError, match="differs between"):
        merge_record_files([out, clash], tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="shard_index"):
        run_negotiations(
            FakeBackend(),
            embedder,
            AGENTS,
            TOPICS,
            negotiation(shard_index=3, shard_count=3),
            RecordStore(tmp_path / "x.jsonl"),
            seed=0,
        )


def test_validate_trace_names_the_broken_field(embedder):
    params = negotiation(methods=["ncn"], max_rounds=1)
    job = start_job(plan_jobs(AGENTS, TOPICS[:1], params)[0], params, seed=0)
    run_jobs([job], FakeBackend(), embedder)
    trace = traces_of([job])[job.id]
    validate_trace(trace)

    def broken(change):
        copy = json.loads(json.dumps(trace))
        change(copy)
        return copy

    cases = [
        (lambda t: t.pop("failures"), "failures"),
        (
            lambda t: t["rounds"][0]["weights"].__setitem__(0, [0.7] * len(t["rounds"][0]["pools"][0])),
            "sum to 1",
        ),
        (lambda t: t["rounds"][0]["best_utility"].__setitem__(1, 2.0), "best_utility"),
        (lambda t: t.__setitem__("rounds_used", 5), "rounds_used"),
        (lambda t: t.__setitem__("method", "vote"), "method"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            validate_trace(broken(change))


def test_fields_format_builds_guidelines_from_plain_prose(embedder):
    """`guideline_format: fields`: prose description first, then title and reason; no JSON needed."""
    from kit.negotiation.guidelines import parse_description, parse_plain_field

    assert (
        parse_description("**Guideline:** Respect elders. Share meals with family. And more.")
        == "Respect elders. Share meals with family."
    )
    assert parse_description("ok") is None
    assert (
        parse_plain_field('Title: "Family First Always Here Now Today"\nmore', 1)
        == "Family First Always Here Now Today"
    )

    class Prose(Backend):
        name, identity = "prose", "prose:v1"

        def generate(self, requests, params):
            return [
                "Keep Promises"
                if "Give this guideline a title" in r.chat[-1]["content"]
                else "Protect the weak and keep promises to neighbours."
                for r in requests
            ]

        def score(self, requests):
            raise NotImplementedError

        def choice_probs(self, requests):
            raise NotImplementedError

    params = NegotiationParams(
        pairs=[["United States", "China"]],
        methods=["ncn"],
        max_rounds=2,
        guideline_format="fields",
        n_counter=1,
        n_gap=0,
        n_innovative=0,
    )
    agents = {c: prompted(c) for c in ("United States", "China")}
    topics = [Topic(id="t1", text="Should neighbours share food?", source="file")]
    store = RecordStore(Path(tempfile.mkdtemp()) / "n.jsonl")
    (trace,) = run_negotiations(Prose(), embedder, agents, topics, params, store, seed=0)
    assert not trace["failed"] and trace["parse_failures"] == 0
    assert trace["initial"][0]["guideline"]["title"] == "Keep Promises"
    assert trace["initial"][0]["guideline"]["description"].startswith("Protect the weak")
    assert trace["settings"]["guideline_format"] == "fields"


def test_a_failing_job_leaves_its_siblings_finished_and_stored():
    """One program raising mid-step does not lose the others: they finish, reach on_finish, and the
    error is raised once they are done, naming how many jobs failed."""
    from kit.engine.jobs import ask
    from kit.llm.base import ChatRequest, GenParams

    def program(i: int):
        for turn in range(3):
            [text] = yield from ask(
                [
                    (
                        ChatRequest([{"role": "user", "content": f"job {i} turn {turn}"}]),
                        GenParams(max_new_tokens=4),
                    )
                ]
            )
            if i == 1 and turn == 1:
                raise KeyError("a bug in job 1")
        return f"done {i}"

    stored: list[str] = []
    jobs = [Job(f"j{i}", program(i)) for i in range(3)]
    with pytest.raises(KeyError, match="a bug in job 1") as err:
        run_jobs(jobs, FakeBackend(), on_finish=lambda done: stored.extend(j.result for j in done))
    assert sorted(stored) == ["done 0", "done 2"]
    assert isinstance(jobs[1].error, KeyError) and jobs[1].done and jobs[1].result is None
    assert any("1 of 3 jobs failed (j1)" in note for note in err.value.__notes__)


# -- a round read back from its trace (notebook 02's lesson) ----------------------------------


def test_a_round_read_back_from_its_trace_scores_as_the_run_did(embedder):
    """``rounds.round_texts`` rebuilds the pools and weights each round started from: embedded again and scored by
    ``utility_matrix`` they give the terms the run stored and the candidate it kept; the meta-game over the pools
    after the round gives the stored payoffs, and solving it again gives an equilibrium (its gap is 0)."""
    from kit.negotiation import (
        PARTS,
        UtilityWeights,
        nash_gap,
        payoff_matrices,
        solve_bimatrix,
        utility_matrix,
    )
    from kit.negotiation.rounds import candidates_frame, payoff_frame, round_texts

    params = negotiation(methods=["ncn"], max_rounds=3, epsilon=1e-9, n_counter=2)
    job = start_job(plan_jobs(AGENTS, TOPICS[:1], params)[0], params, seed=3)
    run_jobs([job], FakeBackend(), embedder)
    trace = json.loads(json.dumps(job.result))  # as the store gives it back
    assert len(trace["rounds"]) == 3
    w = UtilityWeights(params.weights.alpha, params.weights.beta, params.weights.gamma)

    def embed(guidelines):
        return embedder.encode([g.text for g in guidelines])

    for number, stored in enumerate(trace["rounds"], 1):
        r = round_texts(trace, number)
        after = []
        for i in range(2):
            opinion = embedder.encode([r.opinions[i]])[0]
            parts = utility_matrix(
                embed(r.candidates[i]), opinion, embed(r.pools[1 - i]), r.weights[1 - i], embed(r.pools[i])
            )
            np.testing.assert_allclose(
                parts, [[c[p] for p in PARTS] for c in stored["candidates"][i]], atol=1e-5
            )
            table = candidates_frame(r, i, parts, parts @ w.vector)
            assert list(table.columns) == ["agent", "kind", "title", *PARTS, "U", "kept"]
            assert table["kept"].tolist().index(True) == stored["chosen"][i]["index"]
            np.testing.assert_allclose(table["U"], [c["total"] for c in stored["candidates"][i]], atol=1e-5)
            after.append(r.pools[i] + [r.candidates[i][stored["chosen"][i]["index"]]])
        assert [[g.title for g in pool] for pool in after] == stored["pools"]
        A, B = payoff_matrices(
            embed(after[0]),
            embed(after[1]),
            embedder.encode([r.opinions[0]])[0],
            embedder.encode([r.opinions[1]])[0],
            w,
        )
        np.testing.assert_allclose(A, stored["payoffs"][0], atol=1e-5)
        np.testing.assert_allclose(B, stored["payoffs"][1], atol=1e-5)
        eq = solve_bimatrix(A, B)
        assert nash_gap(A, B, eq.row, eq.col) <= 1e-6
        assert payoff_frame(A, after[0], after[1]).shape == (len(after[0]), len(after[1]))
    assert [len(p) for p in round_texts(trace, 3).pools] == [3, 3]  # the initial guideline and two kept ones
    np.testing.assert_allclose(round_texts(trace, 2).weights[0], trace["rounds"][0]["weights"][0])
    with pytest.raises(ValueError, match="held 3 round"):
        round_texts(trace, 4)
