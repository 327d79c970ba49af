"""Forward scale-space properties F1 to F4 from a forward trajectory.

`forward_checks` lists every forward check of one process: F1 to F4 here,
and for osmosis its own laws O1 to O3 (osmosis_laws.py). F5 lives in
invariances.py, R1 to R4 in reverse.py.

F2 (Chapman-Kolmogorov) is sampled, so it can fail: from the same data
images, u_t drawn in two steps through the process's transition (u_s ~
p(u_s | u_0), then u_t ~ p(u_t | u_s)) against u_t drawn directly from
p(u_t | u_0), with independent noise, compared by F5's two-sample test at a
stated level, with its power against a transition that counts the noise of
u_s twice. A transition with a negative variance does not exist: F2 fails
without a test. F1 is an identity where index 0 is the data itself.

Monotonicity of a Monte Carlo sequence is judged on the paired differences
between neighbouring steps (same samples, same noise): a step against the
expected direction counts only when it exceeds Z_SCORE standard errors of
that difference, plus a small absolute slack for rounding. Closed-form
sequences are judged with a rounding tolerance alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from scalespace.evaluation.check import Z_SCORE, Check
from scalespace.evaluation.forward_trajectory import ForwardTrajectory
from scalespace.evaluation.invariances import (
    PAIRED_MIN, STATISTICS, permutation_p_values, permutations_for, relabellings, two_sample_statistics,
)
from scalespace.evaluation.osmosis_laws import osmosis_laws
from scalespace.kernels import dispatch
from scalespace.noise import Stream, normal
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.base import DriftDiffusionProcess, LinearGaussianProcess, Process
from scalespace.stats.frechet import fd_moments, kl_gaussians, second_moment
from scalespace.stats.moments import Moments

#: absolute slack (nats) for rounding in entropy sequences
ENTROPY_SLACK = 1e-9
F1_TOL = 1e-3
#: F2's two-sample test: family-wise level over the pairs (s, t) and statistics
F2_LEVEL = 0.01
#: about this many of the evaluated indices are F2's checked times (pairs with the next one and with the last)
F2_POINTS = 8
#: sample sizes tried for F2's power statement
F2_POWER_NS = (16, 32, 64, 128, 256)
#: first step number of F2's three independent noise draws (Stream.FORWARD; F5 uses steps 0 and 1)
F2_NOISE_STEP = 2
#: rounding tolerance of the heat flow's composition F(3) F(5) = F(8)
F2_TOL = 1e-9
F2_OSMOSIS_TOL = 1e-2
#: explicit osmosis steps at this fraction of the stable bound in the F2 check (smaller time error)
F2_OSMOSIS_SAFETY = 0.1
#: F4 (and R1): largest KL (nats) from p_T to the steady state (to the prior for R1) that counts as reached.
#: On 8x8 digits the default vp schedule (abar_T = 4e-5) is 5e-4 nats away and abar_T = 0.04 is 0.57 nats away
#: (0.43 on 8x8 fashion-mnist); ve's u_T / sigma_T sits 0.19 to 0.26 nats from N(0, I) there.
F4_TOL = 0.3
#: exact p_T covariances up to this dimension; beyond it, per-pixel (diagonal) moment matching
KL_FULL_MAX_DIM = 4096
#: training images pushed to T at a time for the exact moments
KL_CHUNK = 1024


@dataclass
class Monotone:
    """Verdict on a sequence: `worst` is the largest step against the expected direction."""

    holds: bool
    worst: float
    worst_at: int | None
    allowed: float
    wrong_steps: list[int]


def monotone(
    values: dict[int, float | None],
    direction: int,
    allowed: dict[int, float] | float = 0.0,
    strict: bool = False,
) -> Monotone:
    """Is values[i] (over ascending i) monotone in `direction` (+1 up, -1 down)?

    `allowed[i]` is how far the step from i to the next present index may go the
    wrong way (weak sense); `strict` requires every step to go the right way.
    Missing or non-finite values are skipped. The returned `wrong_steps` are the
    indices i where the step i -> next broke the rule.
    """
    keys = [i for i in sorted(values) if values[i] is not None and math.isfinite(values[i])]
    worst, worst_at, worst_allowed, wrong = -math.inf, None, 0.0, []
    for a, b in zip(keys[:-1], keys[1:]):
        back = -direction * (values[b] - values[a])  # > 0: a step the wrong way
        tol = allowed.get(a, 0.0) if isinstance(allowed, dict) else float(allowed)
        bad = back >= 0 if strict else back > tol
        if bad:
            wrong.append(a)
        if back > worst:
            worst, worst_at, worst_allowed = back, a, tol
    if worst_at is None:
        worst = 0.0
    return Monotone(holds=not wrong, worst=worst, worst_at=worst_at, allowed=worst_allowed, wrong_steps=wrong)


def _mc_sequence(traj: ForwardTrajectory, measure: str, sign: float = 1.0) -> tuple[dict, dict, dict]:
    """Means, standard errors and allowed wrong-way steps (Z_SCORE paired standard errors) of a measure."""
    vals, ses, allowed = {}, {}, {}
    for i in traj.indices:
        v, se = traj.mc(measure, i, sign)
        if v is not None:
            vals[i], ses[i] = v, se
        d = traj.diffs[measure].get(i)
        if d is not None and d.count >= 2:
            allowed[i] = Z_SCORE * d.stderr() + ENTROPY_SLACK * max(1.0, abs(v or 0.0))
    return vals, ses, allowed


def _t(process: Process, i: int | None) -> str:
    return "-" if i is None else f"t = {float(process.times()[i]):.4g} (index {i})"


def _exact_start(process: Process, u0: torch.Tensor) -> bool:
    """True when index 0 is the data itself in floating point: sigma_0 = 0 and A_0 u_0 = u_0 bit for bit."""
    x = u0[:16].to(torch.float64)
    return process.sigma(0) == 0 and torch.equal(process.marginal_mean(0, x, torch.arange(x.shape[0])), x)


def check_f1(process: Process, traj: ForwardTrajectory, u0: torch.Tensor | None = None) -> Check:
    """F1: p(u_0) is the data distribution.

    A bound: the Fréchet distance between the trajectory's samples at index 0 and the data they came from,
    relative to E|u_0|^2. Where index 0 is the data itself (sigma_0 = 0 and A_0 = I exactly, read from the
    process on data images u0: vp and ve), the samples ARE the data and the figure is 0 by construction: an
    identity there.
    """
    i0 = traj.indices[0]
    rel = fd_moments(traj.moments[i0], traj.data) / max(second_moment(traj.data), 1e-300)
    exact = i0 == 0 and u0 is not None and _exact_start(process, u0)
    if exact:
        why = ("sigma_0 = 0 and A_0 u_0 = u_0 exactly (checked on data images), so the samples at index 0 are the data "
               "themselves and the figure is 0 by construction: an identity, no evidence.")
    else:
        why = (f"sigma_0 = {process.sigma(i0):.3g} and A_0 must add only a little: a process whose first state "
               f"moves the data (a DC gain or a noise level off by a few percent) fails.")
    return Check(
        "F1", "F1 initial state is the data distribution", process.name, True, rel <= F1_TOL, rel, F1_TOL,
        f"Fréchet distance between the samples at index {i0} and the data they came from, relative to E|u_0|^2, "
        f"at most {F1_TOL:g}: {why}",
        kind="identity" if exact else "bound",
    )


def _triples(indices: list[int]) -> list[tuple[int, int, int]]:
    n = len(indices)
    if n < 3:
        return []
    picks = {(0, n // 2, n - 1), (0, 1, 2), (n - 3, n - 2, n - 1), (n // 4, n // 2, (3 * n) // 4)}
    return sorted((indices[a], indices[b], indices[c]) for a, b, c in picks if a < b < c)


def _f2_pairs(indices: list[int]) -> list[tuple[int, int]]:
    """The (s, t) pairs F2 tests: about F2_POINTS of the indices, each with the next one and with the last (s > first)."""
    n = len(indices)
    if n < 2:
        return []
    pts = sorted({indices[round(k * (n - 1) / F2_POINTS)] for k in range(F2_POINTS + 1)})
    inner = pts[1:]
    if len(inner) < 2:
        return [(pts[0], pts[-1])]
    return sorted(set(zip(inner[:-1], inner[1:])) | {(inner[0], inner[-1])})


def _twice_noised(process: LinearGaussianProcess, s: int, t: int, u_s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The power counterexample of F2: A_{t|s} u_s + sigma_t z, the marginal's noise added on top of u_s's (counted twice)."""
    a, _ = process.transition(s, t)
    return process.from_basis(a.to(u_s.dtype) * process.to_basis(u_s)) + process.sigma(t) * z


def chapman_kolmogorov_test(
    process: LinearGaussianProcess, u0: torch.Tensor, pairs: list[tuple[int, int]], seed: int = 0,
    transition=None, permutations: int | None = None, poll: Callable[[], None] | None = None,
) -> dict[str, list]:
    """F2's two-sample test on data images u0 (B, C, H, W): two-step against direct sampling at each pair (s, t).

    X1: u_s = A_s u_0 + sigma_s z1, then u_t ~ p(u_t | u_s) through `transition(s, t, u_s, z2)` (default the
    process's sample_transition); X2: u_t = A_t u_0 + sigma_t z3, from the same images with independent noise.
    The same four statistics, paired relabellings and Westfall-Young adjustment over pairs and statistics as
    F5 (invariances.py). Returns the pairs, per pair the smallest raw and adjusted p-value, and the statistics.
    `poll`: called after each pair (a job's progress and cancel check).
    """
    transition = transition or process.sample_transition
    u0 = u0.to(torch.float64)
    n = u0.shape[0]
    ids = torch.arange(n)
    z1, z2, z3 = (normal(seed, ids, F2_NOISE_STEP + k, process.shape, Stream.FORWARD).to(torch.float64) for k in range(3))
    w = relabellings(n, permutations or permutations_for(len(pairs), F2_LEVEL), seed)
    rows = []
    for s, t in pairs:
        two = transition(s, t, process.sample_marginal(s, u0, z1, ids), z2)
        rows.append(two_sample_statistics(two, process.sample_marginal(t, u0, z3, ids), w))
        if poll is not None:
            poll()
    raw, adjusted = permutation_p_values(torch.cat(rows))
    k = len(STATISTICS)
    raw, adjusted = raw.reshape(-1, k), adjusted.reshape(-1, k)
    return {"pairs": [list(p) for p in pairs], "permutations": w.shape[1] - 1, "p_values": raw.min(1).values.tolist(),
            "adjusted": adjusted.min(1).values.tolist(), "statistics": list(STATISTICS),
            "statistic_values": torch.cat(rows)[:, 0].reshape(-1, k).tolist()}


def f2_power(
    process: LinearGaussianProcess, u0: torch.Tensor, pairs: list[tuple[int, int]], seed: int = 0,
    ns: tuple[int, ...] = F2_POWER_NS, poll: Callable[[], None] | None = None,
) -> tuple[int | None, list[int]]:
    """The smallest n among `ns` (up to len(u0)) at which F2's test rejects the twice-noised transition
    (_twice_noised) at F2_LEVEL, None if none does; and the sizes tried."""
    tried = [k for k in ns if k <= u0.shape[0]] or [u0.shape[0]]
    for k in tried:
        res = chapman_kolmogorov_test(process, u0[:k], pairs, seed, poll=poll,
                                      transition=lambda s, t, u, z: _twice_noised(process, s, t, u, z))
        if min(res["adjusted"]) <= F2_LEVEL:
            return k, tried
    return None, tried


def _negative_transition(process: LinearGaussianProcess, pairs: list[tuple[int, int]]) -> tuple[float, tuple[int, int]]:
    """The smallest sigma_{t|s}^2 over every neighbouring step i -> i + 1 and the tested pairs, and where."""
    worst, where = math.inf, (0, 1)
    for s, t in [(i, i + 1) for i in range(process.T)] + list(pairs):
        v = float(process.transition(s, t)[1].min())
        if v < worst:
            worst, where = v, (s, t)
    return worst, where


def check_f2(process: Process, traj: ForwardTrajectory, u0: torch.Tensor, seed: int = 0,
             poll: Callable[[], None] | None = None) -> Check:
    """F2: Chapman-Kolmogorov, sampled: u_s ~ p(u_s | u_0) then u_t ~ p(u_t | u_s) has the law of u_t ~ p(u_t | u_0).

    A two-sample test (F5's statistics and relabellings) on data images u0 with independent noise, at F2_LEVEL;
    a transition with a negative variance does not exist, and F2 then fails without a test. Osmosis has no
    sampling transition: there F2 is the semigroup of its noise-free evolution (a bound, _f2_osmosis).
    """
    name = "F2 semigroup (Chapman-Kolmogorov)"
    if isinstance(process, DriftDiffusionProcess):
        return _f2_osmosis(process, _triples(traj.indices), u0)
    assert isinstance(process, LinearGaussianProcess)
    pairs = _f2_pairs(traj.indices)
    neg, at = _negative_transition(process, pairs)
    if neg < 0:
        return Check(
            "F2", name, process.name, True, False, None, F2_LEVEL,
            f"NO TRANSITION: sigma_{{t|s}}^2 = {neg:.3g} < 0 from index {at[0]} to {at[1]}. A negative variance means "
            "no Gaussian p(u_t | u_s) exists: these marginals belong to no Markov chain, so Chapman-Kolmogorov fails "
            "and nothing can be sampled to test it (no figure).",
            details={"min_transition_variance": neg, "at": list(at)}, kind="test",
        )
    res = chapman_kolmogorov_test(process, u0, pairs, seed, poll=poll)
    adj = res["adjusted"]
    worst = min(range(len(adj)), key=lambda k: adj[k])
    fig = adj[worst]
    n_c, tried = f2_power(process, u0, pairs, seed, poll=poll)
    power = {"counterexample": "the transition A_{t|s} u_s + sigma_t z (the noise of u_s counted twice)",
             "n": n_c, "tried": tried, "level": F2_LEVEL}
    if n_c is None:
        power_txt = (f"Power: the same test does not reject {power['counterexample']} with up to {max(tried)} images; "
                     "a pass here is weak evidence.")
    else:
        power_txt = (f"Power: the same test rejects {power['counterexample']} from n = {n_c} images on (sizes tried: "
                     f"{', '.join(map(str, tried))}).")
    holds = fig > F2_LEVEL
    extra = ""
    flow = process.semigroup()
    if flow is not None:
        x = u0[:16].to(torch.float64)
        e = float((flow(flow(x, 3.0), 5.0) - flow(x, 8.0)).norm() / flow(x, 8.0).norm())
        extra = f" The deterministic flow also composes: F(3) F(5) = F(8) on data images to a relative {e:.2g} (at most {F2_TOL:g})."
        holds = holds and e <= F2_TOL
        res["flow_error"] = e
    perms = res["permutations"]
    return Check(
        "F2", name, process.name, True, holds, fig, F2_LEVEL,
        f"Two-step sampling (u_s ~ p(u_s | u_0), then u_t ~ p(u_t | u_s) through the process's transition) against "
        f"direct sampling u_t ~ p(u_t | u_0), {u0.shape[0]} data images, independent noise, at {len(pairs)} pairs (s, t): "
        f"two-sample test by the Gaussian-kernel MMD and the distances of the means, second moments and mean squared "
        f"norms, {perms} random {'swaps within pairs' if u0.shape[0] >= PAIRED_MIN else 'relabellings'}, p-values adjusted over pairs and statistics (Westfall-Young "
        f"min-p). Figure: the smallest adjusted p-value (at (s, t) = {tuple(res['pairs'][worst])}); the property holds "
        f"above the level {F2_LEVEL:g}. Every transition i -> i + 1 has sigma_{{t|s}}^2 >= 0 (smallest {neg:.3g}). "
        f"{power_txt}{extra}",
        details={**res, "values": adj, "level": F2_LEVEL, "permutations": perms, "power": power,
                 "min_transition_variance": neg},
        kind="test",
    )


def _f2_osmosis(process: DriftDiffusionProcess, triples: list[tuple[int, int, int]], u0: torch.Tensor,
                run: scheme.ExplicitSteps = dispatch.osmosis_explicit) -> Check:
    """Osmosis's F2: P(t_r -> t_t) P(t_s -> t_r) = P(t_s -> t_t) for its noise-free evolution (a bound).

    Osmosis exposes no sampling transition: its marginal adds sigma^2 I afresh at every t around a mean P_t u_0
    whose operator is not orthogonal, so sigma^2 (I - P P^T) need not be a covariance. `run` takes the explicit
    steps (the dispatch's kernel; a test passes one that is not a semigroup).
    """
    x = u0[:8].to(torch.float64) + process.params.offset
    ids = torch.arange(x.shape[0])
    d = scheme.drift(process.guidance(ids, x.shape[0], torch.float64, "cpu"))
    times = process.times()
    worst, where = 0.0, None

    def evolve(u: torch.Tensor, dt: float) -> torch.Tensor:
        return scheme.evolve_explicit(u, d, dt, safety=F2_OSMOSIS_SAFETY, run=run)

    for s, r, t in triples:
        us = process.marginal_mean(s, x - process.params.offset, ids) + process.params.offset
        composed = evolve(evolve(us, float(times[r] - times[s])), float(times[t] - times[r]))
        direct = evolve(us, float(times[t] - times[s]))
        err = float((composed - direct).norm() / (direct - process.params.offset).norm())
        if err >= worst:
            worst, where = err, (s, r, t)
    return Check(
        "F2", "F2 semigroup (Chapman-Kolmogorov)", process.name, True, worst <= F2_OSMOSIS_TOL, worst, F2_OSMOSIS_TOL,
        "Osmosis has no sampling transition p(u_t | u_s) (its noise sigma^2 I is added afresh around a mean whose "
        "operator is not orthogonal), so F2 checks the semigroup of its noise-free evolution, a bound: "
        "P(t_r -> t_t) P(t_s -> t_r) against P(t_s -> t_t) on data images at time t_s (explicit scheme "
        f"at {F2_OSMOSIS_SAFETY:g} of the stable step, each evolution with its own step size, so they agree up to "
        "the scheme's first-order time error); "
        f"largest relative difference at (s, r, t) = {where}.",
        details={"triples": [list(x) for x in triples]},
    )


def check_f3a(process: Process) -> Check:
    """F3 a: H(u_t | u_0) = N/2 ln(2 pi e sigma_t^2), over every index (closed form)."""
    vals = {i: process.conditional_entropy(i) for i in range(process.T + 1)}
    strict = not process.constant_noise
    scale = max(abs(v) for v in vals.values() if math.isfinite(v))
    tol = 0.0 if strict else 1e-12 * scale
    m = monotone(vals, +1, tol, strict=strict)
    kind = "strictly increasing" if strict else "non-decreasing (constant sigma: the weak sense only)"
    return Check(
        "F3a", "F3a conditional entropy H(u_t | u_0) increasing", process.name, True, m.holds, m.worst, tol,
        f"Closed form N/2 ln(2 pi e sigma_t^2) at all {process.T + 1} indices must be {kind}. "
        f"Figure: the largest step down in nats (negative: every step goes up), at {_t(process, m.worst_at)}.",
        details={"indices": list(vals), "values": list(vals.values())},
    )


def check_f3b(process: Process, traj: ForwardTrajectory, n_train: int | None) -> Check:
    """F3 b: information loss H(u_0 | u_t) non-decreasing, between 0 and ln n."""
    vals, ses, allowed = _mc_sequence(traj, "post_entropy")
    if len(vals) < 2:
        return Check("F3b", "F3b information loss H(u_0 | u_t) non-decreasing", process.name, False, None, None, None,
                     "needs the oracle pass (a finite training set)", kind="test")
    m = monotone(vals, +1, allowed)
    bounds_ok, bound_txt = True, ""
    if n_train:
        ln_n = math.log(n_train)
        lo = min(vals[i] + Z_SCORE * ses[i] for i in vals)
        hi = max(vals[i] - Z_SCORE * ses[i] for i in vals)
        bounds_ok = lo >= -1e-9 and hi <= ln_n + 1e-9
        bound_txt = (f" It runs from {vals[min(vals)]:.3g} to {vals[max(vals)]:.3g} nats, within [0, ln n = {ln_n:.3g}]"
                     + ("." if bounds_ok else ": OUT OF BOUNDS."))
    return Check(
        "F3b", "F3b information loss H(u_0 | u_t) non-decreasing", process.name, True, m.holds and bounds_ok,
        m.worst, m.allowed,
        f"Mean posterior entropy over the {n_train or 'given'} training images, {traj.count} samples; a step down "
        f"counts beyond {Z_SCORE:g} standard errors of the paired difference. Figure: the largest step down "
        f"(nats), at {_t(process, m.worst_at)}; tolerance: what was allowed there.{bound_txt}",
        details={"indices": list(vals), "values": list(vals.values()), "stderr": list(ses.values())}, kind="test",
    )


def check_f3c(process: Process, traj: ForwardTrajectory) -> Check:
    """F3 c: KL(p_t || N(0, I)) non-increasing (promised for vp)."""
    vals, ses, allowed = _mc_sequence(traj, "kl")
    if len(vals) < 2:
        return Check("F3c", "F3c KL(p_t || N(0, I)) non-increasing", process.name, False, None, None, None,
                     "needs the marginal density (oracle pass)", kind="test")
    m = monotone(vals, -1, allowed)
    why = (f"N(0, I) is the stationary law of the {process.name} chain, so KL to it cannot grow (data processing)"
           if process.expected.get("F3c") == "holds" else "promised for vp only; shown for comparison")
    return Check(
        "F3c", "F3c KL(p_t || N(0, I)) non-increasing", process.name, True, m.holds, m.worst, m.allowed,
        f"Monte Carlo mean of log p_t(u_t) - log N(u_t; 0, I) over {traj.count} samples: {why}. Figure: the "
        f"largest step up (nats), at {_t(process, m.worst_at)}.",
        details={"indices": list(vals), "values": list(vals.values()), "stderr": list(ses.values())}, kind="test",
    )


def check_f3d(process: Process, traj: ForwardTrajectory) -> Check:
    """F3 d: the marginal entropy H(p_t); reported (it is not monotone in general), never asserted."""
    vals, ses, allowed = _mc_sequence(traj, "log_p", -1.0)
    if len(vals) < 2:
        return Check("F3d", "F3d marginal entropy H(p_t) (reported)", process.name, False, None, None, None,
                     "needs the marginal density (oracle pass)", kind="test")
    m = monotone(vals, +1, allowed)
    verdict = "non-decreasing here" if m.holds else f"DECREASES here (first at {_t(process, m.wrong_steps[0])})"
    return Check(
        "F3d", "F3d marginal entropy H(p_t) non-decreasing (reported)", process.name, True, m.holds, m.worst, m.allowed,
        f"-E log p_t(u_t) over {traj.count} samples is {verdict}. Theory does not make it a Lyapunov sequence "
        "(for vp with data N(0, 4) it decreases), so it is shown, not asserted.",
        details={"indices": list(vals), "values": list(vals.values()), "stderr": list(ses.values())}, kind="test",
    )


def _affine_noise(draw, u0: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw x = m(u_0) + s z, affine in the noise z: (m(u_0) for every image, s per pixel (D,))."""
    zero = draw(u0, torch.zeros_like(u0), ids)
    one = draw(u0[:1], torch.ones_like(u0[:1]), ids[:1])
    return zero, (one - zero[:1]).flatten()


def _gaussian(means: Moments, noise_sd: torch.Tensor, full: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of x = m + s z over the training set: the mean of m and cov(m) (population, / n) + diag(s^2)."""
    n = means.count
    if full:
        return means.mean(), means.comoment / n + torch.diag(noise_sd**2)
    return means.mean(), means.m2 / n + noise_sd**2


def gaussian_kl_to_law(
    process: Process, train: torch.Tensor, scale: float, target, chunk: int = KL_CHUNK,
) -> tuple[float, bool]:
    """Moment-matched Gaussian KL(p_T || q) in nats, from exact moments over the training set.

    p_T is the law of scale * u_T, u_T = A_T(u_0) + sigma_T z, u_0 drawn from the training set (its empirical
    distribution: the data distribution); q is the law of target(u_0, z, ids), affine in z. Both moment sets
    are exact (population moments over every training image, the noise's added in closed form), so no
    finite-sample log-det bias enters. Returns (KL, full covariance?); beyond KL_FULL_MAX_DIM the
    Gaussians are per-pixel (diagonal). Clamped at 0 (rounding when p_T is q).
    """
    d = math.prod(process.shape)
    full = d <= KL_FULL_MAX_DIM
    mp, mq = Moments(d, full), Moments(d, full)
    sd_q = None
    for lo in range(0, len(train), chunk):
        u0 = train[lo: lo + chunk].to(torch.float64)
        ids = torch.arange(lo, lo + u0.shape[0])
        mp.update((scale * process.marginal_mean(process.T, u0, ids)).flatten(1))
        m, sd = _affine_noise(target, u0, ids)
        mq.update(m.flatten(1))
        sd_q = sd if sd_q is None else sd_q
    sd_p = torch.full((d,), abs(scale) * process.sigma(process.T), dtype=torch.float64)
    mu_p, cov_p = _gaussian(mp, sd_p, full)
    mu_q, cov_q = _gaussian(mq, sd_q, full)
    return max(0.0, kl_gaussians(mu_p, cov_p, mu_q, cov_q)), full


def check_f4(process: Process, train: torch.Tensor) -> Check:
    """F4: KL (nats) from p_T to the process's steady state, moment-matched Gaussians of the exact moments."""
    T = process.T
    scale = process.steady_scale(T)
    if scale is None:
        return Check("F4", "F4 steady state reached", process.name, False, None, None, None,
                     "the steady state is undefined at the last step (sigma_T = 0)")
    kl, full = gaussian_kl_to_law(process, train, scale, process.steady_draw)
    scaled = "" if scale == 1.0 else f" (u_T scaled by {scale:.4g})"
    return Check(
        "F4", "F4 steady state reached", process.name, True, kl <= F4_TOL, kl, F4_TOL,
        f"Steady state: {process.steady_state_text}. Figure: KL(p_T || steady state) in nats between moment-matched "
        f"Gaussians{scaled}: the mean and {'full' if full else 'per-pixel'} covariance of p_T, exact over all "
        f"{len(train)} training images (A_T u_0 plus sigma_T^2 I in closed form), against the steady state's, exact the "
        f"same way. Reached when at most {F4_TOL:g} nats (abar_T = 0.04 for vp on 8x8 digits is about 0.57 nats).",
    )


def forward_checks(
    process: Process, traj: ForwardTrajectory, u0: torch.Tensor, n_train: int | None, train: torch.Tensor | None = None,
    poll: Callable[[], None] | None = None,
) -> list[Check]:
    """F1, F2, F3 a-d, F4 (and O1-O3 for osmosis). u0: data images (B, C, H, W) for the deterministic checks;
    train: the training set whose exact moments F4 uses (u0 when not given); `poll`: called between checks and
    between F2's tests (a job's progress and cancel check)."""
    poll = poll or (lambda: None)
    steps = [
        lambda: check_f1(process, traj, u0),
        lambda: check_f2(process, traj, u0, poll=poll),
        lambda: check_f3a(process),
        lambda: check_f3b(process, traj, n_train),
        lambda: check_f3c(process, traj),
        lambda: check_f3d(process, traj),
        lambda: check_f4(process, u0 if train is None else train),
    ]
    checks = []
    for step in steps:
        checks.append(step())
        poll()
    if isinstance(process, DriftDiffusionProcess):  # the osmosis filter's own laws
        checks += osmosis_laws(process, u0[:64], traj.indices)
    return checks


__all__ = [
    "F2_LEVEL",
    "F4_TOL",
    "Monotone",
    "Z_SCORE",
    "check_f1",
    "check_f2",
    "check_f3a",
    "check_f3b",
    "check_f3c",
    "check_f3d",
    "check_f4",
    "chapman_kolmogorov_test",
    "f2_power",
    "forward_checks",
    "gaussian_kl_to_law",
    "monotone",
]
