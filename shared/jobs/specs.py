"""Job specs and results: the wire contract (pydantic, JSON).

The minimal sample spec is {"kind": "sample", "process": "vp", "data": "digits", "n": 16};
every other field has a default. Unknown fields are refused, so a typo is an
error and not a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from scalespace import ScalespaceError
from scalespace.jobs.spec_base import MAX_N, Spec, format_validation_error, DataName, ModelName, ProcessName


TRAJECTORY_STATS = ("mean", "variance", "conditional_entropy")
#: further per-step measures a sample job may ask for (shared/stats/trajectory.py)
EXTRA_TRAJECTORY_STATS = ("histogram_entropy", "kl_gaussian", "fd_data")


class SampleSpec(Spec):
    """Reverse diffusion with a model from a process's prior; writes samples and statistics."""

    kind: Literal["sample"] = "sample"
    process: ProcessName = Field(description="vp, ve, blurring, heat or osmosis")
    process_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the process")
    data: DataName = Field(description="fashion-mnist, digits or gaussian-mixture")
    data_size: int | None = Field(None, ge=4, le=256, description="resize images to this many pixels a side")
    data_limit: int | None = Field(None, ge=1, description="use only the first images of the training split")
    model: ModelName = Field("oracle", description="'oracle' (exact, over the training set) or a model id")
    sampler: str | None = Field(None, description="ancestral, ddim or heat; default: the process's own")
    eta: float = Field(0.0, ge=0, description="DDIM eta (0 = deterministic)")
    steps: int | None = Field(None, ge=1, description="reverse steps; default: the process's T")
    n: int = Field(16, ge=1, le=MAX_N, description="number of samples")
    batch_size: int = Field(64, ge=1, le=65_536)
    seed: int = Field(0, ge=0, lt=2**63)
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
    device: Literal["auto", "cpu", "cuda"] = "auto"



    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        from scalespace.sampling import SAMPLERS

        if v is not None and v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; choose one of {', '.join(SAMPLERS)}")
        return v



from scalespace.jobs.evaluate_spec import EvaluateSpec  # noqa: E402  (each kind owns its spec module)
from scalespace.jobs.sweep_spec import SweepSpec  # noqa: E402
from scalespace.jobs.train_spec import TrainSpec  # noqa: E402

JOB_SPECS: list[type[Spec]] = [SampleSpec, EvaluateSpec, TrainSpec, SweepSpec]
JobSpec = Annotated[Union[SampleSpec, EvaluateSpec, TrainSpec, SweepSpec], Field(discriminator="kind")]
_adapter = TypeAdapter(JobSpec)


def parse_spec(data: Any) -> Spec:
    """Validate a job spec from a dict (JSON/YAML); raise ScalespaceError with 'field: reason'."""
    if not isinstance(data, dict):
        raise ScalespaceError("a job spec must be a mapping with a 'kind' field")
    if "kind" not in data:
        raise ScalespaceError(f"kind: missing; choose one of {', '.join(s.model_fields['kind'].default for s in JOB_SPECS)}")
    try:
        return _adapter.validate_python(data)
    except ValidationError as e:
        raise ScalespaceError(format_validation_error(e)) from None
