"""The GPU cases of bench/kernels.py: one per kernel at a size that fills the chip, and the end-to-end run.

Each case builds its inputs on the GPU, runs the kernel and its torch
reference, and checks the kernel against the reference (bit equality where
the kernel promises it, the docstring's error bound otherwise).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class Case:
    name: str
    size: str
    kind: str  # "bytes" (rate in GB/s against the copy ceiling) or "flops" / "flops64"
    amount: float  # bytes moved or useful FLOPs per call
    make: Callable[[], tuple]
    kernel: Callable[..., Any]
    reference: Callable[..., Any]
    check: Callable[[tuple], str]
    target: str = ""
    note: str = ""
    first: bool = False  # measured before the end-to-end run (the targets)


DEV = torch.device("cuda")  # bench/kernels.py --dry-run sets the CPU

# --- oracle tilings the benchmark runs beside the library's default (oracle_reduction.default_config) ---
#: the streaming kernel's tiles for wide 16-bit values, as before the chunked variant became the default
STREAMING_CONFIG = {"CHUNKED": 0, "BLOCK_N": 64, "BLOCK_DV": 512, "SPLIT": 4096, "num_warps": 8, "num_stages": 2}
#: the chunked variant's tiles of the first GPU run
CHUNKED_CONFIG = {"CHUNKED": 1, "BLOCK_B": 128, "BLOCK_N": 128, "BLOCK_D": 64, "BLOCK_DV": 128, "CHUNK": 8192,
                  "SPLIT": 1024, "num_warps": 8, "num_stages": 3}
#: the best of the chunked rows measured on an H200 (BLOCK_B 64, 4 warps); the library's default
#: (CHUNKED_DEFAULT_CONFIG) is this with the weighted sum 64 training images a step
CHUNKED_BEST_CONFIG = {**CHUNKED_CONFIG, "BLOCK_B": 64, "num_warps": 4}
#: a candidate not yet measured: 128 x 256 score tiles (fewer reads of the keys and queries from L2),
#: the weighted sum in 128-row blocks stepping 64 images at a time (oracle_chunked.py, PV_*)
CHUNKED_BIG_CONFIG = {**CHUNKED_CONFIG, "BLOCK_N": 256, "num_warps": 16, "PV_BLOCK_B": 128, "PV_BLOCK_K": 64, "PV_WARPS": 8}


def _gen() -> torch.Generator:
    return torch.Generator(device=DEV).manual_seed(1234)


def _bitwise(a: torch.Tensor, b: torch.Tensor) -> str:
    same = (a == b).float().mean().item()
    d = (a.double() - b.double()).abs().max().item()
    return f"bit-equal {100 * same:.4f}%, max|d| {d:.2e}"


def _within(err: float, bound: float) -> str:
    return f"max err/bound {err / bound:.2e} ({'OK' if err <= bound else 'ABOVE BOUND'})"


def build_cases(quick: bool, train: torch.Tensor, shrink: int = 1) -> list[Case]:
    """The cases; `shrink` divides every batch size (the dry run uses toy sizes)."""
    from scalespace.kernels import dispatch

    k = {name: dispatch.kernel(name) for name in dispatch.KERNEL_MODULES}
    det = dispatch.deterministic()
    from scalespace.kernels.philox import StepNoise
    from scalespace.processes import osmosis_scheme as scheme
    from scalespace.noise import normal

    s = (8 if quick else 1) * shrink
    cases: list[Case] = []

    # --- noise and the isotropic fused step: (B, 1, 64, 64) float32 ----------------------
    b = 32768 // s
    shape = (1, 64, 64)
    n_el = b * 4096
    ids = torch.arange(b, device=DEV) * 3 + 2**33

    def mk_step():
        g = _gen()
        return (torch.randn((b,) + shape, device=DEV, generator=g), 1.3 * torch.randn((b,) + shape, device=DEV, generator=g))

    cases.append(Case(
        "noise (Philox + Box-Muller)", f"{b}x1x64x64", "bytes", 4 * n_el + 8 * b,
        lambda: (), lambda: k["philox"].normal_triton(7, ids, 11, shape),
        lambda: normal(7, ids, 11, shape, device=DEV),
        lambda _: _bitwise(k["philox"].normal_triton(7, ids, 11, shape), normal(7, ids, 11, shape, device=DEV)),
        note="torch: the same counters in int64 on the GPU; float64 Box-Muller, 4 normals per counter",
    ))
    sn = StepNoise(7, ids, 11)

    def step_ref(u, u0):
        mean = torch.tensor(0.93, dtype=torch.float64).to(torch.float32) * u + torch.tensor(0.11, dtype=torch.float64).to(torch.float32) * u0.clamp(-1, 1)
        return mean + torch.tensor(0.3, dtype=torch.float64).to(torch.float32) * normal(7, ids, 11, shape, device=DEV)

    cases.append(Case(
        "fused step vp (with noise)", f"{b}x1x64x64 fp32", "bytes", 12 * n_el + 8 * b, mk_step,
        lambda u, u0: k["reverse_step"].reverse_step_triton(u, u0, 0.93, 0.11, 0.3, sn, clip=True, deterministic=det),
        step_ref,
        lambda inp: _bitwise(k["reverse_step"].reverse_step_triton(*inp, 0.93, 0.11, 0.3, sn, clip=True, deterministic=det), step_ref(*inp)),
        target=">= 80% of copy", note="Philox + float64 Box-Muller in the kernel (4 normals per counter): may be compute-bound", first=True,
    ))
    cases.append(Case(
        "fused step vp (last step, no noise)", f"{b}x1x64x64 fp32", "bytes", 12 * n_el, mk_step,
        lambda u, u0: k["reverse_step"].reverse_step_triton(u, u0, 0.93, 0.11, 0.0, None, clip=True, deterministic=det),
        lambda u, u0: 0.93 * u + 0.11 * u0.clamp(-1, 1),
        lambda inp: _bitwise(k["reverse_step"].reverse_step_triton(*inp, 0.93, 0.11, 0.0, None, clip=True, deterministic=det),
                             k["reverse_step"].reverse_step_reference(*inp, 0.93, 0.11, 0.0, None, clip=True)),
        target=">= 80% of copy",
    ))

    # --- spectral step and DCT operator: (B, 1, 28, 28) float32 ----------------------------
    b2 = 65536 // s
    hw = (28, 28)
    n2 = b2 * 784
    ids2 = torch.arange(b2, device=DEV)
    g = _gen()
    cut, cu0, std = (torch.rand(hw, device=DEV, dtype=torch.float64, generator=g) + 0.05 for _ in range(3))
    sn2 = StepNoise(3, ids2, 40)

    def mk_img():
        g = _gen()
        return torch.randn((b2, 1) + hw, device=DEV, generator=g), torch.randn((b2, 1) + hw, device=DEV, generator=g)

    def spectral_ref(u, u0):
        from scalespace.processes.dct import dct2, idct2

        mean = cut.float() * dct2(u) + cu0.float() * dct2(u0) + std.float() * normal(3, ids2, 40, (1,) + hw, device=DEV)
        return idct2(mean)

    def spectral_check(inp):
        got = k["spectral_step"].spectral_step_triton(*inp, cut, cu0, std, sn2, deterministic=det)
        ref = spectral_ref(*(t.double() for t in inp)).double()
        nrm = lambda t: t.double().flatten(-2).norm(dim=-1)  # noqa: E731
        bound = 1.1 * k["dct_operator"].rel_error_bound(28, torch.float32) * (nrm(inp[0]) + nrm(inp[1]) + 2 * math.sqrt(784))
        return _within(float((nrm(got - ref) / bound).max()), 1.0)

    cases.append(Case(
        "spectral step 28x28 (noise in DCT basis)", f"{b2}x1x28x28 fp32", "bytes", 12 * n2 + 8 * b2, mk_img,
        lambda u, u0: k["spectral_step"].spectral_step_triton(u, u0, cut, cu0, std, sn2, deterministic=det),
        spectral_ref, spectral_check, note="6 fp32 (ieee) DCT products per image + noise",
    ))
    scale = torch.rand(hw, device=DEV, dtype=torch.float64, generator=g) + 0.1

    def dct_check(inp):
        x = inp[0]
        got = k["dct_operator"].dct_scale_triton(x, scale, deterministic=det)
        ref = k["dct_operator"].dct_scale_reference(x.double(), scale)
        err = ((got.double() - ref).flatten(-2).norm(dim=-1) / (scale.max() * x.double().flatten(-2).norm(dim=-1))).max()
        return _within(float(err), k["dct_operator"].rel_error_bound(28, torch.float32))

    cases.append(Case(
        "DCT operator 28x28 (idct(a dct(x)))", f"{b2}x1x28x28 fp32", "bytes", 8 * n2, lambda: mk_img()[:1],
        lambda x: k["dct_operator"].dct_scale_triton(x, scale, deterministic=det),
        lambda x: k["dct_operator"].dct_scale_reference(x, scale), dct_check,
    ))

    # --- oracle: B = 1024 queries over n = 60,000 Fashion-MNIST images, D = 784 -----------
    bq = max(1024 // ((4 if quick else 1) * shrink), 2)
    flat = train[: max(len(train) // shrink, 64)].reshape(-1, 784).to(DEV)
    n, d = flat.shape
    abar, sigma2 = 0.0786, 1 - 0.0786  # vp at t = 500
    a = math.sqrt(abar)
    g = _gen()
    u = a * flat[torch.randint(0, n, (bq,), device=DEV, generator=g)] + math.sqrt(sigma2) * torch.randn(bq, d, device=DEV, generator=g)
    useful = 2.0 * bq * n * (d + d)
    # the default tiles (the best chunked tiles of the last H200 run), the streaming kernel, then other
    # tilings of the chunked two-product variant (scores once), side by side
    chunked = CHUNKED_CONFIG
    best = CHUNKED_BEST_CONFIG  # the fastest of the last run; the default steps its sum by 64
    # bigger score tiles read the keys and queries from L2 fewer times; the weighted sum then steps
    # through each 256-wide score tile 64 images at a time (PV_*: its own tiles)
    big = CHUNKED_BIG_CONFIG
    streaming = STREAMING_CONFIG
    alternatives = [streaming] if quick else [
        best, streaming, big, dict(big, PV_BLOCK_B=64, PV_WARPS=4), dict(best, PV_BLOCK_K=64, num_warps=8, PV_WARPS=4),
        chunked, dict(best, PV_BLOCK_K=64, PV_STAGES=4),
        dict(best, PV_BLOCK_K=64, CHUNK=16384), dict(best, PV_BLOCK_K=64, SPLIT=2048),
    ]
    # measured before the end-to-end rows (the rest when the budget allows): the default and the big tiles
    oracle_cases = [_oracle_case(k["oracle_reduction"], u, flat, a, 1 / sigma2, dtype, cfg, useful, det,
                                 first=dtype == torch.bfloat16 and (cfg is None or cfg is big or cfg is best))
                    for dtype, configs in ((torch.bfloat16, [None] + alternatives), (torch.float32, [None]))
                    for cfg in configs]

    # --- osmosis: 50 explicit steps per launch, (B, 1, 28, 28) float32 ----------------------
    b3 = 16384 // s
    steps = 50
    g = _gen()
    v = torch.rand((1, 1) + hw, device=DEV, generator=g) + 0.5
    dr = scheme.drift(v)
    tau = (0.9 * dr.stable_tau()).reshape(1, 1, 1, 1)
    nst = torch.full((1,), steps, device=DEV)

    def osm_check(inp):
        got = k["osmosis_stencil"].osmosis_explicit_triton(inp[0], dr, tau, nst, deterministic=det)
        ref = k["osmosis_stencil"].osmosis_explicit_reference(inp[0], dr, tau, nst)
        return _bitwise(got, ref)

    cases.append(Case(
        f"osmosis stencil ({steps} steps per launch)", f"{b3}x1x28x28 fp32", "bytes", steps * 8 * b3 * 784 + 8 * 784,
        lambda: (torch.rand((b3, 1) + hw, device=DEV, generator=_gen()) + 1.0,),
        lambda x: k["osmosis_stencil"].osmosis_explicit_triton(x, dr, tau, nst, deterministic=det),
        lambda x: k["osmosis_stencil"].osmosis_explicit_reference(x, dr, tau, nst), osm_check,
        target=">= 80% of copy (effective)", note="effective bytes: 8 per pixel per step, as an unfused loop moves",
        first=True,
    ))
    variants = [({"l1": True}, "scratch reads through L1"),
                ({"lanes": 2048, "num_warps": 4}, "the tiling before 0.2.0: 255 registers a thread on sm_90"),
                ({"l1": True, "lanes": 2048, "num_warps": 4}, "the tiling before 0.2.0, scratch reads through L1")]
    for opt, what in variants:  # bench the variants beside the default; all must be bit-equal
        cases.append(Case(
            f"osmosis stencil ({steps} steps per launch) {opt}", f"{b3}x1x28x28 fp32", "bytes",
            steps * 8 * b3 * 784 + 8 * 784,
            lambda: (torch.rand((b3, 1) + hw, device=DEV, generator=_gen()) + 1.0,),
            lambda x, opt=opt: k["osmosis_stencil"].osmosis_explicit_triton(x, dr, tau, nst, deterministic=det, **opt),
            lambda x: k["osmosis_stencil"].osmosis_explicit_reference(x, dr, tau, nst),
            lambda inp, opt=opt: _bitwise(k["osmosis_stencil"].osmosis_explicit_triton(inp[0], dr, tau, nst, deterministic=det, **opt),
                                          k["osmosis_stencil"].osmosis_explicit_reference(inp[0], dr, tau, nst)),
            target=">= 80% of copy (effective)", note=f"effective bytes as above; {what}",
        ))

    # --- statistics ------------------------------------------------------------------------
    b4 = 131072 // s
    mk_feat = lambda: (torch.randn(b4, 784, device=DEV, generator=_gen()) * 0.5 + 0.2,)  # noqa: E731

    def mom_check(inp):
        s_, q_ = k["moments"].pixel_moments_triton(inp[0], deterministic=det)
        rs, rq = k["moments"].pixel_moments_reference(inp[0])
        bs, bqq = k["moments"].error_bound(inp[0])
        return _within(max(float(((s_ - rs).abs() / bs).max()), float(((q_ - rq).abs() / bqq).max())), 1.0)

    cases.append(Case(
        "per-pixel sums and squares (fp64 acc.)", f"{b4}x784 fp32", "bytes", 4 * b4 * 784, mk_feat,
        lambda x: k["moments"].pixel_moments_triton(x, deterministic=det),
        lambda x: k["moments"].pixel_moments_reference(x), mom_check,
    ))
    cases.append(Case(
        "grey-value histograms (64 bins)", f"{b4}x784 fp32", "bytes", 4 * b4 * 784, mk_feat,
        lambda x: k["histogram"].histogram_triton(x, 64),
        lambda x: k["histogram"].histogram_reference(x, 64),
        lambda inp: "equal" if torch.equal(k["histogram"].histogram_triton(inp[0], 64), k["histogram"].histogram_reference(inp[0], 64)) else "DIFFERENT",
    ))
    b5, d5 = 32768 // s, 2048

    def sm_check(inp):
        got = k["second_moment"].second_moment_triton(inp[0], deterministic=det)
        ref = k["second_moment"].second_moment_reference(inp[0])
        return _within(float(((got - ref).abs() / k["second_moment"].error_bound(inp[0])).max()), 1.0)

    cases.append(Case(
        "second moment D x D (fp64)", f"{b5}x{d5} fp32", "flops64", float(b5) * d5 * d5,
        lambda: (torch.randn(b5, d5, device=DEV, generator=_gen()),),
        lambda x: k["second_moment"].second_moment_triton(x, deterministic=det),
        lambda x: k["second_moment"].second_moment_reference(x), sm_check,
        note="useful FLOPs B D^2 (upper triangle); no fp64 ceiling measured",
    ))
    return cases + oracle_cases  # the oracle variants last: the slowest to compile


def _oracle_case(mod, u, flat, a, inv_var, dtype, cfg, useful, det, first: bool = False) -> Case:
    def make():
        keys = flat.to(dtype)
        return (a * u).to(dtype), keys, ((a * flat) ** 2).sum(1).to(dtype), keys

    def check(inp):
        got = mod.oracle_reduction_triton(*inp, inv_var, deterministic=det, config=cfg)
        ref = mod.oracle_reduction_reference(*inp, inv_var, 4096)
        bound = mod.error_bound(*inp, inv_var, ref[2])
        worst = max(float(((got[0] - ref[0]).abs().amax(1) / bound["mean"]).max()),
                    float(((got[1] - ref[1]).abs() / bound["lse"]).max()),
                    float(((got[2] - ref[2]).abs() / bound["entropy"]).max()))
        half = mod.oracle_reduction_triton(*(t[: len(t) // 2] if i == 0 else t for i, t in enumerate(inp)), inv_var,
                                           deterministic=det, config=cfg)
        again = mod.oracle_reduction_triton(*inp, inv_var, deterministic=det, config=cfg)
        rows = all(torch.equal(x[: len(x) // 2], y) for x, y in zip(got, half))
        rerun = all(torch.equal(x, y) for x, y in zip(got, again))
        return f"{_within(worst, 1.0)}; rows batch-independent: {rows}; rerun equal: {rerun}"

    b, n, d = u.shape[0], flat.shape[0], flat.shape[1]
    name = f"oracle {str(dtype).replace('torch.', '')}" + (f" {cfg}" if cfg else " (default tiles)")
    chunked = dict(mod.default_config(n, d, d, b, dtype), **(cfg or {}))["CHUNKED"]
    return Case(
        name, f"B={b} n={n} D={d}", "flops", useful, make,
        lambda q, k_, ksq, v: mod.oracle_reduction_triton(q, k_, ksq, v, inv_var, deterministic=det, config=cfg),
        lambda q, k_, ksq, v: mod.oracle_reduction_reference(q, k_, ksq, v, inv_var, 4096),
        check, target=">= 50% of bf16 matmul" if dtype == torch.bfloat16 else "",
        note="useful FLOPs 2 B n (D + Dv); " + (
            "chunked: scores once, (B, CHUNK) scratch" if chunked
            else "streaming: score tiles recomputed per Dv block") + (
            "; float32: the dispatch uses the torch reference (cuBLAS) unless forced" if dtype == torch.float32 else ""),
        first=first,
    )


def end_to_end(train: torch.Tensor, quick: bool, deadline: float, shrink: int = 1) -> list[dict]:
    """100-step vp oracle sample of 1,024 images over all training images: kernels (bf16, fp32) and torch."""
    from scalespace.denoisers.oracle import OracleDenoiser
    from scalespace.kernels import dispatch
    from scalespace.processes import make_process
    from scalespace.sampling.pipeline import generate

    steps = 20 if quick else 100
    n_samples = 1024 // shrink
    if shrink > 1:
        steps, train = 3, train[: len(train) // shrink]
    proc = make_process("vp", (1, 28, 28))
    dev = DEV
    tr = train.to(dev)
    rows = []
    orc = dispatch.kernel("oracle_reduction")
    default_config = orc.default_config
    for label, mode, dtype in (("kernels, bf16 oracle", "auto", torch.bfloat16),
                               ("kernels, bf16 oracle, 128 x 256 score tiles", "auto", torch.bfloat16),
                               ("auto dispatch, fp32 oracle = torch reference", "auto", torch.float32),
                               ("torch reference, bf16 oracle", "reference", torch.bfloat16)):
        # the big tiles: the oracle kernel's default tiles replaced for this row only
        orc.default_config = (lambda *a: dict(default_config(*a), **CHUNKED_BIG_CONFIG)) if "256" in label \
            else default_config
        name = f"end to end: vp {steps} steps, {n_samples} samples, n={len(tr)} ({label})"
        if time.perf_counter() > deadline:
            rows.append({"kernel": name, "note": "skipped: time budget spent"})
            continue
        if DEV.type == "cpu" and mode == "auto":
            mode = "triton"  # the dry run: kernels in the interpreter
        try:
            with dispatch.override(kernels=mode):
                den = OracleDenoiser(proc, tr, chunk=4096, dtype=dtype)
                run = lambda k: generate(proc, den, n_samples, seed=0, batch_size=n_samples, steps=k, device=dev)  # noqa: E731
                _sync()
                t0 = time.perf_counter()
                run(2)  # compiles the kernels, warms the caches
                _sync()
                t_warm = time.perf_counter() - t0
                if t_warm * steps / 2 > max(deadline - time.perf_counter(), 0) + 30:
                    rows.append({"kernel": name, "note": f"skipped: 2 steps took {t_warm:.1f} s"})
                    continue
                t0 = time.perf_counter()
                out = run(steps)
                _sync()
                total = time.perf_counter() - t0
            ok = bool(torch.isfinite(out).all())
            rows.append({"kernel": name, "size": f"{n_samples}x1x28x28", "triton_ms": f"{1e3 * total:.0f}",
                         "rate": f"{steps / total:.0f} steps/s", "target": "< 1 s" if steps == 100 else "",
                         "note": f"{'finite' if ok else 'NON-FINITE'} samples; includes the prior noise (CPU) and copies"})
        except Exception as e:  # noqa: BLE001 - one failing variant must not stop the others
            msg = str(e).strip().splitlines()
            rows.append({"kernel": name, "note": f"FAILED: {type(e).__name__}: {msg[-1][:160] if msg else ''}"})
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    orc.default_config = default_config
    return rows


def _sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()
