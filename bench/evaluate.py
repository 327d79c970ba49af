"""Time a full `evaluate` job of one process on digits and on Fashion-MNIST, and the share of each measurement.

Runs the default evaluation (every part: forward trajectory with the oracle
pass, invariances, reverse checks, robustness, density) in this process on the
CPU, then prints, per data set, the wall time and each measurement's share,
largest first, so the slow parts are known.

    python bench/evaluate.py [--process vp] [--data digits fashion-mnist] [--fashion-limit 10000]

--fashion-limit caps the training images (the oracle's set) on Fashion-MNIST:
the oracle pass costs O(samples x training images x pixels) per step; 0 uses
all 60,000.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from scalespace.jobs import run_job
from scalespace.storage import LocalStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--process", default="vp")
    ap.add_argument("--data", nargs="+", default=["digits", "fashion-mnist"])
    ap.add_argument("--fashion-limit", type=int, default=10_000, help="training images on fashion-mnist (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="an evaluate spec field (JSON value)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import json

    extra = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    print(f"evaluate {args.process}: device cpu, torch threads {torch.get_num_threads()}")
    for data in args.data:
        spec = {"kind": "evaluate", "process": args.process, "data": data, "device": "cpu", **extra}
        if data == "fashion-mnist" and args.fashion_limit:
            spec.setdefault("data_limit", args.fashion_limit)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            seen: set[str] = set()

            def progress(p) -> None:
                if p.phase not in seen:
                    seen.add(p.phase)
                    print(f"  [{time.perf_counter() - t0:7.1f} s] {p.phase}", flush=True)

            m = run_job(spec, LocalStore(out), progress=progress)
            wall = time.perf_counter() - t0
        timings = {k[:-2]: v for k, v in m["timings"].items() if k != "total_s"}
        total = sum(timings.values())
        s = m["summary"]
        print(f"\n{data}: {wall:.1f} s wall ({m['timings']['total_s']:.1f} s in the job), "
              f"{s['checks_agreeing']}/{s['checks_asserted']} asserted checks agree, spec {json.dumps(spec)}")
        print(f"  {'measurement':<26}{'seconds':>9}{'share':>8}")
        for k, v in sorted(timings.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<26}{v:9.2f}{100 * v / total:7.1f}%")


if __name__ == "__main__":
    main()
