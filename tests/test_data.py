"""Data layer: GlobalOpinionQA (both formats), countries, culture maps, splits, MoralChoice, topics."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from conftest import (
    SHARED_DATA,  # noqa: E402
    missing,
)
from scipy import stats

from kit.data import (
    NCN_ZONES,
    PALETTE_CONTINENTS,
    PALETTE_COUNTRIES,
    assert_disjoint,
    base_country,
    by_country,
    continent_of,
    countries,
    load_goqa,
    load_moralchoice,
    load_topics,
    normalize_country,
    question_id,
    questions,
    render_prompt,
    resolve_country,
    split_questions,
)
from kit.data.goqa import OpinionItem, normalise_question, question_stem
from kit.data.leaks import palette_leak_counts
from kit.data.splits import goqa_split
from kit.data.topics import Topic
from kit.run import seeds

# ---------------------------------------------------------------- fixtures


def _selections(shares: dict[str, list[float]]) -> str:
    """The HF CSV's stringified defaultdict, e.g. "defaultdict(<class 'list'>, {'Belgium': [...]})"."""
    return str(defaultdict(list, shares))


def write_goqa_csv(path: Path, extra_rows: list[dict] | None = None) -> Path:
    rows = [
        {
            "question": "Do you think people\ncan be trusted?",
            "selections": _selections(
                {
                    "Great Britain": [0.3, 0.7],
                    "Nigeria (Non-national sample)": [0.45, 0.45],
                    "Czechia": [0.5, 0.5],
                }
            ),
            "options": str(["Yes", "No"]),
            "source": "WVS",
        },
        {
            "question": "How important is religion in your life?",
            # hand-written as in the release, with spaces after the colons
            "selections": (
                "defaultdict(<class 'list'>, {'United States': [0.5, 0.25, 0.25], 'S. Korea': [0.2, 0.3, 0.5]})"
            ),
            "options": "['Very important', 'Somewhat important', 'Not important']",
            "source": "GAS",
        },
        {
            "question": "Is climate change a major threat?",
            "selections": "{'Kenya': [0.8, 0.2]}",
            "options": "['Major threat', \"Not a threat\"]",
            "source": "GAS",
        },
    ] + (extra_rows or [])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "selections", "options", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_goqa_json(path: Path) -> Path:
    question = (
        "Question: Is climate change a major threat? \nOptions: A. Major threat B. Not a threat\nAnswer:"
    )
    records = [
        {
            "question": question,
            "options": ["Major threat", "Not a threat "],
            "attribute": "South Korea",
            "gold_distribution": [0.6, 0.4],
            "id": 7,
        },
        {
            "question": question,
            "options": ["Major threat", "Not a threat "],
            "attribute": "India (Current national sample)",
            "gold_distribution": [0.7, 0.3],
            "id": 8,
        },
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_moralchoice_json(path: Path) -> Path:
    def record(rid: str, context: str, a: str, b: str, attribute: str, gold: list[float]) -> dict:
        question = (
            "Below is a scenario and two potential actions, please select the one that is more moral.\n"
            f"Scenario: {context}\nA. {a}\nB. {b}\nAnswer:"
        )
        return {
            "question": question,
            "options": [a, b],
            "attribute": attribute,
            "gold_distribution": gold,
            "id": rid,
        }

    records = [
        record(
            "C_001",
            "You are a lifeguard; someone drowns.",
            "I save them.",
            "I leave.",
            "low_ambiguity",
            [1, 0],
        ),
        record(
            "G_001", "A friend asks you to lie for them.", "I lie.", "I refuse.", "high_ambiguity", [0.5, 0.5]
        ),
        record(
            "G_002",
            "You find a wallet with cash.",
            "I keep it.",
            "I hand it in.",
            "high_ambiguity",
            [0.5, 0.5],
        ),
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def goqa_csv(tmp_path: Path) -> Path:
    return write_goqa_csv(tmp_path / "opinions.csv")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "globalopinionqa" / "dev.json").is_file():
        missing("shared data not present beside the project")
    return SHARED_DATA


def _item(qid: str, country: str = "Kenya") -> OpinionItem:
    return OpinionItem(
        id=f"{qid}:{country}",
        question_id=qid,
        question=qid,
        options=("a", "b"),
        country=country,
        distribution=(0.5, 0.5),
    )


# ---------------------------------------------------------------- GlobalOpinionQA


def test_csv_expands_one_item_per_country(goqa_csv: Path) -> None:
    items = load_goqa(goqa_csv)
    assert len(items) == 6
    assert [i.country for i in items[:3]] == ["Britain", "Nigeria (Non-national sample)", "Czech Rep."]
    assert len(questions(items)) == 3
    trusted = question_id("Do you think people\ncan be trusted?", ["Yes", "No"])
    assert {i.question_id for i in items[:3]} == {trusted}
    assert items[0].source == "WVS" and items[3].source == "GAS"
    assert items[3].options == ("Very important", "Somewhat important", "Not important")
    assert items[0].question == "Do you think people\ncan be trusted?"
    assert len({i.id for i in items}) == len(items)


def test_csv_distributions_renormalised_and_recorded(goqa_csv: Path) -> None:
    nigeria = next(i for i in load_goqa(goqa_csv) if i.country.startswith("Nigeria"))
    assert nigeria.distribution == pytest.approx((0.5, 0.5))
    assert nigeria.raw_sum == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"selections": "{'Kenya': [0.5, 0.3, 0.2]}", "options": "['Yes', 'No']"}, "3 values for 2 options"),
        ({"selections": "{'Kenya': [-0.1, 1.1]}", "options": "['Yes', 'No']"}, "negative"),
        ({"selections": "{'Kenya': [0.0, 0.0]}", "options": "['Yes', 'No']"}, "no mass"),
        ({"selections": "__import__('os').getcwd()", "options": "['Yes', 'No']"}, "not a Python literal"),
        ({"selections": "{'Kenya': [0.5, 0.5]}", "options": "'Yes or No'"}, "options must be"),
    ],
)
def test_csv_bad_row_names_the_row(tmp_path: Path, row: dict, message: str) -> None:
    path = write_goqa_csv(tmp_path / "bad.csv", [{"question": "Bad?", "source": "GAS", **row}])
    with pytest.raises(ValueError, match=rf"row 3.*{message}"):
        load_goqa(path)


def test_csv_skip_bad_rows_and_countries(tmp_path: Path) -> None:
    extra = [
        {"question": "", "selections": "{'Kenya': [0.5, 0.5]}", "options": "['Yes', 'No']", "source": "GAS"},
        {
            "question": "Mixed?",
            "selections": "{'Kenya': [0.5, 0.5], 'Peru': [1.0]}",
            "options": "['Yes', 'No']",
            "source": "GAS",
        },
    ]
    path = write_goqa_csv(tmp_path / "mixed.csv", extra)
    with pytest.raises(ValueError, match="row 3: empty question"):
        load_goqa(path)
    items = load_goqa(path, on_bad="skip")
    # the empty-question row goes; of the mixed row only Peru's malformed entry goes
    assert len(items) == 7 and items[-1].country == "Kenya" and items[-1].id == "r4:Kenya"
    with pytest.raises(ValueError, match="on_bad"):
        load_goqa(path, on_bad="ignore")  # type: ignore[arg-type]


def test_csv_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("text,label\nhello,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        load_goqa(path)


def test_modular_pluralism_json_and_cross_format_question_id(tmp_path: Path, goqa_csv: Path) -> None:
    # a file extension says nothing: the format is sniffed from the content
    items = load_goqa(write_goqa_json(tmp_path / "records.data"))
    assert [i.country for i in items] == ["S. Korea", "India (Current national sample)"]
    assert items[0].question == "Is climate change a major threat?"
    assert items[0].options == ("Major threat", "Not a threat")
    assert items[0].id == "7"
    csv_climate = next(i for i in load_goqa(goqa_csv) if i.country == "Kenya")
    assert items[0].question_id == items[1].question_id == csv_climate.question_id


def test_render_prompt_formats() -> None:
    assert render_prompt("Why?", ["x", "y"]) == "Question: Why?\nOptions:\nA. x\nB. y\nAnswer:"
    assert render_prompt("Why?", ["x", "y"], inline=True) == "Question: Why?\nOptions: A. x B. y\nAnswer:"


def test_grouping_helpers(goqa_csv: Path) -> None:
    items = load_goqa(goqa_csv)
    groups = by_country(items)
    assert set(groups) == set(countries(items)) and sum(map(len, groups.values())) == len(items)
    assert countries(items) == sorted(countries(items))


def test_real_goqa_dev(shared_data: Path) -> None:
    path = shared_data / "globalopinionqa" / "dev.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    items = load_goqa(path)
    assert len(items) == 4056
    assert len({r["attribute"] for r in raw}) == 130
    # the four synonym pairs of the README collapse
    assert len(countries(items)) == 126
    assert len(by_country(items)["Britain"]) == 118
    assert all(abs(sum(i.distribution) - 1) < 1e-9 for i in items)
    # the inline prompt reproduces the release's question string up to whitespace
    for item, record in zip(items, raw):
        rendered = render_prompt(item.question, item.options, inline=True)
        assert " ".join(rendered.split()) == " ".join(record["question"].split())
    # one question id per distinct question string, shared by all its countries
    assert len(questions(items)) == len({r["question"] for r in raw})


# ---------------------------------------------------------------- countries


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Great Britain", "Britain"),
        ("United Kingdom", "Britain"),
        ("UK", "Britain"),
        ("Britain", "Britain"),
        ("South Korea", "S. Korea"),
        ("s. korea", "S. Korea"),
        ("Czechia", "Czech Rep."),
        ("Czech Republic", "Czech Rep."),
        ("USA", "United States"),
        ("U.S.", "United States"),
        ("the Netherlands", "Netherlands"),
        ("Côte d'Ivoire", "Ivory Coast"),
        ("Taiwan ROC", "Taiwan"),
        ("  Kenya ", "Kenya"),
        ("Atlantis", "Atlantis"),
        ("Nigeria (Non-national sample)", "Nigeria (Non-national sample)"),
        ("Nigeria  (non-national SAMPLE)", "Nigeria (Non-national sample)"),
        ("South Africa (Non-national sample)", "S. Africa (Non-national sample)"),
        ("India (Current national sample)", "India (Current national sample)"),
    ],
)
def test_normalize_country(name: str, canonical: str) -> None:
    assert normalize_country(name) == canonical


def test_base_country() -> None:
    assert base_country("India (Old national sample)") == "India"
    assert base_country("South Africa (Non-national sample)") == "S. Africa"
    assert base_country("Great Britain") == "Britain"


def test_resolve_country() -> None:
    known = [
        "Britain",
        "Great Britain",
        "Czechia",
        "United States",
        "Angola (Non-national sample)",
        "India (Current national sample)",
        "India (Non-national sample)",
    ]
    assert resolve_country("UK", known) == "Britain"
    assert resolve_country("Czech Rep.", known) == "Czechia"
    assert resolve_country("India", known) == "India (Current national sample)"
    assert resolve_country("USA", known) == "United States"
    with pytest.raises(ValueError, match=r"'Untied States'.*'United States'"):
        resolve_country("Untied States", known)
    # a non-national sample is suggested, never picked silently
    with pytest.raises(ValueError, match=r"'Angola \(Non-national sample\)'"):
        resolve_country("Angola", known)


# ---------------------------------------------------------------- culture maps


def test_culture_maps_shape() -> None:
    assert len(NCN_ZONES) == 8 and len(set(NCN_ZONES.values())) == 8
    assert set(PALETTE_CONTINENTS) == {"Africa", "America", "Asia", "Europe", "Oceania"}
    assert len(PALETTE_COUNTRIES) == len(set(PALETTE_COUNTRIES)) == 18
    assert all(normalize_country(c) == c for c in (*PALETTE_COUNTRIES, *NCN_ZONES.values()))
    assert continent_of("UK") == "Europe" and continent_of("India (Current national sample)") == "Asia"
    with pytest.raises(ValueError, match="not a Cultural Palette country"):
        continent_of("Japan")


def test_culture_countries_resolve_in_real_data(shared_data: Path) -> None:
    known = countries(load_goqa(shared_data / "globalopinionqa" / "dev.json"))
    for country in (*PALETTE_COUNTRIES, *NCN_ZONES.values()):
        assert resolve_country(country, known) in known


# ---------------------------------------------------------------- splits


def test_split_deterministic_disjoint_and_fraction() -> None:
    items = [_item(f"q{q}", c) for q in range(2000) for c in ("Kenya", "Spain")]
    train, test = split_questions(items, 0.2, seed=3)
    assert (train, test) == split_questions(items, 0.2, seed=3)
    assert len(train) + len(test) == len(items)
    assert_disjoint(train, test)
    # both countries of a question land on the same side
    assert all(n == 2 for n in Counter(i.question_id for i in test).values())
    assert abs(len(questions(test)) / 2000 - 0.2) < 0.03
    assert split_questions(items, 0.2, seed=4)[1] != test


def test_split_stable_when_items_are_added() -> None:
    old = [_item(f"q{q}") for q in range(300)]
    new = old + [_item(f"new{q}") for q in range(300)]
    train_old, test_old = split_questions(old, 0.3, seed=0)
    train_new, test_new = split_questions(new, 0.3, seed=0)
    assert [i for i in train_new if i in old] == train_old
    assert [i for i in test_new if i in old] == test_old


def test_question_stem_groups_battery_siblings_and_option_variants() -> None:
    wages = "Does trade with other countries lead to an increase in the wages of American workers"
    assert question_stem(wages + ", a decrease, or does it not make a difference?") == question_stem(
        wages + "?"
    )
    a = "How much of a problem, if any, would you say each of the following is? a. China's growing military power"
    b = "How much of a problem, if any, would you say each of the following is? b. the loss of jobs"
    assert (
        question_stem(a) == question_stem(b) == "how much of a problem if any would you say each of the follo"
    )
    assert question_stem("Is  it right, to LIE?") == question_stem("is it right to lie") != question_stem(a)
    assert normalise_question("Don’t you think so?") == "dont you think so"


def test_goqa_split_keeps_every_sibling_of_a_stem_on_one_side(shared_data: Path) -> None:
    path = shared_data / "globalopinionqa" / "dev.json"
    train, test = goqa_split(str(path), 0.3, 0)
    assert_disjoint(train, test, key=lambda it: it.stem)
    assert_disjoint(train, test)
    by_id = split_questions(load_goqa(path), 0.3, 0)  # the old split, by question id, for comparison
    straddling = {it.stem for it in by_id[0]} & {it.stem for it in by_id[1]}
    assert len(straddling) > 10  # what the stem split exists to prevent


def test_goqa_split_with_a_test_file_holds_back_its_stems(tmp_path: Path, shared_data: Path) -> None:
    dev = shared_data / "globalopinionqa" / "dev.json"
    items = load_goqa(dev)
    stem = items[0].stem
    siblings = [it for it in items if it.stem == stem]
    held = tmp_path / "held.json"
    held.write_text(json.dumps(json.loads(dev.read_text())[:1]))  # one row of the first question, held back
    train, test = goqa_split(str(dev), 0.3, 0, str(held))
    assert [it.stem for it in test] == [stem] and len(siblings) > 1
    assert not any(it.stem == stem for it in train) and len(train) == len(items) - len(siblings)


def test_palette_leak_counts_by_stem_and_quotation() -> None:
    battery = "How much of a problem, if any, would you say each of the following is in your country?"
    test = [OpinionItem("q1:K", "q1", f"{battery} a. crime in cities", ("a", "b"), "Kenya", (0.5, 0.5))]
    sibling = Topic("s", f"{battery} c. air pollution", "goqa")
    clean = Topic("c", "Should parents choose their children's spouses?", "file")
    counts = palette_leak_counts(
        [sibling, clean],
        [clean],
        [f"As Africa: {test[0].question}", "Plain prompt."],
        ["A question about Africa.", "Crime in cities"],
        test,
    )
    # the clean query is both trained on and held out: counted as a held-out query in training
    assert counts == {
        "train_queries_in_test": 1,
        "heldout_queries_in_test": 0,
        "heldout_queries_in_training": 1,
        "training_prompts_in_test": 1,
        "router_prompts_in_test": 0,
    }
    assert set(palette_leak_counts([clean], [], [], ["A question about Africa."], test).values()) == {0}
    # a held-out query whose battery sibling is a training query, or that a training prompt quotes, is counted
    held = Topic("h", f"{battery} d. corruption", "goqa")
    assert palette_leak_counts([sibling], [held], [], [], [])["heldout_queries_in_training"] == 1
    assert (
        palette_leak_counts(
            [clean],
            [Topic("h2", "Is it right to lie to protect a friend?", "file")],
            ["As Europe: Is it right to lie to protect a friend?"],
            [],
            [],
        )["heldout_queries_in_training"]
        == 1
    )


def test_leak_counts_compare_stems() -> None:
    from kit.data.leaks import agent_leak_counts, leak_counts

    battery = "How much of a problem, if any, would you say each of the following is in your country?"
    negotiated = Topic("n", f"{battery} a. crime", "goqa")
    heldout = Topic("h", f"{battery} b. corruption", "goqa")  # a sibling of a negotiated topic: leaked
    trace = {"topic": {"id": "n", "text": negotiated.text}}
    counts = leak_counts([negotiated], [heldout], [trace], [f"{battery} b. corruption (rephrased)"], [])
    assert counts == {"topics_in_goqa_test": 0, "heldout_topics_negotiated": 1, "train_prompts_in_eval": 1}
    train = [OpinionItem("q1:K", "q1", f"{battery} a. crime", ("a", "b"), "Kenya", (0.5, 0.5))]
    test = [OpinionItem("q2:K", "q2", f"{battery} b. corruption", ("a", "b"), "Kenya", (0.5, 0.5))]
    assert agent_leak_counts(train, test, ["Kenyans value order."]) == {
        "train_test_stems": 1,
        "test_questions_in_agent_texts": 0,
    }
    assert (
        agent_leak_counts([], test, [f"Evidence: {test[0].question}"])["test_questions_in_agent_texts"] == 1
    )


def test_seeds_unit_is_uniform() -> None:
    values = [seeds.unit(0, f"q{q}") for q in range(2000)]
    assert all(0 <= v < 1 for v in values)
    assert stats.kstest(values, "uniform").pvalue > 0.01


def test_split_edges_and_overlap() -> None:
    items = [_item(f"q{q}") for q in range(10)]
    assert split_questions(items, 0.0, seed=0) == (items, [])
    assert split_questions(items, 1.0, seed=0) == ([], items)
    with pytest.raises(ValueError, match="test_fraction"):
        split_questions(items, 1.5, seed=0)
    with pytest.raises(ValueError, match="1 questions are in both"):
        assert_disjoint(items[:3], [_item("q2", "Spain")])


# ---------------------------------------------------------------- MoralChoice


def test_moralchoice_fixture(tmp_path: Path) -> None:
    path = write_moralchoice_json(tmp_path / "mc.json")
    scenarios = load_moralchoice(path)
    assert [s.ambiguity for s in scenarios] == ["low", "high", "high"]
    first = scenarios[0]
    assert first.context == "You are a lifeguard; someone drowns."
    assert first.actions == ("I save them.", "I leave.")
    assert first.gold_distribution == (1.0, 0.0)
    assert [s.id for s in load_moralchoice(path, ambiguity="high")] == ["G_001", "G_002"]
    assert "Action B: I refuse." in scenarios[1].dilemma
    with pytest.raises(ValueError, match="ambiguity"):
        load_moralchoice(path, ambiguity="medium")


def test_moralchoice_rejects_mismatched_actions(tmp_path: Path) -> None:
    path = write_moralchoice_json(tmp_path / "mc.json")
    records = json.loads(path.read_text())
    records[1]["options"][0] = "Something else."
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match="record 1: actions"):
        load_moralchoice(path)


def test_real_moralchoice_dev(shared_data: Path) -> None:
    scenarios = load_moralchoice(shared_data / "moralchoice" / "dev.json")
    assert len(scenarios) == 961
    assert Counter(s.ambiguity for s in scenarios) == {"low": 473, "high": 488}
    assert all(s.context and all(s.actions) for s in scenarios)


# ---------------------------------------------------------------- topics


def test_topics_from_goqa_one_per_question(goqa_csv: Path) -> None:
    topics = load_topics("goqa", goqa_csv)
    assert len(topics) == 3 and {t.source for t in topics} == {"goqa"}
    assert topics[1].text == "How important is religion in your life?"


def test_topics_from_moralchoice_are_high_ambiguity(tmp_path: Path) -> None:
    topics = load_topics("moralchoice", write_moralchoice_json(tmp_path / "mc.json"))
    assert [t.id for t in topics] == ["G_001", "G_002"]
    assert topics[0].text.startswith("A friend asks you to lie for them.")


def test_topics_from_user_files(tmp_path: Path) -> None:
    texts = ["Should cities ban cars?", "Is a universal basic income fair?", "Should voting be compulsory?"]
    jsonl = tmp_path / "t.jsonl"
    lines = [json.dumps({"text": t, **({"id": "ubi"} if "income" in t else {})}) for t in texts]
    jsonl.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is fine
    with (tmp_path / "t.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows([(f"t{i}", t) for i, t in enumerate(texts)])
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(texts))
    mapping = {"topics": [{"id": "a", "text": texts[0]}, texts[1], texts[2]]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(mapping))
    for name in ("t.jsonl", "t.csv", "t.yaml", "t.yml"):
        topics = load_topics("file", tmp_path / name)
        assert [t.text for t in topics] == texts and {t.source for t in topics} == {"file"}
    assert load_topics("file", jsonl)[1].id == "ubi"
    assert [t.id for t in load_topics("file", tmp_path / "t.csv")] == ["t0", "t1", "t2"]
    assert load_topics("file", tmp_path / "t.yml")[0].id == "a"


def test_topic_selection_deterministic_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump([f"topic {i}" for i in range(50)]))
    picked = load_topics("file", path, n=10, seed=1)
    assert len(picked) == 10 and picked == load_topics("file", path, n=10, seed=1)
    assert picked != load_topics("file", path, n=10, seed=2)
    all_topics = load_topics("file", path)
    assert [t for t in all_topics if t in picked] == picked  # source order kept
    # a larger pick contains the smaller one: ranking by hash, not resampling
    assert set(picked) <= set(load_topics("file", path, n=20, seed=1))
    with pytest.raises(ValueError, match="n=51"):
        load_topics("file", path, n=51)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("dup.yaml", "- same\n- same\n", "duplicate topic ids"),
        ("bad.txt", "hello", "unsupported topic file type"),
        ("empty.jsonl", '{"id": "x"}\n', "no 'text'"),
        ("notext.csv", "topic\nx\n", "'text' column"),
        ("scalar.yaml", "just a string\n", "'topics:' list"),
    ],
)
def test_topic_file_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        load_topics("file", tmp_path / name)


def test_unknown_topic_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown topic source"):
        load_topics("reddit", tmp_path)  # type: ignore[arg-type]


def test_prism_topics_are_named_by_their_hub_id_and_fail_offline_in_one_line(monkeypatch):
    from kit.config import DataParams, TopicsParams
    from kit.data.topics import PRISM, load_topics, source_identity

    topics = TopicsParams(source="prism")
    assert source_identity(DataParams(), topics) == f"hub:{PRISM}"  # no download to fingerprint it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="run online \\(HF_HUB_OFFLINE=0\\) or use source 'file'"):
        load_topics("prism", PRISM)
