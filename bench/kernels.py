"""Benchmark of the Triton kernels against their torch references (and torch.compile of them).

On a GPU (the default): measures the device's copy bandwidth (clone of a
1 GiB tensor) and bf16 matrix-product rate first, then for each kernel at a
size that fills the chip: median time of many runs (CUDA events), achieved
GB/s or TFLOP/s, the fraction of the measured ceiling, the torch reference
and torch.compile of it (time-boxed; 'n/a' when it fails or runs out of
time), and the kernel's error against the reference. Then end to end: a
100-step oracle sample (vp respaced to 100 steps) of 1,024 Fashion-MNIST
images over all 60,000 training images. Every row is printed as soon as it
is measured; a failing kernel is reported in its row and the run goes on.

    python bench/kernels.py [--quick] [--out FILE.md|FILE.json] [--fashion-npz PATH]
                            [--budget-s 90] [--compile-budget-s 30] [--no-compile] [--deterministic]
    python bench/kernels.py --cpu [--out FILE] [--fashion-npz PATH]

--cpu: the CPU figures of the torch references at small sizes, each kernel
checked once in the Triton interpreter, and the peak memory of the oracle
reference for n = 60,000 training images (it must not grow with n).
--fashion-npz: a .npz holding the 60,000 training images as uint8
(60000, 28, 28) (key 'train', or the only array); without it the bench uses
the installed data set, else random images of the same shape (and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = ["kernel", "size", "triton_ms", "rate", "of_ceiling", "torch_ms", "compile_ms", "error", "target", "note"]


class Report:
    """Rows printed as they come, and written to --out after each one (a killed run keeps what it had)."""

    def __init__(self, out: str | None):
        self.out = out
        self.meta: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def info(self, key: str, value: Any) -> None:
        self.meta[key] = value
        print(f"# {key}: {value}", flush=True)
        self.save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"# {text}", flush=True)
        self.save()

    def row(self, **kw: Any) -> dict[str, Any]:
        r = {c: kw.get(c, "") for c in COLUMNS}
        self.rows.append(r)
        print(" | ".join(f"{c}={r[c]}" for c in COLUMNS if r[c] != ""), flush=True)
        self.save()
        return r

    def markdown(self) -> str:
        lines = [f"- {k}: {v}" for k, v in self.meta.items()] + [""]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in self.rows]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        if not self.out:
            return
        text = json.dumps({"meta": self.meta, "rows": self.rows, "notes": self.notes}, indent=1) \
            if self.out.endswith(".json") else self.markdown()
        Path(self.out).write_text(text)


def fmt_ms(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


# --- timing ---------------------------------------------------------------------------------


def cuda_median_ms(fn: Callable[[], Any], target_s: float = 0.25, max_reps: int = 100) -> float:
    """Median of many timed runs with CUDA events, after warm-up (compilation happens there)."""
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = int(min(max_reps, max(5, target_s / one)))
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def cpu_median_ms(fn: Callable[[], Any], reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_with_timeout(fn: Callable[[], Any], timeout_s: float) -> tuple[Any, str | None]:
    """fn() in a daemon thread; (result, None) or (None, reason). A thread past its time is abandoned."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported, never raised
            box["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        return None, f"timeout after {timeout_s:.0f} s"
    if "error" in box:
        return None, box["error"]
    return box.get("value"), None


def short_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[-1][:160] if msg else ''}"


# --- the GPU run ----------------------------------------------------------------------------


def gpu_main(args: argparse.Namespace, rep: Report) -> None:
    import torch

    import bench.kernels_cases as cases_mod

    global cuda_median_ms
    shrink = 1
    if args.dry_run:  # the same code path on the CPU, toy sizes, kernels in the interpreter
        dev, shrink = torch.device("cpu"), 512
        cases_mod.DEV = dev
        cuda_median_ms = lambda fn, target_s=0.0, max_reps=0: cpu_median_ms(fn, reps=1)  # noqa: E731
        os.environ["SCALESPACE_KERNELS"] = "triton"
        rep.info("device", "CPU dry run (Triton interpreter): figures are meaningless, the script is checked")
    else:
        dev = torch.device("cuda")
        props = torch.cuda.get_device_properties(dev)
        rep.info("device", f"{props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB")
    rep.info("versions", f"torch {torch.__version__}, triton {_triton_version()}, cuda {torch.version.cuda}")
    rep.info("mode", f"{'quick' if args.quick else 'full'}, deterministic={args.deterministic}")
    deadline = time.perf_counter() + args.budget_s

    # ceilings, measured in this run
    n = ((1 << 26) if args.quick else (1 << 28)) // shrink
    x = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    copy_ms = cuda_median_ms(lambda: x.clone())
    copy_gbs = 2 * 4 * n / copy_ms / 1e6
    del x
    m = (4096 if args.quick else 8192) // (16 if args.dry_run else 1)
    a = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    mm_ms = cuda_median_ms(lambda: a @ b)
    mm_tfs = 2 * m**3 / mm_ms / 1e9
    del a, b
    rep.info("ceiling copy", f"{copy_gbs:.0f} GB/s (clone of {4 * n / 2**30:.2f} GiB, read + write)")
    rep.info("ceiling bf16 matmul", f"{mm_tfs:.0f} TFLOP/s ({m}^3)")
    ceilings = {"bytes": copy_gbs, "flops": mm_tfs, "flops64": None}

    from bench.fashion import load_fashion

    train, source = load_fashion(args.fashion_npz)
    rep.info("training data", source)
    try:
        cases = cases_mod.build_cases(args.quick, train, shrink)
    except Exception as e:  # still run the end-to-end sample
        traceback.print_exc()
        rep.note(f"building the kernel cases FAILED: {short_error(e)}")
        cases = []
    compiled_later: list[tuple[dict, Any]] = []

    def measure(batch) -> None:
        for case in batch:
            if time.perf_counter() > deadline:
                rep.row(kernel=case.name, note="skipped: time budget spent")
                continue
            row = measure_case(case, ceilings, rep)
            if row is not None:
                compiled_later.append((row, case))
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    # the targets first (fused step, oracle, osmosis, end to end), then everything else
    measure([c for c in cases if c.first])
    for line in cases_mod.end_to_end(train, args.quick, deadline, shrink):
        rep.row(**line)
    measure([c for c in cases if not c.first])

    if args.no_compile or args.quick or args.dry_run:
        for row, _ in compiled_later:
            row["compile_ms"] = "not run"
        rep.note("torch.compile of the references: not run (--quick, --no-compile or --dry-run)")
    else:
        compile_references(compiled_later, args.compile_budget_s, deadline + args.compile_budget_s, rep)
    rep.note("fraction of ceiling: GB/s over the measured copy bandwidth, or useful TFLOP/s over the measured bf16 matmul rate")


def measure_case(case, ceilings: dict, rep: Report) -> dict | None:
    """One kernel row: Triton time and rate, torch reference time, error against the reference."""
    import torch

    try:
        inputs = case.make()
        tri_ms = cuda_median_ms(lambda: case.kernel(*inputs))
    except Exception as e:  # the row says what failed; the run goes on
        traceback.print_exc(limit=2)
        rep.row(kernel=case.name, size=case.size, note=f"kernel FAILED: {short_error(e)}")
        return None
    try:
        err = case.check(inputs)
    except Exception as e:
        err = f"check failed: {short_error(e)}"
    ref_ms = None
    try:
        ref_ms = cuda_median_ms(lambda: case.reference(*inputs), target_s=0.15, max_reps=20)
    except Exception as e:
        case.note = (case.note + "; " if case.note else "") + f"torch reference failed: {short_error(e)}"
    amount = case.amount
    if case.kind == "bytes":
        rate, ceil = amount / tri_ms / 1e6, ceilings["bytes"]
        rate_s = f"{rate:.0f} GB/s"
    else:
        rate, ceil = amount / tri_ms / 1e9, ceilings.get(case.kind)
        rate_s = f"{rate:.1f} TFLOP/s" + (" (fp64)" if case.kind == "flops64" else "")
    frac = f"{100 * rate / ceil:.0f}%" if ceil else "—"
    row = rep.row(kernel=case.name, size=case.size, triton_ms=fmt_ms(tri_ms), rate=rate_s, of_ceiling=frac,
                  torch_ms=fmt_ms(ref_ms), compile_ms="pending", error=err, target=case.target, note=case.note)
    del inputs
    return row


def compile_references(items: list, budget_s: float, hard_deadline: float, rep: Report) -> None:
    """torch.compile each reference within the budget; 'n/a' with the reason otherwise."""
    import torch

    start = time.perf_counter()
    for row, case in items:
        left = min(budget_s - (time.perf_counter() - start), hard_deadline - time.perf_counter())
        if left < 5:
            row["compile_ms"] = "n/a (compile budget spent)"
            continue
        try:
            inputs = case.make()
        except Exception as e:
            row["compile_ms"] = f"n/a ({short_error(e)})"
            continue
        fn = torch.compile(case.reference, dynamic=False)
        ms, why = run_with_timeout(lambda: cuda_median_ms(lambda: fn(*inputs), target_s=0.15, max_reps=20), left)
        row["compile_ms"] = fmt_ms(ms) if why is None else f"n/a ({why})"
        print(f"# torch.compile {case.name}: {row['compile_ms']}", flush=True)
        del inputs
        if why and why.startswith("timeout"):
            break  # an abandoned compile keeps the interpreter busy: stop compiling
    for row, _ in items:
        if row["compile_ms"] == "pending":
            row["compile_ms"] = "n/a (not reached)"
    rep.save()


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "not installed"


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no torch.compile")
    ap.add_argument("--out", help="also write the table: .json for JSON, anything else for markdown")
    ap.add_argument("--cpu", action="store_true", help="CPU reference figures, interpreter checks, oracle memory")
    ap.add_argument("--fashion-npz", help=".npz with the 60,000 Fashion-MNIST training images, uint8 (60000, 28, 28)")
    ap.add_argument("--budget-s", type=float, default=90.0, help="stop starting new kernel rows after this long")
    ap.add_argument("--compile-budget-s", type=float, default=30.0, help="time for torch.compile of all references")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile of the references")
    ap.add_argument("--deterministic", action="store_true", help="SCALESPACE_DETERMINISTIC=1 for the kernels")
    ap.add_argument("--dry-run", action="store_true", help="the GPU code path on the CPU (interpreter, toy sizes)")
    args = ap.parse_args(argv)
    if args.deterministic:
        os.environ["SCALESPACE_DETERMINISTIC"] = "1"
    rep = Report(args.out)
    t0 = time.perf_counter()
    try:
        if args.cpu or args.dry_run:
            os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
        if args.cpu:
            from bench.kernels_cpu import cpu_main

            cpu_main(args, rep, cpu_median_ms)
        else:
            import torch

            if not args.dry_run and not torch.cuda.is_available():
                print("no CUDA device: run with --cpu for the CPU figures", file=sys.stderr)
                return 2
            gpu_main(args, rep)
    except KeyboardInterrupt:
        rep.note("interrupted")
    except Exception as e:  # never a bare traceback at the end of a long run: say what failed
        traceback.print_exc()
        rep.note(f"run FAILED: {short_error(e)}")
    rep.info("wall time", f"{time.perf_counter() - t0:.1f} s")
    print()
    print(rep.markdown(), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # abandon any compile thread still running (a daemon thread can block interpreter exit)


if __name__ == "__main__":
    sys.exit(main())
