"""F5 invariances: apply a transform before the process and after it, test whether the two agree in law.

For a transform g and data u_0 the check draws two independent sets of samples
at each checked step t: X1 = g(u_t) with u_t = E[u_t | u_0] + sigma_t z1 (the
process first, then g), and X2 = u_t of g(u_0) with its own noise z2 (g first,
then the process). The two sets have the same law exactly when the process
commutes with g. A two-sample test decides, with four statistics at each step
(two_sample_statistics): the squared maximum mean discrepancy (MMD) with a
Gaussian kernel whose bandwidth is the median pairwise distance of the pooled
samples, and the squared differences of the means, of the second moments and
of the mean squared norms (in 64 or more dimensions the Gaussian kernel hardly
sees a change of scale; these do). Their p-values come from
permutations_for(steps) (at least PERMUTATIONS) random relabellings with a
fixed seed, so the verdict is reproducible: from PAIRED_MIN images on, swaps of
the two runs of the same image (exact, and the spread between images drops out
of the reference distribution); below that, relabellings of the pooled samples
(conservative: both sets start from the same images). The p-values of all
steps and statistics are adjusted together by the Westfall-Young min-p method
(the same relabellings everywhere: it controls the family-wise error like
Bonferroni or Holm, and uses the dependence between steps and statistics). The
property holds when the smallest adjusted p-value stays above LEVEL; the
check's figure is that p-value.

The independent noise is what makes the check able to fail: with one noise
shared by both runs (g(z) for one, z for the other), a process that scales
every pixel alike (vp, ve) passes for any linear g, orthogonal or not.

Each map check also states its power: the smallest number of images, among
POWER_NS, at which the same test (same steps, level and permutations) rejects
a transform the process does not commute with (the counterexample: the pixel
permutation for processes that couple neighbouring pixels, a grey-value
scaling by COUNTER_SCALE for vp and ve, which commute with every orthogonal
map).

Theory: vp and ve commute with every orthogonal map; blurring and heat
(diagonal in the DCT basis, Neumann boundaries) only with flips,
transposition, 90 degree rotations and channel permutations, NOT with pixel
permutations or circular shifts. A grey shift u_0 + c moves the noise-free
u_t by c times the DC gain, in closed form: sqrt(abar_t) = sqrt(prod_{k=1..t}
(1 - beta_k)) for vp, 1 for ve and heat, a_t = sqrt(sigmoid(logSNR_t)) for
blurring (its dissipation is 1 on the DC mode); osmosis keeps each image's
mean exactly, so there it moves the image's mean by exactly c. Heat keeps the
mean in expectation.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scalespace.evaluation.check import Z_SCORE, Check, not_applicable
from scalespace.evaluation.forward_trajectory import marginal_path
from scalespace.noise import Stream, normal
from scalespace.processes.base import Process

#: family-wise level of the F5 map tests (over the steps checked)
LEVEL = 0.01
#: random relabellings per permutation test, at least; more when many steps are checked (permutations_for)
PERMUTATIONS = 1000
#: from this many images on the test swaps within pairs (exact); below it relabels the pooled samples
PAIRED_MIN = 16
#: sample sizes tried for the power statement
POWER_NS = (16, 32, 64, 128, 256)
#: the grey-value scaling that vp and ve do not commute with (their power counterexample)
COUNTER_SCALE = 1.1
#: rounding tolerance of the grey-shift identity (relative to the shift)
GREY_TOL = 1e-9
GREY_SHIFT = 0.1
MEAN_TOL = 1e-12
#: the change of the mean grey value (a DC gain of 1 - MEAN_COUNTER) the F5-mean test's power is stated against
MEAN_COUNTER = 0.01

Transform = Callable[[torch.Tensor], torch.Tensor]


def transforms(shape: tuple[int, int, int], seed: int = 0) -> dict[str, tuple[str, Transform | None]]:
    """name -> (description, g) for images (B, C, H, W); g is None where it does not apply to this shape."""
    c, h, w = shape
    permute = _pixel_permutation(shape, seed)
    square = h == w
    return {
        "permutation": ("a fixed random permutation of the pixel positions", permute),
        "circular-shift": ("a circular shift by one pixel to the right", lambda x: torch.roll(x, 1, dims=-1)),
        "flip-horizontal": ("a left-right flip", lambda x: x.flip(-1)),
        "flip-vertical": ("an up-down flip", lambda x: x.flip(-2)),
        "transpose": ("transposition", (lambda x: x.transpose(-2, -1)) if square else None),
        "rotate-90": ("a rotation by 90 degrees", (lambda x: torch.rot90(x, 1, dims=(-2, -1))) if square else None),
        "channel-permutation": ("a cyclic permutation of the channels", (lambda x: torch.roll(x, 1, dims=-3)) if c > 1 else None),
    }


def _pixel_permutation(shape: tuple[int, int, int], seed: int) -> Transform:
    _, h, w = shape
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))

    def permute(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-2)[..., perm].reshape(x.shape)

    return permute


def counterexample(process: Process, seed: int = 0) -> tuple[str, Transform]:
    """A transform the process does NOT commute with, for the F5 tests' power statement."""
    if process.isotropic:
        s = COUNTER_SCALE
        return f"a grey-value scaling by {s:g} (not orthogonal)", lambda x: s * x
    return "the fixed random pixel permutation", _pixel_permutation(process.shape, seed)


# --- the two-sample test ---------------------------------------------------------------


def permutations_for(steps: int, level: float = LEVEL) -> int:
    """Relabellings for a test over `steps` steps: at least PERMUTATIONS, and enough that m / (P + 1) (m: steps times
    statistics), about the smallest adjusted p-value when a single statistic at a single step differs, stays at
    half the level or below."""
    return max(PERMUTATIONS, math.ceil(2 * steps * len(STATISTICS) / level))


def relabellings(n: int, permutations: int = PERMUTATIONS, seed: int = 0) -> torch.Tensor:
    """Weights (2 n, permutations + 1), float64, for n samples X1 (rows 0..n-1) and n samples X2 paired with them.

    Column 0 is the true split (+1/n on X1, -1/n on X2). From PAIRED_MIN pairs on, the other columns swap the
    two members of each pair with probability 1/2: sample j of both sets starts from the same image, so under
    the null hypothesis the two members are exchangeable and the test is exact, and the images' spread cancels
    out of the reference distribution (more power). Below PAIRED_MIN the few distinct swaps (2^(n-1)) cannot
    reach a small p-value, so the columns relabel the 2 n pooled samples at random instead: conservative,
    since both sets start from the same images.
    """
    g = torch.Generator().manual_seed(seed)
    if n >= PAIRED_MIN:
        e = (torch.randint(0, 2, (n, permutations), generator=g) * 2 - 1).to(torch.float64)
        e = torch.cat([torch.ones(n, 1, dtype=torch.float64), e], dim=1)
        return torch.cat([e, -e]) / n
    w = torch.cat([torch.full((n,), 1.0 / n), torch.full((n,), -1.0 / n)]).to(torch.float64)
    idx = torch.argsort(torch.rand(permutations, 2 * n, generator=g, dtype=torch.float64), dim=1)
    return torch.cat([w[:, None], w[idx].T], dim=1)


#: the statistics of the two-sample test, each at every step (see two_sample_statistics)
STATISTICS = ("mmd", "mean", "covariance", "norm")


def two_sample_statistics(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Four two-sample statistics between samples x and y (B, ...), for each column of `weights` (relabellings).

    Rows: "mmd", the squared maximum mean discrepancy (V-statistic) with the Gaussian kernel
    exp(-|a - b|^2 / (2 h^2)), h^2 the median squared distance of the pooled samples (the median heuristic),
    which tells any two laws apart as n grows; "mean", the squared distance of the two means; "covariance", the
    squared Frobenius distance of the two second moments about the pooled mean; "norm", the squared difference of
    the mean squared norms. The last three are MMDs with the linear kernel, its square and the product of squared
    norms: in high dimension the Gaussian kernel hardly sees a change of scale, and they do. Identical pooled
    samples give 0 for every labelling.
    """
    z = torch.cat([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)]).to(torch.float64)
    z = z - z.mean(0)
    lin = z @ z.T
    sq = lin.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2 * lin).clamp_min(0)
    n = z.shape[0]
    med = d2[~torch.eye(n, dtype=torch.bool)].median()
    out = torch.zeros(len(STATISTICS), weights.shape[1], dtype=torch.float64)
    if not float(med) > 0:
        return out
    q = sq[:, None] * sq[None, :]
    half = x.shape[0]
    paired = 2 * half == n and torch.equal(weights[:half], -weights[half:])
    for r, k in enumerate((torch.exp(-d2 / (2 * med)), lin, lin * lin, q)):
        if paired:  # w = (e, -e): w^T K w = e^T (K11 - K12 - K21 + K22) e, a quarter of the work
            e = weights[:half]
            h = k[:half, :half] - k[:half, half:] - k[half:, :half] + k[half:, half:]
            out[r] = (e * (h @ e)).sum(0)
        else:
            out[r] = (weights * (k @ weights)).sum(0)
    return out


def permutation_p_values(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw and Westfall-Young (min-p) adjusted p-values of the true labelling (column 0) at each row (step).

    stats: (tests, permutations + 1), a row per step (and statistic). Raw p at a row: the share of labellings whose statistic is at least the
    true one's. Adjusted: the share of labellings whose smallest raw p over the steps is at most the step's raw p;
    this controls the family-wise error over the steps. Both include the true labelling, so neither is below
    1 / (permutations + 1).
    """
    b = stats.shape[1]
    slack = 1e-9 * stats.abs().amax(1, keepdim=True).clamp_min(1e-300)
    # p[t, j]: share of labellings at step t whose statistic is >= labelling j's (ties to rounding count)
    ordered = stats.sort(dim=1).values
    p = (b - torch.searchsorted(ordered, (stats - slack).contiguous())).to(torch.float64) / b
    min_p = p.min(0).values
    adjusted = (min_p[None, :] <= p[:, :1] + 1e-12).sum(1).to(torch.float64) / b
    return p[:, 0], adjusted


def _noises(process: Process, seed: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard normal draws per image: one for each run of the process."""
    z1 = normal(seed, ids, 0, process.shape, Stream.FORWARD).to(torch.float64)
    z2 = normal(seed, ids, 1, process.shape, Stream.FORWARD).to(torch.float64)
    return z1, z2


def invariance_test(
    process: Process, u0: torch.Tensor, g: Transform, indices: list[int], seed: int = 0,
    permutations: int | None = None, base: dict[int, torch.Tensor] | None = None,
    on_index: Callable[[], None] | None = None,
) -> dict[str, list]:
    """The F5 two-sample test of g on data u0 (B, C, H, W) at the given steps.

    X1 = g(E[u_t | u_0] + sigma_t z1), X2 = E[u_t | g(u_0)] + sigma_t z2 with independent z1, z2. Returns the
    steps, the statistics' names and values (one row per step), and per step the smallest raw and adjusted
    p-value over the statistics (adjusted over every step and statistic together). `base`: E[u_t | u_0]
    when the caller has it; `permutations` defaults to permutations_for(len(indices)). on_index() is called after
    each step's statistics.
    """
    u0 = u0.to(torch.float64)
    n = u0.shape[0]
    ids = torch.arange(n)
    z1, z2 = _noises(process, seed, ids)
    if base is None:
        base = marginal_path(process, u0, indices, ids)
    moved = marginal_path(process, g(u0), indices, ids)
    w = relabellings(n, permutations or permutations_for(len(indices)), seed)
    k = len(STATISTICS)
    rows = []
    for i in indices:
        rows.append(two_sample_statistics(g(base[i] + process.sigma(i) * z1), moved[i] + process.sigma(i) * z2, w))
        if on_index is not None:
            on_index()
    stats = torch.cat(rows)  # row i_step * k + statistic
    raw, adjusted = permutation_p_values(stats)
    # per step: the smallest p-value over the statistics (adjusted: over steps and statistics together)
    raw, adjusted = raw.reshape(-1, k), adjusted.reshape(-1, k)
    return {"indices": list(indices), "statistics": list(STATISTICS),
            "statistic_values": stats[:, 0].reshape(-1, k).tolist(), "p_values": raw.min(1).values.tolist(),
            "adjusted": adjusted.min(1).values.tolist()}


def power_n(
    process: Process, u0: torch.Tensor, g: Transform, indices: list[int], seed: int = 0, level: float = LEVEL,
    ns: tuple[int, ...] = POWER_NS, on_index: Callable[[], None] | None = None,
) -> tuple[int | None, list[int]]:
    """The smallest n among `ns` (those up to len(u0); len(u0) itself when it is below them all) at which the
    F5 test rejects g at `level`, None if none does; and the sizes tried (on_index: invariance_test's)."""
    tried = power_sizes(u0.shape[0], ns)
    for n in tried:
        if min(invariance_test(process, u0[:n], g, indices, seed, on_index=on_index)["adjusted"]) <= level:
            return n, tried
    return None, tried


def power_sizes(n: int, ns: tuple[int, ...] = POWER_NS) -> list[int]:
    """The sizes power_n tries for n images."""
    return [k for k in ns if k <= n] or [n]


def _power_text(power: dict) -> str:
    if power["n"] is None:
        return (f"Power: the same test does not reject {power['counterexample']} with up to {max(power['tried'])} "
                f"images; a pass here is weak evidence.")
    return (f"Power: the same test rejects {power['counterexample']}, a map this process does not commute with, "
            f"from n = {power['n']} images on (sizes tried: {', '.join(map(str, power['tried']))}).")


def _expected_reason(process: Process, key: str) -> str:
    if process.isotropic:
        return "vp and ve act on every pixel alike and independently, so they commute with every orthogonal map."
    if process.spectral:
        if key in ("permutation", "circular-shift"):
            return ("Blurring couples neighbouring pixels with Neumann (reflecting) boundaries: it does NOT commute with "
                    "this map, and the check must report that.")
        return "The DCT modes map to themselves (up to sign) under this map, so the process commutes with it."
    return "The guidance image v is fixed noise, so theory promises no spatial symmetry; shown, not asserted."


def invariance_steps(shape: tuple[int, int, int], n: int, indices: list[int]) -> int:
    """The steps check_invariances reports to on_step: the marginal means, each step of each two-sample test
    (the power sizes' and every applicable map's), the grey shift and mean checks."""
    maps = sum(g is not None for _, g in transforms(shape).values())
    return 2 + (len(power_sizes(n)) + maps) * len(indices)


def check_invariances(process: Process, u0: torch.Tensor, indices: list[int], seed: int = 0,
                      on_step: Callable[[int, int], None] | None = None) -> list[Check]:
    """Every F5 check on data u0 (B, C, H, W) at the given process indices (on_step(done, total): invariance_steps)."""
    u0 = u0.to(torch.float64)
    n = u0.shape[0]
    ids = torch.arange(n)
    total, done = invariance_steps(process.shape, n, indices), [0]

    def step(to: int | None = None) -> None:
        """One step more, or (to) up to that many."""
        done[0] = done[0] + 1 if to is None else max(done[0], to)
        if on_step is not None:
            on_step(done[0], total)

    base = marginal_path(process, u0, indices, ids)
    step()
    desc_c, g_c = counterexample(process, seed)
    n_c, tried = power_n(process, u0, g_c, indices, seed, on_index=step)
    step(to=1 + len(tried) * len(indices))  # the sizes past the first that rejects are not tried
    power = {"counterexample": desc_c, "n": n_c, "tried": tried, "level": LEVEL}
    perms = permutations_for(len(indices))
    checks = []
    for key, (desc, g) in transforms(process.shape, seed).items():
        name = f"F5 invariance under {key.replace('-', ' ')}"
        if g is None:
            checks.append(not_applicable(f"F5-{key}", name, process.name, f"{desc} does not apply to images of shape {process.shape}",
                                         kind="test"))
            continue
        res = invariance_test(process, u0, g, indices, seed, base=base, on_index=step)
        adj = res["adjusted"]
        worst = min(range(len(adj)), key=lambda k: adj[k])
        fig = adj[worst]
        checks.append(Check(
            f"F5-{key}", name, process.name, True, fig > LEVEL, fig, LEVEL,
            f"g(u_t) against u_t of g(u_0), g = {desc}, with independent noise, {n} images each, {len(indices)} steps: "
            f"two-sample test by the Gaussian-kernel MMD (median-distance bandwidth) and the distances of the means, "
            f"second moments and mean squared norms, {perms} random {'swaps within pairs' if n >= PAIRED_MIN else 'relabellings'}, "
            f"p-values adjusted over steps and statistics (Westfall-Young min-p); the figure is the smallest adjusted p-value "
            f"(at index {res['indices'][worst]}), the property holds above the level {LEVEL:g}. {_power_text(power)} "
            f"{_expected_reason(process, key)}",
            details={**res, "values": adj, "level": LEVEL, "permutations": perms, "power": power},
            kind="test",
        ))
    checks.append(_grey_shift(process, u0, indices, ids, base))
    z1, _ = _noises(process, seed, ids)
    noisy = {i: base[i] + process.sigma(i) * z1 for i in indices}
    checks.append(_mean(process, u0, indices, ids, noisy))
    step(to=total)
    return checks


# --- grey shift and mean -----------------------------------------------------------------


def dc_gain(process: Process, i: int) -> float | None:
    """The DC gain of A_i in closed form from the process's parameters (None where there is none).

    vp: sqrt(abar_i) = sqrt(prod_{k < i} (1 - beta_k)); ve and heat: 1 (heat's factor exp(-lambda tau) is 1 at
    lambda = 0); blurring: a_i = sqrt(sigmoid(logSNR(t))), logSNR(t) = -2 ln tan(t (atan e^{-lmin/2} -
    atan e^{-lmax/2}) + atan e^{-lmax/2}), t = i / T (its dissipation is 1 on the DC mode).
    """
    name, p = process.name, process.params
    if name == "vp":
        return math.sqrt(math.prod(1.0 - float(b) for b in process.betas[:i]))
    if name in ("ve", "heat"):
        return 1.0
    if name == "blurring":
        c0 = math.atan(math.exp(-p.logsnr_max / 2))
        c1 = math.atan(math.exp(-p.logsnr_min / 2)) - c0
        logsnr = -2 * math.log(math.tan(c1 * i / p.T + c0))
        return math.sqrt(1.0 / (1.0 + math.exp(-logsnr)))
    return None


def _grey_shift(process, u0, indices, ids, base) -> Check:
    c = GREY_SHIFT
    name = f"F5 grey shift u_0 + {c:g} moves u_t by the DC gain"
    moved = marginal_path(process, u0 + c, indices, ids)
    if process.keeps_mean == "exactly":
        figs = {i: float(((moved[i] - base[i]).mean(dim=(-2, -1)) - c).abs().max()) / c for i in indices}
        rule = ("the mean grey value of every image moves by exactly c (osmosis keeps each image's mean; the "
                "pixels themselves flow towards the guidance)")
    else:
        gains = {i: dc_gain(process, i) for i in indices}
        if any(v is None for v in gains.values()):
            return not_applicable("F5-grey-shift", name, process.name, f"no closed-form DC gain is known for {process.name}")
        figs = {i: float((moved[i] - base[i] - c * gains[i]).abs().max()) / c for i in indices}
        rule = f"every pixel moves by c times the closed-form DC gain ({process.dc_factor_text})"
    worst_i = max(figs, key=lambda i: figs[i])
    return Check(
        "F5-grey-shift", name, process.name, True, figs[worst_i] <= GREY_TOL, figs[worst_i], GREY_TOL,
        f"Noise-free u_t of u_0 + c against u_t of u_0, c = {c:g}: {rule}. The figure is the largest deviation from "
        f"that closed form over {u0.shape[0]} images and {len(indices)} steps, relative to c (at index {worst_i}).",
        details={"indices": list(figs), "values": list(figs.values())},
    )


def _mean_test(d: dict[int, torch.Tensor], indices) -> tuple[float, float, float]:
    """(excess over the allowed, figure, allowed) at the worst step: |average change of the mean| against
    Z_SCORE standard errors."""
    best = None
    for i in indices:
        x = d[i].flatten()
        se = float(x.std() / x.numel() ** 0.5) if x.numel() > 1 else 0.0
        fig, allowed = abs(float(x.mean())), Z_SCORE * se + 1e-12
        if best is None or fig - allowed > best[0]:
            best = (fig - allowed, fig, allowed)
    return best


def _mean(process, u0, indices, ids, noisy) -> Check:
    name = "F5 mean grey value preserved"
    m0 = u0.mean(dim=(-2, -1))
    if process.keeps_mean == "exactly":
        means = marginal_path(process, u0, indices, ids)
        dev = max(float((means[i].mean(dim=(-2, -1)) - m0).abs().max()) for i in indices)
        tol = MEAN_TOL * max(1.0, float(m0.abs().max()) + process.params.offset)
        return Check("F5-mean", name, process.name, True, dev <= tol, dev, tol,
                     f"Largest change of an image's (noise-free) mean grey value over {len(indices)} steps: osmosis keeps it exactly.")
    if process.keeps_mean != "in expectation":
        return not_applicable("F5-mean", name, process.name, "promised for heat (in expectation) and osmosis (exactly)", kind="test")
    d = {i: noisy[i].mean(dim=(-2, -1)) - m0 for i in indices}
    excess, worst, tol = _mean_test(d, indices)
    # power: the same test against a process whose DC gain is 1 - MEAN_COUNTER (the mean shrinks by that share)
    n = u0.shape[0]
    tried = [k for k in POWER_NS if k <= n] or [n]
    n_c = next((k for k in tried if _mean_test({i: d[i][:k] - MEAN_COUNTER * m0[:k] for i in indices}, indices)[0] > 0), None)
    power = {"counterexample": f"a DC gain of {1 - MEAN_COUNTER:g} (each image's mean shrinks by {MEAN_COUNTER:.0%})",
             "n": n_c, "tried": tried}
    return Check("F5-mean", name, process.name, True, excess <= 0, worst, tol,
                 f"Average change of the images' mean grey value over {n} samples: heat keeps the DC mode, so the mean "
                 f"moves only by its noise; allowed {Z_SCORE:g} standard errors. {_power_text(power)}",
                 details={"power": power}, kind="test")


__all__ = ["LEVEL", "PERMUTATIONS", "POWER_NS", "check_invariances", "counterexample", "dc_gain", "invariance_test",
           "STATISTICS", "permutation_p_values", "permutations_for", "power_n", "relabellings", "transforms",
           "two_sample_statistics"]
