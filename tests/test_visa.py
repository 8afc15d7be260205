"""VISA: rewards (hand-computed cases), the translator's parser, the trained detector and its
measurement (against scikit-learn and hand-computed F1), targets, the unit's splits, GRPO recipes,
and the evaluation's batching."""

import json

import numpy as np
import pytest

from kit.llm.base import Backend, ChoiceResult
from kit.train.rewards import bind, text_of
from kit.values.schwartz import SCHWARTZ_VALUES
from kit.visa import corpus as vc
from kit.visa.rewards import RewardContext, drift_share, score_all, value_match, value_scores
from kit.visa.targets import culture_target, opposite, sample_target
from kit.visa.translator import INSTRUCTION_EXAMPLES, ValueTranslator, instruction, parse_target


def vec(**named):
    out = np.zeros(10)
    for k, v in named.items():
        out[[n.lower().replace("-", "_") for n in SCHWARTZ_VALUES].index(k)] = v
    return out


# --- rewards ---------------------------------------------------------------------------------------


def test_value_scores_hand_computed():
    target = vec(tradition=1, stimulation=-1)  # "more tradition, less stimulation"
    # tradition right; stimulation expressed (against "less"); an untargeted value does not count
    assert value_scores(vec(tradition=1, stimulation=1, power=1), target) == (0.5, 0.5, 0.5)
    # tradition right and stimulation left unexpressed, as "less" asks: everything right
    assert value_scores(vec(tradition=1), target) == (1.0, 1.0, 1.0)
    # nothing expressed: stimulation right, tradition missing; precision 0 (a "more" value was to be expressed)
    assert value_scores(np.zeros(10), target) == (0.0, 0.5, 0.0)
    # turning against stimulation is a stance flip, not less weight: precision 1/2, recall 1/2
    assert value_scores(target, target) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="at least one value"):
        value_scores(target, np.zeros(10))


def test_less_weight_is_rewarded_for_a_neutral_rewrite_not_a_flip():
    """Instruction and reward agree: "Give less weight to X" is met by not expressing X."""
    from kit.visa.translator import instruction

    less = vec(stimulation=-1)
    assert instruction(less).startswith("Give less weight to ") and "against" not in instruction(less)
    neutral, flipped, kept = vec(), vec(stimulation=-1), vec(stimulation=1)
    assert value_scores(neutral, less) == (1.0, 1.0, 1.0)  # vacuous precision: nothing was to be expressed
    assert value_scores(flipped, less)[2] < value_scores(neutral, less)[2]
    assert value_scores(kept, less) == (0.0, 0.0, 0.0)


def test_drift_counts_only_untargeted_values_that_moved():
    target = vec(tradition=1)
    original = vec(power=1, security=-1)
    moved = vec(tradition=1, power=1, security=0, hedonism=1)  # security and hedonism moved: 2 of 9
    assert drift_share(moved, original, target) == pytest.approx(2 / 9)
    assert drift_share(original, original, target) == 0.0
    assert drift_share(moved, original, np.ones(10)) == 0.0  # nothing untargeted


class Table:
    """A detector that reads from a dict, and an embedder of fixed unit vectors."""

    def __init__(self, readings=None, embeddings=None):
        self.readings, self.embeddings, self.calls = readings or {}, embeddings or {}, []

    def vectors(self, texts):
        from kit.values import ValueResult

        return [ValueResult(self.readings.get(t), "", 1) for t in texts]

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([self.embeddings[t] for t in texts], dtype=float)


ORIG, NEW = "The family keeps its old customs.", "The family honours tradition and gains standing."


def test_registered_rewards_on_hand_computed_cases_with_trl_call_shape():
    target = vec(tradition=1, stimulation=-1)
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.6, 0.8, 0.0])
    bad = ("", "##\n##\n##", "I have no opinion.")
    # the bad texts embed like the original and read as the target: still nothing is credited
    det = Table(
        readings={
            ORIG: vec(power=1),
            NEW: vec(tradition=1, power=1, achievement=1),
            **dict.fromkeys(bad, vec(tradition=1, power=1)),
        },
        embeddings={ORIG: a, NEW: b, **dict.fromkeys(bad, a)},
    )
    ctx = RewardContext(det, det, min_words=1, max_words=7)
    names = ["value_match", "meaning_kept", "drift", "format"]
    funcs = dict(zip(names, bind(names, ctx)))
    assert [f.__name__ for f in funcs.values()] == names
    # trl passes conversational completions and every dataset column as keyword arguments
    kwargs = {
        "prompts": [[{"role": "user", "content": "x"}]],
        "completions": [[{"role": "assistant", "content": NEW}]],
        "completion_ids": [[1]],
        "source_text": [ORIG],
        "target_vector": [list(target)],
        "trainer_state": None,
    }
    # tradition expressed, stimulation silent in a text that keeps the meaning (cosine 0.6): as asked
    assert funcs["value_match"](**kwargs) == [1.0]
    assert funcs["meaning_kept"](**kwargs) == [pytest.approx(0.6)]  # cos(a, b)
    assert det.calls[-1] == [NEW, ORIG]  # one embedder call for the batch
    assert funcs["drift"](**kwargs) == [pytest.approx(-1 / 8)]  # achievement moved, of 8 untargeted
    assert funcs["format"](**kwargs) == [1.0]  # seven words, bounds 1..7
    assert funcs["format"](**{**kwargs, "completions": ["one two three four five six seven eight"]}) == [0.0]
    # silence and noise earn every reward's worst value, whatever the detector would read into them
    for text in bad:
        got = {n: f(**{**kwargs, "completions": [text]}) for n, f in funcs.items()}
        assert got == {"value_match": [0.0], "meaning_kept": [-1.0], "drift": [-1.0], "format": [0.0]}, text


def test_a_less_value_counts_only_where_the_meaning_is_kept():
    less = vec(stimulation=-1)
    assert value_scores(np.zeros(10), less, kept=True) == (1.0, 1.0, 1.0)
    assert value_scores(np.zeros(10), less, kept=False) == (0.0, 0.0, 0.0)
    assert value_scores(None, less) == (0.0, 0.0, 0.0)  # an empty or unreadable rewrite says nothing
    det = Table(
        readings={ORIG: vec(stimulation=1), NEW: np.zeros(10)},
        embeddings={ORIG: np.array([1.0, 0.0]), NEW: np.array([0.0, 1.0])},
    )  # another topic: cosine 0
    ctx = RewardContext(det, det)
    assert value_match([NEW], [list(less)], [ORIG], context=ctx) == [0.0]


def test_meaning_kept_averages_in_nli_and_score_all_weights_the_sum():
    class NLI:
        def entailment(self, pairs):
            assert pairs == [(ORIG, NEW)]
            return [0.2]

    det = Table(
        readings={ORIG: np.zeros(10), NEW: vec(tradition=1)},
        embeddings={ORIG: np.array([1.0, 0.0]), NEW: np.array([0.6, 0.8])},
    )
    ctx = RewardContext(det, det, NLI(), min_words=1, max_words=5)
    total, parts = score_all(
        {"value_match": 2.0, "meaning_kept": 1.0}, ctx, [NEW], [ORIG], [vec(tradition=1)]
    )
    assert parts["meaning_kept"][0] == pytest.approx((0.6 + 0.2) / 2)
    assert total[0] == pytest.approx(2.0 * 1.0 + 0.4)


def test_text_of_reads_strings_and_message_lists():
    assert text_of("plain") == "plain"
    assert text_of([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"


# --- targets and the translator --------------------------------------------------------------------


def test_targets_are_derived_per_text_and_mirror():
    t = sample_target(0, "goqa:x", 2)
    assert np.count_nonzero(t) == 2 and set(t[t != 0]) <= {-1.0, 1.0}
    assert np.array_equal(t, sample_target(0, "goqa:x", 2))
    assert any(not np.array_equal(t, sample_target(0, f"goqa:{k}", 2)) for k in range(5))
    assert np.array_equal(opposite(t), -t)
    assert np.array_equal(
        culture_target(vec(power=1, security=-1, tradition=1, benevolence=1), 2), vec(power=1, security=-1)
    )
    assert culture_target(np.zeros(10)) is None and culture_target(None) is None


def test_instruction_text_is_the_template():
    assert instruction(vec(tradition=1, security=1, stimulation=-1)) == (
        "Give more weight to security and tradition. Give less weight to stimulation."
    )
    assert instruction(vec(power=-1)) == "Give less weight to power."
    with pytest.raises(ValueError):
        instruction(np.zeros(10))


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '{"more": ["Tradition", "security"], "less": ["stimulation"]}',
            vec(tradition=1, security=1, stimulation=-1),
        ),
        ('Sure! ```json\n{"MORE": "self-direction"}\n``` done', vec(self_direction=1)),
        ('{"more": [], "less": ["Self Direction"]}', vec(self_direction=-1)),
        ('{"more": ["tradition"], "less": ["tradition"]}', None),  # both ways at once
        ('{"more": ["loyalty"]}', None),  # not a Schwartz value
        ('{"more": [], "less": []}', None),  # names nothing
        ('{"more": ["power"], "why": "x"}', None),  # another key
        ('{"more": [1]}', None),
        ("more tradition please", None),
    ],
)
def test_parse_target_golden(text, expected):
    got = parse_target(text)
    assert (got is None) if expected is None else np.array_equal(got, expected)


def test_the_template_round_trips_through_the_parser():
    for _, target in INSTRUCTION_EXAMPLES:
        target = np.asarray(target)
        more = [SCHWARTZ_VALUES[i] for i in np.flatnonzero(target > 0)]
        less = [SCHWARTZ_VALUES[i] for i in np.flatnonzero(target < 0)]
        assert np.array_equal(parse_target(json.dumps({"more": more, "less": less})), target)


class Replies(Backend):
    """Answers each generate call from a list of reply lists; counts calls."""

    identity = "replies"

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def generate(self, requests, params):
        self.calls.append((len(requests), params.temperature))
        return self.replies.pop(0)[: len(requests)]

    def score(self, requests):
        raise AssertionError

    def choice_probs(self, requests):
        return [ChoiceResult({label: 1 / len(r.labels) for label in r.labels}, 1.0) for r in requests]


def test_translator_retries_unreadable_replies_in_one_batch_then_counts_failures():
    backend = Replies([['{"more": ["power"]}', "no json"], ["still no json"]])
    results = ValueTranslator(backend, max_retries=1).vectors(["more power", "something vague"])
    assert np.array_equal(results[0].vector, vec(power=1)) and results[1].vector is None
    assert results[1].raw == "still no json"  # the raw text is kept with the failure
    assert backend.calls == [(2, 0.0), (1, 0.7)]  # greedy for both, one seeded retry for the failure


# --- the trained detector --------------------------------------------------------------------------


class Lookup:
    identity = "lookup"

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def _separable(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    labels = np.zeros((n, 10), dtype=int)
    labels[:, 0] = np.where(x[:, 0] > 0.5, 1, np.where(x[:, 0] < -0.5, -1, 0))  # three classes
    labels[:, 1] = np.where(x[:, 1] > 0, 1, 0)  # two classes
    # value 2 onwards: one class only (a constant head)
    texts = [f"t{i}" for i in range(n)]
    return texts, labels, Lookup(dict(zip(texts, x)))


def test_trained_detector_predicts_as_sklearn_and_survives_save_and_load(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from kit.values import TrainedValueDetector, make_value_detector

    texts, labels, emb = _separable()
    det = TrainedValueDetector.fit(emb, texts, labels, card={"embedder": "lookup"})
    x = emb.encode(texts)
    for j in (0, 1):
        ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, labels[:, j])
        assert np.array_equal(det.predict(texts)[:, j], ref.predict(x))
    assert np.all(det.predict(texts)[:, 2:] == 0)
    det.save(tmp_path / "d")
    assert not list((tmp_path / "d").glob("*.pkl")) and (tmp_path / "d" / "detector.safetensors").is_file()
    loaded = make_value_detector("trained", embedder=emb, path=str(tmp_path / "d"))
    assert np.array_equal(loaded.predict(texts), det.predict(texts))
    assert [r.vector.tolist() for r in loaded.vectors(texts[:2])] == det.predict(texts[:2]).tolist()


def test_trained_detector_refuses_another_embedder(tmp_path):
    from kit.values import TrainedValueDetector

    texts, labels, emb = _separable()
    TrainedValueDetector.fit(emb, texts, labels, card={"embedder": "lookup"}).save(tmp_path)
    other = Lookup(emb.table)
    other.identity = "other"
    with pytest.raises(ValueError, match="trained on embeddings of lookup"):
        TrainedValueDetector.load(tmp_path, other)


def test_agreement_macro_f1_hand_computed_and_confusion():
    from kit.values import agreement, confusion

    judge = np.zeros((4, 10), dtype=int)
    pred = np.zeros((4, 10), dtype=int)
    judge[:, 0] = [1, 0, -1, 1]
    pred[:, 0] = [1, 0, 1, 1]
    table = agreement(judge, pred)
    # class −1: F1 0 (never predicted); class 0: 1; class 1: precision 2/3, recall 1 → 0.8
    assert table.loc["Self-Direction", "macro_f1"] == pytest.approx((0 + 1 + 0.8) / 3)
    assert table.loc["Self-Direction", "accuracy"] == 0.75
    assert table.loc["Power", "macro_f1"] == 1.0  # all 0 on both sides: one class, perfect
    m = confusion(judge, pred)["Self-Direction"]
    assert m.tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 2]]


# --- the unit's data -------------------------------------------------------------------------------


def test_corpus_questions_come_from_train_splits_and_items_split_by_stem(shared_data):
    from kit.config import DataParams
    from kit.data import goqa_split, load_moralchoice

    data = DataParams(
        goqa_path=str(shared_data / "globalopinionqa" / "dev.json"),
        moralchoice_path=str(shared_data / "moralchoice" / "dev.json"),
    )
    qs = vc.questions(data, 30, 20, seed=0)
    _, test = goqa_split(data.goqa_path, data.test_fraction, data.split_seed)
    low = load_moralchoice(data.moralchoice_path, ambiguity="low")
    items = [vc.Item(q.id, q.source, q.text, "an answer", vc.split_of(0, q.text, 0.3)) for q in qs]
    assert vc.overlap(items, test, {s.id for s in low}) == {
        "train_test_items": 0,
        "goqa_test_questions": 0,
        "capability_scenarios": 0,
    }
    share = np.mean([it.split == "test" for it in items])
    assert 0.1 < share < 0.5  # about test_fraction, independent of the question choice
    assert all(s == it.split for it in items for i, _, s in vc.detector_texts([it]))
    assert vc.overlap(items + items[:1], [], set())["train_test_items"] == 0
    clash = [
        items[0],
        vc.Item(items[0].id, "goqa", "q", "a", "train" if items[0].split == "test" else "test"),
    ]
    assert vc.overlap(clash, [], set())["train_test_items"] == 1
    # a battery's siblings are one question: they land on one side, and a straddling pair is counted
    battery = "How much of a problem, if any, would you say each of the following is in your country?"
    siblings = [f"{vc.VIEW}{battery} {x}" for x in ("a. crime", "b. corruption", "c. pollution")]
    assert len({vc.split_of(0, q, 0.5) for q in siblings}) == 1
    straddle = [
        vc.Item("goqa:a", "goqa", siblings[0], "an answer", "train"),
        vc.Item("goqa:b", "goqa", siblings[1], "an answer", "test"),
    ]
    assert vc.overlap(straddle, [], set())["train_test_items"] == 1


def test_corpus_refuses_an_empty_split():
    class Say(Replies):
        def generate(self, requests, params):
            return ["a long enough answer here"] * len(requests)

    qs = [vc.Question("goqa:a", "goqa", "q?")]
    with pytest.raises(ValueError, match="no (train|test) item"):
        vc.build(Say([]), qs, 8, 2, seed=0, test_fraction=0.3)


# --- GRPO recipes ----------------------------------------------------------------------------------


def test_grpo_config_takes_reward_weights_and_skips_keys_grpo_lacks():
    from kit.train.recipes import check, config_kwargs

    kw = config_kwargs(
        "grpo",
        {"reward_weights": [1.0, 0.5], "num_generations": 2, "per_device_train_batch_size": 2},
        {},
        "/tmp/x",
        0,
        has_eval=False,
    )
    assert "max_length" not in kw and kw["reward_weights"] == [1.0, 0.5] and kw["use_vllm"] is False
    with pytest.raises(ValueError, match="visa.rewriter.trl"):
        check({}, {"num_generations": 3, "per_device_train_batch_size": 4}, ["grpo"], {}, "visa.rewriter")


def test_a_bad_grpo_recipe_fails_in_one_line_naming_the_section():
    from kit.config import ParamsError, validate

    with pytest.raises(ParamsError, match=r"visa\.rewriter\.trl \(grpo\):") as err:
        validate(
            {
                "profile": "t",
                "visa": {"rewriter": {"trl": {"num_generations": 3, "per_device_train_batch_size": 4}}},
            }
        )
    assert "\n" not in str(err.value)


def test_grpo_without_rewards_is_refused_before_loading(tmp_path):
    from kit.config import TrainRecipe
    from kit.train.trainers import train

    with pytest.raises(ValueError, match="reward_funcs"):
        train(
            "grpo",
            [{"prompt": [{"role": "user", "content": "x"}]}],
            None,
            "tiny-random",
            tmp_path,
            TrainRecipe(),
        )


# --- evaluation ------------------------------------------------------------------------------------


def test_every_method_rewrites_in_one_step_and_scores_on_the_targets():
    from kit.visa.evaluation import methods_json, rewrite_all, score_rows, summary

    class Log(Replies):
        def generate(self, requests, params):
            self.calls.append([r.adapter for r in requests])
            return [f"the rewrite made by {r.adapter}" for r in requests]

    items = [
        vc.Item(f"i{k}", "goqa", f"question {k}?", f"a plain answer number {k}", "test") for k in range(3)
    ]
    targets = {it.id: vec(tradition=1) for it in items}
    backend = Log([])
    adapters = {"prompting": None, "grpo": "g", "direct_finetune": "d"}
    rewrites = rewrite_all(backend, adapters, items, targets, 8)
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 9  # one engine step for all methods
    direct = rewrites[rewrites["method"] == "direct_finetune"]
    assert direct["original"].tolist() == [it.answer for it in items]  # compared with the base answer
    # beside the methods, two rewrites that rewrite nothing: the answer copied, and with its target values' names
    assert rewrites[rewrites["method"] == "keywords"]["rewrite"].tolist() == [
        f"{it.answer} Tradition" for it in items
    ]
    keywords = [f"{it.answer} Tradition" for it in items]
    out = {a: f"the rewrite made by {a}" for a in ("None", "g", "d")}
    det = Table(
        readings={
            out["None"]: np.zeros(10),
            out["g"]: vec(tradition=1),
            out["d"]: vec(tradition=1, power=1),
            **{it.answer: np.zeros(10) for it in items},
            **{k: vec(tradition=1) for k in keywords},
        },
        embeddings={
            t: np.array([1.0, 0.0]) for t in [*out.values(), *(it.answer for it in items), *keywords]
        },
    )
    rows = score_rows(rewrites, targets, det, det)
    table = summary(rows, None, n_boot=50, seed=0)
    assert table.loc["grpo", "value_f1"] == 1.0 and table.loc["prompting", "value_f1"] == 0.0
    # a detector that reads keywords is gamed by naming the value: the diagnostic row shows it
    assert table.loc["keywords", "value_f1"] == 1.0 and table.loc["copy", "value_f1"] == 0.0
    assert table.loc["direct_finetune", "drift"] == pytest.approx(1 / 9)
    # the composite the verdict reads: value F1 + meaning kept − ½·drift + ¼·format (five words or more)
    assert methods_json(table)["grpo"] == {
        "value_f1": 1.0,
        "drift": 0.0,
        "meaning_kept": 1.0,
        "visa_composite": 2.25,
    }
    assert table.loc["copy", "visa_composite"] == pytest.approx(
        1.25
    )  # no value moved: meaning and format only


def test_the_pipeline_reads_a_rewriters_changed_answer_as_a_tax():
    """answer → rewrite → read on MoralChoice: a rewriter that turns the answer to the wrong action loses accuracy."""
    from kit.data import MoralScenario
    from kit.visa.evaluation import UNREWRITTEN, pipeline_accuracy

    scenarios = [
        MoralScenario(
            f"s{k}", f"You see a lost wallet {k}.", ("I return it.", "I keep it."), "low", (1.0, 0.0)
        )
        for k in range(4)
    ]

    class Pipe(Replies):
        def generate(self, requests, params):
            # the base model answers rightly; the "bad" rewriter turns every answer to keeping the wallet
            return [
                "I keep it, of course." if r.adapter == "bad" else "I return it to its owner."
                for r in requests
            ]

        def choice_probs(self, requests):
            out = []
            for r in requests:
                body = r.chat[-1]["content"]
                first = body.split("A. ")[1].split("\n")[0]
                wrote = body.split("Someone wrote:\n")[1]
                keeps = "keep" in wrote
                says_a = (first == "I keep it.") == keeps
                out.append(ChoiceResult({"A": 0.9, "B": 0.1} if says_a else {"A": 0.1, "B": 0.9}, 1.0))
            return out

    targets = {s.id: vec(tradition=1) for s in scenarios}
    got = pipeline_accuracy(Pipe([]), scenarios, targets, {"prompting": None, "bad": "bad"}, 8, 8)
    assert got == {UNREWRITTEN: 1.0, "prompting": 1.0, "bad": 0.0}


def test_the_reward_reads_the_detector_visa_reward_detector_names():
    from types import SimpleNamespace

    from kit.config import Params
    from kit.lessons import visa_rewriter as vr
    from kit.values import EmbeddingValueDetector

    class Emb:
        identity = "emb"

        def encode(self, texts):
            return np.ones((len(texts), 2)) / np.sqrt(2)

    params = Params(profile="t", visa={"reward_detector": "embedding"})
    session = SimpleNamespace(params=params, backend=Replies([]), embedder=Emb())
    detector = vr.reward_detector(session)
    assert isinstance(detector, EmbeddingValueDetector)
    assert vr.reward_parts(session, detector)["detector"] == {"kind": "embedding", "backend": "replies"}
