"""``python -m kit export RUN [--out DIR] [--push ORG]``: a run's data and models in the Hugging Face Hub's formats.

- Every record store (negotiation traces, Cultural Palette's synthesis records, the dilemmas the model wrote, the
  grounded agents' SFT data) becomes a ``datasets`` dataset: ``datasets/<name>/data/train-00000-of-00001.parquet``
  and a dataset card (``README.md``) naming the notebook that made it, the fingerprint of the params it ran with,
  the counts, and the licence it inherits from its inputs: CC-BY-NC-SA-4.0 where GlobalOpinionQA went in,
  CC-BY-4.0 for MoralChoice, Apache-2.0 for the NCN release's texts (the most restrictive of the inputs wins).
  A column whose values differ in shape from row to row (a nested record) is stored as JSON text, and the card
  says which.
- Every adapter and merged model becomes ``models/<name>/``: its weights and tokenizer (hard links where the disk
  allows) and a model card: base model and revision, the recipe (method, LoRA and trl keys), the training data and
  its licence, the unit's metrics with their intervals (the capability board's lm-eval tasks: value, standard
  error, paired change against the base) and the unit's leak counts.

``--push ORG`` uploads every folder to ``ORG/<profile>-<name>`` with ``huggingface_hub`` (private repositories),
with the token ``HF_TOKEN`` holds; without ``--push`` nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.registry import protocol_names
from kit.run.artifacts import fingerprint
from kit.run.files import read_json, read_jsonl

log = logging.getLogger(__name__)

# the data the kit reads and their licences (docs/data.md), most restrictive first
LICENCES = {"globalopinionqa": "cc-by-nc-sa-4.0", "moralchoice": "cc-by-4.0", "ncn_release": "apache-2.0"}
ORDER = ("cc-by-nc-sa-4.0", "cc-by-4.0", "apache-2.0")
SOURCES = {
    "globalopinionqa": "GlobalOpinionQA (Durmus et al. 2023)",
    "moralchoice": "MoralChoice (Scherrer et al. 2023)",
    "ncn_release": "the Nash Consensus Negotiation paper's public release",
}
LEAK_KEYS = ("leaks", "overlap", "goqa_overlap", "topic_leaks", "heldout_in_training")
SHARD = "data/train-00000-of-00001.parquet"


def licence(inputs: Iterable[str]) -> str:
    """The licence data made from ``inputs`` carries: the most restrictive of theirs; ``other`` for an input the kit
    does not know the licence of (a file of one's own, a Hub data set: its own card says)."""
    found = [LICENCES.get(i, "other") for i in inputs]
    if not found or "other" in found:
        return "other"
    return min(found, key=ORDER.index)


def _topic_inputs(source: str) -> list[str]:
    return {"goqa": ["globalopinionqa"], "moralchoice": ["moralchoice"], "ncn_release": ["ncn_release"]}.get(
        source, [source]
    )


@dataclass
class Run:
    """What a run folder says about itself: its params (the manifest), each notebook's metrics."""

    folder: Path
    params: dict[str, Any]
    metrics: dict[str, dict]
    profile: str = field(init=False)

    def __post_init__(self):
        self.profile = self.params.get("profile") or self.folder.name

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Run:
        folder = Path(folder)
        manifest = read_json(folder / "manifest.json")
        if manifest is None:
            raise ValueError(
                f"{folder}: no manifest.json; fix: export a run folder python -m kit run wrote "
                "(runs/<profile>)"
            )
        metrics = {f.stem: json.loads(f.read_text()) for f in sorted((folder / "metrics").glob("*.json"))}
        return cls(folder, manifest.get("params", {}), metrics)

    def section(self, name: str) -> dict:
        return self.params.get(name) or {}

    def notebook_fingerprint(self, notebook: str) -> str | None:
        """The fingerprint of the params the notebook ran with (its metrics' ``made_by``), as the tracker names it."""
        made = self.metrics.get(notebook, {}).get("made_by")
        return fingerprint(made) if made is not None else None

    def leaks(self, notebook: str) -> dict[str, Any]:
        m = self.metrics.get(notebook, {})
        return {k: m[k] for k in LEAK_KEYS if k in m}

    def agents_inputs(self) -> list[str]:
        """Agents described from, or trained on, GlobalOpinionQA answers carry its licence into what they say."""
        kind = self.section("negotiation").get("agent_kind", "described")
        return ["globalopinionqa"] if kind in ("described", "grounded") else []


# --- the record stores ----------------------------------------------------------------------------------------------


@dataclass
class Store:
    name: str
    path: Path
    notebook: str
    inputs: list[str]
    what: str


def stores(run: Run) -> list[Store]:
    """Every record store of the run, with the notebook that made it and the data that went into it."""
    r = run.folder
    out = [
        Store(
            f"negotiations-{p.stem}",
            p,
            "02_negotiation",
            sorted(
                {
                    *_topic_inputs(run.section("negotiation").get("topics", {}).get("source", "moralchoice")),
                    *run.agents_inputs(),
                }
            ),
            f"negotiation traces of every method ({', '.join(protocol_names())}), one per topic and pair",
        )
        for p in sorted((r / "records" / "negotiations").glob("*.jsonl"))
    ]
    out += [
        Store(
            f"palette-{p.stem}",
            p,
            "10_palette_data",
            _topic_inputs(run.section("palette").get("queries", {}).get("source", "goqa")),
            "Cultural Palette's synthesis records: five continents' answers, Hofstede feedback, aggregation",
        )
        for p in sorted((r / "records" / "palette").glob("*.jsonl"))
    ]
    out += [
        Store(
            p.stem.replace("_", "-"),
            p,
            "30_dilemmas",
            ["moralchoice"],
            "moral dilemmas with opposing personas as the model wrote them",
        )
        for p in sorted((r / "records").glob("selfplay_generated_*.jsonl"))
    ]
    out += [
        Store(
            f"grounded-sft-{p.parent.name.replace(' ', '_')}",
            p,
            "01_cultural_agents",
            ["globalopinionqa"],
            f"the SFT data of the survey-grounded agent of {p.parent.name} (GlobalOpinionQA's train split)",
        )
        for p in sorted((r / "agents" / "grounded").glob("*/sft.jsonl"))
    ]
    return out


def _columns(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows a parquet file holds: a column whose values are not all of one JSON shape becomes JSON text."""
    import pyarrow as pa

    def writable(t) -> bool:  # parquet holds no struct without fields (a mapping empty in every record)
        if pa.types.is_struct(t):
            return t.num_fields > 0 and all(writable(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return writable(t.value_type)
        return True

    keys = list(dict.fromkeys(k for row in rows for k in row))
    as_text = []
    for key in keys:
        try:
            ok = writable(pa.array([row.get(key) for row in rows]).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            ok = False
        if not ok:
            as_text.append(key)
    out = [
        {
            k: (json.dumps(row.get(k), ensure_ascii=False, sort_keys=True) if k in as_text else row.get(k))
            for k in keys
        }
        for row in rows
    ]
    return out, as_text


def export_store(run: Run, store: Store, out: Path) -> Path | None:
    """One record store as a dataset folder: parquet and its card (None for a store without records)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    rows = list(read_jsonl(store.path))
    if not rows:
        log.warning("%s: no records; not exported", store.path)
        return None
    table, as_text = _columns(rows)
    folder = out / "datasets" / store.name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(table).to_parquet(str(folder / SHARD))
    lic = licence(store.inputs)
    card = dataset_card(run, store, len(rows), list(table[0]), as_text, lic)
    card.save(str(folder / "README.md"))
    return folder


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def dataset_card(run: Run, store: Store, n: int, columns: list[str], as_text: list[str], lic: str):
    from huggingface_hub import DatasetCard

    header = {
        "license": lic,
        "language": ["en"],
        "pretty_name": f"Agora {run.profile}: {store.name}",
        "tags": ["agora", "pluralistic-alignment", store.notebook],
        "size_categories": ["n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": SHARD}]}],
    }
    fp = run.notebook_fingerprint(store.notebook)
    inputs = "\n".join(
        f"- {SOURCES.get(i, i)}: {LICENCES.get(i, 'its own licence (see its card)')}" for i in store.inputs
    )
    body = f"""# {store.name}

{store.what[0].upper() + store.what[1:]}, made by notebook `{store.notebook}` of the Agora kit in a `{run.profile}` run.

- Source notebook: `{store.notebook}`
- Params fingerprint: `{fp or "not recorded"}` (the params the notebook ran with, as its metrics record them)
- Records: {n}; columns: {len(columns)} ({", ".join(f"`{c}`" for c in columns)})
- Stored as JSON text (values of more than one shape): {", ".join(f"`{c}`" for c in as_text) or "none"}

## Licence

`{lic}`: the most restrictive licence of the data that went in.

{inputs}

Model outputs in these records also fall under the terms of the model that wrote them.
"""
    return DatasetCard(f"---\n{_yaml(header)}---\n\n{body}")


# --- adapters and merged models ---------------------------------------------------------------------------------------


@dataclass
class Trained:
    name: str  # the export folder's name
    folder: Path  # the adapter folder (adapter_config.json) or the merged model's folder
    notebook: str  # the notebook that trained or merged it
    unit: str  # the notebook whose board rows hold its metrics
    row: str | None  # its name there
    inputs: list[str]
    data: str
    merged: bool = False


def _hand_off(path: Path) -> dict[str, Path]:
    """Folder -> name of a notebook's hand-off file (``kit.run.artifacts.hand_off``)."""
    stored = read_json(path) or {}
    return {
        (path.parent / row["folder"]).resolve(): name for name, row in stored.get("models", {}).items() if row
    }


def trained(run: Run) -> list[Trained]:
    """Every adapter and merged model of the run, with where its metrics are and what trained it."""
    from kit.train.records import source_folder

    r = run.folder
    out = []
    agents = {
        (r / a["adapter"]).resolve(): a["name"]
        for a in (read_json(r / "agents" / "agents.json") or {}).get("agents", [])
        if a.get("adapter")
    }
    for adapter in sorted((r / "agents" / "grounded").glob("*/sft/adapter")):
        out.append(
            Trained(
                f"grounded-{adapter.parent.parent.name.replace(' ', '_')}",
                adapter,
                "01_cultural_agents",
                "01_cultural_agents",
                agents.get(adapter.resolve()),
                ["globalopinionqa"],
                f"SFT on {adapter.parent.parent.name}'s GlobalOpinionQA train answers",
            )
        )
    negotiation_inputs = sorted(
        {
            *_topic_inputs(run.section("negotiation").get("topics", {}).get("source", "moralchoice")),
            *run.agents_inputs(),
        }
    )
    for source in run.section("finetune").get("from_methods", []):
        for method in run.section("finetune").get("methods", []):
            adapter = r / "train" / source_folder(source) / method / "adapter"
            if (adapter / "adapter_config.json").is_file():
                release = source.startswith("ncn_release:")
                out.append(
                    Trained(
                        f"{method}-{source_folder(source)}",
                        adapter,
                        "04_finetune_on_negotiation",
                        "04_finetune_on_negotiation",
                        f"{method}@{source}",
                        ["ncn_release"] if release else negotiation_inputs,
                        f"{method.upper()} on the {'NCN release' if release else 'study'}'s {source} "
                        "negotiation traces (notebook 02 / 05)",
                    )
                )
    palette = _hand_off(r / "palette" / "models.json")
    palette_inputs = _topic_inputs(run.section("palette").get("queries", {}).get("source", "goqa"))
    for folder, name in palette.items():
        merged = (folder / "agora.merge.json").is_file() or name in ("ties", "model_stock", "moe")
        out.append(
            Trained(
                f"palette-{name}",
                folder,
                "11_palette_agents",
                "12_palette_table",
                name,
                palette_inputs,
                "mergekit over the five ORPO continent agents"
                if merged
                else "ORPO on Cultural Palette's synthesis records (notebook 10)",
                merged,
            )
        )
    for folder, name in _hand_off(r / "visa" / "train" / "adapters.json").items():
        out.append(
            Trained(
                f"visa-{name}",
                folder,
                "21_value_rewriter",
                "22_visa_table",
                name,
                ["globalopinionqa", "moralchoice"],
                "VISA's texts (GlobalOpinionQA answers, MoralChoice "
                "dilemmas) and their target values (notebook 20)",
            )
        )
    for folder, name in _hand_off(r / "selfplay" / "train" / "trained.json").items():
        out.append(
            Trained(
                f"selfplay-{name}",
                folder,
                "31_selfplay_training",
                "32_selfplay_table",
                name,
                ["moralchoice"],
                "self-play on moral dilemmas (MoralChoice and the model's own, notebook 30)",
            )
        )
    return out


def metrics_of(run: Run, t: Trained) -> list[dict]:
    """The capability board's rows of this model: each lm-eval task's value, standard error and paired change."""
    rows = (
        list(read_jsonl(run.folder / "scores" / "capability" / f"{t.unit}.jsonl"))
        if (run.folder / "scores" / "capability" / f"{t.unit}.jsonl").is_file()
        else []
    )
    mine = next((row for row in rows if row.get("model") == t.row), None)
    if mine is None:
        return []
    return [{"task": task, **v, "base": mine.get("base")} for task, v in (mine.get("tasks") or {}).items()]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_model(run: Run, t: Trained, out: Path) -> Path:
    folder = out / "models" / t.name
    if folder.exists():
        shutil.rmtree(folder)
    for f in sorted(p for p in t.folder.rglob("*") if p.is_file()):
        if f.name.endswith(".md"):
            continue  # a card written by a library: the kit writes its own
        _link_or_copy(f, folder / f.relative_to(t.folder))
    model_card(run, t).save(str(folder / "README.md"))
    return folder


def _num(v, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def model_card(run: Run, t: Trained):
    from huggingface_hub import ModelCard

    config = read_json(t.folder.parent / "train_config.json") or {}
    stamp = read_json(t.folder / "agora.merge.json") or {}
    model = run.section("model")
    base = model.get("name", "")
    revision = model.get("revision")
    lic = licence(t.inputs)
    header = {
        "base_model": base,
        "license": lic,
        "library_name": "transformers" if t.merged else "peft",
        "tags": [
            "agora",
            "pluralistic-alignment",
            t.notebook,
            *([] if t.merged else ["lora", "trl", config.get("method", "")]),
        ],
        "pipeline_tag": "text-generation",
    }
    if t.merged:
        header["base_model_relation"] = "merge"
    header["tags"] = [x for x in header["tags"] if x]
    metrics = metrics_of(run, t)
    rows = "\n".join(
        f"| {m['task']} | {m.get('metric', '')} | {_num(m.get('value'))} | {_num(m.get('stderr'))} | "
        f"{_num(m.get('change'))} | [{_num(m.get('change_low'))}, {_num(m.get('change_high'))}] |"
        for m in metrics
    )
    leaks = run.leaks(t.unit) | run.leaks(t.notebook)
    recipe = {
        k: config[k]
        for k in (
            "method",
            "trainer",
            "lora",
            "trl",
            "per_method",
            "seed",
            "n_train",
            "n_eval",
            "global_step",
        )
        if k in config
    }
    inputs = ", ".join(f"{SOURCES.get(i, i)} ({LICENCES.get(i, 'its own')})" for i in t.inputs)
    body = f"""# {t.name}

{"A merged model" if t.merged else "A LoRA adapter"} of the Agora kit (`{run.profile}` run), made by notebook
`{t.notebook}`; its metrics are notebook `{t.unit}`'s (row `{t.row}`).

## Base model

`{base}`{f" at revision `{revision}`" if revision else ""}{f" (identity `{config['base_identity']}`)" if config.get("base_identity") else ""}

## Recipe

```json
{json.dumps(recipe or {k: stamp[k] for k in stamp if k not in ("seconds", "peak_rss_gb")}, indent=1, default=str)}
```

## Training data

{t.data}. Licence `{lic}`, the most restrictive of: {inputs}.
The base model's own licence applies as well.

## Metrics (lm-evaluation-harness, against `{metrics[0]["base"] if metrics else "the base model"}`)

| task | metric | value | standard error | paired change | 95 % interval |
|---|---|---|---|---|---|
{rows or "| (no capability row of this model) | | | | | |"}

## Leak counts (all must be 0)

```json
{json.dumps(leaks, indent=1)}
```
"""
    return ModelCard(f"---\n{_yaml(header)}---\n\n{body}")


# --- the command ----------------------------------------------------------------------------------------------------


def export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Write every record store and every trained model of ``run_dir`` under ``out`` (default ``RUN/export``)."""
    run = Run.read(run_dir)
    out = Path(out) if out else run.folder / "export"
    done = {"datasets": [], "models": []}
    for store in stores(run):
        folder = export_store(run, store, out)
        if folder is not None:
            done["datasets"].append(folder)
    for t in trained(run):
        done["models"].append(export_model(run, t, out))
    return done


def push(folders: dict[str, list[Path]], org: str, profile: str) -> list[str]:
    """Upload every exported folder to ``org/<profile>-<name>`` (private), with the token in ``HF_TOKEN``."""
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError(
            "--push needs a Hugging Face token in HF_TOKEN (never in params or on the command line)"
        )
    api = HfApi(token=token)
    repos = []
    for kind, paths in folders.items():
        for folder in paths:
            repo = f"{org}/{profile}-{folder.name}"
            repo_type = "dataset" if kind == "datasets" else "model"
            api.create_repo(repo, repo_type=repo_type, private=True, exist_ok=True)
            api.upload_folder(
                folder_path=str(folder), repo_id=repo, repo_type=repo_type, commit_message="Agora kit export"
            )
            repos.append(f"{repo_type}:{repo}")
    return repos


def main(run_dir: str, out: str | None, org: str | None) -> int:
    if org and not os.environ.get("HF_TOKEN"):  # before the export, which may copy gigabytes for nothing
        raise ValueError(
            "--push needs a Hugging Face token in HF_TOKEN (never in params or on the command line); "
            "fix: export HF_TOKEN, or leave out --push to write the folders only"
        )
    done = export(run_dir, out)
    for kind, paths in done.items():
        print(f"{kind}: {len(paths)}")
        for p in paths:
            print(f"  {p}")
    if org:
        for repo in push(done, org, Run.read(run_dir).profile):
            print(f"pushed {repo}")
    return 0
