"""The FID of two disjoint 5,000-image halves of Fashion-MNIST, measured by `scalespace score`.

A perfect model scored on 5,000 samples against 5,000 real images reads about
this much: the floor of FID at that size. The script runs the command itself,

    scalespace score fashion-mnist:heldout[0:5000] fashion-mnist:heldout[5000:10000]

(the test split's two halves; `--split train` takes train[0:5000] and
train[5000:10000] instead), and prints the FID with its interval, KID and
precision/recall. Inception-v3 on 10,000 images takes several minutes on two
CPU cores; the features are cached in --out, so a second run only computes
the statistics.

    python bench/score_fashion.py [--split heldout|train] [--device cpu] [--out scalespace-results] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time

from scalespace.cli import main as scalespace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("heldout", "train"), default="heldout",
                    help="which split's first 10,000 images to halve (default heldout, the test split)")
    ap.add_argument("--n-half", type=int, default=5000, help="images in each half (default 5000)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    ap.add_argument("--fid-boot", type=int, default=20, help="bootstrap resamples of the FID interval (default 20)")
    ap.add_argument("--out", default="scalespace-results", help="results folder holding the feature cache")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()

    n = args.n_half
    argv = ["score", f"fashion-mnist:{args.split}[0:{n}]", f"fashion-mnist:{args.split}[{n}:{2 * n}]",
            "--device", args.device, "--fid-boot", str(args.fid_boot), "--out", args.out, "--json"]
    print("scalespace " + " ".join(argv[:-1]), flush=True)
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = scalespace(argv)
    if rc != 0:
        raise SystemExit(rc)
    r = json.loads(buf.getvalue())
    f, k, pr = r["fid"], r["kid"], r["precision_recall"]
    print(f"FID fashion-mnist {args.split} halves: {f['fid']:.2f} "
          f"(95% interval {f['low']:.2f} to {f['high']:.2f}; n = {r['n_a']} vs {r['n_b']})" if f["low"] is not None
          else f"FID fashion-mnist {args.split} halves: {f['fid']:.2f} (n = {r['n_a']} vs {r['n_b']})")
    print(f"KID {k['kid']:.5f} (std over subsets {k['std']:.5f}); precision {pr['precision']['value']:.3f}, "
          f"recall {pr['recall']['value']:.3f} (k = {pr['k']})")
    cached = all(r[s]["cached"] for s in ("a", "b"))
    print(f"{time.perf_counter() - t0:.0f} s{' (features from the cache)' if cached else ''}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)


if __name__ == "__main__":
    main()
