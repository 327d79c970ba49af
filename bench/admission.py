"""Admission latency: the API's check of a spec (scalespace.scheduler.submit.check_spec), one spec at a time.

    .venv/bin/python bench/admission.py                 # 1,000 varied specs: median and p99
    .venv/bin/python bench/admission.py --before 40     # also the step-by-step schedule validation it replaced,
                                                        # on the first 40 specs (seconds each at T = 100,000)

The specs mix every kind (sample, evaluate, train, sweep) and process, T (or K) from 10 up to 100,000 (one
spec in five above 10,000), and draw each parameter (beta_start, sigma_min, sigma_blur_max, ...) at random,
so the cache of built processes (keyed by parameter values) does not hit except by chance. Accepted and
refused specs both count: a refusal costs the API the same check. Measured in one run, in this process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any


class NoModels:
    def exists(self, *parts: str) -> bool:
        return False


def process_spec(rng: random.Random) -> tuple[str, dict[str, Any]]:
    big = rng.random() < 0.2
    T = rng.randint(10_001, 100_000) if big else rng.randint(10, 2000)
    name = rng.choice(["vp", "vp", "ve", "blurring", "heat", "osmosis"])
    if name == "vp":
        return name, {"T": T, "beta_start": rng.uniform(5e-5, 2e-4), "beta_end": rng.uniform(0.01, 0.03),
                      "schedule": rng.choice(["linear", "cosine"])}
    if name == "ve":
        return name, {"T": T, "sigma_min": rng.uniform(0.005, 0.02)}
    if name == "blurring":
        return name, {"T": T, "sigma_blur_max": rng.uniform(5, 30), "d_min": rng.uniform(1e-4, 1e-2)}
    if name == "heat":
        return name, {"K": T, "sigma_blur_max": rng.uniform(5, 30), "sigma": rng.uniform(0.005, 0.02)}
    return name, {"K": rng.randint(10, 200), "sigma": rng.uniform(0.005, 0.02), "guidance_contrast": rng.uniform(0.2, 1)}


def spec(rng: random.Random) -> dict[str, Any]:
    name, params = process_spec(rng)
    data = rng.choice(["digits", "digits", "fashion-mnist", "gaussian-mixture"])
    kind = rng.choice(["sample", "sample", "evaluate", "train", "sweep"])
    base = {"process": name, "process_params": params, "data": data, "seed": rng.randint(0, 10**6)}
    if kind == "sample":
        return {"kind": "sample", **base, "n": rng.randint(1, 4096), "batch_size": rng.choice([64, 256, 1024]),
                "steps": rng.randint(1, 50)}
    if kind == "evaluate":
        return {"kind": "evaluate", **base, "n": rng.randint(2, 1024), "n_reverse": rng.randint(2, 512),
                "data_limit": rng.randint(100, 1000)}
    if kind == "train":
        return {"kind": "train", **base, "preset": "tiny", "network": {"channels": rng.choice([8, 16, 32])},
                "eval_samples": rng.randint(2, 256)}
    _, p2 = process_spec(rng)
    return {"kind": "sweep", "name": "bench", "processes": [name], "data": [data, "digits"] if data != "digits" else [data],
            "template": {"kind": "evaluate", "n": rng.randint(2, 512), "data_limit": rng.randint(100, 1000),
                         "process_params": params}}


def measure(specs: list[dict[str, Any]]) -> list[float]:
    from scalespace import ScalespaceError
    from scalespace.config import Settings
    from scalespace.scheduler.submit import check_spec

    settings, store = Settings(), NoModels()
    out = []
    for s in specs:
        t0 = time.perf_counter()
        try:
            check_spec(s, settings, store)
        except ScalespaceError:
            pass
        out.append(time.perf_counter() - t0)
    return out


def report(label: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(f"{label}: {len(ms)} specs, median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before", type=int, default=0, help="also time the step loop on the first N specs")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    specs = [spec(rng) for _ in range(args.specs)]
    # imports and first use of every kind and process (the API does them once), not timed
    measure([{"kind": k, "process": p, "data": "digits"} for k in ("sample", "evaluate", "train") for p in
             ("vp", "ve", "blurring", "heat", "osmosis")] + [spec(random.Random(-1 - k)) for k in range(20)])
    report("admission", measure(specs))
    if args.before:
        sys.path.insert(0, "tests/unit/processes")
        from test_validate_vectorised import loop_validate

        from scalespace.processes.base import LinearGaussianProcess
        from scalespace.scheduler import submit

        vectorised = LinearGaussianProcess.validate
        submit._process.cache_clear()
        LinearGaussianProcess.validate = loop_validate  # the step-by-step validation it replaced
        try:
            report(f"admission with the step loop (first {args.before})", measure(specs[: args.before]))
        finally:
            LinearGaussianProcess.validate = vectorised
            submit._process.cache_clear()

    return 0


if __name__ == "__main__":
    sys.exit(main())
