"""``python -m kit train METHOD --params P [--set k=v] [--data records.jsonl] [--output DIR]``.

``--data`` is a JSONL file of negotiation traces (records get built for METHOD) or of ready
training records (preference ``prompt/chosen/rejected`` or SFT ``messages``); it defaults to the
profile's ``records/negotiations.jsonl``. ``--output`` defaults to ``runs/<profile>/train/<METHOD>``;
rerunning on the same folder resumes from its last checkpoint. Multi-GPU runs go through
accelerate with the same arguments, e.g.
``accelerate launch --config_file params/accelerate/ddp.yaml -m kit train dpo --params params/full.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kit.config import Params, ParamsError, load_params
from kit.files import read_jsonl

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("records") / "negotiations.jsonl"  # where notebook 02 stores traces


def _parser() -> argparse.ArgumentParser:
    from kit.train.recipes import TRAINERS

    p = argparse.ArgumentParser(prog="python -m kit train", description="LoRA finetuning on negotiation data")
    p.add_argument("method", choices=TRAINERS.names())
    p.add_argument("--params", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. finetune.epochs=1")
    p.add_argument("--data", type=Path, help="JSONL of traces or training records")
    p.add_argument("--output", type=Path, help="output folder (checkpoints, adapter/, logs)")
    return p


def records_for(method: str, rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Training records for METHOD: built from traces, or taken as they are."""
    from kit.train.records import preference_records, sft_records

    if not rows:
        raise ValueError("the data file is empty")
    if "consensus" in rows[0]:
        return sft_records(rows) if method == "sft" else preference_records(rows)
    needed = ("messages",) if method == "sft" else ("prompt", "chosen", "rejected")
    bad = next((r for r in rows if not all(k in r for k in needed) or "id" not in r), None)
    if bad is not None:
        raise ValueError(f"record {bad.get('id')!r} is neither a trace nor a {method} record (needs id and {', '.join(needed)})")
    return rows, {"records": len(rows), "kept": len(rows)}


def train_from_params(method: str, params: Params, data_path: Path | None = None, output_dir: Path | None = None) -> Path:
    """Build records, split them, train METHOD with ``params.finetune``; returns the adapter folder."""
    from kit.train.records import split_records
    from kit.train.trainers import train

    path = Path(data_path) if data_path else params.run_dir / DEFAULT_DATA
    if not path.is_file():
        raise ValueError(f"{path}: no such data file; fix: pass --data with a JSONL of negotiation traces")
    rows = read_jsonl(path)
    records, counts = records_for(method, rows)
    train_records, eval_records = split_records(records, params.finetune.eval_fraction, params.seed)
    log.info("%s: %d train / %d eval records (%s)", method, len(train_records), len(eval_records), counts)
    out = Path(output_dir) if output_dir else params.run_dir / "train" / method
    result = train(method, train_records, eval_records, params.model.name, out, params.finetune, params.seed)
    return result.adapter_dir


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the adapter path on stdout; 2 with one line on stderr for bad params or data."""
    args = _parser().parse_args(argv)
    try:
        params = load_params(args.params, args.set)
        adapter = train_from_params(args.method, params, args.data, args.output)
    except (ParamsError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(adapter)
    return 0
