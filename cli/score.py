"""`scalespace score A B`: FID, KID and precision/recall, with intervals, between two image sets.

A and B are each a folder of PNGs, a samples.npz, a data set split
(`fashion-mnist:heldout`, `digits:train[0:500]`) or a finished sample job's
id (from the --out folder, or from a service with --api). Features are
cached by the images' content hash in the --out folder's cache (or the
configured store with --cache store).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from pathlib import Path
from typing import Any

from scalespace import ScalespaceError
from scalespace.cli.common import print_json

FEATURES = ("inception", "pixels")
CACHES = ("out", "store", "none")
#: an optional [start:stop] slice at the end of any argument
SLICE = re.compile(r"^(?P<base>.*)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")
PATHLIKE_SUFFIXES = (".npz", ".png", ".npy")


def _slice_of(text: str) -> tuple[str, slice | None]:
    m = SLICE.match(text)
    if m is None or Path(text).exists():
        return text, None
    start = int(m["start"]) if m["start"] else None
    stop = int(m["stop"]) if m["stop"] else None
    return m["base"], slice(start, stop)


def _job_samples(job_id: str, what: str, args: argparse.Namespace) -> bytes:
    """The bytes of a finished job's samples.npz: from a service (--api) or the local --out folder."""
    from scalespace.ids import check_id

    try:
        check_id(job_id, "job id")
    except ScalespaceError:
        raise ScalespaceError(f"{what}: {job_id!r} is no folder, file, data set or job id; pass one of: "
                              + _source_help()) from None
    if args.api:
        from scalespace.scheduler.client import Client  # httpx (the service extra)

        with Client(args.api) as c:
            try:
                job = c.get(job_id)
            except ScalespaceError as e:
                raise ScalespaceError(f"{what}: unknown job id {job_id!r} at {c.base_url} ({e}); "
                                      "check the id with 'scalespace jobs --api URL'") from None
            if job.get("state") != "succeeded":
                raise ScalespaceError(f"{what}: job {job_id} is {job.get('state')}, it has no samples; "
                                      f"wait for it ('scalespace status {job_id}') or pass another job")
            art = next((a for a in job.get("artifacts") or [] if a.get("name") == "samples.npz"), None)
            if art is None:
                raise ScalespaceError(f"{what}: job {job_id} ({job.get('kind')}) has no samples.npz; "
                                      "pass a sample job's id")
            data = c.fetch_url(art["url"])
        if art.get("sha256") and hashlib.sha256(data).hexdigest() != art["sha256"]:
            raise ScalespaceError(f"{what}: samples.npz of job {job_id} does not match its sha256; run the command again")
        return data
    from scalespace.storage import LocalStore

    store = LocalStore(args.out)
    manifest = store.manifest(job_id)
    if manifest is None:
        raise ScalespaceError(f"{what}: unknown job id {job_id!r}: no finished job of that id in {args.out} (nor a "
                              "file or folder of that name); pass --out with the folder the job wrote to, --api URL "
                              "for a job of a service, or an existing path")
    if not any(a.get("name") == "samples.npz" for a in manifest.get("artifacts") or []):
        raise ScalespaceError(f"{what}: job {job_id} ({manifest.get('kind')}) has no samples.npz; pass a sample job's id")
    return store.read_artifact(job_id, "samples.npz", manifest)


def _source_help() -> str:
    from scalespace.stats.score import SOURCE_HELP

    return SOURCE_HELP


def load_side(text: str, what: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Images (N, C, H, W) in [-1, 1] of one argument, and a description {source, kind}."""
    from scalespace.stats.score import dataset_images, parse_dataset, read_png_folder, read_samples_npz

    if parse_dataset(text) is not None and not Path(text).exists():
        return dataset_images(text, what, args.data_size), {"source": text, "kind": "data set"}
    base, cut = _slice_of(text)
    path = Path(base)
    if path.is_dir():
        x, kind = read_png_folder(path, what), "png folder"
    elif path.is_file():
        x, kind = read_samples_npz(path, what), "npz"
    elif "/" in base or "\\" in base or path.suffix.lower() in PATHLIKE_SUFFIXES:
        raise ScalespaceError(f"{what}: '{base}' does not exist; pass an existing folder of PNGs or .npz file "
                              "(or a data set such as fashion-mnist:heldout, or a job id)")
    elif ":" in base:
        x, kind = dataset_images(base, what, args.data_size), "data set"  # a malformed data set argument: its error
    else:
        x, kind = read_samples_npz(_job_samples(base, what, args), what), "job"
    if cut is not None:
        n = x.shape[0]
        lo, hi, _ = cut.indices(n)
        if hi <= lo:
            raise ScalespaceError(f"{what}: the slice [{cut.start or ''}:{cut.stop or ''}] of '{base}' is empty "
                                  f"(it has {n} images); pass bounds within 0..{n}")
        x = x[lo:hi].contiguous()
    return x, {"source": text, "kind": kind}


class _Bar:
    """A progress bar per side on a terminal (stderr); silent otherwise."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.bar = label, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="batch", file=sys.stderr, leave=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cache_store(args: argparse.Namespace) -> Any:
    if args.cache == "none":
        return None
    if args.cache == "store":
        from scalespace.config import get_settings
        from scalespace.storage import store_from_settings

        return store_from_settings(get_settings())
    from scalespace.storage import LocalStore

    return LocalStore(args.out)


def score(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of A against B as a JSON-ready dict."""
    import torch

    from scalespace.stats.features import get_extractor
    from scalespace.stats.reference_cache import content_features
    from scalespace.stats.score import score_features

    for name, value, low in (("--k", args.k, 1), ("--kid-subset-size", args.kid_subset_size, 2),
                             ("--kid-subsets", args.kid_subsets, 1), ("--batch-size", args.batch_size, 1),
                             ("--fid-boot", args.fid_boot, 0)):
        if value < low:
            raise ScalespaceError(f"{name}: must be at least {low}, got {value}")
    if args.fid_boot == 1:
        raise ScalespaceError("--fid-boot: pass 0 (no interval) or at least 2 resamples, e.g. 50")
    if not 0 < args.level < 1:
        raise ScalespaceError(f"--level: must lie between 0 and 1, got {args.level}; pass e.g. 0.95")
    xa, da = load_side(args.a, "A", args)
    xb, db = load_side(args.b, "B", args)
    if args.features == "pixels" and tuple(xa.shape[1:]) != tuple(xb.shape[1:]):
        sa, sb = "x".join(map(str, xa.shape[1:])), "x".join(map(str, xb.shape[1:]))
        raise ScalespaceError(f"B: images are {sb} (CxHxW) but A's are {sa}; --features pixels compares images of one "
                              "shape: resize them (--data-size for a data set) or use --features inception")
    for what, x in (("A", xa), ("B", xb)):
        if x.shape[0] < max(2, args.k + 1):
            raise ScalespaceError(f"{what}: {x.shape[0]} image(s) are too few for the statistics; pass at least "
                                  f"{max(2, args.k + 1)} (thousands for a FID worth comparing)")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ScalespaceError("--device cuda: no GPU is visible here; pass --device cpu (or auto)")
    ex = get_extractor(args.features, device=device, batch_size=args.batch_size)
    store = _cache_store(args)
    quiet = args.quiet or not sys.stderr.isatty()
    sides = {}
    feats = []
    for what, x, desc in (("A", xa, da), ("B", xb, db)):
        bar = _Bar(f"{what} {ex.name} features", enabled=not quiet)
        try:
            f, ex, cached = content_features(x, ex, store, progress=bar, describe={"source": desc["source"]})
        finally:
            bar.close()
        feats.append(f)
        sides[what] = {**desc, "n": int(x.shape[0]), "shape": list(x.shape[1:]), "cached": cached,
                       "sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]}
    out = score_features(feats[0], feats[1], k=args.k, kid_subset_size=args.kid_subset_size,
                         kid_subsets=args.kid_subsets, fid_boot=args.fid_boot, alpha=round(1 - args.level, 12), seed=args.seed)
    return {"a": sides["A"], "b": sides["B"], "features": ex.name, "features_digest": ex.digest[:16], **out}


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) < 1e-2 and v != 0 else f"{v:.{digits}f}" if abs(v) < 10 else f"{v:.2f}"


def table(r: dict[str, Any]) -> str:
    """The readable report: the sides, then one row per figure with its interval and what the interval is."""
    lines = []
    for key, label in (("a", "A"), ("b", "B")):
        s = r[key]
        shape = "x".join(map(str, s["shape"]))
        cached = ", features from the cache" if s["cached"] else ""
        lines.append(f"{label}: {s['source']} ({s['kind']}): {s['n']} images of {shape}{cached}")
    lines.append(f"features: {r['features']} ({r['dim']}-d)")
    level = f"{1 - r['alpha']:.0%}"
    rows = [("figure", "value", f"{level} interval", "interval")]
    f = r["fid"]
    interval = (f"[{_fmt(f['low'])}, {_fmt(f['high'])}]" if f["low"] is not None else "n/a")
    rows.append(("FID", _fmt(f["fid"]), interval,
                 f"bootstrap, {f['n_boot']} resamples of both sides, debiased (bias {_fmt(f['bootstrap_bias'])})"
                 if f["low"] is not None else "none (--fid-boot 0)"))
    k = r["kid"]
    rows.append(("KID", _fmt(k["kid"], 3), f"[{_fmt(k['low'], 3)}, {_fmt(k['high'], 3)}]",
                 f"middle {level} of {k['n_subsets']} subsets of {k['subset_size']} per side; std {_fmt(k['std'], 3)}"))
    pr = r["precision_recall"]
    for name, other in (("precision", "B"), ("recall", "A")):
        p = pr[name]
        rows.append((name, f"{p['value']:.4f}", f"[{p['low']:.4f}, {p['high']:.4f}]",
                     f"Wilson, {p['count']} of {p['of']} inside {other}'s manifold (k = {pr['k']})"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def cmd_score(args: argparse.Namespace) -> int:
    r = score(args)
    if args.json:
        print_json(r)
    else:
        print(table(r))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="FID, KID and precision/recall with intervals between two image sets",
                       description="Score image set A against the reference B. Each of A and B is a folder of PNGs, "
                                   "a samples.npz, a data set split (name:split, optionally [start:stop], e.g. "
                                   "fashion-mnist:train[0:5000]) or a finished sample job's id. Any argument but a "
                                   "data set also takes a [start:stop] slice.")
    p.add_argument("a", metavar="A", help="the images scored: PNG folder, samples.npz, name:split[start:stop] or job id")
    p.add_argument("b", metavar="B", help="the reference images: PNG folder, samples.npz, name:split[start:stop] or job id")
    p.add_argument("--features", choices=FEATURES, default="inception",
                   help="feature space: inception (the TF-FID Inception-v3 pool3 network, 2048-d; default) or pixels "
                        "(the flattened images: both sides must have one shape)")
    p.add_argument("--k", type=int, default=3, help="neighbours defining the precision/recall manifolds (default 3)")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="images per side in each KID subset (default 1000, at most the smaller side)")
    p.add_argument("--kid-subsets", type=int, default=100, help="number of KID subsets (default 100)")
    p.add_argument("--fid-boot", type=int, default=20,
                   help="bootstrap resamples for the FID interval, 0 for none (default 20; each costs two "
                        "eigendecompositions of a DxD matrix, D = 2048 for inception)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of every interval (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the KID subsets and the bootstrap (default 0)")
    p.add_argument("--data-size", type=int, help="resize data set images to this many pixels a side")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the features are computed (default auto: a GPU if there is one)")
    p.add_argument("--batch-size", type=int, default=50, help="images per feature batch (default 50)")
    p.add_argument("--out", default="scalespace-results",
                   help="results folder: where job ids are looked up and features cached (default ./scalespace-results)")
    p.add_argument("--api", help="look job ids up in a running service at this URL (with SCALESPACE_API_TOKEN)")
    p.add_argument("--cache", choices=CACHES, default="out",
                   help="where features are cached by content hash: out (the --out folder; default), store (the "
                        "configured store: S3 when SCALESPACE_S3_ENDPOINT is set) or none")
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_score)
