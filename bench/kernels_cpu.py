"""The --cpu part of bench/kernels.py: CPU figures of the torch references, interpreter checks, oracle memory.

No GPU is needed: each kernel's torch reference is timed on the CPU at a
small size, each Triton kernel runs once in the interpreter (TRITON_INTERPRET=1,
set by bench/kernels.py before anything imports a kernel) and is compared
with its reference, and the oracle reference's peak memory is measured for
n = 15,000 .. 60,000 training images (peak resident memory above the
baseline, via /proc/self/status after resetting the high-water mark): it must
stay O(batch x D + chunk x D + batch x chunk), independent of n.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import math
import platform
import re
import time
from pathlib import Path
from typing import Any, Callable

import torch


def _cases():
    from scalespace.kernels import dispatch
    from scalespace.kernels.philox import StepNoise
    from scalespace.processes import osmosis_scheme as scheme

    k = {name: dispatch.kernel(name) for name in dispatch.KERNEL_MODULES}
    g = torch.Generator().manual_seed(5)
    b, shape = 64, (1, 28, 28)
    u, u0 = torch.randn((b,) + shape, generator=g), 1.3 * torch.randn((b,) + shape, generator=g)
    n_el = u.numel()
    sn = StepNoise(7, torch.arange(b), 11)
    cut, cu0, std = (torch.rand(28, 28, generator=g, dtype=torch.float64) + 0.05 for _ in range(3))
    v = torch.rand(1, 1, 28, 28, generator=g) + 0.5
    dr = scheme.drift(v)
    tau, nst = (0.9 * dr.stable_tau()).reshape(1, 1, 1, 1), torch.tensor([50])
    x = torch.rand((b,) + shape, generator=g) + 1.0
    feats = torch.randn(512, 784, generator=g)
    flat = torch.randn(2000, 784, generator=g) * 0.5
    q = 0.3 * flat[:32] + torch.randn(32, 784, generator=g)
    ksq = (0.3 * flat).pow(2).sum(1)
    rs = k["reverse_step"]
    return [
        # name, bytes moved (or None), reference, kernel, compare(kernel_out, reference_out) -> str
        ("noise (Philox + Box-Muller)", 4 * n_el, lambda: sn.reference(shape),
         lambda: k["philox"].normal_triton(7, sn.ids, 11, shape), "equal"),
        ("fused step vp (with noise)", 12 * n_el, lambda: rs.reverse_step_reference(u, u0, 0.93, 0.11, 0.3, sn, True),
         lambda: rs.reverse_step_triton(u, u0, 0.93, 0.11, 0.3, sn, True), "equal"),
        ("spectral step 28x28", 12 * n_el, lambda: k["spectral_step"].spectral_step_reference(u, u0, cut, cu0, std, sn),
         lambda: k["spectral_step"].spectral_step_triton(u, u0, cut, cu0, std, sn), "close"),
        ("DCT operator 28x28", 8 * n_el, lambda: k["dct_operator"].dct_scale_reference(u, cut),
         lambda: k["dct_operator"].dct_scale_triton(u, cut), "close"),
        ("osmosis stencil (50 steps)", 50 * 8 * n_el, lambda: k["osmosis_stencil"].osmosis_explicit_reference(x, dr, tau, nst),
         lambda: k["osmosis_stencil"].osmosis_explicit_triton(x, dr, tau, nst), "equal"),
        ("oracle fp32 B=32 n=2000 D=784", None, lambda: k["oracle_reduction"].oracle_reduction_reference(q, flat, ksq, flat, 1 / 400),
         lambda: k["oracle_reduction"].oracle_reduction_triton(q, flat, ksq, flat, 1 / 400), "close"),
        ("per-pixel sums and squares", 4 * feats.numel(), lambda: k["moments"].pixel_moments_reference(feats),
         lambda: k["moments"].pixel_moments_triton(feats), "close"),
        ("second moment 784 x 784", None, lambda: k["second_moment"].second_moment_reference(feats),
         lambda: k["second_moment"].second_moment_triton(feats), "close"),
        ("grey-value histograms", 4 * feats.numel(), lambda: k["histogram"].histogram_reference(feats, 64),
         lambda: k["histogram"].histogram_triton(feats, 64), "equal"),
    ]


def _one_normal_per_counter(seed: int, ids: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise scheme before four normals per counter: one Philox evaluation and one
    Box-Muller cosine per element (kept here only to time the two side by side)."""
    from scalespace.noise import box_muller, counter_words

    d = math.prod(shape)
    e = torch.arange(d, dtype=torch.int64)[None, :].expand(len(ids), d)
    r0, r1, _, _ = counter_words(e, ids[:, None].expand(len(ids), d), step, 0, seed)
    z = box_muller(r0, r1)[0]
    return z.to(torch.float32).reshape((len(ids),) + tuple(shape))


def noise_side_by_side(rep, timer: Callable[..., float]) -> None:
    """CPU time of the reference noise, four normals per counter against one, in the same run."""
    from scalespace.noise import normal

    ids = torch.arange(256)
    for shape in [(1, 28, 28), (3, 32, 32)]:
        new = timer(lambda: normal(7, ids, 11, shape), reps=5)
        old = timer(lambda: _one_normal_per_counter(7, ids, 11, shape), reps=5)
        rep.row(kernel="noise reference: 4 normals per counter vs 1", size=f"256x{'x'.join(map(str, shape))}",
                torch_ms=f"{new:.2f}", rate=f"{old / new:.1f}x faster", note=f"one normal per counter: {old:.2f} ms")


def _max_rel(a: Any, b: Any) -> float:
    if isinstance(a, (tuple, list)):
        return max(_max_rel(x, y) for x, y in zip(a, b))
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _trim() -> None:
    """Return freed heap memory to the OS (glibc), so the baseline is what is live."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def oracle_peak_mb(train: torch.Tensor, n: int, batch: int, chunk: int) -> tuple[float, float]:
    """(peak MB above the baseline during one oracle posterior, seconds) for vp at t = 500."""
    from scalespace.denoisers.oracle import OracleDenoiser
    from scalespace.kernels import dispatch
    from scalespace.processes import make_process

    proc = make_process("vp", (1, 28, 28))
    with dispatch.override(kernels="reference"):
        den = OracleDenoiser(proc, train[:n], chunk=chunk)
        den.posterior(train[:2], 500)  # one-time set-up (thread pools, BLAS buffers) outside the measurement
        g = torch.Generator().manual_seed(0)
        u = math.sqrt(0.0786) * train[torch.randint(0, n, (batch,), generator=g)] + math.sqrt(0.9214) * torch.randn(batch, 1, 28, 28, generator=g)
        _trim()
        base = _status_kb("VmRSS")
        if base is None or not _reset_peak():
            raise OSError("peak memory needs Linux /proc/self/clear_refs")
        t0 = time.perf_counter()
        res = den.posterior(u, 500)
        dt = time.perf_counter() - t0
        peak = _status_kb("VmHWM")
    del res, den
    gc.collect()
    return (peak - base) / 1024, dt


def cpu_main(args, rep, timer: Callable[..., float]) -> None:
    from bench.fashion import load_fashion

    rep.info("device", f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    rep.info("GPU figures", "pending: run `python bench/kernels.py` on a GPU")
    for name, nbytes, ref, ker, how in _cases():
        try:
            ms = timer(ref, reps=3)
            rate = f"{nbytes / ms / 1e6:.3g} GB/s" if nbytes else ""
            got, want = ker(), ref()
            if how == "equal":
                same = all(torch.equal(a, b) for a, b in zip(got, want)) if isinstance(got, tuple) else torch.equal(got, want)
                err = "equal (interpreter)" if same else f"DIFFERENT, max rel {_max_rel(got, want):.1e}"
            else:
                err = f"max rel diff {_max_rel(got, want):.1e} (interpreter)"
            rep.row(kernel=name, size="small", torch_ms=f"{ms:.2f}", rate=rate, error=err, note="torch reference on the CPU")
        except Exception as e:  # noqa: BLE001 - report and go on
            rep.row(kernel=name, note=f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")

    noise_side_by_side(rep, timer)

    train, source = load_fashion(args.fashion_npz)
    rep.info("oracle memory data", source)
    d = 784
    configs = [(15_000, 256, 4096), (30_000, 256, 4096), (60_000, 256, 4096), (60_000, 256, 1024), (60_000, 256, 16384),
               (60_000, 64, 4096), (60_000, 1024, 4096)]
    if args.quick:
        configs = configs[:3]
    for n, b, c in configs:
        try:
            mb, secs = _probe_in_subprocess(args.fashion_npz, n, b, c)
        except Exception as e:  # noqa: BLE001
            rep.row(kernel=f"oracle reference memory n={n}", note=f"FAILED: {e}")
            continue
        terms = f"B*D*8={b * d * 8 / 2**20:.1f} MB, chunk*D*4={c * d * 4 / 2**20:.1f} MB, B*chunk*4={b * c * 4 / 2**20:.1f} MB"
        rep.row(kernel=f"oracle reference peak memory n={n}", size=f"B={b} chunk={c} D={d}", torch_ms=f"{1e3 * secs:.0f}",
                rate=f"{mb:.1f} MB peak", note=f"{terms}; a B x n matrix would be {b * n * 8 / 2**20:.0f} MB (float64)")
    rep.note("peak memory: resident-set high-water mark above the baseline (training set loaded, one warm-up call), "
             "one fresh process per row, /proc/self/status")


def _probe_in_subprocess(npz: str | None, n: int, b: int, c: int) -> tuple[float, float]:
    """oracle_peak_mb in a fresh interpreter, so no earlier allocation hides in the baseline."""
    cmd = [sys.executable, str(Path(__file__).resolve()), str(n), str(b), str(c)] + ([npz] if npz else [])
    # a fixed mmap threshold: every large block is mapped and unmapped, so the resident set is what is live
    # (glibc otherwise raises the threshold and keeps freed blocks in a heap that grows with fragmentation)
    env = {**os.environ, "SCALESPACE_KERNELS": "reference", "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["peak_mb"], res["seconds"]


if __name__ == "__main__":  # the probe: python bench/kernels_cpu.py N BATCH CHUNK [NPZ]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.fashion import load_fashion

    n_, b_, c_ = (int(a) for a in sys.argv[1:4])
    data, _ = load_fashion(sys.argv[4] if len(sys.argv) > 4 else None)
    mb_, s_ = oracle_peak_mb(data, n_, b_, c_)
    print(json.dumps({"peak_mb": mb_, "seconds": s_}))
