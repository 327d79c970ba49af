"""Benchmark: the streaming oracle against a naive batch x n implementation.

One reverse step of `vp` (t = 500, the oracle's posterior plus the ancestral
update) for a batch of 256 over all 60,000 Fashion-MNIST training images:
time per step (median of --repeat runs) and peak memory of each variant, and
their ratios, measured side by side in one run. Each variant runs in its own
subprocess so that peak memory (RSS on the CPU, max allocated on CUDA) is its
own.

    python bench/oracle.py [--batch 256] [--device cpu|cuda] [--fashion-npz PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_train(npz: str | None) -> tuple[torch.Tensor, str]:
    if npz:
        import numpy as np

        with np.load(npz, allow_pickle=False) as f:
            x = torch.from_numpy(f["train"].astype("float32"))[:, None] / 127.5 - 1
        return x, f"fashion-mnist ({npz})"
    try:
        from scalespace.data import load_dataset

        return load_dataset("fashion-mnist").images, "fashion-mnist"
    except Exception:
        g = torch.Generator().manual_seed(0)
        return torch.rand(60_000, 1, 28, 28, generator=g) * 2 - 1, "random stand-in (no fashion-mnist found)"


def naive_posterior_mean(process, train_flat: torch.Tensor, u: torch.Tensor, i: int) -> torch.Tensor:
    """Materialises the (batch x n) distance matrix: what the streaming oracle avoids."""
    a = float(process.alpha(i))
    s = process.sigma(i)
    d2 = torch.cdist(u.flatten(1), a * train_flat) ** 2  # (B, n)
    w = torch.softmax(-d2 / (2 * s * s), dim=1)
    return (w @ train_flat).reshape(u.shape)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, batch: int, device: str, repeat: int, npz: str | None, chunk: int) -> dict:
    from scalespace.denoisers import OracleDenoiser
    from scalespace.processes import make_process
    from scalespace.noise import NoiseSource
    from scalespace.sampling.samplers import sample_ancestral

    train, source = load_train(npz)
    dev = torch.device(device)
    train = train.to(dev)
    p = make_process("vp", (1, 28, 28))
    oracle = OracleDenoiser(p, train, chunk=chunk)
    flat = train.flatten(1)
    noise = NoiseSource(0, torch.arange(batch), p.shape, dev)
    u = p.sample_prior(noise(p.T, 1)).to(dev)
    t, s = 500, 499

    class Naive:
        def predict_u0(self, x, i, ids=None):
            return naive_posterior_mean(p, flat, x, i)

    den = oracle if variant == "streaming" else Naive()

    def step():
        out = sample_ancestral(p, den, u, [t, s], noise)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    base = rss_mb()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    step()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20 if dev.type == "cuda" else rss_mb() - base
    return {"variant": variant, "step_s": statistics.median(times), "peak_extra_mb": peak, "data": source,
            "batch": batch, "n": train.shape[0], "device": device, "chunk": chunk}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--fashion-npz")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.batch, args.device, args.repeat, args.fashion_npz, args.chunk)))
        return
    rows = []
    for variant in ("streaming", "naive"):
        cmd = [sys.executable, __file__, "--variant", variant, "--batch", str(args.batch), "--device", args.device,
               "--repeat", str(args.repeat), "--chunk", str(args.chunk)]
        if args.fashion_npz:
            cmd += ["--fashion-npz", args.fashion_npz]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{variant}: failed\n{out.stderr[-2000:]}")
            rows.append({"variant": variant, "step_s": math.nan, "peak_extra_mb": math.nan})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    s, n = rows
    print(f"oracle reverse step, vp t=500, batch {args.batch}, n = {s.get('n')} ({s.get('data')}), device {args.device}")
    print(f"{'variant':<10} {'time/step (s)':>14} {'peak extra (MiB)':>17}")
    for r in rows:
        print(f"{r['variant']:<10} {r['step_s']:>14.4f} {r['peak_extra_mb']:>17.1f}")
    print(f"ratio naive/streaming: time {n['step_s'] / s['step_s']:.2f}x, peak memory "
          f"{n['peak_extra_mb'] / max(s['peak_extra_mb'], 1e-9):.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
