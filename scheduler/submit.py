"""Admission of a job: validate the spec against this service's limits, then queue it.

Everything that can be refused before a worker spends time on it is refused
here, as a ScalespaceError "field: reason" (the API answers 422), by the one
admission check every door calls (scalespace.jobs.admission.admit: the
spec's own validation, every size field against this service's limits, the
kind's check, the estimated peak memory; a sweep's children each like a job
of their own), on processes cached by their parameter values; then a model id
with no card in the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Generator

from scalespace import ScalespaceError
from scalespace.data import dataset_shape
from scalespace.ids import check_id
from scalespace.jobs.admission import admit
from scalespace.jobs.kinds import job_kind
from scalespace.jobs.run import new_job_id
from scalespace.jobs.sample import build_process
from scalespace.jobs.specs import ProcessDataSpec, Spec
from scalespace.processes import process_class


class LaneFull(Exception):
    def __init__(self, lane: str, depth: int, limit: int):
        super().__init__(f"lane {lane!r} is full ({depth} of {limit} jobs queued); retry later")
        self.lane, self.depth, self.limit = lane, depth, limit


class IdempotencyConflict(Exception):
    def __init__(self, job_id: str):
        super().__init__(f"Idempotency-Key was already used for job {job_id} with a different spec; use a new key")
        self.job_id = job_id


#: ids drawn for one submission before giving up (a collision of 130 random bits is all but impossible)
ID_ATTEMPTS = 5


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool  # False: the idempotency key named an earlier job
    #: created: the record as written and the job's place in its lane (no second read for the answer)
    record: Any = None
    position: int | None = None


def field_and_reason(message: str) -> tuple[str | None, str]:
    """'spec.n: too big' -> ('spec.n', 'too big'); a message without a field -> (None, message)."""
    head, sep, rest = message.partition(": ")
    if sep and head and all(part.replace("_", "").replace("-", "").isalnum() for part in head.split(".")):
        return head, rest
    return None, message


def check_spec(data: Any, settings: Any, store: Any) -> Spec:
    """The parsed spec, or ScalespaceError("field: reason") naming what to fix: the one admission check
    (scalespace.jobs.admission.admit, what run_job and so the worker call) on cached processes, then the
    model ids against the store."""
    spec = admit_spec(data, settings)
    check_models(spec, store)
    return spec


def admit_spec(data: Any, settings: Any) -> Spec:
    """check_spec's first half, all in memory: the admission check on cached processes."""
    return admit(data, settings, build=_cached_process)[0]


def spec_models(spec: Spec) -> list[tuple[str, str]]:
    """(model id, field) of each model the spec names other than the oracle: what check_models looks up."""
    named = [(m, "models") for m in spec.models] if job_kind(spec.kind).grid \
        else [(getattr(spec, "model", "oracle"), "model")]
    return [(m, field) for m, field in named if m != "oracle"]


def check_models(spec: Spec, store: Any) -> None:
    """check_spec's second half: each model id the spec names has a card in the store (a request each)."""
    for model, field in spec_models(spec):
        _check_model(model, store, field)


def _cached_process(spec: ProcessDataSpec) -> Any:
    """The spec's process from the cache, keyed by its parameter values (defaults filled in, so {} and
    {"T": 1000} are one entry); parameters drawn from the job's seed (osmosis guidance) take it first."""
    cls = process_class(spec.process)
    params = dict(spec.process_params)
    for name in cls.seeded_params:
        params.setdefault(name, int(spec.seed))
    try:
        key = cls.Params(**params).model_dump_json()
    except Exception:  # invalid parameters: let the build name the field
        key = json.dumps(params, sort_keys=True, default=str)
    return _process(spec.process, key, dataset_shape(spec.data, spec.data_size))


@lru_cache(maxsize=256)
def _process(name: str, params: str, shape: tuple[int, int, int]) -> Any:
    """Build (and so validate) a process once per parameter values and image shape, on one torch thread
    (whole-array operations on at most a few hundred thousand values: more threads only wait for each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_process(name, shape, json.loads(params))
    finally:
        torch.set_num_threads(threads)


def _check_model(model: str, store: Any, field: str) -> None:
    if model == "oracle":
        return
    check_id(model, "model id")
    if not store.exists("models", model, "card.json"):
        raise ScalespaceError(f"{field}: unknown model id {model!r} (no card in the store's models); "
                              "train it first or use 'oracle'")


def submit_spec(spec: Spec, *, settings: Any, jobstore: Any, enqueue: Callable[[str, str], None], lane: str,
                deadline_s: float | None = None, idempotency_key: str | None = None,
                job_id: str | None = None) -> Submitted:
    """Create the record and put the job on its lane's queue: in one atomic step when `enqueue` can build the
    message (scalespace.scheduler.queues.Enqueuer.message), else the record, then the message.

    The job store creates a record only under an id it does not hold yet: a
    drawn id that collides with another job is drawn again (never merged with
    that job); an explicit `job_id` that exists is refused.
    """
    message = getattr(enqueue, "message", None)  # the broker's message written with the record (one step)
    steps = _submission(spec, settings=settings, lane=lane, deadline_s=deadline_s, idempotency_key=idempotency_key,
                        job_id=job_id, message=message)
    try:
        call = next(steps)
        while True:
            call = steps.send(jobstore.submit(**call))
    except StopIteration as done:
        out: Submitted = done.value
    if out.created and message is None:
        try:
            enqueue(out.job_id, lane)
        except Exception:
            jobstore.delete(out.job_id)  # never leave a queued record without a message
            raise
    return out


async def submit_spec_async(spec: Spec, *, settings: Any, jobstore: Any, aclient: Any, message: Callable[..., Any],
                            lane: str, deadline_s: float | None = None, idempotency_key: str | None = None
                            ) -> Submitted:
    """submit_spec on the API's event loop: the same steps, each job-store call through `aclient`
    (JobStore.submit_async), the message always written with the record."""
    steps = _submission(spec, settings=settings, lane=lane, deadline_s=deadline_s, idempotency_key=idempotency_key,
                        job_id=None, message=message)
    try:
        call = next(steps)
        while True:
            call = steps.send(await jobstore.submit_async(aclient, **call))
    except StopIteration as done:
        return done.value


def _submission(spec: Spec, *, settings: Any, lane: str, deadline_s: float | None, idempotency_key: str | None,
                job_id: str | None, message: Callable[..., Any] | None) -> Generator[dict[str, Any], Any, Submitted]:
    """The steps of a submission, free of I/O: yields each job-store submit's arguments, is sent its outcome,
    returns what was submitted (raises LaneFull, IdempotencyConflict, ScalespaceError)."""
    limit = settings.lanes().get(lane, -1)
    dump, spec_hash = spec.model_dump(mode="json"), spec.spec_hash()
    for _ in range(ID_ATTEMPTS):
        drawn = job_id or new_job_id(spec)
        out = yield dict(job_id=drawn, spec=dump, kind=spec.kind, spec_hash=spec_hash, lane=lane, limit=limit,
                         deadline_s=deadline_s, idempotency_key=idempotency_key,
                         message=message(drawn, lane) if message else None)
        if out.action != "exists":
            break
        if job_id:
            raise ScalespaceError(f"job_id: a job {job_id!r} exists already; leave the id out to get a new one")
    else:
        raise ScalespaceError(f"could not draw an unused job id in {ID_ATTEMPTS} attempts; submit again")
    if out.action == "full":
        raise LaneFull(lane, out.depth, limit)
    if out.action == "existing":
        if out.spec_hash and out.spec_hash != spec_hash:
            raise IdempotencyConflict(out.job_id)
        return Submitted(out.job_id, created=False)
    return Submitted(drawn, created=True, record=out.record, position=out.position or None)
