"""What a running job sees: its id, its store, a progress sink and a stop check."""

# JobStopped is defined in scalespace.jobs.stopping (torch-free) and re-exported here

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from scalespace import ScalespaceError
from scalespace.jobs.stopping import STOP_CHECK_INTERVAL_S, JobStopped
from scalespace.storage.base import ArtifactRef, ArtifactStore, attempt_folder, check_key, writes_begin, writes_end


@dataclass
class Progress:
    """Step `done` of `total` of the job's current phase, with cheap figures (loss, FD, ...)."""

    job_id: str
    phase: str
    done: int
    total: int
    figures: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]
#: a long loop's steps reach the progress sink at most this often (JobContext.tick)
PROGRESS_INTERVAL_S = 0.2
StopFn = Callable[[], "str | None"]
#: (spec, job id) -> its manifest: runs another spec as a job of its own (a sweep's children)
RunChildFn = Callable[..., dict[str, Any]]  # (spec, job id[, progress]) -> manifest
#: artifacts go up on this many threads (shared by the process's jobs) while the job goes on (JobContext.put)
UPLOAD_THREADS = 4
#: a job holds at most this many artifacts in flight: the next put waits for the oldest (bounded memory)
MAX_PENDING_UPLOADS = 8

_upload_pool: ThreadPoolExecutor | None = None
_upload_pool_lock = threading.Lock()


def upload_pool() -> ThreadPoolExecutor:
    """The process's upload threads, started on the first put (none in a process that writes nothing)."""
    global _upload_pool
    with _upload_pool_lock:
        if _upload_pool is None:
            _upload_pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="scalespace-upload")
        return _upload_pool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ScalespaceError("device: 'cuda' requested but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


@dataclass
class JobContext:
    job_id: str
    store: ArtifactStore
    progress: ProgressFn | None = None
    should_stop: StopFn | None = None
    device: torch.device = torch.device("cpu")
    #: set by run_job: the same store, progress sink and stop check
    run_child: RunChildFn | None = None
    #: the attempt's fencing token when run by the service (artifacts go to its folder); None embedded
    attempt: int | None = None
    #: checked before every write: raises JobStopped when this attempt no longer owns the job
    guard: Callable[[], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    #: the phase and time of the last progress passed on (JobContext.tick)
    _sent: tuple[str | None, float] = field(default=(None, 0.0), init=False, repr=False)
    #: when the stop check last ran
    _checked: float = field(default=0.0, init=False, repr=False)
    #: the artifacts written (or on their way), in the order of their last put
    _refs: list[ArtifactRef] = field(default_factory=list, init=False, repr=False)
    #: uploads in flight: artifact name -> its upload (JobContext.put)
    _pending: dict[str, Future] = field(default_factory=dict, init=False, repr=False)

    @property
    def folder(self) -> str:
        """Where this attempt writes inside the job's folder: '' embedded, 'attempt-<n>/' in the service."""
        return f"{attempt_folder(self.attempt)}/" if self.attempt else ""

    def check_owner(self) -> None:
        """Before any write: raises JobStopped('lease-lost') when this attempt no longer owns the job."""
        if self.guard is not None:
            self.guard()

    def put(self, name: str, data: bytes) -> ArtifactRef:
        """Write artifact `name`: it goes up on an upload thread while the job goes on, and its ref (path,
        sha256, size of `data`) is returned now. The upload checks ownership (`guard`) just before it writes,
        so an attempt that lost its lease writes nothing more. `artifacts` (what the manifest lists) waits for
        every upload and raises the first failure; so does a stop (check_stop) and read_latest. Two puts of
        one name go up in the order they were made."""
        check_key("jobs", self.job_id, self.folder + name)  # a bad name fails here, not in the upload
        data = bytes(data)  # the caller's buffer may change once put returns: the upload sends this copy
        self._raise_failed()
        earlier = self._pending.pop(name, None)
        if earlier is not None:  # the same name again: the older upload lands first
            earlier.result()
        while len(self._pending) >= MAX_PENDING_UPLOADS:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest).result()  # raises its error (JobStopped('lease-lost') when the guard refused)
        ref = ArtifactStore.ref(name, data)
        ref = ArtifactRef(name=name, sha256=ref.sha256, bytes=ref.bytes, path=self.folder + name)
        self._refs = [a for a in self._refs if a.name != name] + [ref]
        writes_begin(self.store, "jobs", self.job_id)  # a delete of the job's folder waits for this upload
        try:
            self._pending[name] = upload_pool().submit(self._upload, self.folder + name, data)
        except BaseException:
            writes_end(self.store, "jobs", self.job_id)
            raise
        return ref

    def _upload(self, path: str, data: bytes) -> None:
        try:
            self.check_owner()  # a worker that lost its lease writes nothing more (checked just before the write)
            self.store.put("jobs", self.job_id, path, data)
        finally:
            writes_end(self.store, "jobs", self.job_id)

    def _raise_failed(self) -> None:
        """An upload that already failed fails the job at its next put (the others still land or fail)."""
        if any(u.done() and u.exception() is not None for u in self._pending.values()):
            self.wait_uploads()

    def wait_uploads(self) -> None:
        """Wait for every upload in flight; raise the first failure (after all of them have ended, so nothing
        of this job is still being written when the error is handled)."""
        pending, self._pending = self._pending, {}
        error: BaseException | None = None
        for upload in pending.values():
            try:
                upload.result()
            except BaseException as e:  # noqa: BLE001 - the first one is raised below, once all have ended
                error = error or e
        if error is not None:
            raise error

    @property
    def written(self) -> list[ArtifactRef]:
        """The artifacts put so far, landed or still on their way (their refs are known at put time)."""
        return list(self._refs)

    @property
    def artifacts(self) -> list[ArtifactRef]:
        """The artifacts written, once every upload has landed (what the manifest lists): raises the first
        upload's failure, so a job whose upload failed writes no manifest."""
        self.wait_uploads()
        return list(self._refs)

    def read_latest(self, name: str) -> bytes | None:
        """`name` as this job last wrote it: this attempt's, else the newest earlier attempt's (a resumable
        job restarts from it; earlier attempts' files are only read, never written)."""
        self.wait_uploads()
        folders = [self.folder] if not self.attempt else [f"{attempt_folder(a)}/" for a in range(self.attempt, 0, -1)]
        for folder in folders:
            if self.store.exists("jobs", self.job_id, folder + name):
                return self.store.get("jobs", self.job_id, folder + name)
        return None

    def put_json(self, name: str, obj: Any) -> ArtifactRef:
        return self.put(name, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False).encode())

    def report(self, phase: str, done: int, total: int, **figures: Any) -> None:
        """Report progress and check for cancellation / deadline (between steps)."""
        if self.progress is not None:
            self.progress(Progress(self.job_id, phase, done, total, figures))
            self._sent = (phase, time.monotonic())
        self.check_stop()

    def tick(self, phase: str, done: int, total: int, **figures: Any) -> None:
        """One step of a long loop: passes the progress on at most every PROGRESS_INTERVAL_S (always a phase's
        first report and its last, done >= total) and checks for cancellation / deadline at most every
        STOP_CHECK_INTERVAL_S, so a loop of many short steps neither floods the job store nor misses a cancel."""
        last_phase, at = self._sent
        now = time.monotonic()
        if last_phase != phase or done >= total or now - at >= PROGRESS_INTERVAL_S:
            self.report(phase, done, total, **figures)
        elif now - self._checked >= STOP_CHECK_INTERVAL_S:
            self.check_stop()

    def phase(self, name: str, total: int) -> PhaseSteps:
        """Count the steps of phase `name` (`total` in all): reports (name, 0, total) now."""
        return PhaseSteps(self, name, total)

    def check_stop(self) -> None:
        self._checked = time.monotonic()
        if self.should_stop is not None:
            reason = self.should_stop()
            if reason:
                try:
                    self.wait_uploads()  # a stopped job's files have all landed (a resumable one restarts from them)
                except Exception:  # noqa: BLE001 - the stop is the outcome; a failed upload changes nothing then
                    pass
                raise JobStopped(reason)

    def timed(self, name: str):
        ctx = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - self.t0

        return _T()


class PhaseSteps:
    """The steps of one phase of a job, counted towards its total: every step goes to JobContext.tick
    (progress, cancellation); `part(n)` hands a sub-task of n steps an on_step(done, total)
    callback placed after the steps so far."""

    def __init__(self, ctx: JobContext, name: str, total: int):
        self.ctx, self.name, self.total, self.done = ctx, name, max(int(total), 1), 0
        ctx.report(name, 0, self.total)

    def at(self, done: int, **figures: Any) -> None:
        """Now `done` steps are done (never fewer than before, never more than the total)."""
        self.done = min(max(self.done, int(done)), self.total)
        self.ctx.tick(self.name, self.done, self.total, **figures)

    def step(self, k: int = 1, **figures: Any) -> None:
        self.at(self.done + k, **figures)

    def poll(self) -> None:
        """No step done, but some work: passes the progress on and checks for cancellation (as often as tick allows)."""
        self.ctx.tick(self.name, self.done, self.total)

    def part(self, n: int) -> Callable[[int, int], None]:
        """on_step(done, total) of a sub-task of `n` steps starting here (its own total is rescaled to n)."""
        base = self.done

        def on_step(done: int, total: int) -> None:
            self.at(base + (done * n // total if total and total != n else done))

        return on_step

    def finish(self, **figures: Any) -> None:
        """The phase is done: reports total of total (whatever steps were skipped), once."""
        if self.done < self.total or figures:
            self.done = self.total
            self.ctx.report(self.name, self.total, self.total, **figures)
        else:
            self.ctx.check_stop()
