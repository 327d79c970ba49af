"""PNG plots of an evaluation report (matplotlib, Agg backend: no display needed).

Every plot is drawn from the JSON report alone, so a stored report.json can be
re-plotted later. Each function returns PNG bytes, or None when the report
lacks the part it draws.
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _check(report: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((c for c in report.get("checks", []) if c["key"] == key), None)


def _verdict(c: dict[str, Any] | None) -> str:
    if c is None or not c.get("applies"):
        return ""
    word = {True: "holds", False: "does not hold", None: "-"}[c.get("holds")]
    return f"{word} (expected: {c.get('expected')})"


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float], list[float]]:
    xs, ys, es = [], [], []
    for r in rows:
        v = r.get(key)
        if v is not None and math.isfinite(v):
            xs.append(r["index"])
            ys.append(v)
            es.append(r.get(f"{key}_se") or 0.0)
    return xs, ys, es


def _legend(ax: Any, empty: str) -> None:
    """A legend, or a note in the axes when nothing was drawn."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9)
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#5b6475")


def lyapunov_plot(report: dict[str, Any]) -> bytes | None:
    """F3 a to d over the step index, with Monte Carlo standard errors."""
    rows = report.get("trajectory")
    if not rows:
        return None
    panels = [
        ("conditional_entropy", "F3a", "H(u_t | u_0) [nats]"),
        ("information_loss", "F3b", "H(u_0 | u_t) [nats]"),
        ("kl_standard_normal", "F3c", "KL(p_t || N(0, I)) [nats]"),
        ("marginal_entropy", "F3d", "H(p_t) [nats]"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    for ax, (key, ck, label) in zip(axes.flat, panels):
        xs, ys, es = _series(rows, key)
        if key == "conditional_entropy":
            c = _check(report, "F3a")
            d = (c or {}).get("details") or {}
            if d.get("indices"):
                pts = [(i, v) for i, v in zip(d["indices"], d["values"]) if v is not None]
                xs, ys, es = [p[0] for p in pts], [p[1] for p in pts], [0.0] * len(pts)
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt="-o" if len(xs) <= 60 else "-", ms=2.5, lw=1.2, capsize=1.5)
        ax.set_title(f"{ck}: {_verdict(_check(report, ck))}", fontsize=10)
        ax.set_xlabel("step index i")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Lyapunov sequences: {report['process']['name']} on {report['data']['name']}", fontsize=12)
    return _png(fig)


def variance_plot(report: dict[str, Any]) -> bytes | None:
    rows = report.get("trajectory")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label in (("variance", "variance (all values)"), ("pixel_variance", "mean per-pixel variance"), ("mean", "mean")):
        xs, ys, _ = _series(rows, key)
        ax.plot(xs, ys, "-o", ms=2.5, label=label)
    ax.set_xlabel("step index i")
    ax.set_ylabel("mean / variance (grey values)")
    ax.set_title("Mean and variance over the forward trajectory", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _png(fig)


def fd_plot(report: dict[str, Any]) -> bytes | None:
    rows = report.get("trajectory")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label in (("fd_data", "Fréchet distance to the data"), ("fd_steady", "Fréchet distance to the steady state")):
        xs, ys, _ = _series(rows, key)
        pts = [(x, y) for x, y in zip(xs, ys) if y > 0]
        if pts:
            ax.semilogy([p[0] for p in pts], [p[1] for p in pts], "-o", ms=2.5, label=label)
    ax.set_xlabel("step index i")
    ax.set_ylabel("squared pixel units")
    ax.set_title("Distances over the forward trajectory (pixel space)", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, "no positive distances")
    return _png(fig)


def invariance_plot(report: dict[str, Any]) -> bytes | None:
    """The F5 map checks' adjusted p-values (two-sample tests), with their level."""
    checks = [c for c in report.get("checks", []) if c["key"].startswith("F5-") and c.get("applies")
              and c.get("figure") is not None and c.get("kind") == "test" and c["key"] != "F5-mean"]
    if not checks:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [c["key"][3:] for c in checks]
    vals = [min(max(c["figure"], 1e-4), 1.0) for c in checks]
    colours = ["#2e7d32" if c["holds"] else "#c62828" for c in checks]
    ax.barh(names, vals, color=colours)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    level = checks[0].get("tolerance")
    if level:
        ax.axvline(level, color="k", ls="--", lw=1)
        ax.text(level, 1.01, f"level {level:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8)
    ax.set_xlabel("adjusted p-value of the two-sample test (g(u_t) against u_t of g(u_0))")
    ax.set_ylabel("map g")
    ax.set_title("F5 invariances (green: commutes, red: does not)", fontsize=11, pad=14)
    return _png(fig)


def reverse_entropy_plot(report: dict[str, Any]) -> bytes | None:
    c = _check(report, "R3")
    d = (c or {}).get("details") or {}
    if not d.get("indices"):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(d["indices"], d["values"], "-", lw=1.2)
    turn = d.get("turning") or []
    times = report.get("times")
    if len(turn) == 2 and times:
        lo = min(range(len(times)), key=lambda i: abs(times[i] - turn[0]))
        hi = min(range(len(times)), key=lambda i: abs(times[i] - turn[1]))
        ax.axvspan(lo, hi, color="#c62828", alpha=0.15, label=f"not monotone: t in [{turn[0]:.3g}, {turn[1]:.3g}]")
        ax.legend(fontsize=9)
    ax.set_xlabel("upper index t of the reverse step t -> t-1")
    ax.set_ylabel("N/2 ln(2 pi e var) [nats]")
    ax.set_title(f"R3 per-step conditional entropy: {_verdict(c)}", fontsize=11)
    ax.grid(alpha=0.3)
    return _png(fig)


def density_plot(report: dict[str, Any]) -> bytes | None:
    dens = report.get("density")
    if not dens or not dens.get("rows"):
        return None
    rows = dens["rows"][1:]  # the first row is the starting density itself (L1 = 0)
    if not rows:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.semilogy([r["theta"] for r in rows], [max(r["l1"], 1e-18) for r in rows], "-o", ms=2.5, label="osmosis vs exact vp")
    if any("l1_samples_osmosis" in r for r in rows):
        a1.semilogy([r["theta"] for r in rows], [r.get("l1_samples_osmosis") for r in rows], "-s", ms=2.5,
                    label="osmosis vs vp samples (histogram)")
    a1.set_xlabel("theta = -1/2 ln abar")
    a1.set_ylabel("L1 distance")
    a1.set_title(f"vp grey-value density vs 1-D osmosis (max {dens['max_l1']:.2g})", fontsize=10)
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8)
    x = dens["x"]
    for k, (i, s) in enumerate(sorted(dens["snapshots"].items(), key=lambda kv: int(kv[0]))):
        colour = f"C{k % 10}"
        a2.plot(x, s["vp"], "-", color=colour, lw=1.2, label=f"theta {s['theta']:.2f}")
        a2.plot(x, s["osmosis"], "--", color="k", lw=0.8)
    a2.set_xlim(-4, 4)
    a2.set_xlabel("grey value")
    a2.set_ylabel("density")
    a2.set_title("densities: vp (colour) and osmosis (dashed)", fontsize=10)
    a2.legend(fontsize=7)
    return _png(fig)


def sensitivity_plot(report: dict[str, Any]) -> bytes | None:
    """Output distance against eps per sampler; None when no output moved at all (the report says so instead)."""
    sens = (report.get("robustness") or {}).get("sensitivity")
    if not sens or not any(r["distance_mean"] > 0 for s in sens for r in s["rows"]):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    unchanged = []
    for s in sens:
        pts = [(r["eps"], r["distance_mean"]) for r in s["rows"] if r["distance_mean"] > 0]
        if not pts:
            unchanged.append(s["sampler"])
        if pts:
            slope = s.get("slope")
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], "-o", ms=3,
                      label=f"{s['sampler']} ({s['steps']} steps), slope {slope:.2f}" if slope is not None else s["sampler"])
    ax.set_xlabel("perturbation size eps = |u_T' - u_T|")
    ax.set_ylabel("mean output distance")
    ax.set_title("Initial-noise sensitivity (same per-step noise)", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    if unchanged and len(unchanged) < len(sens):
        ax.text(0.98, 0.04, f"{', '.join(unchanged)}: outputs unchanged at every eps (distance 0)", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=9, color="#5b6475")
    _legend(ax, "every output was unchanged (distance 0)")
    return _png(fig)


def steps_plot(report: dict[str, Any]) -> bytes | None:
    rob = report.get("robustness") or {}
    rows = rob.get("steps")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.semilogx([r["steps"] for r in rows], [r["fd"] for r in rows], "-o", ms=3)
    spread = rob.get("seed_spread") or {}
    x_seed = rob.get("steps_of_seed_runs") or rows[-1]["steps"]
    for k, r in enumerate(spread.get("per_seed", [])):
        # each seed's BCa interval (bias removed) as a bar beside its estimate
        x = x_seed * (1 + 0.04 * (k - 1))
        ax.vlines(x, r["ci_low"], r["ci_high"], color="C1", lw=1.5)
        ax.plot([x], [r["fd"]], "s", ms=3, color="C1")
    ax.set_xlabel("reverse steps")
    ax.set_ylabel(f"Fréchet distance ({rob.get('extractor', 'pixels')})")
    ax.set_title(f"Quality against steps, n = {rows[0]['n']} (orange: seeds with BCa 95% intervals)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


PLOTS = {
    "lyapunov.png": lyapunov_plot,
    "variance.png": variance_plot,
    "fd.png": fd_plot,
    "invariances.png": invariance_plot,
    "reverse_entropy.png": reverse_entropy_plot,
    "density.png": density_plot,
    "sensitivity.png": sensitivity_plot,
    "steps.png": steps_plot,
}


def render_plots(report: dict[str, Any], on_plot: Callable[[int, int], None] | None = None) -> dict[str, bytes]:
    """Every plot the report has data for: file name -> PNG bytes. `on_plot(done, total)`: after each plot."""
    out = {}
    for k, (name, fn) in enumerate(PLOTS.items()):
        png = fn(report)
        if png is not None:
            out[name] = png
        if on_plot is not None:
            on_plot(k + 1, len(PLOTS))
    return out


__all__ = ["PLOTS", "render_plots"]
