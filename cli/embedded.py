"""Embedded-mode commands: `sample`, `run`, `processes` (no service needed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scalespace import ScalespaceError
from scalespace.cli.common import ProgressBar, add_job_options, print_json, read_spec_file, spec_choices
from scalespace.jobs.spec_files import load_spec_text
from scalespace.jobs.specs import SampleSpec, parse_spec
from scalespace.storage import LocalStore


def _store(out: str) -> LocalStore:
    return LocalStore(out)


def run_embedded(parsed: Any, store: LocalStore, job_id: str, quiet: bool, on_interrupt: str) -> dict[str, Any]:
    """Run a parsed spec here with a progress bar; its id is printed when it starts, `on_interrupt` on Ctrl-C."""
    from scalespace.jobs.run import run_job  # imports torch: only when a job runs

    bar = ProgressBar(enabled=None if not quiet else False,
                      started=f"{parsed.kind} job {job_id}: {store.location('jobs', job_id)}")
    try:
        return run_job(parsed, store, progress=bar, job_id=job_id)
    except KeyboardInterrupt:
        bar.close()
        print(f"scalespace: {parsed.kind} job {job_id} interrupted; {on_interrupt}", file=sys.stderr)
        raise
    finally:
        bar.close()


def run_and_report(spec: dict[str, Any], out: str, quiet: bool = False) -> int:
    from scalespace.jobs.run import new_job_id  # imports torch: only when a job runs

    parsed = parse_spec(spec)
    job_id = new_job_id(parsed)
    store = _store(out)
    manifest = run_embedded(parsed, store, job_id, quiet,
                            "it left no results (no manifest.json); run the command again to start over")
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
        "pictures": not args.no_pictures,
    }
    for key in ("steps", "timestep_spacing", "reverse_mean", "sampler", "data_size", "data_limit", "device", "shards"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.eta is not None:
        spec["eta"] = args.eta
    if args.quality is not None:
        spec["quality"] = args.quality
    if args.param:
        spec["process_params"] = _params(args.param)
    return run_and_report(spec, args.out, args.quiet)


def _shards(text: str) -> int | str:
    """--shards 4 -> 4, --shards auto -> "auto" (the spec's `shards` field checks the range)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def _quality_list(text: str) -> list[str]:
    """--quality fd,fid -> ["fd", "fid"] (the spec's `quality` field)."""
    choices = spec_choices_of_list(SampleSpec, "quality")
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in choices]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}, got {text!r}")
    return list(dict.fromkeys(items))


def spec_choices_of_list(spec: Any, field: str) -> list[str]:
    """The values a spec's list-of-Literal field accepts."""
    from typing import get_args

    (literal,) = get_args(spec.model_fields[field].annotation)
    return list(get_args(literal))


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
    p.add_argument("--timestep-spacing", choices=spec_choices(SampleSpec, "timestep_spacing"),
                   help="indices of a respaced walk (steps < T), as diffusers' timestep_spacing (vp, ve; default trailing)")
    p.add_argument("--reverse-mean", choices=spec_choices(SampleSpec, "reverse_mean"),
                   help="the heat sampler's step mean: ihdm (A_{k-1} u0_hat) or posterior (Gaussian posterior mean) "
                        "(heat, osmosis; default ihdm)")
    p.add_argument("--seed", type=int, default=0, help="seed of all noise (default 0)")
    p.add_argument("--model", default="oracle", help="'oracle' or a model id")
    p.add_argument("--sampler", help="ancestral, ddim or heat (default: the process's own)")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument("--quality", type=_quality_list, metavar="FIGURES",
                   help="final figures against the held-out split, comma-separated: fd (pixel Fréchet distance), "
                        "fid (Inception FID; slow on a CPU), e.g. fd,fid (default fd)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64; does not change the samples)")
    p.add_argument("--shards", type=_shards, metavar="K",
                   help="draw the samples as K shards (an integer, or auto: one per 1,024 samples), one after another "
                        "here, as many workers would in the service; the samples are the same either way")
    p.add_argument("--no-pictures", action="store_true",
                   help="skip the captioned pictures (scale_space.png, reverse_trajectory.png, sample_grid.png) that the "
                        "command writes by default; the samples are the same either way")
    add_job_options(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("run", help="run a job spec (YAML or JSON) in this process")
    p.add_argument("job", help="path to the spec, or - for standard input")
    p.add_argument("--out", default="scalespace-results", help="output folder (default ./scalespace-results)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("processes", help="list the forward processes and their defaults")
    p.add_argument("--json", action="store_true", help="print the processes and their parameters as JSON")
    p.set_defaults(func=cmd_processes)
