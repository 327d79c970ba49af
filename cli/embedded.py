"""Embedded-mode commands: `sample`, `run`, `processes` (no service needed)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from scalespace import ScalespaceError
from scalespace.cli.common import ProgressBar, add_job_options, print_json, read_spec_file
from scalespace.jobs.spec_files import load_spec_text
from scalespace.jobs.specs import parse_spec
from scalespace.storage import LocalStore


def _store(out: str) -> LocalStore:
    return LocalStore(out)


def run_and_report(spec: dict[str, Any], out: str, quiet: bool = False) -> int:
    from scalespace.jobs.run import run_job  # imports torch: only when a job runs

    parsed = parse_spec(spec)
    bar = ProgressBar(enabled=None if not quiet else False)
    try:
        manifest = run_job(parsed, _store(out), progress=bar)
    finally:
        bar.close()
    store = _store(out)
    print(f"{manifest['kind']} job {manifest['job_id']} succeeded: {store.location('jobs', manifest['job_id'])}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {
        "kind": "sample",
        "process": args.process,
        "data": args.data,
        "n": args.n,
        "seed": args.seed,
        "model": args.model,
        "batch_size": args.batch_size,
    }
    for key in ("steps", "sampler", "data_size", "data_limit", "device"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.eta is not None:
        spec["eta"] = args.eta
    if args.param:
        spec["process_params"] = _params(args.param)
    return run_and_report(spec, args.out, args.quiet)


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ScalespaceError(f"--param expects KEY=VALUE, got {item!r}")
        out[key] = load_spec_text(value, f"--param {key}")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    return run_and_report(read_spec_file(args.job), args.out, args.quiet)


def cmd_processes(args: argparse.Namespace) -> int:
    from scalespace.processes import PROCESSES  # imports torch: only for this command

    rows = []
    for name, cls in PROCESSES.items():
        doc = (cls.__module__ and __import__(cls.__module__, fromlist=["x"]).__doc__ or "").strip().splitlines()
        rows.append({
            "process": name,
            "summary": doc[0] if doc else "",
            "default_sampler": cls.default_sampler,
            "defaults": cls.Params().model_dump(),
        })
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['process']:<9} {r['summary']}")
            print(f"{'':<9} sampler: {r['default_sampler']}; defaults: {json.dumps(r['defaults'])}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw samples by reverse diffusion (embedded)")
    p.add_argument("--process", required=True, help="vp, ve, blurring, heat or osmosis")
    p.add_argument("--data", required=True, help="fashion-mnist, digits or gaussian-mixture")
    p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--steps", type=int, help="reverse steps (default: the process's T)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="oracle", help="'oracle' or a model id")
    p.add_argument("--sampler", help="ancestral, ddim or heat (default: the process's own)")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument("--batch-size", type=int, default=64)
    add_job_options(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("run", help="run a job spec (YAML or JSON) in this process")
    p.add_argument("job", help="path to the spec, or - for standard input")
    p.add_argument("--out", default="scalespace-results")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("processes", help="list the forward processes and their defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_processes)
