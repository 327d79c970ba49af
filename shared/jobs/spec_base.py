"""The base of every job spec: strict pydantic models with a content hash."""

from __future__ import annotations

import hashlib
import json

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

MAX_N = 1_000_000


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the spec (defaults filled in)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


KINDS = ("sample", "evaluate", "train", "sweep")


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


def _known_process(v: str) -> str:
    from scalespace.processes import PROCESSES

    if v not in PROCESSES:
        raise ValueError(f"unknown process {v!r}; choose one of {', '.join(PROCESSES)}")
    return v


def _known_data(v: str) -> str:
    from scalespace.data import DATASETS

    if v not in DATASETS:
        raise ValueError(f"unknown data set {v!r}; choose one of {', '.join(DATASETS)}")
    return v


def _model_id(v: str) -> str:
    if v != "oracle":
        from scalespace.ids import check_id

        check_id(v, "model id")
    return v


#: field types shared by the job specs: validated names
ProcessName = Annotated[str, AfterValidator(_known_process)]
DataName = Annotated[str, AfterValidator(_known_data)]
ModelName = Annotated[str, AfterValidator(_model_id)]
