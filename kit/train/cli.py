"""``python -m kit train METHOD --params P [--set k=v] [--data FILE] [--output DIR]``.

Without ``--data`` it trains on the traces notebook 02 stored for this study (the fingerprinted
store of the current agents, model and settings, current plan only) and on the NCN release's
transcripts of the ``ncn_release:<method>`` sources, as notebook 04 does: one
adapter per source method in ``finetune.from_methods``, with the same filters
(``require_converged``, ``eval_fraction``) and into the same folders
(``runs/<profile>/train/<source>/<METHOD>``), so the notebook reuses what the command trained.
With ``--palette`` it trains Cultural Palette's continent agents and joint model instead
(``palette.train``, ORPO) on notebook 10's records, into the folders notebook 11 reuses.
``--data`` is a JSONL file of negotiation traces (filtered the same way) or of ready training
records (preference ``prompt/chosen/rejected`` or SFT ``messages``, trained as one set). A rerun
reuses a finished adapter of the same inputs and resumes an unfinished one. Multi-GPU runs go
through accelerate with the same arguments, e.g.
``accelerate launch --config_file params/accelerate/ddp.yaml -m kit train dpo --params params/full.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kit.run import lock
from kit.run.files import read_jsonl
from kit.run.sections import ParamsError

if TYPE_CHECKING:  # annotations only: kit.config composes this package's section
    from kit.config import Params

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from kit.train.recipes import TRAINERS

    p = argparse.ArgumentParser(prog="python -m kit train", description="LoRA finetuning on negotiation data")
    # online methods (GRPO) train on rewards, not records: VISA's rewriter trains in notebook 21
    p.add_argument("method", choices=[m for m in TRAINERS.names() if not TRAINERS.get(m).online])
    p.add_argument("--params", required=True)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. finetune.trl.num_train_epochs=1",
    )
    p.add_argument(
        "--data", type=Path, help="JSONL of traces or training records (default: the study's traces)"
    )
    p.add_argument("--output", type=Path, help="output folder (per source method when training from traces)")
    p.add_argument(
        "--palette",
        action="store_true",
        help="train the Cultural Palette continent agents and joint model (palette.train, method orpo) "
        "on notebook 10's records, into the folders notebook 11 reuses",
    )
    return p


def study_traces(params: Params) -> list[dict]:
    """The traces notebook 02 stored for this study, current plan only."""
    from kit.agents import AgentSet
    from kit.data.topics import negotiation_topics
    from kit.negotiation.run import planned_traces, study_agents, study_store
    from kit.run.artifacts import model_parts

    agent_set = None if params.negotiation.agent_kind == "prompted" else AgentSet.load(params.run_dir, params)
    agents = study_agents(params, agent_set)
    store = study_store(params, params.run_dir, agents, model_parts(params.model))
    found = planned_traces(
        store, params, negotiation_topics(params.data, params.negotiation.topics, params.seed)
    )
    if not found:
        raise ValueError(
            f"{store.path}: no traces of this study; run notebook 02 with these params first, or pass --data"
        )
    return found


def ready_records(method: str, rows: list[dict]) -> list[dict]:
    """Rows that already are ``method``'s training records (each with an id)."""
    from kit.train.recipes import TRAINERS

    needed = ("prompt", "chosen", "rejected") if TRAINERS.get(method).preference else ("messages",)
    bad = next((r for r in rows if not all(k in r for k in needed) or "id" not in r), None)
    if bad is not None:
        raise ValueError(
            f"record {bad.get('id')!r} is neither a trace nor a {method} record "
            f"(needs id and {', '.join(needed)})"
        )
    return rows


def training_data(method: str, params: Params, rows: list[dict]) -> dict[str | None, tuple[list, list, dict]]:
    """Per source method (``None`` for ready records): (train, eval, counts) for ``method``."""
    from kit.train.records import split_records, training_sets

    if not rows:
        raise ValueError("the data file is empty")
    f = params.finetune
    if "consensus" in rows[0]:  # traces
        sets = training_sets(rows, f.model_copy(update={"methods": [method]}), params.seed)
        return {source: data for (source, _), data in sets.items()}
    records = ready_records(method, rows)
    return {None: (*split_records(records, f.eval_fraction, params.seed), {"records": len(records)})}


def train_from_params(
    method: str, params: Params, data_path: Path | None = None, output_dir: Path | None = None
) -> list[Path]:
    """Build or read the records, train ``method`` with ``params.finetune``; returns the adapter folders."""
    from kit.train.records import source_folder
    from kit.train.trainers import train

    if data_path is not None and not Path(data_path).is_file():
        raise ValueError(
            f"{data_path}: no such data file; fix: pass --data with a JSONL of traces or records"
        )
    if data_path:
        rows = read_jsonl(data_path)
    else:
        from kit.negotiation.ncn_release import training_traces

        rows = study_traces(params) + training_traces(params)[0]
    adapters = []
    for source, (train_records, eval_records, counts) in training_data(method, params, rows).items():
        log.info(
            "%s from %s: %d train / %d eval records (%s)",
            method,
            source or "records",
            len(train_records),
            len(eval_records),
            counts,
        )
        if not train_records:
            log.warning("%s from %s: no training records after filtering; skipped", method, source)
            continue
        base = Path(output_dir) if output_dir else params.run_dir / "train"
        out = base / method if source is None else base / source_folder(source) / method
        result = train(
            method, train_records, eval_records, params.model.ref, out, params.finetune, params.seed
        )
        adapters.append(result.adapter_dir)
    if not adapters:
        raise ValueError(
            f"{method}: no training records in any of {params.finetune.from_methods} after filtering"
        )
    return adapters


def palette_agents(
    method: str, params: Params, data_path: Path | None, output_dir: Path | None
) -> list[Path]:
    """The palette's continent agents and joint model (``--palette``)."""
    from kit.palette.agents import METHOD, train_study

    if method != METHOD or data_path is not None or output_dir is not None:
        raise ValueError(
            f"--palette trains the palette recipe ({METHOD}) on notebook 10's records into notebook 11's "
            f"folders: use 'python -m kit train {METHOD} --palette --params P' without --data/--output"
        )
    return list(train_study(params).values())


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the adapter paths on stdout; 2 with one line on stderr for bad params or data."""
    from kit.config import (
        load_params,  # the command reads a profile: kit.config composes this package's section
    )

    args = _parser().parse_args(argv)
    try:
        params = load_params(args.params, args.set)
        lock.hold(args.output or params.run_dir)
        if args.palette:
            adapters = palette_agents(args.method, params, args.data, args.output)
        else:
            adapters = train_from_params(args.method, params, args.data, args.output)
    except (ParamsError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except lock.RunFolderBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(map(str, adapters)))
    return 0
