"""Training commands: `train` (fit and register a denoiser, embedded) and `models` (list them)."""

from __future__ import annotations

import argparse
from typing import Any

from scalespace.cli.common import add_job_options, print_json, spec_choices
from scalespace.cli.embedded import _params, run_embedded
from scalespace.jobs.specs import TrainSpec, parse_spec
from scalespace.storage import LocalStore


def cmd_train(args: argparse.Namespace) -> int:
    from scalespace.jobs.run import new_job_id  # imports torch: only when a job runs

    spec: dict[str, Any] = {"kind": "train", "process": args.process, "data": args.data, "preset": args.preset,
                            "seed": args.seed}
    for key in ("steps", "batch_size", "lr", "ema_decay", "data_size", "data_limit", "eval_every",
                "eval_samples", "eval_steps", "checkpoint_every", "device", "objective"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.param:
        spec["process_params"] = _params(args.param)
    if args.network:
        spec["network"] = _params(args.network)
    parsed = parse_spec(spec)
    store = LocalStore(args.out)
    job_id = args.job_id or new_job_id(parsed)
    manifest = run_embedded(parsed, store, job_id, args.quiet,
                            "to resume it from its last checkpoint (written every --checkpoint-every steps), "
                            f"run the same command with --job-id {job_id}")
    s = manifest["summary"]
    ev = s["evaluation"]
    print(f"train job {manifest['job_id']} succeeded: {store.location('jobs', manifest['job_id'])}")
    print(f"model {s['model_id']}: {s['steps']} steps in {s['train_s']:.0f} s, final loss {s['final_loss']:.4g}, "
          f"Fréchet distance ({ev['extractor']}, {ev['n_samples']} samples) {ev['fd']:.4g}")
    print(f"sample with: scalespace sample --process {args.process} --data {args.data} --model {s['model_id']}"
          + (f" --out {args.out}" if args.out != "scalespace-results" else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from scalespace.denoisers.checkpoints import list_models  # imports torch: only for this command

    cards = list_models(LocalStore(args.out))
    if args.json:
        print_json(cards)
        return 0
    if not cards:
        print(f"no models registered in {args.out}; train one with 'scalespace train --process vp --data digits'")
        return 0
    for c in cards:
        if "error" in c:
            print(f"{c['id']:<28} ERROR {c['error']}")
            continue
        d, t, ev = c["data"], c["training"], c.get("figures", {}).get("evaluation") or {}
        fd = f"FD({ev.get('extractor')}, n={ev.get('n_samples')}) {ev['fd']:.4g}" if "fd" in ev else ""
        print(f"{c['id']:<28} {c['process']['name']:<9} {d['name']}{'@' + str(d['size']) if d.get('size') else ''} "
              f"{c['network']['preset']} ({c['network']['parameters']} params, {c['objective']}) "
              f"{t['steps']} steps {t['time_s']:.0f} s {fd}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a denoiser for one process and register it as a model (embedded)")
    p.add_argument("--process", required=True, help="vp, ve, blurring, heat or osmosis")
    p.add_argument("--data", required=True, help="fashion-mnist, digits or gaussian-mixture")
    p.add_argument("--preset", choices=spec_choices(TrainSpec, "preset"), default="tiny",
                   help="network size and training defaults (default tiny)")
    p.add_argument("--steps", type=int, help="optimisation steps (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--ema-decay", type=float, help="decay of the weights' moving average (default: the preset's)")
    p.add_argument("--objective", choices=spec_choices(TrainSpec, "objective"),
                   help="what the network predicts (default auto: the process's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and noise (default 0)")
    p.add_argument("--eval-every", type=int, help="evaluate every k steps (default: only at the end)")
    p.add_argument("--eval-samples", type=int, help="samples drawn at each periodic evaluation (default: the preset's)")
    p.add_argument("--eval-steps", type=int, help="reverse steps per evaluation sample")
    p.add_argument("--checkpoint-every", type=int, help="save the training state every k steps")
    p.add_argument("--network", action="append", metavar="KEY=VALUE", help="a U-Net field, e.g. channels=32")
    p.add_argument("--job-id", help="resume this job id from its last checkpoint (default: a new id)")
    add_job_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--out", default="scalespace-results", help="the results folder to look in")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.set_defaults(func=cmd_models)
