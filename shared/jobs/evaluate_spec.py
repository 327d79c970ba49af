"""`EvaluateSpec`: the scale-space report of one process on one data set.

The minimal spec is {"kind": "evaluate", "process": "vp", "data": "digits"};
every other field has a default. `checks` picks the parts to run:

- forward: the forward trajectory and F1 to F4 (plus osmosis's Lyapunov and
  conservation laws), with the oracle pass for the entropies;
- invariances: F5;
- reverse: R1 to R4 with `model` (the oracle by default);
- robustness: initial-noise sensitivity, seed spread, quality against steps,
  memorisation (SPEC section 6);
- density: osmosis and vp side by side on a grey-value grid (vp only).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scalespace.jobs.spec_base import MAX_N, Spec, DataName, ModelName, ProcessName

CHECK_GROUPS = ("forward", "invariances", "reverse", "robustness", "density")


class RobustnessOptions(BaseModel):
    """How much of SPEC section 6 to measure (sizes are per run)."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(64, ge=2, le=MAX_N, description="samples per run")
    eps: list[float] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0], min_length=1,
                             description="perturbation sizes |eps z| of u_T")
    steps: int | None = Field(50, ge=1, description="reverse steps of the sensitivity and seed runs (None: T)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="seeds of the spread")
    step_counts: list[int] = Field(default_factory=lambda: [5, 10, 20, 50, 100], min_length=1,
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


class EvaluateSpec(Spec):
    kind: Literal["evaluate"] = "evaluate"
    process: ProcessName = Field(description="vp, ve, blurring, heat or osmosis")
    process_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the process")
    data: DataName = Field(description="fashion-mnist, digits or gaussian-mixture")
    data_size: int | None = Field(None, ge=4, le=256, description="resize images to this many pixels a side")
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
    robustness: RobustnessOptions = Field(default_factory=RobustnessOptions)
    quality_extractor: Literal["pixels", "random-conv", "inception"] = Field(
        "pixels", description="feature space of the quality figures (inception: FID, slow on a CPU)")
    density_cells: int = Field(1600, ge=50, le=20_000, description="cells of the grey-value grid on [-8, 8]")
    batch_size: int = Field(256, ge=1, le=65_536)
    oracle_chunk: int = Field(4096, ge=1)
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] = "auto"




    @field_validator("checks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return [c for c in CHECK_GROUPS if c in v]
