"""The one admission check of a job spec: this service's limits, its memory, then its kind's check.

Every door calls `admit`: the API (scalespace.scheduler.submit.check_spec),
`scalespace run`, `sample`, `evaluate` and `train` (through run_job), `submit`
and `sweep run` (through the API or the scheduler's submission), and the
worker (through run_job). So a spec the API accepts is one a worker runs, and
a spec a worker would refuse is refused at the door with the same message,
"field: reason" (the API answers 422).

    admit(spec)  = check_sizes(spec)         every size field against its limit (settings below)
                 + the kind's check          process, schedule, sampler, objective, network, ... (scalespace.jobs.kinds)
                 + check_memory(spec, ...)   the job's estimated peak memory against SCALESPACE_MAX_JOB_BYTES

and for a sweep: every child admitted like a job of its own (an error names
the sweep's field, `template.n`, `processes`, ...), the number of children
at most SCALESPACE_MAX_SWEEP_CHILDREN, and the samples of all children
together (each child's `work`) at most SCALESPACE_MAX_SWEEP_SAMPLES.

Limits (settings, SCALESPACE_<NAME>, operator-tunable):

    max_n               100,000   every n-like field: sample n; evaluate n, n_invariance, n_reverse, robustness.n;
                                  train eval_samples; data_limit
    max_steps           100,000   T / K of every process (and the length of explicit betas / sigmas), steps,
                                  reverse_steps, robustness.steps and step_counts, train eval_steps
    max_train_steps   1,000,000   train steps
    max_sweep_children      256   cells of a sweep's grid
    max_sweep_samples 1,000,000   samples of all of a sweep's children together
    max_job_bytes        16 GiB   estimated peak memory of one job (below)

Fixed bounds (the schema: physical or structural): data_size 4..256, batch_size <= 65,536, the U-Net's
fields (channels <= 1024, up to 6 levels, ...), eval_steps <= 10,000 and invariance_steps <= 1,000 of an
evaluate job, robustness lists <= 64 entries, n_boot <= 10,000, a train job's evaluations
(steps / eval_every) <= 1,000 and loss points (steps / log_every) <= 1,000,000.

Memory (`estimate_bytes`; float32 = 4 bytes, float64 = 8; D = C x H x W at data_size; B = the batch rounded
up to 8; Ntr = the training images used, min(data_limit, split size); Nh the held-out split):

    data         Ntr x D x 4 x 2                  the training split, loaded and resized
    oracle       Ntr x D x 4 x 3                  (sample with the oracle, evaluate) values, keys and squared keys
                                                   (linear-Gaussian processes)
                 + (K + 1) x Ntr x D x 20          osmosis: its evolved training set, float64 and a copy (16)
                                                   plus the float32 means the reduction reads (4)
                 + chunk x D x 4 x 2 + B x chunk x 8 x 2   one chunk of the streaming reduction and its scores
    sampler      B x D x 4 x 8                     the batch's state, noise, prediction, mean and basis copies
    sample       + n x D x 4 x 2                   the samples kept, and their .npz
    evaluate     + (E + 1) x B x D x 8 x 2         the forward batch: means and states at the E + 1 evaluated steps
                 + n_invariance x D x 8 x 4        F5: the images, their noise, moved and base paths
                 + n_reverse x D x 4 x 2           the reverse checks' samples
                 + robustness.n x D x 4 x 4        the robustness runs' samples
                 + Nh x D x 4                      the held-out split
    train        P x 4 x 5                         weights, gradients, Adam's two moments, EMA (P parameters)
                 + B x H x W x channels x sum_l(mult_l / 4^l) x (2 num_res_blocks + 2) x 4 x 2
                                                   activations kept for the backward pass (level l at 1 / 4^l
                                                   of the pixels)
                 + B_eval x D x 4 x 8 + eval_samples x D x 4 x 2 + Nh x D x 4
                                                   the periodic evaluation: its batch (B_eval = min(eval_samples,
                                                   256)), its samples, the held-out split

The estimate is the sum of the terms of the job's kind, so the largest of
its phases is counted at least once; the factors are the copies each phase
holds at once (read from the code paths named above).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from scalespace import ScalespaceError
from scalespace.config import get_settings
from scalespace.data.sizes import split_sizes
from scalespace.jobs.kinds import job_kind
from scalespace.jobs.specs import GRID_FIELDS, EvaluateSpec, SampleSpec, Spec, SweepSpec, TrainSpec, parse_spec

#: a train job evaluates at most this many times (steps / eval_every) and logs at most this many loss points
MAX_TRAIN_EVALUATIONS = 1_000
MAX_LOSS_POINTS = 1_000_000
GiB = 2**30


def _settings(settings: Any) -> Any:
    return settings if settings is not None else get_settings()


def _limit(field: str, value: int | None, limit: int, setting: str, what: str = "") -> None:
    if value is not None and value > limit:
        raise ScalespaceError(
            f"{field}: {value}{what} is above this service's limit of {limit} (SCALESPACE_{setting.upper()}); ask for fewer"
        )


# --- sizes ----------------------------------------------------------------------------------


def _process_T(spec: Spec) -> tuple[str, int] | None:
    """(field, T) the process params ask for, read without building the process."""
    p = getattr(spec, "process_params", {}) or {}
    for key in ("betas", "sigmas"):
        if isinstance(p.get(key), list):
            return f"process_params.{key}", len(p[key])
    for key in ("T", "K"):
        v = p.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return f"process_params.{key}", v
    return None


def check_sizes(spec: Spec, settings: Any = None) -> None:
    """Every size field of a single job's spec against this service's limits (ScalespaceError "field: ...")."""
    s = _settings(settings)
    _limit("data_limit", getattr(spec, "data_limit", None), s.max_n, "max_n")
    t = _process_T(spec)
    if t is not None:
        _limit(t[0], t[1], s.max_steps, "max_steps", " steps")
    if isinstance(spec, SampleSpec):
        _limit("n", spec.n, s.max_n, "max_n")
        _limit("steps", spec.steps, s.max_steps, "max_steps")
    elif isinstance(spec, EvaluateSpec):
        for f in ("n", "n_invariance", "n_reverse"):
            _limit(f, getattr(spec, f), s.max_n, "max_n")
        _limit("reverse_steps", spec.reverse_steps, s.max_steps, "max_steps")
        r = spec.robustness
        _limit("robustness.n", r.n, s.max_n, "max_n")
        _limit("robustness.steps", r.steps, s.max_steps, "max_steps")
        _limit("robustness.step_counts", max(r.step_counts), s.max_steps, "max_steps")
    elif isinstance(spec, TrainSpec):
        _limit("eval_samples", spec.eval_samples, s.max_n, "max_n")
        _limit("eval_steps", spec.eval_steps, s.max_steps, "max_steps")
        _limit("steps", spec.steps, s.max_train_steps, "max_train_steps")
        from scalespace.denoisers.unet import PRESETS  # torch: only when a train spec is admitted

        steps = spec.steps or PRESETS[spec.preset].steps
        if spec.eval_every and steps // spec.eval_every > MAX_TRAIN_EVALUATIONS:
            raise ScalespaceError(f"eval_every: {steps // spec.eval_every} evaluations in {steps} steps is above "
                                  f"the limit of {MAX_TRAIN_EVALUATIONS}; use eval_every >= {-(-steps // MAX_TRAIN_EVALUATIONS)}")
        if steps // spec.log_every > MAX_LOSS_POINTS:
            raise ScalespaceError(f"log_every: {steps // spec.log_every} loss points is above the limit of "
                                  f"{MAX_LOSS_POINTS}; use log_every >= {-(-steps // MAX_LOSS_POINTS)}")


def work(spec: Spec) -> int:
    """How many samples a single job draws or moves (what a sweep's children add up to)."""
    if isinstance(spec, SampleSpec):
        return spec.n
    if isinstance(spec, EvaluateSpec):
        r = spec.robustness
        return spec.n + spec.n_invariance + spec.n_reverse + r.n * (len(r.eps) + len(r.seeds) + len(r.step_counts) + 1)
    if isinstance(spec, TrainSpec):
        from scalespace.denoisers.unet import PRESETS

        steps = spec.steps or PRESETS[spec.preset].steps
        evals = 1 + (steps // spec.eval_every if spec.eval_every else 0)
        return spec.eval_samples * evals
    return 0


# --- memory ---------------------------------------------------------------------------------


def train_size(spec: Spec) -> tuple[int, int]:
    """(training images the job uses, held-out images) without loading the data set."""
    return split_sizes(spec.data, getattr(spec, "data_limit", None))


def _pad8(b: int) -> int:
    return -(-b // 8) * 8


def _oracle_bytes(process: Any, ntr: int, d: int, batch: int, chunk: int) -> int:
    chunk = min(chunk, ntr)
    if process is not None and not process.spectral:  # osmosis: the evolved training set
        held = (process.T + 1) * ntr * d * 20
    else:
        held = ntr * d * 4 * 3
    return held + chunk * d * 4 * 2 + batch * chunk * 8 * 2


def _sampler_bytes(batch: int, d: int) -> int:
    return batch * d * 4 * 8


def estimate_bytes(spec: Spec, process: Any = None) -> dict[str, int]:
    """The terms of a single job's estimated peak memory, in bytes (see the module's docstring)."""
    from scalespace.data import dataset_shape

    c, h, w = dataset_shape(spec.data, spec.data_size)
    d = c * h * w
    ntr, nh = train_size(spec)
    terms = {"data": ntr * d * 4 * 2}
    if isinstance(spec, SampleSpec):
        b = _pad8(min(spec.batch_size, spec.n))
        if spec.model == "oracle":
            terms["oracle"] = _oracle_bytes(process, ntr, d, b, spec.oracle_chunk)
        terms["batch"] = _sampler_bytes(b, d)
        terms["samples"] = spec.n * d * 4 * 2
    elif isinstance(spec, EvaluateSpec):
        b = _pad8(spec.batch_size)
        terms["oracle"] = _oracle_bytes(process, ntr, d, b, spec.oracle_chunk)
        terms["batch"] = _sampler_bytes(b, d) + (spec.eval_steps + 1) * _pad8(min(spec.batch_size, spec.n)) * d * 8 * 2
        terms["invariance"] = spec.n_invariance * d * 8 * 4
        terms["reverse"] = spec.n_reverse * d * 4 * 2
        terms["robustness"] = spec.robustness.n * d * 4 * 4
        terms["heldout"] = nh * d * 4
    elif isinstance(spec, TrainSpec):
        from scalespace.denoisers.unet import PRESETS

        b = _pad8(spec.batch_size or PRESETS[spec.preset].batch_size)
        eb = _pad8(min(spec.eval_samples, 256))
        net = _network(spec, process)
        terms["network"] = net["params"] * 4 * 5
        terms["batch"] = b * h * w * net["activation_width"] * 4 * 2
        terms["evaluation"] = _sampler_bytes(eb, d) + spec.eval_samples * d * 4 * 2 + nh * d * 4
    return terms


def _network(spec: TrainSpec, process: Any) -> dict[str, int]:
    """Parameters of the train job's U-Net (built on the meta device: no memory) and its activation width."""
    from scalespace.jobs.train import network_config

    cfg = network_config(spec)
    cin, cout = process.network_channels() if process is not None else (1, 1)
    params = _parameters(cfg.model_dump_json(), cin, cout)
    width = cfg.channels * sum(m / 4**level for level, m in enumerate(cfg.channel_mults)) * (2 * cfg.num_res_blocks + 2)
    return {"params": params, "activation_width": math.ceil(width)}


@lru_cache(maxsize=256)
def _parameters(config: str, cin: int, cout: int) -> int:
    """Parameters of a U-Net, counted on the meta device (no memory, no arithmetic), once per configuration."""
    import torch

    from scalespace.denoisers.unet import UNet, UNetConfig

    with torch.device("meta"):
        return sum(p.numel() for p in UNet(cin, UNetConfig.model_validate_json(config), cout).parameters())


def check_memory(spec: Spec, process: Any = None, settings: Any = None) -> int:
    """Refuse a single job whose estimated peak memory exceeds SCALESPACE_MAX_JOB_BYTES, naming what to lower."""
    s = _settings(settings)
    terms = estimate_bytes(spec, process)
    need = sum(terms.values())
    if need <= s.max_job_bytes:
        return need
    most = max(terms, key=terms.get)
    field = {"oracle": "data_limit", "data": "data_limit", "network": "network", "evaluation": "eval_samples",
             "samples": "n", "invariance": "n_invariance", "reverse": "n_reverse", "robustness": "robustness.n",
             "heldout": "data_size"}.get(most, "batch_size")
    hint = _fit_hint(spec, process, s.max_job_bytes, field)
    raise ScalespaceError(
        f"{field}: the job would need about {need / GiB:.1f} GiB ({', '.join(f'{k} {v / GiB:.1f}' for k, v in terms.items())} GiB), "
        f"above this service's limit of {s.max_job_bytes / GiB:.1f} GiB (SCALESPACE_MAX_JOB_BYTES); {hint}"
    )


def _fit_hint(spec: Spec, process: Any, limit: int, field: str) -> str:
    """What would fit: the largest value of `field` (batch_size, n, data_limit, eval_samples) under the limit."""
    if field not in ("batch_size", "n", "data_limit", "eval_samples", "n_invariance", "n_reverse"):
        return f"make {field} smaller"
    current = getattr(spec, field, None)
    if field == "data_limit" and current is None:
        current = train_size(spec)[0]
    if field == "batch_size" and current is None:
        from scalespace.denoisers.unet import PRESETS

        current = PRESETS[spec.preset].batch_size
    # the largest value that fits (the estimate grows with each of these fields)
    lo = _largest(lambda v: spec.model_copy(update={field: v}), int(current), process, limit)
    if lo >= 1:
        return f"set {field} to at most {lo}"
    if field == "batch_size" and isinstance(spec, SampleSpec):
        # the samples kept do not fit whatever the batch: the largest batch that fits on its own, then the n
        b = _largest(lambda v: spec.model_copy(update={"batch_size": v, "n": min(spec.n, v)}), spec.batch_size,
                     process, limit)
        if b >= 1:
            n = _largest(lambda v: spec.model_copy(update={"batch_size": b, "n": v}), spec.n, process, limit)
            return f"set batch_size to at most {b} and n to at most {n} (or make data_size smaller)"
    return f"no {field} fits; make the images smaller (data_size) or ask for fewer samples"


def _largest(make: Any, hi: int, process: Any, limit: int) -> int:
    """The largest v in 0..hi with make(v)'s estimate within `limit` (0: none)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(estimate_bytes(make(mid), process).values()) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


# --- the one check ----------------------------------------------------------------------------


def admit(spec: Spec | dict, settings: Any = None, process: Any = None,
          build: Any = None) -> tuple[Spec, Any]:
    """Admit a spec: (the parsed spec, what its kind's check returns), or ScalespaceError "field: reason".

    `process`: the single job's process, built by the caller (the API caches them); `build(spec)` builds
    a child's process for a sweep (the API's cache), else each kind's check builds its own.
    """
    spec = spec if isinstance(spec, Spec) else parse_spec(spec)
    s = _settings(settings)
    kind = job_kind(spec.kind)
    if kind.grid:
        assert isinstance(spec, SweepSpec)
        return spec, _admit_grid(spec, s, build)
    check_sizes(spec, s)
    if process is None and build is not None:
        process = build(spec)
    out = kind.check(spec, process)
    built = out[0] if isinstance(out, tuple) else out
    check_memory(spec, built, s)
    return spec, out


def _admit_grid(spec: SweepSpec, s: Any, build: Any) -> Any:
    children = job_kind(spec.kind).check(spec)  # the grid's cells, each a validated spec
    _limit("processes", len(children), s.max_sweep_children, "max_sweep_children", " children")
    total = 0
    for child in children:
        try:
            parsed, _ = admit(child.spec, s, build=build)
        except ScalespaceError as e:
            raise ScalespaceError(_grid_message(str(e))) from None
        total += work(parsed)
    _limit("template", total, s.max_sweep_samples, "max_sweep_samples", " samples over all children")
    return children


def _grid_message(message: str) -> str:
    """A child's "field: reason" as the sweep's: the grid's axes for process, data, model; template.<field> else."""
    head, sep, rest = message.partition(": ")
    if sep and head and all(part.replace("_", "").replace("-", "").isalnum() for part in head.split(".")):
        return f"{GRID_FIELDS.get(head, f'template.{head}')}: {rest}"
    return message


__all__ = ["admit", "check_memory", "check_sizes", "estimate_bytes", "train_size", "work"]
