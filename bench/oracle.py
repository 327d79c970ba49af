"""Benchmark: the streaming oracle against a naive batch x n implementation.

One reverse step of `vp` (t = 500, the oracle's posterior plus the ancestral
update) over all 60,000 Fashion-MNIST training images, for each batch size
of --batches (default 64, 256): the time per step of each variant, their
ratio streaming / naive (below 1: the streaming oracle is faster), and the
peak memory of each variant above its baseline, with the ratio naive /
streaming.

Times are measured side by side in one process, with the same threads: the
two variants alternate step by step (after one warm-up step each) for
--repeat rounds, and each figure is the median of its rounds, so both see
the same load on a shared machine. Wall-clock and process CPU time are both
given. Peak memory (resident set on the CPU, max allocated on CUDA) is
measured in a fresh subprocess per variant and batch, so that each peak is
the variant's own.

    python bench/oracle.py [--batches 64,256] [--repeat 5] [--device cpu|cuda] [--chunk N] [--fashion-npz PATH]

--chunk defaults to the oracle's own default (`OracleDenoiser`).
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


def run_variant(variant: str, batch: int, device: str, repeat: int, npz: str | None, chunk: int | None) -> dict:
    """variant 'streaming' or 'naive': peak memory of one step; 'both': alternating timed steps."""
    from scalespace.denoisers import OracleDenoiser
    from scalespace.processes import make_process
    from scalespace.noise import NoiseSource
    from scalespace.sampling.samplers import sample_ancestral

    train, source = load_train(npz)
    dev = torch.device(device)
    train = train.to(dev)
    p = make_process("vp", (1, 28, 28))
    oracle = OracleDenoiser(p, train) if chunk is None else OracleDenoiser(p, train, chunk=chunk)
    flat = train.flatten(1)
    noise = NoiseSource(0, torch.arange(batch), p.shape, dev)
    u = p.sample_prior(noise(p.T, 1)).to(dev)
    t, s = 500, 499

    class Naive:
        def predict_u0(self, x, i, ids=None):
            return naive_posterior_mean(p, flat, x, i)

    dens = {"streaming": oracle, "naive": Naive()}

    def step(name):
        out = sample_ancestral(p, dens[name], u, [t, s], noise)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    info = {"variant": variant, "data": source, "batch": batch, "n": train.shape[0], "device": device,
            "chunk": oracle.chunk, "threads": torch.get_num_threads()}
    if variant == "both":
        wall = {k: [] for k in dens}
        cpu = {k: [] for k in dens}
        for name in dens:
            step(name)  # warm-up
        for _ in range(repeat):
            for name in dens:
                t0, c0 = time.perf_counter(), time.process_time()
                step(name)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        for name in dens:
            info[f"{name}_s"] = statistics.median(wall[name])
            info[f"{name}_cpu_s"] = statistics.median(cpu[name])
        return info
    base = rss_mb()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    step(variant)
    peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20 if dev.type == "cuda" else rss_mb() - base
    info["peak_extra_mb"] = peak
    return info


def subprocess_run(variant: str, batch: int, args) -> dict | None:
    cmd = [sys.executable, __file__, "--variant", variant, "--batches", str(batch), "--device", args.device,
           "--repeat", str(args.repeat)]
    if args.chunk is not None:
        cmd += ["--chunk", str(args.chunk)]
    if args.fashion_npz:
        cmd += ["--fashion-npz", args.fashion_npz]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{variant}, batch {batch}: failed\n{out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="64,256", help="comma-separated batch sizes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (each: one step of each variant)")
    ap.add_argument("--chunk", type=int, default=None, help="the oracle's chunk (default: the oracle's default)")
    ap.add_argument("--fashion-npz")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.variant:
        print(json.dumps(run_variant(args.variant, batches[0], args.device, args.repeat, args.fashion_npz, args.chunk)))
        return
    rows = []
    for batch in batches:
        timed = subprocess_run("both", batch, args) or {}
        mem = {v: (subprocess_run(v, batch, args) or {}).get("peak_extra_mb", math.nan) for v in ("streaming", "naive")}
        rows.append({"batch": batch, **timed, "streaming_peak_mb": mem["streaming"], "naive_peak_mb": mem["naive"]})
    nan = math.nan
    first = rows[0]
    print(f"oracle reverse step, vp t=500, n = {first.get('n')} ({first.get('data')}), device {args.device}, "
          f"chunk {first.get('chunk')}, {first.get('threads')} threads, median of {args.repeat} alternating rounds")
    print(f"{'batch':>6} {'streaming (s)':>14} {'naive (s)':>10} {'time s/n':>9} {'cpu s/n':>8} "
          f"{'streaming peak (MiB)':>21} {'naive peak (MiB)':>17} {'memory n/s':>11}")
    for r in rows:
        st, nv = r.get("streaming_s", nan), r.get("naive_s", nan)
        cs, cn = r.get("streaming_cpu_s", nan), r.get("naive_cpu_s", nan)
        ms, mn = r["streaming_peak_mb"], r["naive_peak_mb"]
        print(f"{r['batch']:>6} {st:>14.4f} {nv:>10.4f} {st / nv:>9.2f} {cs / cn:>8.2f} {ms:>21.1f} {mn:>17.1f} "
              f"{mn / max(ms, 1e-9):>11.2f}")
    print("time s/n, cpu s/n: streaming / naive (wall clock, process CPU time); memory n/s: naive / streaming")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
