"""Compile the kernels for a GPU on any machine: what a GPU would run, without one.

    python bench/aot.py                 # sm_90 (H100/H200), a table
    python bench/aot.py --arch 80 --json

Each kernel wrapper of shared/kernels runs once on small CPU tensors with
`JITFunction.run` replaced: instead of launching, every launch is compiled
ahead of time for the chosen CUDA architecture (Triton's own front end, LLVM
and the ptxas it ships), with the arguments, specialisations, constexprs and
options the wrapper passes on a GPU. The report gives per kernel and
configuration its registers per thread, local memory (spills) and stack,
static shared memory, the static SASS instruction count and whether it fits
the architecture's shared memory per block. Nothing runs on a device, so the
wrappers' outputs are meaningless here; the point is that every kernel and
variant compiles for the GPU and what it costs in registers and memory.

Needs triton with its NVIDIA backend (the `gpu` or `test` extras) and
TRITON_INTERPRET unset or 0: it must be set before any kernel module is
imported, so run this script in a process of its own (the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: shared memory per block (bytes) a kernel may use, by compute capability (opt-in maximum)
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}


@dataclass
class Compiled:
    """One compiled launch configuration."""

    case: str
    kernel: str
    constexprs: dict[str, Any]
    num_warps: int
    num_stages: int
    registers: int | None = None
    local_bytes: int | None = None
    stack_bytes: int | None = None
    shared_bytes: int = 0
    sass_instructions: int = 0
    fits_shared: bool = True
    mma: str = ""  # the tensor-core instructions: HGMMA (Hopper warp-group MMA) or HMMA (mma.sync), with counts
    top_instructions: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Report:
    arch: int
    triton: str
    compiled: list[Compiled] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def _bin(tool: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


def _resources(cubin: bytes) -> tuple[dict[str, int], Counter]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([_bin("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([_bin("cuobjdump"), "-sass", f.name], capture_output=True, text=True, check=True).stdout
    fields = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", sass)
    return fields, Counter(op for op in ops if op != "NOP")


class _Capture:
    """Replaces JITFunction.run: compile each launch for `arch` instead of running it."""

    def __init__(self, arch: int, report: Report):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend

        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.report = report
        self.case = ""
        self.seen: set[tuple] = set()

    def run(self, fn, *args, grid, warmup, **kwargs):  # noqa: ARG002 - JITFunction.run's signature
        from triton.compiler import ASTSource, compile
        from triton.runtime.jit import create_function_from_signature

        kwargs.setdefault("debug", False)
        binder = create_function_from_signature(fn.signature, fn.params, self.backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(self.backend, kwargs, bound, specialization, options)
        key = (fn.__name__, str(signature), str(sorted(constexprs.items())), str(attrs), str(sorted(options.__dict__.items())))
        if key in self.seen:  # a wrapper launching the same kernel again (per chunk, per pass)
            return None
        self.seen.add(key)
        kernel = compile(ASTSource(fn, signature, constexprs, attrs), target=self.target, options=options.__dict__)
        res, ops = _resources(kernel.asm["cubin"])
        shared = int(kernel.metadata.shared)
        names = [p.name for p in fn.params]
        self.report.compiled.append(Compiled(
            case=self.case, kernel=fn.__name__,
            constexprs={names[path[0]]: _plain(v) for path, v in constexprs.items() if len(path) == 1},
            num_warps=options.num_warps, num_stages=options.num_stages,
            registers=res.get("REG"), local_bytes=res.get("LOCAL"), stack_bytes=res.get("STACK"),
            shared_bytes=shared, sass_instructions=sum(ops.values()),
            fits_shared=shared <= SHARED_LIMIT.get(self.target.arch, 48 * 1024),
            mma=", ".join(f"{op} x{ops[op]}" for op in ("HGMMA", "HMMA", "DMMA") if ops[op]),
            top_instructions=ops.most_common(6),
        ))
        return None


def _plain(v: Any) -> Any:
    return v if isinstance(v, (bool, int, float, str)) or v is None else str(v)


def cases() -> list[tuple[str, Callable[[], Any]]]:
    """(name, call): each wrapper at the shapes and variants the service and the benchmark use."""
    from scalespace.kernels import dct_operator, histogram, moments, oracle_reduction, osmosis_stencil, philox, reverse_step
    from scalespace.kernels import second_moment, spectral_step
    from scalespace.kernels.philox import StepNoise
    from scalespace.processes import osmosis_scheme as scheme

    from bench.kernels_cases import CHUNKED_BIG_CONFIG, CHUNKED_CONFIG, STREAMING_CONFIG

    g = torch.Generator().manual_seed(0)
    u = torch.randn(8, 1, 28, 28, generator=g)
    u0 = torch.randn(8, 1, 28, 28, generator=g)
    sn = StepNoise(3, torch.arange(8), 5)
    coef = torch.rand(28, 28, generator=g, dtype=torch.float64)
    x = torch.rand(8, 1, 28, 28, generator=g) + 1.0
    dr = scheme.drift(torch.rand(1, 1, 28, 28, generator=g) + 0.5)
    tau, nst = (0.9 * dr.stable_tau()).reshape(1, 1, 1, 1), torch.tensor([50])
    feats = torch.randn(64, 784, generator=g)
    out = [
        ("noise", lambda: philox.normal_triton(3, sn.ids, 5, (1, 28, 28))),
        ("fused step with noise", lambda: reverse_step.reverse_step_triton(u, u0, 0.9, 0.1, 0.3, sn, True)),
        ("fused step, last step", lambda: reverse_step.reverse_step_triton(u, u0, 0.9, 0.1, 0.0, None)),
        ("fused step, deterministic", lambda: reverse_step.reverse_step_triton(u, u0, 0.9, 0.1, 0.3, sn, True, deterministic=True)),
        ("fused step, float64", lambda: reverse_step.reverse_step_triton(u.double(), u0.double(), 0.9, 0.1, 0.3, sn)),
        ("spectral step 28x28", lambda: spectral_step.spectral_step_triton(u, u0, coef, coef, coef, sn)),
        ("spectral step 64x64, 3 channels", lambda: spectral_step.spectral_step_triton(
            torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), torch.rand(64, 64, dtype=torch.float64),
            torch.rand(64, 64, dtype=torch.float64), torch.rand(64, 64, dtype=torch.float64), StepNoise(1, torch.arange(2), 2))),
        ("DCT operator 28x28", lambda: dct_operator.dct_scale_triton(u, coef)),
        ("osmosis stencil", lambda: osmosis_stencil.osmosis_explicit_triton(x, dr, tau, nst)),
        ("osmosis stencil, l1", lambda: osmosis_stencil.osmosis_explicit_triton(x, dr, tau, nst, l1=True)),
        ("osmosis stencil, 2,048 lanes in 4 warps", lambda: osmosis_stencil.osmosis_explicit_triton(x, dr, tau, nst, lanes=2048, num_warps=4)),
        ("pixel moments", lambda: moments.pixel_moments_triton(feats)),
        ("second moment", lambda: second_moment.second_moment_triton(feats)),
        ("histogram", lambda: histogram.histogram_triton(feats, 64)),
    ]
    flat = torch.randn(300, 784, generator=g)
    q = torch.randn(16, 784, generator=g)
    ksq = flat.pow(2).sum(1)
    for dtype in (torch.bfloat16, torch.float32):
        args = (q.to(dtype), flat.to(dtype), ksq.to(dtype), flat.to(dtype), 0.01)
        out.append((f"oracle {str(dtype)[6:]}, default tiles",
                    lambda args=args: oracle_reduction.oracle_reduction_triton(*args)))
    bf = (q.bfloat16(), flat.bfloat16(), ksq.bfloat16(), flat.bfloat16(), 0.01)
    for name, cfg in (("streaming", STREAMING_CONFIG), ("chunked", CHUNKED_CONFIG), ("chunked, big tiles", CHUNKED_BIG_CONFIG)):
        out.append((f"oracle bfloat16, {name}", lambda cfg=cfg: oracle_reduction.oracle_reduction_triton(*bf, config=cfg)))
    return out


def compile_all(arch: int = 90) -> Report:
    """Compile every case for compute capability `arch` (e.g. 90); failures are reported, not raised."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("bench/aot.py compiles for a GPU: run it with TRITON_INTERPRET unset or 0")
    try:
        import triton
    except ImportError as e:
        raise RuntimeError("bench/aot.py needs triton: pip install 'scalespace[gpu]'") from e
    from triton.runtime.jit import JITFunction

    report = Report(arch=arch, triton=triton.__version__)
    capture = _Capture(arch, report)
    original = JITFunction.run
    JITFunction.run = lambda fn, *a, grid, warmup, **kw: capture.run(fn, *a, grid=grid, warmup=warmup, **kw)
    try:
        for name, call in cases():
            capture.case = name
            try:
                call()
            except Exception as e:  # noqa: BLE001 - report each failure, go on with the rest
                report.failed.append({"case": name, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"})
    finally:
        JITFunction.run = original
    return report


def _table(report: Report) -> str:
    lines = [f"compiled for sm_{report.arch} with triton {report.triton}", "",
             "| case | kernel | warps | stages | registers | local | stack | shared | SASS instr. | tensor cores | fits | constexprs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report.compiled:
        ce = ", ".join(f"{k}={v}" for k, v in c.constexprs.items())
        lines.append(f"| {c.case} | {c.kernel} | {c.num_warps} | {c.num_stages} | {c.registers} | {c.local_bytes} | "
                     f"{c.stack_bytes} | {c.shared_bytes} | {c.sass_instructions} | {c.mma} | {'yes' if c.fits_shared else 'NO'} | {ce} |")
    for f in report.failed:
        lines.append(f"| {f['case']} | FAILED | | | | | | | | | | {f['error']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability as an integer: 80, 86, 89, 90 (default 90)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if args.arch not in SHARED_LIMIT:
        ap.error(f"--arch {args.arch}: use one of {', '.join(map(str, SHARED_LIMIT))}")
    try:
        report = compile_all(args.arch)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report)) if args.json else _table(report))
    return 1 if report.failed or not all(c.fits_shared for c in report.compiled) else 0


if __name__ == "__main__":
    sys.exit(main())
