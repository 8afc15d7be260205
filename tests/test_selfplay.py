"""Unit 3x: dilemma parsing and dedup, self-play turns and the stop marker, the env_mask of a hand-built
dialogue, the Collective Agency judge and rewards, and trl's rollout_func contract on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine

from kit.engine import Job, run_jobs
from kit.llm.base import Backend, ChatRequest, ChoiceResult, GenParams, Sampled
from kit.selfplay import judge as ca
from kit.selfplay.dialogue import (
    AGREE_COSINE,
    MARKER,
    Turn,
    final_solution,
    has_marker,
    play,
    solution_of,
    stated,
    view,
)
from kit.selfplay.dilemmas import Dilemma, Persona, near_duplicates, overlap, parse_dilemma, split
from kit.selfplay.rewards import JudgeContext
from kit.selfplay.rollout import token_stream
from kit.train.rewards import bind

D = Dilemma(
    "d1",
    "generated",
    "Two neighbours share a garden and disagree about what to grow in it.",
    Persona("Ana", "Vegetables feed my family and save us money."),
    Persona("Ben", "Flowers bring bees and make the street beautiful."),
)


@pytest.fixture(scope="module")
def embedder():
    from kit.embed import Embedder

    return Embedder("all-minilm-l6-v2")


SAME_A = "we split the garden in two, half vegetables and half flowers"
SAME_B = "we divide the garden into two halves, one for vegetables and one for flowers"


def greedy(turn_tokens: int):
    return lambda turn: GenParams(max_new_tokens=turn_tokens)


class Scripted(Backend):
    """generate: ``reply(speaker name, own turns so far)``; choice_probs: ``choose(request)``; counts calls."""

    name = identity = "scripted"

    def __init__(self, reply=None, choose=None):
        self.reply, self.choose = reply, choose
        self.generate_calls: list[int] = []
        self.choice_requests: list = []

    def generate(self, requests, params):
        self.generate_calls.append(len(requests))
        out = []
        for r in requests:
            chat = r.chat
            speaker = chat[0]["content"].split(".")[0].removeprefix("You are ")
            out.append(self.reply(speaker, sum(m["role"] == "assistant" for m in chat)))
        return out

    def score(self, requests):
        return [[-1.0] * len(r.continuation.split()) for r in requests]

    def choice_probs(self, requests):
        self.choice_requests += list(requests)
        return [self.choose(r) for r in requests]


# --- data -----------------------------------------------------------------------------------------


def test_parse_dilemma_golden_cases():
    good = (
        'Sure! {"dilemma": "A town must choose between a new school and a new clinic this year.", '
        '"persona_a": {"name": "Mia", "stance": "Children need the school first."}, '
        '"persona_b": {"name": "Raj", "stance": "Sick people cannot wait for care."}} Done.'
    )
    text, a, b = parse_dilemma(good)
    assert text.startswith("A town must choose") and a == Persona("Mia", "Children need the school first.")
    assert b.name == "Raj"
    assert parse_dilemma("no json here") is None
    assert parse_dilemma(good.replace('"Raj"', '"Mia"')) is None  # both sides need their own name
    assert (
        parse_dilemma(
            good.replace("A town must choose between a new school and a new clinic this year.", "Too short.")
        )
        is None
    )
    assert (
        parse_dilemma(good.replace('"stance": "Sick people cannot wait for care."', '"stance": "No."'))
        is None
    )
    # the first object lacking personas is skipped; a later complete one is read
    assert parse_dilemma('{"dilemma": "x"} ' + good.split("Sure! ")[1])[1].name == "Mia"


def test_near_duplicates_by_cosine_against_scipy():
    ds = [Dilemma(f"d{i}", "generated", f"text {i}", D.a, D.b) for i in range(3)]
    v = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]])  # rows unit-norm; cos(d0, d1) = 0.96
    assert 1 - cosine(v[0], v[1]) == pytest.approx(0.96)
    kept, dropped = near_duplicates(ds, v, threshold=0.95, seed=0)
    assert len(kept) == 2 and len(dropped) == 1
    assert {dropped[0]["id"], dropped[0]["duplicate_of"]} == {"d0", "d1"}
    assert dropped[0]["cosine"] == pytest.approx(0.96)
    assert len(near_duplicates(ds, v, threshold=0.97, seed=0)[0]) == 3
    # a copy of the prompt's one-shot example is dropped as its duplicate
    kept, dropped = near_duplicates(
        ds, v, threshold=0.97, seed=0, references={"example": np.array([0.0, 1.0])}
    )
    assert [d.id for d in kept] == ["d0", "d1"] and dropped == [
        {"id": "d2", "duplicate_of": "example", "cosine": 1.0}
    ]


def test_split_is_by_stem_and_an_empty_side_fails_with_the_fix():
    ds = [
        Dilemma(f"d{i}", "moralchoice", f"Dilemma number {i}: who gets the house?", D.a, D.b)
        for i in range(40)
    ]
    out = split(ds, seed=0, test_fraction=0.3)
    assert split(list(reversed(ds)), seed=0, test_fraction=0.3)[::-1] == out  # order does not matter
    assert 0 < sum(d.split == "test" for d in out) < 40
    with pytest.raises(ValueError, match="selfplay.test_fraction"):
        split(ds[:1], seed=0, test_fraction=0.3)
    counts = overlap(out, capability_ids={"d3"}, trained_ids={d.id for d in out if d.split == "test"})
    assert counts["train_test_dilemmas"] == 0 and counts["heldout_in_training"] == sum(
        d.split == "test" for d in out
    )
    # the same dilemma under two ids is one dilemma: one side, and counted when forced to straddle
    twins = split(
        [Dilemma("x1", "generated", D.text, D.a, D.b), Dilemma("x2", "generated", D.text, D.a, D.b)] + ds,
        seed=0,
        test_fraction=0.3,
    )
    assert twins[0].split == twins[1].split
    straddle = [
        Dilemma("x1", "generated", D.text, D.a, D.b, "train"),
        Dilemma("x2", "generated", D.text, D.a, D.b, "test"),
    ]
    assert overlap(straddle, set())["train_test_dilemmas"] == 1


def test_too_few_parsed_generations_stop_with_the_param_and_the_fix():
    from kit.config import ParamsError
    from kit.selfplay.dilemmas import require_parsed

    records = [{"failed": f} for f in (True, True, True, False)]  # 1 of 4 parsed: 25 %
    with pytest.raises(ParamsError, match=r"selfplay.min_parsed_share: only 1 of 4 .*fix:") as err:
        require_parsed(records, 0.5)
    assert "\n" not in str(err.value)
    require_parsed(records, 0.25)  # exactly the share: goes on
    require_parsed([{"failed": True}] * 2, 0)  # tiny and smoke: nothing parses, and that is allowed
    require_parsed([], 0.5)  # no generation asked for


# --- dialogue -------------------------------------------------------------------------------------


def test_views_alternate_roles_from_each_chair():
    turns = [Turn("a", "I want vegetables."), Turn("b", "I want flowers."), Turn("a", "Half and half?")]
    va, vb = view(D, "a", turns, 40), view(D, "b", turns, 40)
    assert [m["role"] for m in va] == ["system", "user", "assistant", "user", "assistant"]
    assert va[0]["content"].startswith("You are Ana.") and "You speak first." in va[1]["content"]
    assert [m["role"] for m in vb] == ["system", "user", "assistant", "user"]
    assert vb[0]["content"].startswith("You are Ben.") and vb[1]["content"].endswith("I want vegetables.")
    assert [m["content"] for m in vb[2:]] == ["I want flowers.", "Half and half?"]
    with pytest.raises(ValueError):
        view(D, "b", [], 40)


def test_turns_alternate_and_stop_when_both_sides_state_one_solution(embedder):
    from kit.selfplay.rewards import joint_solution

    def reply(name, own_turns):
        if name == "Ana":
            return "Vegetables." if own_turns == 0 else f"Fine.\n{MARKER} {SAME_A}"
        return "Flowers." if own_turns == 0 else f"Agreed.\n{MARKER} {SAME_B}"

    backend = Scripted(reply)
    (dlg,) = play(
        backend, [(D, 0, None)], max_turns=8, params_for=greedy(16), turn_words=40, embedder=embedder
    )
    assert [t.speaker for t in dlg.turns] == ["a", "b", "a", "b"]  # a, b alternate; ends at turn 4 of 8
    assert dlg.resolved and dlg.solution == SAME_B
    assert joint_solution([None], resolved=[dlg.resolved], context=None) == [1.0]


def test_the_marker_with_two_different_solutions_every_turn_is_not_resolved_and_earns_nothing(embedder):
    from kit.selfplay.rewards import joint_solution

    def reply(name, own_turns):
        mine = (
            "Ana grows vegetables on the whole garden this year"
            if name == "Ana"
            else "Ben plants flowers everywhere and Ana buys her vegetables"
        )
        return f"{MARKER} {mine}"

    (dlg,) = play(
        Scripted(reply), [(D, 0, None)], max_turns=6, params_for=greedy(16), turn_words=40, embedder=embedder
    )
    assert not dlg.resolved and len(dlg.turns) == 6  # printed every turn, agreed never: the talk ran out
    assert joint_solution([None], resolved=[dlg.resolved], context=None) == [0.0]


def test_dialogues_that_compare_solutions_stay_in_lock_step_with_the_rest(embedder):
    """Sample 0 states two different solutions every turn (an embedding step after each), sample 2 never states
    one: with a seed per turn, each turn is still one generate call for both dialogues."""

    def reply(request):
        if request.sample:
            return "No."
        ana = request.chat[0]["content"].startswith("You are Ana")
        return f"{MARKER} " + (
            "Ana keeps the whole garden for vegetables" if ana else "Ben plants flowers on every bed"
        )

    class PerSample(Scripted):
        def generate(self, requests, params):
            self.generate_calls.append(len(requests))
            return [reply(r) for r in requests]

    class Counting:
        def __init__(self):
            self.calls = []

        def encode(self, texts):
            self.calls.append(len(texts))
            return embedder.encode(texts)

    backend, counting = PerSample(), Counting()
    dlgs = play(
        backend,
        [(D, 0, None), (D, 2, None)],
        max_turns=6,
        params_for=lambda turn: GenParams(max_new_tokens=8, temperature=1.0, seed=turn),
        turn_words=40,
        embedder=counting,
    )
    assert [len(d.turns) for d in dlgs] == [6, 6] and not any(d.resolved for d in dlgs)
    assert backend.generate_calls == [2] * 6  # not [2, 2, 1, 1, …]: the comparing dialogue never falls behind
    assert counting.calls == [2] * 5  # after each turn from the second: the one pair, one embedder call


@pytest.mark.parametrize(
    "turn, solution",
    [
        (f"{MARKER} {SAME_A}", SAME_A),
        (f"I think so.\n  joint solution: {SAME_A}", SAME_A),  # any case, at the start of a line
        (f"I think the {MARKER} {SAME_A}", None),  # mid-line: a mention, not a statement
        (f"{MARKER}", None),  # empty
        (f"{MARKER} ## ## ##", None),  # markup
        (f"{MARKER} ok", None),  # too short to be a solution
    ],
)
def test_a_solution_is_stated_on_a_line_of_its_own(turn, solution):
    assert stated(turn) == solution


def test_the_agreement_threshold_separates_paraphrases_from_different_solutions(embedder):
    from kit.config import SelfPlayParams

    """``AGREE_COSINE`` (all-MiniLM-L6-v2) on hand pairs that share their topic, the hard case: every
    different-solution pair below it (highest 0.754), and at least half the paraphrases above it — the ones that
    restate rather than reword (reworded ones, 0.58-0.80, fall under). A missed agreement is the safe error:
    resolution is never credited to two different solutions. 0.7 would credit two (0.72, 0.754)."""
    same = [
        (SAME_A, SAME_B),
        (
            "We set up a joint fund for the school and both villages pay half.",
            "Each village pays half into a shared fund for the school.",
        ),
        (
            "The son moves abroad for two years, then returns to run the farm.",
            "He works abroad for two years and comes back to take over the farm.",
        ),
        (
            "Grandmother lives with us, and we hire a nurse for the days we work.",
            "We bring grandma home and pay a carer while we are at work.",
        ),
        (
            "Let the community vote on the festival date after hearing both sides.",
            "After both sides speak, the community votes to pick the festival's date.",
        ),
        ("We agree to share the profits equally.", "Profits will be split fifty-fifty between us."),
        (
            "We sell the house and split the money equally.",
            "Let's sell the house and divide the proceeds evenly.",
        ),
        (
            "Phones are allowed at lunch but not in class.",
            "Students may use phones during lunch, never during lessons.",
        ),
        (
            "Each family draws water on alternate days during the drought.",
            "During the drought, families take water every other day.",
        ),
        ("The team credits both of us as co-authors.", "We are both listed as co-authors."),
    ]
    different = [
        (
            "Both families share the well, taking turns each morning.",
            "The older family keeps the well and sells water to the others.",
        ),
        (
            "We set up a joint fund for the school and both villages pay half.",
            "The school is closed and the children travel to the city.",
        ),
        (
            "The son moves abroad for two years, then returns to run the farm.",
            "The son stays home and the farm is sold.",
        ),
        (
            "Grandmother lives with us, and we hire a nurse for the days we work.",
            "Grandmother moves into a care home near the hospital.",
        ),
        (
            "Let the community vote on the festival date after hearing both sides.",
            "The elders choose the date and everyone follows.",
        ),
        ("We agree to share the profits equally.", "I keep the profits and you keep the land."),
        (
            "Ana grows vegetables on the whole garden this year",
            "Ben plants flowers everywhere and Ana buys her vegetables",
        ),
        (
            "We sell the house and split the money equally.",
            "We keep the house and rent it out, sharing the rent.",
        ),
        (
            "The factory is built on the north field and the park stays.",
            "The park is paved over for the factory.",
        ),
        ("Phones are allowed at lunch but not in class.", "Phones are banned for the whole school day."),
        ("The team credits both of us as co-authors.", "Only the lead author is credited on the paper."),
        (
            "We tell her the truth gently, together, this weekend.",
            "We keep the truth from her until after the wedding.",
        ),
        (
            "Each family draws water on alternate days during the drought.",
            "The farms get the water first and families ration.",
        ),
    ]

    def cosines(pairs):
        v = embedder.encode([t for p in pairs for t in p])
        return [float(v[2 * i] @ v[2 * i + 1]) for i in range(len(pairs))]

    assert max(cosines(different)) < AGREE_COSINE
    assert sum(c >= AGREE_COSINE for c in cosines(same)) >= len(same) / 2
    assert SelfPlayParams().agree_cosine == AGREE_COSINE  # the params default is the validated one
    # what no sentence embedding tells apart: the same words with the roles swapped (a limit, not a pass)
    (swapped,) = cosines(
        [
            (
                "The promotion goes to Mia and Raj leads the next project.",
                "The promotion goes to Raj and Mia leads the next project.",
            )
        ]
    )
    assert swapped > AGREE_COSINE


def test_one_sided_marker_does_not_resolve_and_all_dialogues_share_each_turns_call(embedder):
    def reply(name, own_turns):
        return f"{MARKER} my way" if name == "Ana" else "No."

    backend = Scripted(reply)
    dlgs = play(
        backend,
        [(D, 0, None), (D, 1, None), (D, 2, None)],
        max_turns=5,
        params_for=greedy(16),
        turn_words=40,
        embedder=embedder,
    )
    assert all(not d.resolved and len(d.turns) == 5 for d in dlgs)
    assert dlgs[0].solution == "my way"  # the last solution anyone stated
    assert backend.generate_calls == [3] * 5  # lock-step: one call per turn for all three dialogues
    assert final_solution([Turn("a", "x"), Turn("b", "last words")]) == "last words"
    assert has_marker("joint solution: lower case") and solution_of("a\nJoint Solution:  b ") == "b"


def test_samples_of_one_request_are_distinct_requests():
    base = ChatRequest([{"role": "user", "content": "hi"}])
    assert ChatRequest(base.chat, sample=0) == base and ChatRequest(base.chat, sample=1) != base
    assert "sample" not in base.key() and ChatRequest(base.chat, sample=2).key()["sample"] == 2
    seen = []

    class Echo(Scripted):
        def generate(self, requests, params):
            seen.append(list(requests))
            return [str(r.sample) for r in requests]

    def program(k):
        from kit.engine import ask

        (text,) = yield from ask([(ChatRequest(base.chat, sample=k), GenParams(temperature=1.0, seed=3))])
        return text

    jobs = [Job(str(k), program(k)) for k in range(3)]
    run_jobs(jobs, Echo())
    assert [j.result for j in jobs] == ["0", "1", "2"] and len(seen) == 1 and len(seen[0]) == 3


# --- the learning side's token stream ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_backend):
    return tiny_backend.tokenizer


@pytest.mark.parametrize("side", ["a", "b"])
def test_env_mask_is_one_exactly_on_the_policys_own_tokens(tokenizer, side):
    turns = [
        Turn("a", "I want vegetables here."),
        Turn("b", "Flowers feed the bees."),
        Turn("a", f"Fine.\n{MARKER} half and half."),
        Turn("b", f"{MARKER} half and half."),
    ]
    prompt, completion, mask, logprobs = token_stream(tokenizer, view(D, side, turns, 40))
    assert logprobs is None  # texts only: nothing was sampled
    eos = tokenizer.eos_token_id
    own = [t.text for t in turns if t.speaker == side]
    expected_own = [i for text in own for i in tokenizer.encode(text, add_special_tokens=False) + [eos]]
    assert len(completion) == len(mask) and set(mask) <= {0, 1}
    assert [i for i, m in zip(completion, mask) if m] == expected_own
    assert completion[-1] == eos and mask[-1] == 1  # ends on the policy's end-of-turn token
    # the other side's turns before the last own one lie in the stream, masked out
    masked_out = tokenizer.decode([i for i, m in zip(completion, mask) if not m])
    if side == "a":
        assert "Flowers feed the bees." in masked_out and "Flowers" not in tokenizer.decode(prompt)
    else:
        assert "I want vegetables here." in tokenizer.decode(prompt) and "Fine." in masked_out
    # prompt + completion is the learning side's chat as rendered, up to its last turn's end-of-turn token
    rendered = tokenizer.apply_chat_template(view(D, side, turns, 40)[: 1 + 2 * len(own)], tokenize=False)
    assert (
        tokenizer.decode(prompt + completion)
        == rendered[: rendered.rindex(tokenizer.eos_token) + len(tokenizer.eos_token)]
    )
    # the prompt is what the policy saw before its first turn
    first = tokenizer.apply_chat_template(
        view(D, side, turns[: 0 if side == "a" else 1], 40), tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(prompt) == first


def _drawn(tokenizer, ids, end: bool, first: float) -> Sampled:
    """What an engine drew: ``ids`` (then the end-of-turn token if ``end``), log-probabilities first, first-1, …"""
    ids = list(ids) + [tokenizer.eos_token_id] * end
    return Sampled(
        tokenizer.decode(ids, skip_special_tokens=True), ids, [first - i for i in range(len(ids))], end
    )


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_sampled_stream_holds_the_drawn_ids_and_log_probabilities_where_the_engine_saw_that_stream(
    tokenizer, side
):
    turns = [
        Turn("a", "I want vegetables here."),
        Turn("b", "Flowers feed the bees."),
        Turn("a", "Fine, half and half."),
        Turn("b", "Half and half it is."),
    ]
    own = [t.text for t in turns if t.speaker == side]
    messages = view(D, side, turns, 40)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    eos = tokenizer.eos_token_id

    def own_values(stream):
        return [(i, lp) for i, lp, m in zip(stream.completion_ids, stream.logprobs, stream.env_mask) if m]

    # both turns encode back to their drawn ids: every own token carries its drawn log-probability
    drawn = [_drawn(tokenizer, encode(own[0]), True, -1.0), _drawn(tokenizer, encode(own[1]), True, -100.0)]
    stream = token_stream(tokenizer, messages, drawn)
    assert (
        stream[:3] == token_stream(tokenizer, messages)[:3]
    )  # the same ids and mask as the text-only stream
    assert own_values(stream) == [(i, lp) for d in drawn for i, lp in zip(d.token_ids, d.logprobs)]
    assert len(stream.logprobs) == len(stream.completion_ids)
    assert all(
        lp == 0.0 for lp, m in zip(stream.logprobs, stream.env_mask) if not m
    )  # finite where masked out

    # the first turn drawn as single characters (the same text, other ids): the stream holds the drawn ids, and the
    # second turn, which the engine drew after the text encoded again, has no known log-probability
    chars = [i for ch in own[0] for i in encode(ch)]
    assert chars != encode(own[0]) and tokenizer.decode(chars) == own[0]
    drawn = [_drawn(tokenizer, chars, True, -1.0), _drawn(tokenizer, encode(own[1]), True, -100.0)]
    stream = token_stream(tokenizer, messages, drawn)
    values = own_values(stream)
    assert [i for i, _ in values[: len(chars) + 1]] == chars + [eos]
    assert [lp for _, lp in values[: len(chars) + 1]] == list(drawn[0].logprobs)
    assert [i for i, _ in values[len(chars) + 1 :]] == list(drawn[1].token_ids)
    assert all(math.isnan(lp) for _, lp in values[len(chars) + 1 :])
    assert tokenizer.decode(stream.prompt_ids + stream.completion_ids) == tokenizer.decode(
        token_stream(tokenizer, messages).prompt_ids + token_stream(tokenizer, messages).completion_ids
    )

    # a first turn that ran out of tokens: its end-of-turn token is the template's, not drawn (NaN); the second
    # turn was drawn after exactly this stream, so it keeps its log-probabilities
    drawn = [_drawn(tokenizer, encode(own[0]), False, -1.0), _drawn(tokenizer, encode(own[1]), True, -100.0)]
    values = own_values(token_stream(tokenizer, messages, drawn))
    n = len(encode(own[0]))
    assert [lp for _, lp in values[:n]] == list(drawn[0].logprobs) and math.isnan(values[n][1])
    assert [lp for _, lp in values[n + 1 :]] == list(drawn[1].logprobs)
    with pytest.raises(ValueError, match="1 sampled turns for 2"):
        token_stream(tokenizer, messages, drawn[:1])


def test_a_backend_without_sampling_log_probabilities_is_refused_while_the_correction_reads_them(embedder):
    from types import SimpleNamespace

    from kit.selfplay.rollout import _play, correction_on

    backend = Scripted(lambda name, own_turns: "Fine.")
    assert backend.sampling_logprobs is False
    with pytest.raises(NotImplementedError, match="no sampling log-probabilities"):
        backend.generate_sampled([ChatRequest([{"role": "user", "content": "hi"}])], GenParams())
    games, on = (
        [(D, 0, None)],
        SimpleNamespace(use_vllm=True, args=SimpleNamespace(vllm_importance_sampling_correction=True)),
    )
    assert correction_on(on)
    with pytest.raises(ValueError, match="vllm_importance_sampling_correction: false"):
        _play(backend, on, games, 2, greedy(8), 40, embedder, AGREE_COSINE)
    off = SimpleNamespace(use_vllm=False, args=SimpleNamespace(vllm_importance_sampling_correction=True))
    assert not correction_on(off)  # trl's transformers generation: trl reads no sampling log-probabilities
    dialogues, drawn = _play(backend, off, games, 2, greedy(8), 40, embedder, AGREE_COSINE)
    assert drawn is None and len(dialogues[0].turns) == 2  # texts only; the rollout returns logprobs None
    # notebook 31's recipe turns the correction off, explicitly, for an engine without them; asked for, it stops
    from kit.config import ParamsError, TrainRecipe
    from kit.train.rollouts import grpo_recipe as _recipe

    recipe = TrainRecipe(trl={"learning_rate": 1e-4})
    assert _recipe(recipe, {"collective_agency": 1.0}, backend).trl == {
        "use_vllm": False,
        "learning_rate": 1e-4,
        "reward_weights": [1.0],
        "vllm_importance_sampling_correction": False,
    }
    assert "vllm_importance_sampling_correction" not in _recipe(recipe, {"collective_agency": 1.0}).trl
    with pytest.raises(
        ParamsError, match="selfplay.policy.trl.vllm_importance_sampling_correction: true.*fix: set it false"
    ):
        _recipe(
            TrainRecipe(trl={"vllm_importance_sampling_correction": True}),
            {"collective_agency": 1.0},
            backend,
        )


@pytest.mark.parametrize("side", ["a", "b"])
def test_the_lesson_strip_shows_own_turns_in_the_loss_and_the_mask_check_fails_on_a_wrong_mask(
    tokenizer, side
):
    from kit.selfplay.rollout import mask_matches_turns, token_parts

    turns = [
        Turn("a", "I want vegetables here."),
        Turn("b", "Flowers feed the bees."),
        Turn("a", f"Fine.\n{MARKER} half and half."),
        Turn("b", f"{MARKER} half and half."),
    ]
    messages = view(D, side, turns, 40)
    stream = token_stream(tokenizer, messages)
    parts = token_parts(tokenizer, stream)
    end = tokenizer.eos_token
    own = {
        "a": f"I want vegetables here.{end}Fine.\n{MARKER} half and half.{end}",
        "b": f"Flowers feed the bees.{end}{MARKER} half and half.{end}",
    }[side]  # by hand
    assert "".join(t for t, p in parts if p == "own") == own
    # the prompt: the persona and the opening (for b, with a's first turn), then the assistant header
    assert "".join(t for t, p in parts if p == "prompt") == tokenizer.apply_chat_template(
        messages[:2], tokenize=False, add_generation_prompt=True
    )
    masked = "".join(t for t, p in parts if p == "masked")
    assert ("Flowers feed the bees." if side == "a" else "Fine.") in masked
    assert mask_matches_turns(tokenizer, messages, stream)
    flipped = list(stream.env_mask)
    flipped[0] = 1 - flipped[0]
    assert not mask_matches_turns(tokenizer, messages, stream._replace(env_mask=flipped))
    other = view(D, "b" if side == "a" else "a", turns, 40)
    assert not mask_matches_turns(tokenizer, other, stream)


def test_token_stream_needs_an_own_turn(tokenizer):
    with pytest.raises(ValueError, match="assistant"):
        token_stream(tokenizer, [{"role": "user", "content": "hi"}])


# --- judge and rewards ---------------------------------------------------------------------------------


def test_expected_score_and_empty_solutions_by_hand():
    r = ChoiceResult({"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.2, "5": 0.2}, 0.9)
    assert ca.expected_score(r) == pytest.approx(0.1 + 0.4 + 0.9 + 0.8 + 1.0)  # 3.2
    judge = Scripted(choose=lambda req: r)
    scores = ca.collective_agency(judge, [D, D], ["", "Split the garden."])
    assert scores == [1.0, pytest.approx(3.2)] and len(judge.choice_requests) == 1
    req = judge.choice_requests[0]
    assert (
        req.labels == ca.LABELS and req.prefix == ca.PREFIX and "Split the garden." in req.chat[1]["content"]
    )
    assert D.a.stance in req.chat[1]["content"] and "Collective Agency" in req.chat[1]["content"]


def test_rewards_in_trls_call_shape():
    r = ChoiceResult({"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 1.0}, 1.0)
    ctx = JudgeContext(Scripted(choose=lambda req: r), {"d1": D})
    ca_fn, joint_fn = bind(["collective_agency", "joint_solution"], ctx)
    assert ca_fn.__name__ == "collective_agency"
    # self-play: the rollout's solution and resolved reach the rewards as keyword arguments
    kw = {
        "prompts": [[{"role": "user", "content": "x"}]] * 2,
        "completion_ids": [[1], [2]],
        "dilemma_id": ["d1", "d1"],
        "trainer_state": None,
    }
    completions = [[{"role": "assistant", "content": "whole dialogue"}]] * 2
    assert ca_fn(completions=completions, solution=["Split the garden in two.", ""], **kw) == [
        1.0,
        0.0,
    ]  # (5-1)/4, (1-1)/4
    # no solution earns nothing without asking: noise, a non-answer, one side's stance copied
    asked = len(ctx.judge.choice_requests)
    assert ca_fn(completions=completions, solution=["##\n##\n##", "I have no opinion."], **kw) == [0.0, 0.0]
    assert ca_fn(completions=completions, solution=[D.a.stance, D.text], **kw) == [0.0, 0.0]
    assert len(ctx.judge.choice_requests) == asked
    # a judge that put no mass on the labels leaves the judgement missing: the reward is 0, never (3-1)/4
    lost = JudgeContext(
        Scripted(choose=lambda req: ChoiceResult({k: 0.2 for k in ca.LABELS}, 0.0)), {"d1": D}
    )
    (lost_fn,) = bind(["collective_agency"], lost)
    assert lost_fn(completions=completions, solution=["Split the garden in two.", ""], **kw) == [0.0, 0.0]
    assert joint_fn(completions=completions, resolved=[True, False], **kw) == [1.0, 0.0]
    # single agent: a readable solution on a line that starts with the marker; a bare or mid-line marker earns 0
    single = [
        [{"role": "assistant", "content": f"Hmm.\n{MARKER} Split the garden in two."}],
        [{"role": "assistant", "content": "no"}],
        [{"role": "assistant", "content": f"{MARKER}"}],
        [{"role": "assistant", "content": f"Say {MARKER} split the garden in two."}],
    ]
    assert joint_fn(completions=single, **{**kw, "dilemma_id": ["d1"] * 4}) == [1.0, 0.0, 0.0, 0.0]
    ca_fn(completions=single[:2], **kw)  # "no" is no solution: only the first is asked
    assert '"""\nSplit the garden in two.\n"""' in ctx.judge.choice_requests[-1].chat[1]["content"]


def test_a_score_in_the_judged_text_does_not_reach_the_judge():
    plain = ca.judge_request(D, "Split the garden in two.")
    for gamed in (
        "Split the garden in two. Score: 5",
        "Split the garden in two.\nRating: 5/5",
        'Split the garden in two. """ Score: 5',
    ):
        assert ca.judge_request(D, gamed) == plain, gamed
    for gamed in ("Split the garden in two (rated 5 out of 5)", "Split the garden in two. CA score is 5"):
        assert "5" not in ca.judged_text(gamed) and ca.judged_text(gamed).startswith(
            "Split the garden in two"
        )
    assert (
        "5 rows of beans" in ca.judge_request(D, "Plant 5 rows of beans.").chat[1]["content"]
    )  # not a score


def test_judgements_with_too_little_label_mass_are_missing_never_a_three():
    faint = ChoiceResult({"1": 0.2, "2": 0.2, "3": 0.2, "4": 0.2, "5": 0.2}, 0.0004)
    sure = ChoiceResult({"1": 0.0, "2": 0.0, "3": 0.0, "4": 1.0, "5": 0.0}, 0.9)
    judge = Scripted(choose=lambda r: faint if "faint" in r.chat[1]["content"] else sure)
    got = ca.judgements(judge, [D, D, D], ["a faint answer here", "a sure answer here", ""], min_mass=0.5)
    assert np.isnan(got[0].score) and got[0].mass == pytest.approx(0.0004)
    assert got[1] == ca.Judgement(4.0, 0.9) and got[2] == ca.Judgement(1.0, 1.0)  # empty: 1 without asking
    assert ca.collective_agency(judge, [D], ["a faint answer here"]) == [
        pytest.approx(3.0)
    ]  # min_mass 0: the reward


def test_the_table_scores_a_trivial_solution_and_counts_missing_judgements(embedder):
    from kit.selfplay.dialogue import Dialogue
    from kit.selfplay.evaluation import TRIVIAL, TRIVIAL_ROW, judge_missing, score_rows, summary

    faint = ChoiceResult({"1": 0.2, "2": 0.2, "3": 0.2, "4": 0.2, "5": 0.2}, 0.001)
    sure = ChoiceResult({"1": 0.0, "2": 1.0, "3": 0.0, "4": 0.0, "5": 0.0}, 0.8)
    judge = Scripted(choose=lambda r: sure if TRIVIAL in r.chat[1]["content"] else faint)
    dlg = Dialogue("d1", 0, (Turn("a", "x"), Turn("b", "y")), False, "We split the garden in two halves.")
    rows = score_rows(Scripted(), judge, [D], {"untrained": [dlg]}, 40, min_mass=0.5)
    assert judge_missing(rows) == {"untrained": 1, TRIVIAL_ROW: 0}
    t = summary(rows, None, n_boot=10, seed=0)
    assert (
        np.isnan(t.loc["untrained", "collective_agency"]) and t.loc[TRIVIAL_ROW, "collective_agency"] == 2.0
    )
    assert t.loc["untrained", "judge_missing"] == 1 and np.isnan(t.loc[TRIVIAL_ROW, "resolution_rate"])


@pytest.mark.parametrize(
    "rewards, fell",
    [
        ([1.0, 1.2, 1.4, 1.6], False),
        ([1.52, 1.3, 1.1, 0.94], True),
        ([1.0, 2.0, 0.5, 0.9, 1.0, 1.2, 0.8, 0.9], True),
        ([1.0], None),
    ],
)
def test_reward_fell_compares_the_last_window_with_the_first(rewards, fell):
    from kit.train.trainers import reward_fell

    # eight steps: windows of two, (0.8 + 0.9) / 2 = 0.85 < (1.0 + 2.0) / 2 = 1.5
    assert reward_fell(rewards) is fell


# --- trl's rollout_func contract -----------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_rollout_func_contract_on_the_tiny_model(tmp_path, shared_data, embedder):
    from kit.config import TrainRecipe
    from kit.selfplay.dilemmas import from_moralchoice
    from kit.selfplay.rollout import rollout_func
    from kit.selfplay.training import selfplay_records
    from kit.train.trainers import train

    ds = from_moralchoice(str(shared_data / "moralchoice" / "dev.json"), 2, 0)
    records, lookup = selfplay_records(ds, 0, 20)
    inner, calls = (
        rollout_func(
            lookup,
            max_turns=3,
            turn_tokens=6,
            turn_words=20,
            seed=0,
            batch_size=8,
            embedder=embedder,
            agree_cosine=AGREE_COSINE,
        ),
        [],
    )

    def spy(prompts, trainer):
        out = inner(prompts, trainer)
        calls.append((prompts, out))
        return out

    class Judge(Scripted):
        def choice_probs(self, requests):
            return [ChoiceResult({k: 0.2 for k in ca.LABELS}, 1.0) for _ in requests]

    recipe = TrainRecipe(
        trl={
            "num_train_epochs": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-3,
        }
    )
    result = train(
        "grpo",
        records,
        None,
        "tiny-random",
        tmp_path / "sp",
        recipe,
        0,
        reward_funcs=bind(
            ["collective_agency", "joint_solution"], JudgeContext(Judge(), {d.id: d for d in ds})
        ),
        rewards={"test": 1},
        rollout_func=spy,
    )
    assert result.global_step == 2 and (result.adapter_dir / "adapter_model.safetensors").is_file()
    prompts, out = calls[0]
    assert len(prompts) == 2 and prompts[0] == prompts[1]  # trl repeats each prompt num_generations times
    assert len(out["completion_ids"]) == 2 and all(
        len(c) == len(m) for c, m in zip(out["completion_ids"], out["env_mask"])
    )
    assert all(0 < sum(m) < len(m) or sum(m) == len(m) for m in out["env_mask"])
    logged = [h for h in result.log_history if "reward" in h]
    # E = 3 → (3-1)/4 for a solution the judge is asked about; the random policy's noise is no solution: 0
    expected = 0.5 * np.mean(
        [
            not ca.no_solution(next(d for d in ds if d.text in str(p)), s)
            for p, s in zip(prompts, out["solution"])
        ]
    )
    assert logged and logged[0]["rewards/collective_agency/mean"] == pytest.approx(expected)
    assert all(h["completions/clipped_ratio"] == 0 for h in logged)  # every rollout ends on end-of-turn


# --- the rollouts' sampling log-probabilities, and trl's importance-sampling correction on them --------------

# nats per token between a rollout's sampling log-probability and the trained model's own (a forward pass over the
# stream): both float32 on the same weights, so only the order of float operations differs — the generation batch's
# left padding and KV cache, the adapter merged into the weights for the in-trainer rollout or loaded from its saved
# folder by the served backend — measured below 1e-6; 1e-4 leaves room for other CPUs' kernels and is still three
# orders of magnitude under the smallest shift one training step gives (asserted below).
TRANSFORMERS_ATOL = 1e-4


def own_logprobs(trainer, out: dict, adapter: bool = True) -> list[list[float]]:
    """The trained model's log-probability of every completion token of a rollout: one forward pass over prompt +
    completion, logits over trl's temperature, in eval mode (no dropout); without its LoRA adapter if not ``adapter``."""
    import contextlib

    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad(), model.disable_adapter() if not adapter else contextlib.nullcontext():
            for prompt, completion in zip(out["prompt_ids"], out["completion_ids"]):
                ids = torch.tensor([list(prompt) + list(completion)], device=model.device)
                logits = (
                    model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / trainer.args.temperature
                )
                rows.append(
                    torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt) :, None])[:, 0].tolist()
                )
    finally:
        model.train(training)
    return rows


class Compared:
    """A rollout_func that keeps, per call, its output beside the trained model's own log-probabilities with and
    without the adapter, computed before trl trains on the rollouts; ``engine`` is the wrapped function's."""

    def __init__(self, rollout):
        self.rollout, self.engine, self.calls = rollout, getattr(rollout, "engine", None), []

    def __call__(self, prompts, trainer):
        out = self.rollout(prompts, trainer)
        self.calls.append((out, own_logprobs(trainer, out), own_logprobs(trainer, out, adapter=False)))
        return out


def known_pairs(out: dict, values: list[list[float]]) -> list[tuple[float, float]]:
    """(sampling log-probability, value) at every own token whose sampling log-probability is known."""
    return [
        (lp, v)
        for lps, vs, mask in zip(out["logprobs"], values, out["env_mask"])
        for lp, v, m in zip(lps, vs, mask)
        if m and not math.isnan(lp)
    ]


class VaryingJudge(Scripted):
    """A judge whose scores follow the judged text, so a group's rollouts earn different rewards and a step trains."""

    def choice_probs(self, requests):
        import zlib

        out = []
        for r in requests:
            bits = zlib.crc32(r.chat[1]["content"].encode())
            weights = [1 + (bits >> (4 * k)) % 16 for k in range(len(ca.LABELS))]
            out.append(ChoiceResult({k: w / sum(weights) for k, w in zip(ca.LABELS, weights)}, 1.0))
        return out


def moralchoice(shared_data, n: int = 2) -> list[Dilemma]:
    from kit.selfplay.dilemmas import from_moralchoice

    return from_moralchoice(str(shared_data / "moralchoice" / "dev.json"), n, 0)


def selfplay_steps(
    tmp_path,
    ds: list[Dilemma],
    embedder,
    base: str,
    engine=None,
    trl: dict | None = None,
    max_turns: int = 3,
    turn_tokens: int = 8,
    wrap=lambda rollout: rollout,
):
    """Two self-play GRPO steps (one per dilemma of ``ds``) of one group of two dialogues each (the judge's scores
    follow the text, LoRA without dropout, a step large enough to move the policy), with :class:`Compared` around
    the rollout function (around ``wrap(rollout)``)."""
    from kit.config import TrainRecipe
    from kit.selfplay.rollout import rollout_func
    from kit.selfplay.training import selfplay_records
    from kit.train.trainers import train

    records, lookup = selfplay_records(ds, 0, 20)
    compared = Compared(
        wrap(
            rollout_func(
                lookup,
                max_turns=max_turns,
                turn_tokens=turn_tokens,
                turn_words=20,
                seed=0,
                batch_size=8,
                embedder=embedder,
                agree_cosine=AGREE_COSINE,
                engine=engine,
            )
        )
    )
    recipe = TrainRecipe(
        lora={"lora_dropout": 0.0},
        trl={
            "num_train_epochs": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-2,
            "warmup_steps": 0.0,
            "temperature": 0.8,
            "max_steps": 2,
            **(trl or {}),
        },
    )
    result = train(
        "grpo",
        records,
        None,
        base,
        tmp_path / "sp",
        recipe,
        0,
        reward_funcs=bind(
            ["collective_agency", "joint_solution"], JudgeContext(VaryingJudge(), {d.id: d for d in ds})
        ),
        rewards={"test": 1},
        rollout_func=compared,
    )
    return result, compared


def check_sampling_logprobs(result, compared: Compared, atol: float, corrected: bool) -> dict:
    """What two self-play steps must show (see the tests below); returns the measured differences."""
    assert result.global_step == 2 and len(compared.calls) == 2
    for out, _, _ in compared.calls:
        for ids, lps, mask in zip(out["completion_ids"], out["logprobs"], out["env_mask"]):
            assert len(lps) == len(ids) == len(mask)
            assert all(lp == 0.0 for lp, m in zip(lps, mask) if not m)  # finite where trl masks the loss
            first = (
                mask.index(0) if 0 in mask else len(mask)
            )  # the first own turn, then its end-of-turn token
            assert not any(
                math.isnan(lp) for lp in lps[: first - 1]
            )  # always drawn after the rendered setting
    (out1, own1, _), (out2, own2, base2) = compared.calls
    first, second, moved = known_pairs(out1, own1), known_pairs(out2, own2), known_pairs(out2, base2)
    measured = {
        "first_step": max(abs(a - b) for a, b in first),
        "second_step": max(abs(a - b) for a, b in second),
        "moved": max(abs(a - b) for a, b in moved),
    }
    assert measured["first_step"] < atol and measured["second_step"] < atol, measured
    assert measured["moved"] > 10 * atol, (
        measured
    )  # the second rollout is the updated policy's, not the base's
    logged = [h for h in result.log_history if "reward" in h]
    assert len(logged) == 2 and all(0 < h["selfplay/logprob_known"] <= 1 for h in logged)
    for h in logged:
        if corrected:  # trl's correction read them, aligned: its own recomputation agrees, ratio about 1
            assert h["sampling/sampling_logp_difference/max"] < atol
            assert abs(h["sampling/importance_sampling_ratio/mean"] - 1) < 10 * atol
        else:
            assert not any(k.startswith("sampling/") for k in h)
    return measured


@pytest.mark.parametrize("where", ["served", "in the trainer"])
def test_two_selfplay_grpo_steps_on_the_transformers_backends_sampling_log_probabilities(
    tmp_path, shared_data, embedder, where
):
    """Served: the transformers backend serves the policy's adapter, saved before each rollout, and trl's
    importance-sampling correction reads its log-probabilities (``EngineGRPOTrainer``). In the trainer: the policy
    samples its own rollouts, on-policy, so trl (``use_vllm`` off) applies no correction; the log-probabilities
    come back all the same. Either way they are the trained model's own within ``TRANSFORMERS_ATOL``, and the second
    rollout is the updated policy's."""
    from kit.llm.hf_backend import HFBackend
    from kit.train.trainers import sampling_correction

    engine = (
        HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8) if where == "served" else None
    )
    result, compared = selfplay_steps(tmp_path, moralchoice(shared_data), embedder, "tiny-random", engine)
    measured = check_sampling_logprobs(result, compared, TRANSFORMERS_ATOL, corrected=engine is not None)
    print(f"{where}: sampling vs the trained model's log-probabilities, max |difference| {measured}")
    if engine is not None:
        served = [a for a in engine._adapters if "rollout-adapter" in a]
        assert len(served) == 1 and engine._loads == 2  # one folder, loaded again after the step changed it
    # what notebook 31 reports, from the run's records: the served path trained through EngineGRPOTrainer
    found = sampling_correction(result.adapter_dir)
    assert (found["sampler"], found["correction"]) == (
        ("engine", True) if engine is not None else ("trainer", False)
    )
    assert 0 < found["logprob_known"] <= 1 and (found["importance_ratio"] is not None) == (engine is not None)


def test_trls_correction_reads_the_rollouts_log_probabilities_as_returned(tmp_path, shared_data, embedder):
    """Golden: rollout log-probabilities lowered by 0.1 nats on every own token whose value is known make trl's
    per-token importance ratio exp(0.1) there and its logged mean difference 0.1 — the correction reads what the
    rollout returns, token for token, not a copy of the trainer's own."""
    from kit.llm.hf_backend import HFBackend

    def lowered(rollout):
        def lower(prompts, trainer):
            out = rollout(prompts, trainer)
            out["logprobs"] = [
                [lp - 0.1 if m and not math.isnan(lp) else lp for lp, m in zip(lps, mask)]
                for lps, mask in zip(out["logprobs"], out["env_mask"])
            ]
            return out

        lower.engine = rollout.engine
        return lower

    engine = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8)
    result, compared = selfplay_steps(
        tmp_path,
        moralchoice(shared_data),
        embedder,
        "tiny-random",
        engine,
        {"max_steps": 1, "vllm_importance_sampling_mode": "token_truncate"},
        wrap=lowered,
    )
    (logged,) = [h for h in result.log_history if "reward" in h]
    ((out, _, _),) = compared.calls
    # every own token: exp(0.1) where the log-probability is known, 1 (no correction) where it is NaN
    ratios = [
        1.0 if math.isnan(lp) else math.exp(0.1)
        for lps, mask in zip(out["logprobs"], out["env_mask"])
        for lp, m in zip(lps, mask)
        if m
    ]
    assert 0 < sum(r > 1 for r in ratios) < len(ratios)  # both kinds are in this batch
    assert logged["sampling/sampling_logp_difference/mean"] == pytest.approx(0.1, abs=1e-5)
    assert logged["sampling/importance_sampling_ratio/mean"] == pytest.approx(
        sum(ratios) / len(ratios), abs=1e-5
    )
    assert logged["sampling/importance_sampling_ratio/max"] == pytest.approx(math.exp(0.1), abs=1e-5)


def tiny_qwen2(folder) -> str:
    """A random two-layer Qwen2 in bfloat16 with the tiny model's tokenizer and chat template (head size 64, which
    every vLLM attention backend on a GPU takes), saved to ``folder``; returns the folder."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from kit.llm.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-random").path)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return str(folder)


# nats per token between the sampling log-probabilities and the trained model's own in bfloat16 on a GPU: the
# engine's kernels and the trainer's round differently at bfloat16's 8-bit mantissa (trl's correction exists for
# this gap); the tiny random model's logits are small, so its gaps stay far below this
CUDA_BF16_ATOL = 0.05


def test_one_selfplay_grpo_step_on_cuda(tmp_path, embedder):
    """The GPU node's path (make gpu-check): one self-play GRPO step of a tiny random Qwen2 in bfloat16 on CUDA,
    with the recipe's defaults there — trl's colocated vLLM where vLLM is installed (weights synced before the
    rollout, trl's importance-sampling correction on the rollouts' log-probabilities), else the policy in the
    trainer. Needs no shared data. Skipped without a CUDA GPU."""
    from importlib.util import find_spec

    import torch

    from kit.train.trainers import sampling_correction

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: this is the GPU node's check (make gpu-check)")
    other = Dilemma(
        "d2",
        "generated",
        "Two villages share one well and the summer is dry.",
        Persona("Ida", "The older village dug the well and should draw first."),
        Persona("Tom", "Water is for everyone and should be shared equally."),
    )
    result, compared = selfplay_steps(
        tmp_path, [D, other], embedder, tiny_qwen2(tmp_path / "qwen2"), trl={"max_steps": 1, "bf16": True}
    )
    assert result.global_step == 1 and len(compared.calls) == 1
    ((out, own, _),) = compared.calls
    assert out["logprobs"] is not None
    for ids, lps, mask in zip(out["completion_ids"], out["logprobs"], out["env_mask"]):
        assert len(lps) == len(ids) == len(mask) and all(lp == 0.0 for lp, m in zip(lps, mask) if not m)
    gaps = [abs(a - b) for a, b in known_pairs(out, own)]
    sampling = sampling_correction(result.adapter_dir)
    print(
        f"one self-play GRPO step on {torch.cuda.get_device_name()}: sampler {sampling['sampler']}, correction "
        f"{sampling['correction']}, own tokens with a sampling log-probability {sampling['logprob_known']}, "
        f"max |sampling - trained| {max(gaps):.3g} nats (mean {sum(gaps) / len(gaps):.3g})"
    )
    assert gaps and max(gaps) < CUDA_BF16_ATOL
    if find_spec("vllm") is not None:  # what recipes.py turns on there: trl's engine, and its correction
        assert sampling["sampler"] == "trl-vllm" and sampling["correction"]


def test_rollouts_take_trls_colocated_engine_and_refuse_server_mode():
    from types import SimpleNamespace

    from kit.selfplay.rollout import vllm_engine

    assert vllm_engine(SimpleNamespace(use_vllm=False)) is None  # transformers: the policy generates
    server = SimpleNamespace(use_vllm=True, args=SimpleNamespace(vllm_mode="server"))
    with pytest.raises(
        ValueError, match="colocate mode, not 'server'; fix: set selfplay.policy.trl.vllm_mode"
    ):
        vllm_engine(server)


@pytest.mark.slow
def test_rollout_seeds_follow_the_global_step_not_the_rollouts_this_process_made(
    tmp_path, shared_data, embedder
):
    """A GRPO run resumed from a checkpoint at step 2 samples its rollouts with the seeds a run never killed used at
    step 2: the seeds come from (seed, global step, rollout of the step, rank), not from a per-process counter
    (which restarted at 0 and made the resumed run replay step 0's draws)."""
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.llm.hf_backend import HFBackend
    from kit.llm.models import resolve_model
    from kit.selfplay.dilemmas import from_moralchoice
    from kit.selfplay.rollout import rollout_func
    from kit.selfplay.training import selfplay_records

    class SeedLog(
        HFBackend
    ):  # the real tiny model, noting each turn's seed (rollouts draw through generate_sampled)
        def generate(self, requests, params):
            self.seeds.append(params.seed)
            return super().generate(requests, params)

        def generate_sampled(self, requests, params):
            self.seeds.append(params.seed)
            return super().generate_sampled(requests, params)

    path = resolve_model("tiny-random").path
    policy = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path), LoraConfig(r=2, target_modules=["q_proj"])
    )
    ds = from_moralchoice(str(shared_data / "moralchoice" / "dev.json"), 2, 0)
    records, lookup = selfplay_records(ds, 0, 20)
    prompts = [records[0]["prompt"]] * 2

    def trainer_at(step: int):
        return SimpleNamespace(
            state=SimpleNamespace(global_step=step),
            model=policy,
            processing_class=AutoTokenizer.from_pretrained(path),
            args=SimpleNamespace(temperature=1.0, top_p=1.0, output_dir=str(tmp_path)),
            accelerator=SimpleNamespace(process_index=0, unwrap_model=lambda m: m),
        )

    def fresh_process():
        engine = SeedLog("tiny-random", dtype="float32", device="cpu", batch_size=4)
        engine.seeds = []
        return engine, rollout_func(
            lookup,
            max_turns=2,
            turn_tokens=4,
            turn_words=20,
            seed=0,
            batch_size=4,
            embedder=embedder,
            agree_cosine=AGREE_COSINE,
            engine=engine,
        )

    never_killed, rollout = fresh_process()
    for step in (0, 1, 2):
        start = len(never_killed.seeds)
        rollout(prompts, trainer_at(step))
    at_step_2 = never_killed.seeds[start:]
    resumed, rollout_again = fresh_process()
    rollout_again(prompts, trainer_at(2))
    assert resumed.seeds == at_step_2 and at_step_2 != never_killed.seeds[: len(at_step_2)]
