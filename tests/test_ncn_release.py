"""The NCN paper's release read as it is: every summary number recomputed, messy files counted, any pair of its
layout, one-line errors for what is not the release; its topics as a topic source; its transcripts as training data.

The release is unpacked once into a temporary folder (never into the project)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from kit.config import FinetuneParams, ParamsError, load_params
from kit.lessons import ncn_release as lesson
from kit.negotiation.ncn_release import (
    KIT_METHODS,
    RELEASE_METHODS,
    ReleaseError,
    read_release,
)
from kit.negotiation.trace import validate_trace
from kit.run.files import archive_files

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "data" / "ncn_release" / "ncn-release-5pairs.tar.gz"
PAIR = "Catholic_Europe and West_and_South_Asia"


@pytest.fixture(scope="session")
def tarball() -> Path:
    if not TARBALL.is_file():
        pytest.skip("../shared/data/ncn_release is not beside the project")
    return TARBALL


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory, tarball) -> Path:
    out = tmp_path_factory.mktemp("ncn-release")
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    return next(p.parents[2] for p in out.rglob("params.yaml"))


@pytest.fixture(scope="session")
def release(release_dir):
    return read_release(release_dir, max_items=2)


@pytest.fixture(scope="session")
def reproduced(release):
    return lesson.reproduced(release)


def test_every_summary_key_the_kit_computes_equals_the_release_on_every_pair(release, reproduced):
    assert len(release.pairs) == 5 and set(release.methods) == set(KIT_METHODS)
    for (pair, method), summary in release.summaries.items():
        mine = reproduced[(reproduced["pair"] == pair) & (reproduced["method"] == method)].set_index("key")
        assert set(summary) <= set(mine.index), (pair, method, set(summary) - set(mine.index))
        unequal = mine[~mine["equal"]]
        assert unequal.empty, (pair, method, unequal[["release", "kit"]].to_dict("index"))
    assert len(release.summaries) == 15
    # the perplexity files' derived numbers, transcript by transcript, wherever the release has them
    ppl = reproduced[reproduced["key"].str.startswith("PPL_")]
    assert len(ppl) == 3 * 13 and ppl["equal"].all()


def test_the_numbers_the_issue_names(reproduced):
    """Catholic_Europe–West_and_South_Asia: the release's cosines, its all-zero rule, its response consistency."""
    got = reproduced[reproduced["pair"] == PAIR].set_index(["method", "key"])
    expected = {
        ("ncn", "average_cosine_sim_init"): 0.6389,
        ("ncn", "average_cosine_sim_final"): 0.7168,
        ("debate", "average_cosine_sim_init"): 0.7718,
        ("debate", "average_cosine_sim_final"): 0.7728,
        ("consultancy", "average_cosine_sim_init"): 0.7239,
        ("consultancy", "average_cosine_sim_final"): 0.7672,
        ("ncn", "average_response_vector_consistency"): 0.5368,
    }
    for key, value in expected.items():
        assert round(got.loc[key, "release"], 4) == round(got.loc[key, "kit"], 4) == value, key
    # the kit's own rule (an all-zero vector is undefined, skipped) reads NCN's initial statements differently
    assert round(got.loc[("ncn", "average_cosine_sim_init"), "kit_own"], 4) == 0.6724


def test_messy_files_are_read_as_they_are_and_counted_one_line_each(release):
    lines = release.skipped_lines()
    assert all("\n" not in line for line in lines) and len(lines) == len(release.skipped)
    for kind in (
        "empty evaluation records",
        "superseded value evaluation versions",
        "older summary versions",
        "vectors with half steps",
        "methods without a perplexity evaluation",
        "failed perplexities",
        "empty perplexity summaries",
        "evaluations of transcripts not in the release",
        "topics negotiated twice",
        "transcripts not read (ncn_release.max_items)",
    ):
        assert release.skipped[kind][0] > 0, kind
    ev = release.evaluations
    assert ev["source_file"].str.len().gt(0).all()  # empty records never become rows
    assert set(ev["judge"].dropna()) == {"gpt-4o"}  # the paper's judge where there were several


def test_traces_follow_the_kit_schema_and_keep_every_round(release, release_dir):
    assert release.traces and len({t["id"] for t in release.traces}) == len(release.traces)
    cultures = {z.name: z.country for z in release.zones.values()}
    for trace in release.traces:
        validate_trace(trace)
        assert trace["origin"] == "ncn_release" and trace["method"] in KIT_METHODS
        assert [a["culture"] for a in trace["agents"]] == [cultures[a["zone"]] for a in trace["agents"]]
        method_folder = {v: k for k, v in RELEASE_METHODS.items()}[trace["method"]]
        raw = json.loads(
            (
                release_dir
                / "data"
                / "debate_data"
                / trace["release"]["pair"]
                / method_folder
                / trace["release"]["category"]
                / trace["release"]["file"]
            ).read_text()
        )
        zones = [a["zone"] for a in trace["agents"]]
        assert trace["consensus"] == [raw["consensus_response"][z].strip() for z in zones]
        assert [i["response"] for i in trace["initial"]] == [
            raw["initial_response"][z].strip() for z in zones
        ]
        assert trace["rounds_used"] == len(raw.get("history", raw.get("debate_history", [])))
        assert " ".join(trace["topic"]["text"].split()) == " ".join(raw["topic"].split())
    assert (
        cultures["English_Speaking"] == "United States"
    )  # US_opinion_adapter, as the kit labels the country
    with pytest.raises(ValueError, match="nash_gap null"):
        ncn = next(t for t in release.traces if t["method"] == "ncn" and t["rounds"])
        validate_trace({**ncn, "rounds": [{**ncn["rounds"][0], "nash_gap": 0.0}], "rounds_used": 1})


def test_max_items_reads_the_same_topics_for_every_method(release):
    by_pair = {}
    for t in release.traces:
        by_pair.setdefault(t["release"]["pair"], {}).setdefault(t["method"], set()).add(t["topic"]["id"])
    assert len(by_pair) == 5
    for pair, methods in by_pair.items():
        assert set(methods) == set(KIT_METHODS)
        assert (
            all(len(ids) == 2 for ids in methods.values()) and len(set(map(frozenset, methods.values()))) == 1
        ), pair


def test_evaluations_of_pairs_not_read_as_traces_still_join_their_transcripts(release_dir):
    """Reading one pair's transcripts, every pair's evaluations are read, joined to the release's files alike."""
    whole = read_release(release_dir, max_items=1)
    one = read_release(release_dir, pairs=[PAIR], max_items=1)
    assert (
        one.skipped["evaluations of transcripts not in the release"]
        == whole.skipped["evaluations of transcripts not in the release"]
    )
    assert one.evaluations["has_transcript"].equals(whole.evaluations["has_transcript"])
    assert {t["release"]["pair"] for t in one.traces} == {PAIR} and len(one.summaries) == len(whole.summaries)


def test_tarball_and_unpacked_folder_read_alike(tarball, release_dir):
    a = read_release(tarball, pairs=[PAIR], methods=["consultancy"], max_items=2)
    b = read_release(release_dir, pairs=[PAIR], methods=["consultancy"], max_items=2)
    assert a.traces == b.traces and a.evaluations.equals(b.evaluations) and a.summaries == b.summaries


def _mini(
    src: Path, dst: Path, pair: str, methods=("OurMethod",), rename: dict[str, str] | None = None
) -> Path:
    """A copy of the release holding one pair and ``methods``, its zones renamed as ``rename`` says."""
    rename = rename or {}
    new_pair = pair
    for old, new in rename.items():
        new_pair = new_pair.replace(old, new)
    shutil.copytree(src / "debate", dst / "debate")
    for part in (
        "data/debate_data",
        "data/eval_result/results_model_based",
        "data/eval_result/results_ppl_based",
    ):
        for method in methods:
            for f in (src / part / pair / method).rglob("*.json"):
                out = dst / part / new_pair / method / f.relative_to(src / part / pair / method)
                out.parent.mkdir(parents=True, exist_ok=True)
                text = f.read_text()
                for old, new in rename.items():
                    text = text.replace(f'"{old}', f'"{new}')
                out.write_text(text)
    return dst


def test_any_pair_of_the_layout_is_read_and_reproduced(release_dir, tmp_path):
    """A pair none of the five holds: zones renamed to two others of params.yaml, files otherwise as published."""
    mini = _mini(
        release_dir,
        tmp_path / "r",
        "Confucian and African_Islamic",
        rename={"Confucian": "Orthodox_Europe", "African_Islamic": "Latin_America"},
    )
    found = read_release(mini)
    assert [p.folder for p in found.pairs] == ["Orthodox_Europe and Latin_America"]
    assert found.pairs[0].cultures == ("Armenia", "Mexico")  # the release's agents, not the paper's text
    assert (
        found.skipped["zones whose agent differs from the paper's text"][0] == 1
    )  # Orthodox Europe: Russia there
    table = lesson.reproduced(found)
    assert len(table) > 30 and table["equal"].all()
    assert {t["method"] for t in found.traces} == {"ncn"} and all(
        t["agents"][0]["zone"] == "Orthodox_Europe" for t in found.traces
    )


def _small(release_dir: Path, tmp_path: Path) -> Path:
    return _mini(release_dir, tmp_path / "small", PAIR, methods=("baselineConsultancy",))


def _corrupt_json(root: Path) -> None:
    victim = next((root / "data" / "debate_data").rglob("*.json"))
    victim.write_text('{"topic": "unfinished')


def _drop_field(root: Path) -> None:
    victim = next((root / "data" / "debate_data").rglob("*.json"))
    data = json.loads(victim.read_text())
    del data["consensus_response"]
    victim.write_text(json.dumps(data))


def _foreign_config(root: Path) -> None:
    (root / "debate" / "config" / "params.yaml").write_text("max_rounds: 10\nmodel: {}\n")


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_corrupt_json, "is not valid JSON at line 1"),
        (_drop_field, "field 'consensus_response' is missing"),
        (_foreign_config, "names no zones"),
        (lambda root: shutil.rmtree(root / "data" / "debate_data"), "no transcripts"),
        (lambda root: shutil.rmtree(root / "debate"), "not the NCN release"),
    ],
)
def test_a_corrupt_or_foreign_folder_is_one_clear_error(release_dir, tmp_path, spoil, message):
    root = _small(release_dir, tmp_path)
    spoil(root)
    with pytest.raises(ReleaseError, match=message) as err:
        read_release(root)
    assert "\n" not in str(err.value)


def test_a_broken_archive_or_a_wrong_path_is_one_clear_error(tarball, tmp_path):
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(tarball.read_bytes()[:200_000])
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, message in [
        (truncated, "not a readable tar archive"),
        (text, "not a readable tar archive"),
        (tmp_path / "nowhere", "no such file or folder"),
        (empty, "not the NCN release"),
    ]:
        with pytest.raises(ReleaseError, match=message) as err:
            read_release(path)
        assert "\n" not in str(err.value)
    with pytest.raises(ReleaseError, match="no pair 'Atlantis and Lemuria'"):
        read_release(tarball, pairs=["Atlantis and Lemuria"])
    with pytest.raises(ReleaseError, match="not in the release"):
        read_release(tarball, methods=["none"])


def test_release_topics_are_a_topic_source_with_no_goqa_test_question(release_dir, tarball, shared_data):
    from kit.config import DataParams, TopicsParams
    from kit.data import goqa_split
    from kit.data.leaks import leak_counts
    from kit.data.topics import read_topics, source_identity, topic_pools

    topics = read_topics("ncn_release", release_dir)
    assert len(topics) == 457 and topics[0].id == "ncn000" and topics[-1].id == "ncn456"
    assert [t.text for t in read_topics("ncn_release", tarball)] == [t.text for t in topics]
    data = DataParams()
    assert source_identity(
        data, TopicsParams(source="ncn_release", path=str(release_dir))
    ) == source_identity(data, TopicsParams(source="ncn_release"))  # tarball (default) and folder alike
    _, test = goqa_split(data.goqa_path, data.test_fraction, data.split_seed, None)
    assert leak_counts(topics, [], [], [], test)["topics_in_goqa_test"] == 0
    pool, held = topic_pools(data, TopicsParams(source="ncn_release"), seed=0)
    assert len(pool) + len(held) == 457 and held and not {t.id for t in pool} & {t.id for t in held}


def test_release_transcripts_train_as_their_own_source(release):
    from kit.train.records import source_folder, source_of, training_sets

    finetune = FinetuneParams(
        methods=["dpo", "sft"],
        from_methods=["ncn", "ncn_release:ncn"],
        require_converged=False,
        equal_sources=False,
        eval_fraction=0.0,
    )
    sets = training_sets(release.traces, finetune, seed=0)
    assert not sets[("ncn", "dpo")][0]  # the release's NCN is not the study's NCN
    records = sets[("ncn_release:ncn", "dpo")][0]
    ncn = [t for t in release.traces if t["method"] == "ncn"]
    assert (
        records
        and {source_of(t) for t in ncn} == {"ncn_release:ncn"}
        and source_folder("ncn_release:ncn") == "ncn_release_ncn"
    )
    systems = {r["prompt"][0]["content"] for r in records}
    assert (
        "Answer the question based on United States cultural values." in systems
    )  # zone → the kit's culture
    assert all(r["id"].startswith("ncn_release:ncn:") for r in records)
    by_id = {t["id"]: t for t in ncn}
    for r in records:  # chosen = the agent's consensus statement, rejected = its opening answer
        trace = by_id[r["id"].removeprefix("ncn_release:").rsplit(":", 1)[0]]
        side = int(r["id"].rsplit(":", 1)[1])
        assert r["chosen"][0]["content"] == trace["consensus"][side]
        assert r["rejected"][0]["content"] == trace["initial"][side]["response"]
    assert sets[("ncn_release:ncn", "sft")][
        0
    ]  # every round kept: the last position statement is the reasoning


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["finetune.from_methods=[ncn, ncn_release:none]"], "the NCN release holds ncn_release:ncn"),
        (
            ["finetune.from_methods=[ncn_release:debate]", "ncn_release.methods=[ncn]"],
            "no transcript of it is read",
        ),
        (["ncn_release.pairs=[Confucian]"], "not a pair folder of the release"),
        (["ncn_release.path=../nowhere.tar.gz"], "point it at the NCN release's tarball"),
        (["ncn_release.max_items=0"], "ncn_release.max_items"),
        (["ncn_release.methods=[none]"], "ncn_release.methods"),
    ],
)
def test_release_params_fail_in_one_line(overrides, message, shared_data):
    with pytest.raises(ParamsError, match=message) as err:
        load_params(ROOT / "params" / "tiny.yaml", overrides)
    assert "\n" not in str(err.value)


def test_release_sources_need_no_study_method(shared_data):
    p = load_params(
        ROOT / "params" / "tiny.yaml",
        ["finetune.from_methods=[ncn, ncn_release:consultancy]", "negotiation.methods=[ncn]"],
    )
    assert p.finetune.from_methods == ["ncn", "ncn_release:consultancy"]


def test_archive_files_never_reads_links_or_members_outside(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in [("r/ok.json", b"{}"), ("../escape.json", b"{}"), ("/abs.json", b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("r/link.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert archive_files(archive) == {"r/ok.json": b"{}"}
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ok.json").write_text("{}")
    (folder / "link.json").symlink_to("/etc/hostname")
    assert archive_files(folder) == {"ok.json": b"{}"}


def test_release_transcripts_of_held_out_topics_never_train(shared_data, tarball):
    """With the release's topics as the study's source, its transcripts of the held-out pool are left out."""
    from kit.data.topics import topic_pools
    from kit.negotiation.ncn_release import training_traces

    p = load_params(
        ROOT / "params" / "tiny.yaml", ["negotiation.topics.source=ncn_release", "ncn_release.max_items=40"]
    )
    traces, counts = training_traces(p)
    _, held = topic_pools(p.data, p.negotiation.topics, p.seed)
    assert counts["dropped_heldout"] > 0 and len(traces) == counts["read"] - counts["dropped_heldout"]
    assert not {t["topic"]["id"] for t in traces} & {t.id for t in held}
    assert {t["method"] for t in traces} == {"ncn"}  # tiny trains ncn_release:ncn only
