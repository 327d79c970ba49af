"""Oracle sampling reproduces the training set: nearest-neighbour distances per process.

Runs a default `sample` job (the process's full T, the oracle over the digits
training set) for each process and prints, per process, the median and the
largest L2 distance of a sample to its nearest training image, beside the
median nearest-neighbour distance of held-out digits to the training set (the
scale of "a different image").

    python bench/memorisation.py [--n 16] [--data digits] [--steps S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalespace.data import load_dataset  # noqa: E402
from scalespace.jobs import run_job  # noqa: E402
from scalespace.jobs.images import from_npz  # noqa: E402
from scalespace.storage import LocalStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train = load_dataset(args.data).images.flatten(1)
    held = load_dataset(args.data, "heldout").images.flatten(1)
    scale = float(torch.cdist(held, train).min(1).values.median())
    print(f"data {args.data}: held-out images' median NN distance to the training set: {scale:.4f}")
    print(f"{'process':<10} {'steps':>6} {'median NN':>10} {'max NN':>10} {'max/held-out':>13} {'time (s)':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        for name in ("vp", "ve", "blurring", "heat", "osmosis"):
            spec = {"kind": "sample", "process": name, "data": args.data, "n": args.n, "seed": args.seed}
            if args.steps:
                spec["steps"] = args.steps
            t0 = time.perf_counter()
            m = run_job(spec, store)
            dt = time.perf_counter() - t0
            s = torch.from_numpy(from_npz(store.read_artifact(m["job_id"], "samples.npz", m))["samples"]).flatten(1)
            nn = torch.cdist(s, train).min(1).values
            steps = args.steps or m["summary"]["process"]["T"]
            print(f"{name:<10} {steps:>6} {float(nn.median()):>10.4f} {float(nn.max()):>10.4f} "
                  f"{float(nn.max()) / scale:>13.4f} {dt:>9.1f}")


if __name__ == "__main__":
    main()
