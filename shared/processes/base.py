"""The interface of the forward processes, in three parts.

`Process` is what every process has: a discrete time grid i = 0..T, the noise
level sigma_i, marginals

    p(u_i | u_0) = N(A_i u_0 + b_i, sigma_i^2 I)

(their mean, their draws), the prior the sampler starts from, the reverse
mean, the conditional entropy, validation, and the facts theory states about
the process that the samplers, the denoisers and the evaluation read (its
steady state, which invariances it keeps, ...).

`LinearGaussianProcess` (vp, ve, blurring, heat): A_i = V diag(alpha_i) V^T is
diagonal in the DCT basis V (a scalar for the isotropic vp and ve), so alpha
per coefficient, the transitions p(u_t | u_s) and the posterior q(u_s | u_t,
u_0) have closed forms. `DriftDiffusionProcess` (osmosis): A_i is the
evolution of a drift-diffusion equation that no fixed basis diagonalises,
computed step by step. `DegradedPrior` adds what a process whose end state
keeps the data (heat, osmosis) needs: its sampler starts from degraded data
and adds delta z per step.

All schedule coefficients are float64; samplers cast them to their working dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping

import torch
from pydantic import BaseModel, ConfigDict

from scalespace import ScalespaceError
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.dct import dct2, idct2, laplacian_eigenvalues

#: A deterministic flow on images: (u (..., C, H, W), tau) -> F(tau) u
Flow = Callable[[torch.Tensor, float], torch.Tensor]

#: What theory says of a property for a process: it holds, it fails (the check must
#: report it failing), it is measured and shown only, or it does not apply.
Expectation = Literal["holds", "fails", "report", "n/a"]

#: For every process: F1-F4 and R1, R2, R4 hold; F3 c, F3 d and R3 are reported
COMMON_EXPECTATIONS: Mapping[str, Expectation] = {
    "F1": "holds", "F2": "holds", "F3a": "holds", "F3b": "holds", "F3c": "report", "F3d": "report", "F4": "holds",
    "R1": "holds", "R2": "holds", "R3": "report", "R4": "holds",
}
#: F5 maps that only a process acting on every pixel alike (or on no position at all) commutes with
PIXEL_MAPS = ("F5-permutation", "F5-circular-shift")
#: F5 maps under which the DCT modes (Neumann boundaries) map to themselves, and the grey shift
DCT_MAPS = ("F5-flip-horizontal", "F5-flip-vertical", "F5-transpose", "F5-rotate-90", "F5-channel-permutation",
            "F5-grey-shift")


def expectations(pixel_maps: Expectation, dct_maps: Expectation, **more: Expectation) -> dict[str, Expectation]:
    """A process's table of expected verdicts: the common verdicts, the F5 maps', and `more` (keys with '-' as '_')."""
    out: dict[str, Expectation] = dict(COMMON_EXPECTATIONS)
    out.update({k: pixel_maps for k in PIXEL_MAPS})
    out.update({k: dct_maps for k in DCT_MAPS})
    out.update({k.replace("_", "-"): v for k, v in more.items()})
    return out


class ProcessParams(BaseModel):
    """Base of every process's parameters; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Posterior:
    """Coefficients of q(u_s | u_t, u0_hat), per DCT coefficient (or scalars).

    mean = coef_ut * u_t + coef_u0 * u0_hat and variance `var`, all in the
    process's basis (pixels for isotropic processes, DCT otherwise).
    """

    coef_ut: torch.Tensor
    coef_u0: torch.Tensor
    var: torch.Tensor


class Process(ABC):
    """A forward process on images of shape (C, H, W): what every process has."""

    name: ClassVar[str]
    Params: ClassVar[type[ProcessParams]]
    #: True when A_i is a multiple of the identity (no transform needed).
    isotropic: ClassVar[bool] = False
    #: True when the prior needs data (heat, osmosis start from degraded data).
    prior_needs_data: ClassVar[bool] = False
    #: True when A_i is diagonal in the DCT basis (alpha gives it whole).
    spectral: ClassVar[bool]
    #: The sampler a job uses when it names none (scalespace.sampling.samplers.SAMPLERS).
    default_sampler: ClassVar[str] = "ancestral"
    #: The objective a learned denoiser is trained with when the job names none (scalespace.denoisers.objectives).
    default_objective: ClassVar[str]
    #: Parameters a job sets from its seed unless the spec gives them (osmosis: the guidance's seed).
    seeded_params: ClassVar[tuple[str, ...]] = ()
    #: True when sigma_i is one constant (heat, osmosis): H(u_t | u_0) is then non-decreasing, not increasing.
    constant_noise: ClassVar[bool] = False
    #: How the mean grey value of an image is kept: "exactly", "in expectation", or None (it is not).
    keeps_mean: ClassVar[Literal["exactly", "in expectation"] | None] = None
    #: True when the pooled grey-value density of u_t is the data's, scaled and blurred, in closed form, and
    #: evolves by 1-D osmosis with the standard normal density as guidance (vp).
    grey_density_is_osmosis: ClassVar[bool] = False
    #: The steady state the process tends to, in words.
    steady_state_text: ClassVar[str] = "the steady state"
    #: The DC mode's factor in words: a grey shift c of u_0 moves u_t by it.
    dc_factor_text: ClassVar[str] = "alpha_t(0) c"
    #: What theory says of the reverse chain's per-step conditional entropy, in words.
    step_entropy_text: ClassVar[str] = "reported"
    #: What each property check must find for this process (keys absent here: n/a).
    expected: ClassVar[Mapping[str, Expectation]]

    def __init__(self, shape: tuple[int, int, int], params: ProcessParams | dict[str, Any] | None = None):
        if len(shape) != 3 or min(shape) < 1:
            raise ScalespaceError(f"image shape must be (C, H, W) with positive sizes, got {shape}")
        self.shape = tuple(int(s) for s in shape)
        if params is None:
            params = {}
        self.params = params if isinstance(params, self.Params) else self.Params(**dict(params))
        self._setup()
        self.validate()

    # --- what each process defines -------------------------------------------------
    @abstractmethod
    def _setup(self) -> None:
        """Build the schedule from self.params and self.shape."""

    @property
    @abstractmethod
    def T(self) -> int:
        """Number of steps; the grid is i = 0..T."""

    @abstractmethod
    def times(self) -> torch.Tensor:
        """The time of each index, float64, shape (T + 1,)."""

    @abstractmethod
    def sigma(self, i: int) -> float:
        """Marginal noise standard deviation sigma_i."""

    @abstractmethod
    def marginal_mean(self, i: int, u0: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """E[u_i | u_0] for a batch u0 of shape (B, C, H, W).

        `ids` (sample indices) matter only to processes with per-sample state (osmosis guidance).
        """

    @abstractmethod
    def reverse_mean(
        self, t: int, s: int, u_t: torch.Tensor, u0_hat: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean of the reverse step t -> s given a prediction u0_hat of u_0."""

    def posterior_mean_at(
        self, t: int, s: int, u_t: torch.Tensor, prev_mean: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """E[u_s | u_t, u_0] written through prev_mean = A_s u_0 (the heat sampler's `posterior` reverse mean).

        Only processes with a Gaussian posterior of the step (heat, osmosis, and
        the DCT-diagonal ones) have it."""
        raise ScalespaceError(f"reverse_mean: process {self.name!r} has no posterior mean of the reverse step")

    # --- shared closed forms -----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "T": self.T, "params": self.params.model_dump()}

    def sample_marginal(
        self, i: int, u0: torch.Tensor, z: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """u_i = A_i u0 + sigma_i z, with z standard normal like u0."""
        return self.marginal_mean(i, u0, ids) + self.sigma(i) * z

    def marginal_means(
        self, u0: torch.Tensor, indices: list[int], ids: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """E[u_i | u_0] for each of `indices`."""
        return {i: self.marginal_mean(i, u0, ids) for i in indices}

    def sample_prior(
        self, z: torch.Tensor, data: torch.Tensor | None = None, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A draw from the sampler's start distribution at i = T: sigma_T z (the end state forgets the data)."""
        return self.sigma(self.T) * z

    def conditional_entropy(self, i: int) -> float:
        """H(u_i | u_0) = N/2 ln(2 pi e sigma_i^2); -inf when sigma_i = 0."""
        n = math.prod(self.shape)
        s = self.sigma(i)
        return -math.inf if s == 0 else 0.5 * n * math.log(2 * math.pi * math.e * s * s)

    # --- theory facts the layers above read ----------------------------------------
    @property
    def shared_operator(self) -> bool:
        """True when one operator A_i serves every image (what the oracle and training need)."""
        return True

    def steady_draw(self, u0: torch.Tensor, z: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """A draw of the steady state paired with u_0 and the noise z: N(0, I), i.e. z itself."""
        return z.clone()

    def steady_scale(self, i: int) -> float | None:
        """The factor u_i is compared with the steady state under (None where it is undefined)."""
        return 1.0

    def oracle_bytes(self, n_train: int) -> int:
        """Memory the oracle precomputes for n_train training images beyond the images themselves."""
        return 0

    def network_channels(self) -> tuple[int, int]:
        """(input, output) channels of a learned denoiser's network: the image's."""
        return self.shape[0], self.shape[0]

    def network_condition(self) -> torch.Tensor | None:
        """A fixed image a learned denoiser sees beside u_t, (1, C, H, W) float64; None for most processes."""
        return None

    # --- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a time grid that is not finite and increasing."""
        t = self.times()
        if not bool(torch.isfinite(t).all()) or not bool((t[1:] > t[:-1]).all()):
            raise ScalespaceError(f"process {self.name!r}: times must be finite and increasing; {self._times_hint()}")

    def _times_hint(self) -> str:
        return "check process_params"

    def _schedule_hint(self) -> str:
        return "the schedule has no Markov chain; change process_params"


class LinearGaussianProcess(Process):
    """A process diagonal in the DCT basis: alpha_i per coefficient, closed-form transitions and posterior."""

    spectral = True

    @abstractmethod
    def alpha(self, i: int) -> torch.Tensor:
        """alpha_i per DCT coefficient, float64: shape () if isotropic else (H, W)."""

    def log_alpha(self, i: int) -> torch.Tensor:
        """ln alpha_i; processes whose alpha underflows (heat) give it in closed form."""
        return torch.log(self.alpha(i))

    def to_basis(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.isotropic else dct2(u)

    def from_basis(self, c: torch.Tensor) -> torch.Tensor:
        return c if self.isotropic else idct2(c)

    def lam(self) -> torch.Tensor:
        return laplacian_eigenvalues(self.shape[1], self.shape[2])

    def transition(self, s: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_{t|s} and sigma_{t|s}^2 of p(u_t | u_s), s < t (float64)."""
        a = torch.exp(self.log_alpha(t) - self.log_alpha(s))
        s2 = self.sigma(t) ** 2 - a**2 * self.sigma(s) ** 2
        return a, s2

    def sample_transition(self, s: int, t: int, u_s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """A draw of u_t ~ p(u_t | u_s) = N(A_{t|s} u_s, sigma_{t|s}^2 I), s < t, with z standard normal like u_s.

        The noise is applied in the process's basis (z's coefficients there are standard normal too: the basis
        is orthonormal). A negative sigma_{t|s}^2 means the transition does not exist: refused with a message.
        """
        a, s2 = self.transition(s, t)
        if float(s2.min()) < 0:
            raise ScalespaceError(
                f"process {self.name!r}: no transition from index {s} to {t}: sigma_{{t|s}}^2 = {float(s2.min()):.3g} < 0 "
                "(a negative variance: these marginals belong to no Markov chain)"
            )
        dt, dev = u_s.dtype, u_s.device
        return self.from_basis(a.to(dev, dt) * self.to_basis(u_s) + s2.sqrt().to(dev, dt) * self.to_basis(z))

    def posterior(self, t: int, s: int) -> Posterior:
        """q(u_s | u_t, u_0) for s < t, in a stable algebraic form.

        var = ss2 sts2 / (sts2 + a^2 ss2), coef_ut = a ss2 / (...), coef_u0 =
        alpha_s sts2 / (...): the same as the usual closed form, and well defined when
        sigma_s = 0 (returns A_s u0_hat) or sigma_{t|s} = 0 (u_s = u_t / a).
        """
        if not 0 <= s < t <= self.T:
            raise ScalespaceError(f"posterior needs 0 <= s < t <= T={self.T}, got s={s}, t={t}")
        a, sts2 = self.transition(s, t)
        sts2 = sts2.clamp_min(0.0)
        ss2 = torch.as_tensor(self.sigma(s) ** 2, dtype=torch.float64)
        alpha_s = self.alpha(s)
        den = sts2 + a**2 * ss2
        coef_ut = a * ss2 / den
        coef_u0 = alpha_s * sts2 / den
        var = ss2 * sts2 / den
        return Posterior(coef_ut=coef_ut, coef_u0=coef_u0, var=var)

    def marginal_mean(self, i: int, u0: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        a = self.alpha(i).to(u0.dtype).to(u0.device)
        if self.isotropic:
            return a * u0
        return idct2(a * dct2(u0))

    def reverse_mean(
        self, t: int, s: int, u_t: torch.Tensor, u0_hat: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The posterior mean of the step t -> s at u0_hat."""
        post = self.posterior(t, s)
        dt, dev = u_t.dtype, u_t.device
        m = post.coef_ut.to(dev, dt) * self.to_basis(u_t) + post.coef_u0.to(dev, dt) * self.to_basis(u0_hat)
        return self.from_basis(m)

    def posterior_mean_at(
        self, t: int, s: int, u_t: torch.Tensor, prev_mean: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The posterior mean of the step t -> s through prev_mean = A_s u0_hat, per mode:

            coef_ut u_t + sigma_{t|s}^2 / (sigma_{t|s}^2 + a^2 sigma_s^2) prev_mean

        (posterior()'s coef_u0 without its factor alpha_s, which prev_mean carries):
        reverse_mean(t, s, u_t, u0_hat) when prev_mean = A_s u0_hat, and usable
        where only an estimate of A_s u_0 exists (a one-step network)."""
        if not 0 <= s < t <= self.T:
            raise ScalespaceError(f"posterior needs 0 <= s < t <= T={self.T}, got s={s}, t={t}")
        a, sts2 = self.transition(s, t)
        sts2 = sts2.clamp_min(0.0)
        ss2 = torch.as_tensor(self.sigma(s) ** 2, dtype=torch.float64)
        den = sts2 + a**2 * ss2
        dt, dev = u_t.dtype, u_t.device
        m = (a * ss2 / den).to(dev, dt) * self.to_basis(u_t) + (sts2 / den).to(dev, dt) * self.to_basis(prev_mean)
        return self.from_basis(m)

    def semigroup(self) -> Flow | None:
        """The process's exact deterministic flow F(tau) on images, when it has one (heat); None otherwise."""
        return None

    # --- the whole schedule at once (validation) ---------------------------------------
    #: alpha_i(lambda) never grows with lambda and alpha_t / alpha_s is largest at lambda = 0 when the times
    #: increase (blurring, heat): the validation may then read lambda = 0 and the largest lambda only (below)
    monotone_in_lambda: ClassVar[bool] = False
    #: ln alpha_i = -lambda tau_i in closed form with sigma_i constant (heat): alpha_{t|s} = exp(lambda (tau_s -
    #: tau_t)) <= 1 exactly in floating point once the times increase, so every sigma_{t|s}^2 >= 0
    contracting: ClassVar[bool] = False

    def sigma_all(self) -> torch.Tensor:
        """sigma_i for every step, float64 (T + 1,): the values sigma(i) gives."""
        return torch.tensor([self.sigma(i) for i in range(self.T + 1)], dtype=torch.float64)

    def alphas(self, idx: torch.Tensor, lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_i, ln alpha_i) for the steps `idx`, float64 (len(idx), *alpha's shape), at the eigenvalues
        `lam` (default: the image's, self.lam(); spectral processes only): element for element the values
        alpha(i) and log_alpha(i) give (processes override it with whole-array operations)."""
        a = torch.stack([self.alpha(int(i)) for i in idx])
        la = torch.stack([self.log_alpha(int(i)) for i in idx])
        if lam is not None and a.ndim > 1:  # pick the eigenvalues asked for from the whole grid
            grid = self.lam().reshape(-1)
            pick = torch.stack([(grid == v).nonzero()[0, 0] for v in lam.reshape(-1)])
            a, la = a.reshape(len(idx), -1)[:, pick], la.reshape(len(idx), -1)[:, pick]
        return a, la

    #: values per chunk of steps the validation holds at once (alpha's shape times the steps)
    VALIDATE_CHUNK = 1 << 18
    #: relative slack on alpha_{t|s}^2 at lambda = 0 within which a step is checked at every eigenvalue
    SCREEN_SLACK = 1e-11
    #: alphas below this (near the subnormals, where their rounding is coarse) are checked at every eigenvalue
    SCREEN_TINY = 1e-290

    def validate(self) -> None:
        """Refuse a schedule with non-finite values or a negative sigma_{t|s}^2.

        Whole-array operations over all steps (in chunks of steps), in float64, with the same formulas as
        the step-by-step closed forms (alpha, log_alpha, sigma, transition): the verdict and the message,
        the first failing step and the minimum included, are those of a loop over the steps and every
        DCT coefficient (tests/unit/processes/test_validate_vectorised.py holds both to it).

        A process whose alpha is monotone in lambda (monotone_in_lambda) is read at two eigenvalues
        only, lambda = 0 and the largest: alpha is largest at the one and smallest at the other, so
        finiteness and alpha > 0 hold at every lambda when they hold at both, and alpha_{t|s} is largest
        at lambda = 0 (to rounding), so a transition whose variance at lambda = 0 clears the bound with
        room to spare (SCREEN_SLACK, far above the rounding of the logs) clears it at every lambda. The
        transitions that do not, and those where the times do not increase or alpha nears the
        subnormals, are checked at every eigenvalue, as the loop would. A contracting process with
        constant noise (heat) has sigma_{t|s}^2 >= 0 at every step once its times increase (exactly, in
        floating point: see `contracting`), so its transitions need no reading.
        """
        sig = self.sigma_all()
        T = self.T
        lam = None
        if self.monotone_in_lambda:
            grid = self.lam()
            lam = torch.stack([grid.reshape(-1)[0], grid.max()])  # lambda(0, 0) = 0 and the largest
        per_step = max(1, math.prod(self.alpha(0).shape)) if lam is None else 2
        chunk = max(2, self.VALIDATE_CHUNK // per_step)
        # 1. finite alpha and sigma >= 0, then alpha > 0, at each step (the first failing step decides)
        bad_sig = ~torch.isfinite(sig) | (sig < 0)
        a_ends: list[torch.Tensor] = []  # alpha at (lambda 0, lambda max) of every step, for the screen
        la_ends: list[torch.Tensor] = []
        lo = 0
        while lo <= T:
            hi = min(lo + chunk, T + 1)
            a, la = self.alphas(torch.arange(lo, hi), lam)
            bad = ~torch.isfinite(a).reshape(hi - lo, -1).all(1) | bad_sig[lo:hi]
            zero = ~torch.isfinite(la).reshape(hi - lo, -1).all(1)
            fail = (bad | zero).nonzero()
            if len(fail):
                k = int(fail[0])
                i = lo + k
                if bool(bad[k]):
                    raise ScalespaceError(
                        f"process {self.name!r}: schedule is not finite at step {i}; check process_params"
                    )
                raise ScalespaceError(
                    f"process {self.name!r}: alpha is 0 at step {i}, transitions would divide by it; "
                    "check process_params"
                )
            if lam is not None:
                a_ends.append(a)
                la_ends.append(la)
            lo = hi
        t = self.times()
        if not bool((t[1:] > t[:-1]).all()):
            raise ScalespaceError(f"process {self.name!r}: time grid must increase; check process_params")
        # 2. sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 >= 0 between neighbouring steps
        s2_all = sig * sig
        bound_all = -1e-10 * s2_all.clamp_min(1e-300)
        steps = torch.arange(1, T + 1)
        if self.contracting and self.constant_noise:
            steps = steps[:0]
        elif lam is not None:  # only the transitions the screen cannot clear, at every eigenvalue
            ends = torch.cat(a_ends)
            la0 = torch.cat(la_ends)[:, 0]
            ratio2 = torch.exp(la0[1:] - la0[:-1]) ** 2 * (1 + self.SCREEN_SLACK)
            clear = (s2_all[1:] - ratio2 * s2_all[:-1] >= bound_all[1:] + 1e-300) & (t[1:] >= t[:-1])
            clear &= (ends[1:].min(1).values >= self.SCREEN_TINY) & (ends[:-1].min(1).values >= self.SCREEN_TINY)
            steps = steps[~clear]
        full = max(2, self.VALIDATE_CHUNK // max(1, math.prod(self.alpha(0).shape)))
        for lo in range(0, len(steps), full):
            i_t = steps[lo:lo + full]
            _, la_t = self.alphas(i_t)
            _, la_s = self.alphas(i_t - 1)
            a = torch.exp(la_t - la_s)
            shape = (len(i_t),) + (1,) * (a.ndim - 1)
            s2 = s2_all[i_t].reshape(shape) - a**2 * s2_all[i_t - 1].reshape(shape)
            neg = (s2 < bound_all[i_t].reshape(shape)).reshape(len(i_t), -1).any(1).nonzero()
            if len(neg):
                k = int(neg[0])
                i = int(i_t[k])
                raise ScalespaceError(
                    f"process {self.name!r}: sigma_{{t|s}}^2 < 0 between steps {i - 1} and {i} "
                    f"(min {float(s2[k].min()):.3g}); {self._schedule_hint()}"
                )


class DriftDiffusionProcess(Process):
    """A process whose mean evolves by a linear drift-diffusion equation d/dt x = A x that no fixed basis
    diagonalises (osmosis): A_i u_0 is computed by evolving u_0 interval by interval, and the reverse step's
    mean is A_s u0_hat (the heat sampler's shape).

    The explicit scheme's many small steps run through `explicit_steps`: the
    torch loop (osmosis_scheme.explicit_steps) unless the layers above the
    kernels give the process a faster one (scalespace.kernels.dispatch.bind:
    the Triton stencil on a GPU, with the same results).
    """

    spectral = False

    def __init__(self, shape: tuple[int, int, int], params: ProcessParams | dict[str, Any] | None = None):
        self.explicit_steps: scheme.ExplicitSteps = scheme.explicit_steps
        super().__init__(shape, params)

    @abstractmethod
    def marginal_means_all(self, u0: torch.Tensor) -> list[torch.Tensor]:
        """[A_0 u0, ..., A_T u0], computed incrementally (needs one operator for every image)."""

    def marginal_means(
        self, u0: torch.Tensor, indices: list[int], ids: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """E[u_i | u_0] for each of `indices`: evolved once, interval by interval, when one operator serves all."""
        if not self.shared_operator:
            return super().marginal_means(u0, indices, ids)
        means = self.marginal_means_all(u0)
        return {i: means[i] for i in indices}

    def reverse_mean(
        self, t: int, s: int, u_t: torch.Tensor, u0_hat: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A_s u0_hat."""
        return self.marginal_mean(s, u0_hat, ids)

    def oracle_bytes(self, n_train: int) -> int:
        """The oracle holds A_i f_j for every index and training image: 16 bytes a value (float64, and a copy)."""
        return (self.T + 1) * n_train * math.prod(self.shape) * 8 * 2


class DegradedPrior(Process):
    """A process whose end state keeps the data (heat, osmosis).

    Its sampler starts from degraded data plus noise, u_T of a training image,
    and (the heat sampler) adds delta z of fresh noise after each reverse step.
    Its parameters give the noise level `sigma` and `delta_factor`.
    """

    prior_needs_data = True
    default_sampler = "heat"
    default_objective = "one_step"

    @property
    def delta(self) -> float:
        """The heat sampler's noise per step, delta = delta_factor * sigma."""
        return self.params.delta_factor * self.params.sigma  # type: ignore[attr-defined]

    def sample_prior(
        self, z: torch.Tensor, data: torch.Tensor | None = None, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Degraded data plus noise: u_T of `data` (required)."""
        if data is None:
            raise ScalespaceError(f"process {self.name!r} starts from degraded data: pass data")
        return self.sample_marginal(self.T, data, z, ids)
