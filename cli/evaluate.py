"""`scalespace evaluate`: the scale-space report of one process on one data set (embedded)."""

from __future__ import annotations

import argparse
from typing import Any

from scalespace.cli.common import add_job_options, spec_choices
from scalespace.cli.embedded import _params, run_and_report
from scalespace.jobs.specs import EvaluateSpec
from scalespace.storage import LocalStore


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "evaluate", "process": args.process, "data": args.data, "seed": args.seed,
                            "model": args.model}
    for key in ("n", "eval_steps", "n_reverse", "reverse_steps", "data_size", "data_limit", "device", "quality_extractor",
                "n_invariance"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.checks:
        spec["checks"] = [c.strip() for c in args.checks.split(",") if c.strip()]
    robustness: dict[str, Any] = {}
    if args.robust_n is not None:
        robustness["n"] = args.robust_n
    if args.robust_steps is not None:
        robustness["steps"] = args.robust_steps
    if args.step_counts:
        robustness["step_counts"] = [int(s) for s in args.step_counts.split(",") if s.strip()]
    if args.seeds:
        robustness["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
    if robustness:
        spec["robustness"] = robustness
    if args.param:
        spec["process_params"] = _params(args.param)
    return spec


def cmd_evaluate(args: argparse.Namespace) -> int:
    code = run_and_report(build_spec(args), args.out, args.quiet)
    if args.table:
        from scalespace.jobs.evaluate import load_report, markdown_table  # imports torch: only for --table

        store = LocalStore(args.out)
        # job ids start with kind and UTC time, so the newest evaluate job here is the one just run
        jobs = sorted(j for j in store.list("jobs") if j.startswith("evaluate-") and store.exists("jobs", j, "report.json"))
        if jobs:
            print(markdown_table(load_report(store, jobs[-1])))
    return code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="check a process's scale-space properties and write a report (embedded)")
    p.add_argument("--process", required=True, help="vp, ve, blurring, heat or osmosis")
    p.add_argument("--data", required=True, help="fashion-mnist, digits or gaussian-mixture")
    p.add_argument("--model", default="oracle", help="denoiser of the reverse checks: 'oracle' or a model id")
    p.add_argument("--checks", help="comma-separated parts: forward,invariances,reverse,robustness,density (default all)")
    p.add_argument("--n", type=int, help="forward trajectory samples (default 256)")
    p.add_argument("--eval-steps", type=int, help="forward steps evaluated (default 50)")
    p.add_argument("--n-invariance", type=int, help="images of the invariance checks (default 64)")
    p.add_argument("--n-reverse", type=int, help="samples of the reverse checks (default 128)")
    p.add_argument("--reverse-steps", type=int, help="reverse steps of the reverse checks (default 100)")
    p.add_argument("--robust-n", type=int, help="samples per robustness run (default 64)")
    p.add_argument("--robust-steps", type=int, help="reverse steps of the robustness runs (default 50)")
    p.add_argument("--step-counts", help="comma-separated step counts for quality against steps")
    p.add_argument("--seeds", help="comma-separated seeds of the seed spread")
    p.add_argument("--quality-extractor", choices=spec_choices(EvaluateSpec, "quality_extractor"),
                   help="feature space of the quality figures (default pixels; inception: FID, slow on a CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of all noise (default 0)")
    p.add_argument("--table", action="store_true", help="print the table of properties as markdown")
    add_job_options(p)
    p.set_defaults(func=cmd_evaluate)
