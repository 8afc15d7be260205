"""``python -m kit``: run notebooks, check params, plan memory, train, benchmark, report, serve a model, open JupyterLab, open the tracker's dashboard, export to the Hub's formats, submit cluster jobs, check the machine.

Exit codes: 0 ok, 1 a run failed, 2 bad params or usage (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kit.bench import BENCHES
from kit.config import ParamsError, load_params
from kit.llm.errors import EndpointError
from kit.run import lock, secrets
from kit.run.cache import CacheUnavailable
from kit.run.records import RecordWriteError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kit",
        description=__doc__.splitlines()[0],
        epilog="python -m kit train METHOD --params P …: LoRA finetuning (see python -m kit train -h)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the notebooks in order with papermill")
    r.add_argument("params")
    r.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,01")
    r.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.batch_size=4"
    )
    m = sub.add_parser(
        "merge", help="merge JSONL record shards (e.g. negotiations from several nodes) into one file"
    )
    m.add_argument("out")
    m.add_argument("shards", nargs="+")
    c = sub.add_parser("check", help="validate a params file (exit 0 or 2)")
    c.add_argument("params")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument(
        "--offline",
        action="store_true",
        help="do not ask a served model's URLs what they offer (backend openai)",
    )
    b = sub.add_parser("bench", help="benchmarks that print ratios; the last line is JSON")
    b.add_argument("what", choices=BENCHES.names())
    b.add_argument("--params", required=True)
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rep = sub.add_parser(
        "report", help="the run's boards and figures as one HTML page (runs/<profile>/report/)"
    )
    rep.add_argument("params")
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    dr = sub.add_parser(
        "docs-results",
        help="write docs/results.md from a run folder's metrics, boards, "
        "manifest and benchmarks (after make run)",
    )
    dr.add_argument("run_dir", help="e.g. runs/smoke")
    dr.add_argument("--out", help="default: docs/results.md")
    pl = sub.add_parser(
        "plan",
        help="the memory plan: every notebook stage's resident models per GPU, whether it "
        "fits, disk and GPU-hours (exit 0 fits, 2 refused)",
    )
    pl.add_argument("params")
    pl.add_argument("--gpus", type=int, help="GPUs of the node (default: those visible here)")
    pl.add_argument("--gpu-gb", type=float, help="memory of each GPU in GiB (default: the visible GPUs')")
    pl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d = sub.add_parser(
        "doctor", help="what this machine has, and whether a profile can run here (exit 0 or 2)"
    )
    d.add_argument("--params", help="a profile to check against this machine")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sv = sub.add_parser(
        "serve",
        help="vllm serve a profile's model (or a role's) with the kit's engine settings, "
        "for backend openai on other nodes",
    )
    sv.add_argument("--params", required=True)
    sv.add_argument("--role", help="serve this role's model (kit.config.ROLES) instead of model")
    sv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only); any other needs an API key",
    )
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="the environment variable holding the server's API key "
        "(default: the profile's model.api_key_env, else AGORA_API_KEY)",
    )
    sv.add_argument(
        "--runtime-lora",
        action="store_true",
        help="let clients load adapters at run time (/v1/load_lora_adapter: any path the server reads)",
    )
    sv.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="PATH",
        help="serve this PEFT adapter folder under its content name (repeatable)",
    )
    sv.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    sv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sb = sub.add_parser(
        "submit",
        help="one cluster job per unit through submitit (cluster section), in unit order; "
        "a job killed at its wall time is requeued and resumes",
    )
    sb.add_argument("params")
    sb.add_argument("--only", help="comma-separated units (0,1) or notebooks (00,10)")
    sb.add_argument(
        "--executor",
        choices=["slurm", "local"],
        default="slurm",
        help="slurm: sbatch every job with its dependencies; local: the same jobs on this machine",
    )
    sb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ex = sub.add_parser(
        "export",
        help="a run's record stores as Hugging Face datasets and its adapters and merged "
        "models with model cards (RUN/export; --push ORG uploads them)",
    )
    ex.add_argument("run_dir", help="e.g. runs/smoke")
    ex.add_argument("--out", help="default: RUN/export")
    ex.add_argument(
        "--push", metavar="ORG", help="upload every folder to ORG/<profile>-<name> (private; HF_TOKEN)"
    )
    tr = sub.add_parser(
        "track",
        help="trackio's dashboard of a profile's run folder on 127.0.0.1 (training curves, "
        "every notebook's key numbers; tracking.backend: trackio)",
    )
    tr.add_argument("params", nargs="?", default="params/smoke.yaml")
    tr.add_argument("--port", type=int, help="default: the first free one from 7860")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    lab = sub.add_parser(
        "lab", help="JupyterLab on the notebooks, agora-kit kernel (no browser; prints the URL)"
    )
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument(
        "--profile",
        help="every notebook reads this profile (tiny, smoke, full or a file) instead of "
        "the one its parameters cell names",
    )
    return p


def store_bench(params, what: str, result: dict, argv: list[str]) -> Path:
    """``runs/<profile>/bench/<what>.json`` (``<what>@<backend>.json`` off the transformers backend, so both
    engines' results stand side by side): the result with the command and machine, for docs/results.md."""
    import datetime as dt

    from kit.run.files import atomic_write_json
    from kit.run.records import git_info, machine_info

    name = what if params.model.backend == "transformers" else f"{what}@{params.model.backend}"
    return atomic_write_json(
        params.run_dir / "bench" / f"{name}.json",
        {
            "command": "python -m kit " + " ".join(argv),
            "result": result,
            "machine": machine_info(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git": git_info(),
        },
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # its own parser; also the entry point under `accelerate launch -m kit train`
        from kit.train.cli import main as train_main

        return train_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "lab":
            from kit.tools.lab import main as lab_main

            return lab_main(args.port, args.profile)
        if args.command == "doctor":
            from kit.tools.doctor import main as doctor_main

            return doctor_main(args.params, args.set)
        if args.command == "merge":
            from kit.run.records import merge_record_files

            lock.hold(lock.run_folder_of(args.out))  # it rewrites a store a live run may be appending to
            print(f"{args.out}: {merge_record_files(args.shards, args.out)} records")
            return 0
        if args.command == "export":
            from kit.tools.export import main as export_main

            return export_main(args.run_dir, args.out, args.push)
        if args.command == "docs-results":
            from kit.reporting.docs_results import write as write_results

            print(f"results: {write_results(args.run_dir, args.out)}")
            return 0
        params = load_params(args.params, args.set)
        if args.command == "check":
            from kit.tools.doctor import served_problems

            if not args.offline and (refused := served_problems(params)):
                print(
                    f"error: {args.params}: {refused[0]}"
                    + (f" [+{len(refused) - 1} more]" if len(refused) > 1 else ""),
                    file=sys.stderr,
                )
                return 2
            print(
                f"{args.params}: ok (profile {params.profile}, model {params.model.name} on {params.model.backend})"
            )
            return 0
        if args.command == "plan":
            from kit.plan.report import main as plan_main

            return plan_main(params, args.gpus, args.gpu_gb)
        if args.command == "serve":
            from kit.llm.serve import main as serve_main

            return serve_main(
                params,
                args.role,
                args.host,
                args.port,
                args.dry_run,
                args.api_key_env,
                args.runtime_lora,
                args.adapter,
            )
        if args.command == "submit":
            from kit.tools.submit import main as submit_main

            return submit_main(
                params, args.params, args.only.split(",") if args.only else None, args.executor, args.set
            )
        if args.command == "track":
            from kit.run.tracking import serve

            serve(params, args.port)
            return 0
        if args.command == "report":
            from kit.reporting.report import write

            lock.hold(params.run_dir)
            page = write(params)
            print(f"report: {page}\nboards (CSV): {page.parent}")
            return 0
        if args.command == "run":
            from kit.runner import run

            return run(params, args.params, args.only.split(",") if args.only else None)
        lock.hold(params.run_dir)  # before the benchmark: its result is stored in the run folder
        result = BENCHES.get(args.what)(params)
        stored = store_bench(params, args.what, result, argv)
        print(f"stored: {stored}", file=sys.stderr)
        print(json.dumps(result))
        return 0
    except (ParamsError, ValueError, ImportError) as e:
        print(secrets.scrub(f"error: {e}"), file=sys.stderr)
        return 2
    except (
        lock.RunFolderBusy,
        RecordWriteError,
        CacheUnavailable,
        EndpointError,
    ) as e:  # busy, disk full, a server
        print(secrets.scrub(f"error: {' '.join(str(e).split())}"), file=sys.stderr)
        return 1
