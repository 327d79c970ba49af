"""Job specs: the wire contract (pydantic, JSON), one model per kind of job.

    {"kind": "sample", "process": "vp", "data": "digits", "n": 16}
    {"kind": "evaluate", "process": "vp", "data": "digits"}
    {"kind": "train", "process": "vp", "data": "digits"}
    {"kind": "sweep", "name": "nightly", "processes": ["vp", "heat"], "data": ["digits"],
     "template": {"kind": "evaluate", "n": 64}}

are minimal specs; every other field has a default. Unknown fields are
refused, so a typo is an error and not a silently ignored option.

- `SampleSpec`: reverse diffusion with a model from a process's prior.
- `EvaluateSpec`: the scale-space report of one process on one data set;
  `checks` picks the parts to run: forward (the forward trajectory and F1 to
  F4, plus osmosis's Lyapunov and conservation laws, with the oracle pass for
  the entropies), invariances (F5), reverse (R1 to R4 with `model`, the oracle
  by default), robustness (initial-noise sensitivity, seed spread, quality
  against steps, memorisation), density (osmosis and vp side
  by side on a grey-value grid, vp only).
- `TrainSpec`: fit a denoiser; the `tiny` preset gives the steps, batch size,
  learning rate and EMA decay unless set, and `network` overrides single
  fields of the preset's U-Net (e.g. {"channels": 32}).
- `SweepSpec`: a grid of jobs (processes x data sets x models). Each cell is
  one child job: the template with the cell's process, data set and model (a
  `train` template ignores the models axis). The sweep's report compares every
  figure with the previous sweep of the same name and flags a regression when
  a figure moves the wrong way by more than max(tolerance * |previous|, tolerance_abs).

Sample and evaluate jobs take `shards` (an integer, or "auto": one shard per
`shard_size` samples): the job runs as a parent and that many shard jobs, each
drawing a batch-aligned slice of the sample indices (scalespace.jobs.shards);
`shard` marks a shard job and is set by the parent, not by callers.

Sample, evaluate and train jobs share their first fields (`ProcessDataSpec`);
`seed` and `device` are shared types, declared in each spec at its own place,
because the order of a spec's fields decides which error is reported first.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator,
)

from scalespace import ScalespaceError
from scalespace.ids import check_id
from scalespace.jobs.spec_files import check_finite

MAX_N = 1_000_000

TRAJECTORY_STATS = ("mean", "variance", "conditional_entropy")
#: further per-step measures a sample job may ask for (shared/evaluation/sample_trajectory.py)
EXTRA_TRAJECTORY_STATS = ("histogram_entropy", "kl_gaussian", "fd_data")
#: the parts of an evaluate job
CHECK_GROUPS = ("forward", "invariances", "reverse", "robustness", "density")
#: fields each child of a sweep gets from the grid (field -> axis), never from the template
GRID_FIELDS = {"process": "processes", "data": "data", "model": "models"}


# --- validated names ---------------------------------------------------------------------
# The registries are imported when a spec is validated, not with this module: the specs
# stay free of torch, so the command line starts fast and the worker's parent imports them.


def _known_process(v: str) -> str:
    from scalespace.processes import PROCESSES  # torch: see above

    if v not in PROCESSES:
        raise ValueError(f"unknown process {v!r}; choose one of {', '.join(PROCESSES)}")
    return v


def _known_data(v: str) -> str:
    from scalespace.data import DATASETS  # torch: see above

    if v not in DATASETS:
        raise ValueError(f"unknown data set {v!r}; choose one of {', '.join(DATASETS)}")
    return v


def _model_id(v: str) -> str:
    if v != "oracle":
        check_id(v, "model id")
    return v


ProcessName = Annotated[str, AfterValidator(_known_process)]
DataName = Annotated[str, AfterValidator(_known_data)]
ModelName = Annotated[str, AfterValidator(_model_id)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
Device = Literal["auto", "cpu", "cuda"]


#: the kinds whose jobs may be split into shards
SHARDED_KINDS = ("sample", "evaluate")
#: most shards one job may have
MAX_SHARDS = 1024
#: samples per shard when `shards` is "auto" (sample jobs: n; evaluate jobs: the larger of n and n_reverse)
DEFAULT_SHARD_SIZE = 1024


class ShardOf(BaseModel):
    """Which shard of its parent a shard job is: `index` of `count` (set by the parent job)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, lt=MAX_SHARDS, description="this shard's position, from 0")
    count: int = Field(ge=2, le=MAX_SHARDS, description="how many shards the parent has")

    @model_validator(mode="after")
    def _within(self) -> ShardOf:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}; shards count from 0")
        return self


#: the sharding fields: left out of the spec hash at their defaults, so an unsharded spec keeps its hash
SHARD_FIELDS = ("shards", "shard_size", "shard")


def _shards(v: Any) -> Any:
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SHARDS:
        raise ValueError(f"must be an integer from 1 to {MAX_SHARDS}, or 'auto' (one shard per shard_size samples); "
                         f"got {v!r}")
    return v


Shards = Annotated[Union[Annotated[int, Field(ge=1, le=MAX_SHARDS)], Literal["auto"]], BeforeValidator(_shards)]
SHARDS_DESCRIPTION = (
    "split the job's samples over this many shard jobs, each a batch-aligned slice of the sample indices, run by "
    "as many workers (the result is bit-identical to one shard); 'auto': one shard per shard_size samples"
)


# --- the bases ---------------------------------------------------------------------------


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite floats only (free-form fields: parse_spec)

    kind: str  # each spec narrows it to its own Literal (the tag of the JobSpec union)
    #: fields added after specs were first hashed: left out of the hash while they hold their default, so a
    #: spec submitted before they existed keeps its hash (idempotency keys, sweep history, checkpoints)
    HASH_SKIPS_DEFAULT: ClassVar[tuple[str, ...]] = ()

    def canonical_dump(self) -> dict[str, Any]:
        """The spec as JSON data with defaults filled in, except HASH_SKIPS_DEFAULT fields at their default."""
        dump = self.model_dump(mode="json")
        for name in self.HASH_SKIPS_DEFAULT:
            if getattr(self, name) == type(self).model_fields[name].default:
                dump.pop(name, None)
        return dump

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the spec (canonical_dump)."""
        dump = self.canonical_dump()
        blob = json.dumps(dump, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ProcessDataSpec(Spec):
    # One process on one data set: the first fields of the sample, evaluate and train specs.
    process: ProcessName = Field(description="vp, ve, blurring, heat or osmosis")
    process_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the process")
    data: DataName = Field(description="fashion-mnist, digits or gaussian-mixture")
    data_size: int | None = Field(None, ge=4, le=256, description="resize images to this many pixels a side")
    data_limit: int | None = Field(None, ge=1, description="use only the first images of the training split")


# --- the kinds ---------------------------------------------------------------------------


class SampleSpec(ProcessDataSpec):
    """Reverse diffusion with a model from a process's prior; writes samples and statistics."""

    kind: Literal["sample"] = "sample"
    model: ModelName = Field("oracle", description="'oracle' (exact, over the training set) or a model id")
    sampler: str | None = Field(None, description="ancestral, ddim or heat; default: the process's own")
    eta: float = Field(0.0, ge=0, description="DDIM eta (0 = deterministic)")
    steps: int | None = Field(None, ge=1, description="reverse steps; default: the process's T")
    HASH_SKIPS_DEFAULT: ClassVar[tuple[str, ...]] = ("timestep_spacing", "reverse_mean", "pictures", *SHARD_FIELDS)
    timestep_spacing: Literal["trailing", "leading", "linspace"] = Field(
        "trailing",
        description="which indices a respaced walk (steps < T) visits, as diffusers' timestep_spacing: trailing "
                    "(from T, evenly), leading (multiples of T // steps, from below T) or linspace; vp and ve only",
    )
    reverse_mean: Literal["ihdm", "posterior"] = Field(
        "ihdm",
        description="the heat sampler's step mean (heat, osmosis) from the model's estimate of A_{k-1} u_0: ihdm "
                    "(that estimate, inverse heat dissipation) or posterior (the Gaussian posterior mean "
                    "E[u_{k-1} | u_k, u_0], heat: a u_k + (1 - a^2) A_{k-1} u_0 per DCT mode)",
    )
    n: int = Field(16, ge=1, le=MAX_N, description="number of samples")
    batch_size: int = Field(64, ge=1, le=65_536)
    seed: Seed = 0
    statistics: list[Literal["mean", "variance", "conditional_entropy", "histogram_entropy", "kl_gaussian", "fd_data"]] = Field(
        default_factory=lambda: list(TRAJECTORY_STATS), description="per-step trajectory measures"
    )
    quality: list[Literal["fd", "fid"]] = Field(
        default_factory=lambda: ["fd"],
        description="final figures against the held-out split: fd (pixel Fréchet distance), fid (Inception; slow on a CPU)",
    )
    oracle_chunk: int = Field(4096, ge=1, description="training images per chunk of the oracle's reduction")
    oracle_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="the oracle's matrix-product dtype: float32 (exact reference) or bfloat16 (fast on a GPU)"
    )
    pictures: bool = Field(
        False,
        description="also write captioned PNG pictures: scale_space.png (the forward scale-space of a few data images), "
                    "reverse_trajectory.png (u_t and the denoiser's estimate of u_0 along the reverse chain of the first "
                    "samples) and sample_grid.png (the samples); they do not change the samples",
    )
    shards: Shards = Field(1, description=SHARDS_DESCRIPTION)
    shard_size: int = Field(DEFAULT_SHARD_SIZE, ge=1, le=MAX_N, description="samples per shard when shards is 'auto'")
    shard: ShardOf | None = Field(None, description="set by the parent on its shard jobs: which slice this job draws")
    device: Device = "auto"

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        from scalespace.sampling import SAMPLERS  # torch: see the validated names

        if v is not None and v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; choose one of {', '.join(SAMPLERS)}")
        return v


class RobustnessOptions(BaseModel):
    """How much of the robustness to measure (sizes are per run)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: int = Field(64, ge=2, le=MAX_N, description="samples per run")
    eps: list[float] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0], min_length=1, max_length=64,
                             description="perturbation sizes |eps z| of u_T")
    steps: int | None = Field(50, ge=1, description="reverse steps of the sensitivity and seed runs (None: T)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=64, description="seeds of the spread")
    step_counts: list[int] = Field(default_factory=lambda: [5, 10, 20, 50, 100], min_length=1, max_length=64,
                                   description="numbers of reverse steps for quality against steps")
    n_boot: int = Field(100, ge=2, le=10_000, description="bootstrap resamples")

    @field_validator("eps")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not e > 0 for e in v):
            raise ValueError("every eps must be > 0")
        return v

    @field_validator("step_counts")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every step count must be >= 1")
        return v


class EvaluateSpec(ProcessDataSpec):
    kind: Literal["evaluate"] = "evaluate"
    data_limit: int | None = Field(None, ge=1, description="use only the first training images (the oracle's set)")
    model: ModelName = Field("oracle", description="denoiser of the reverse checks: 'oracle' or a model id")
    checks: list[Literal["forward", "invariances", "reverse", "robustness", "density"]] = Field(
        default_factory=lambda: list(CHECK_GROUPS), min_length=1, description="which parts to run")
    n: int = Field(256, ge=2, le=MAX_N, description="forward trajectory samples")
    eval_steps: int = Field(50, ge=2, le=10_000, description="forward steps evaluated (evenly spaced, 0 and T included)")
    n_invariance: int = Field(64, ge=2, le=MAX_N, description="images for the F5 checks")
    invariance_steps: int = Field(8, ge=1, le=1000, description="forward steps checked for F5")
    n_reverse: int = Field(128, ge=2, le=MAX_N, description="samples of the reverse checks R1 to R4")
    reverse_steps: int | None = Field(100, ge=1, description="reverse steps of R1 to R4 (None: T)")
    HASH_SKIPS_DEFAULT: ClassVar[tuple[str, ...]] = ("reverse_mean", *SHARD_FIELDS)
    reverse_mean: Literal["ihdm", "posterior"] = Field(
        "ihdm", description="the heat sampler's step mean (heat, osmosis) in the reverse checks and robustness runs: ihdm or posterior, as the "
                            "sample job's")
    robustness: RobustnessOptions = Field(default_factory=RobustnessOptions)
    quality_extractor: Literal["pixels", "random-conv", "inception"] = Field(
        "pixels", description="feature space of the quality figures (inception: FID, slow on a CPU)")
    density_cells: int = Field(1600, ge=50, le=20_000, description="cells of the grey-value grid on [-8, 8]")
    batch_size: int = Field(256, ge=1, le=65_536)
    oracle_chunk: int = Field(4096, ge=1)
    shards: Shards = Field(1, description=SHARDS_DESCRIPTION + " (the forward trajectory's n and the reverse "
                                                              "checks' n_reverse are both split)")
    shard_size: int = Field(DEFAULT_SHARD_SIZE, ge=1, le=MAX_N,
                            description="samples per shard when shards is 'auto' (the larger of n and n_reverse)")
    shard: ShardOf | None = Field(None, description="set by the parent on its shard jobs: which slice this job draws")
    seed: Seed = 0
    device: Device = "auto"

    @field_validator("checks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return [c for c in CHECK_GROUPS if c in v]


class TrainSpec(ProcessDataSpec):
    kind: Literal["train"] = "train"
    preset: Literal["tiny", "small", "base"] = Field("tiny", description="network size and training defaults")
    network: dict[str, Any] = Field(default_factory=dict, description="U-Net fields overriding the preset's")
    objective: Literal["auto", "eps", "v", "one_step"] = Field("auto", description="auto: the process's default")
    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimisation steps; default: the preset's")
    batch_size: int | None = Field(None, ge=1, le=65_536, description="default: the preset's")
    lr: float | None = Field(None, gt=0, le=1, description="peak learning rate (Adam); default: the preset's")
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up, then cosine decay")
    ema_decay: float | None = Field(None, ge=0, lt=1, description="EMA of the weights; default: the preset's")
    grad_clip: float = Field(1.0, ge=0, description="clip the gradient norm to this (0 = off)")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (ignored on a CPU)")
    seed: Seed = 0
    eval_every: int = Field(0, ge=0, description="evaluate every k steps (0: only at the end)")
    eval_samples: int = Field(128, ge=2, le=100_000, description="samples per evaluation")
    eval_steps: int | None = Field(None, ge=1, description="reverse steps per evaluation sample (default 100 or T)")
    HASH_SKIPS_DEFAULT: ClassVar[tuple[str, ...]] = ("reverse_mean",)
    reverse_mean: Literal["ihdm", "posterior"] = Field(
        "ihdm", description="the heat sampler's step mean (heat, osmosis) in the evaluation samples: ihdm or posterior, as the "
                            "sample job's")
    eval_extractor: str = Field("pixels", description="Fréchet distance features: pixels, random-conv or inception")
    checkpoint_every: int = Field(500, ge=1, description="save the training state every k steps (for resuming)")
    log_every: int = Field(10, ge=1, description="loss-curve resolution, in steps")
    device: Device = "auto"

    @field_validator("network")
    @classmethod
    def _network_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        from scalespace.denoisers.unet import UNetConfig  # torch: see the validated names

        unknown = sorted(set(v) - set(UNetConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown U-Net field {unknown[0]!r}; choose from {', '.join(UNetConfig.model_fields)}")
        return v


class SweepSpec(Spec):
    kind: Literal["sweep"] = "sweep"
    name: str = Field(description="sweeps of the same name are compared night to night")
    processes: list[str] = Field(min_length=1, max_length=16, description="forward processes to cover")
    data: list[str] = Field(min_length=1, max_length=16, description="data sets to cover")
    models: list[str] = Field(default_factory=lambda: ["oracle"], min_length=1, max_length=16,
                              description="'oracle' and/or model ids")
    template: dict[str, Any] = Field(default_factory=lambda: {"kind": "evaluate"},
                                     description="the child job spec, without process, data and model")
    tolerance: float = Field(0.05, ge=0, le=10, description="relative change that counts as a regression")
    tolerance_abs: float = Field(1e-6, ge=0, description="smallest absolute change that counts")
    directions: dict[str, Literal["lower", "higher"]] = Field(
        default_factory=dict, description="figure name (or its last part) -> which way is better; overrides the defaults"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_id(v, "sweep name")
        return v

    @field_validator("processes", "data", "models")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists each value twice; list it once")
        return v

    @field_validator("template")
    @classmethod
    def _template(cls, v: dict[str, Any]) -> dict[str, Any]:
        kind = v.get("kind")
        if kind not in CHILD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CHILD_KINDS)} (a sweep does not nest sweeps)")
        for f, axis in GRID_FIELDS.items():
            if f in v:
                raise ValueError(f"{f!r} comes from the sweep's {axis!r}; remove it from the template")
        return v


# --- all of them -------------------------------------------------------------------------

#: the specs of single jobs, then the sweep (a grid of single jobs)
SINGLE_JOB_SPECS: tuple[type[ProcessDataSpec], ...] = (SampleSpec, EvaluateSpec, TrainSpec)
JOB_SPECS: tuple[type[Spec], ...] = (*SINGLE_JOB_SPECS, SweepSpec)
#: every kind of job, in this order wherever they are listed (API, command line, job store)
KINDS: tuple[str, ...] = tuple(s.model_fields["kind"].default for s in JOB_SPECS)
#: the kinds a sweep's template may name (a sweep does not nest sweeps)
CHILD_KINDS: tuple[str, ...] = tuple(s.model_fields["kind"].default for s in SINGLE_JOB_SPECS)

JobSpec = Annotated[Union[SampleSpec, EvaluateSpec, TrainSpec, SweepSpec], Field(discriminator="kind")]
_adapter = TypeAdapter(JobSpec)


def format_validation_error(e: ValidationError) -> str:
    """One line: 'field: reason' for the first error (and how many more)."""
    errs = e.errors()
    first = errs[0]
    parts = list(first["loc"])
    if parts and parts[0] in KINDS:  # the discriminated union's tag, not a field
        parts = parts[1:]
    loc = ".".join(str(x) for x in parts) or "spec"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_spec(data: Any) -> Spec:
    """Validate a job spec from a dict (JSON/YAML); raise ScalespaceError with 'field: reason'."""
    if not isinstance(data, dict):
        raise ScalespaceError("a job spec must be a mapping with a 'kind' field")
    if "kind" not in data:
        raise ScalespaceError(f"kind: missing; choose one of {', '.join(KINDS)}")
    check_finite(data)  # no NaN or Infinity anywhere, free-form fields (process_params, network, template) included
    try:
        return _adapter.validate_python(data)
    except ValidationError as e:
        raise ScalespaceError(format_validation_error(e)) from None
