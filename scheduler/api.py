"""The scheduler's HTTP API (FastAPI): submit, inspect, cancel and retry jobs.

    POST   /v1/jobs                      submit (Idempotency-Key header: the same key returns the same job)
    GET    /v1/jobs                      list, newest first (?state=&kind=&lane=&limit=)
    GET    /v1/jobs/{id}                 state, progress, queue position, timestamps, attempts, artifact URLs
    DELETE /v1/jobs/{id}                 cancel (a running job stops at its next step)
    POST   /v1/jobs/{id}/retry           queue a failed, cancelled or expired job again
    GET    /v1/jobs/{id}/artifacts/{name} one artifact with its Content-Type (S3: a redirect to a presigned URL);
                                         HEAD: its type and size
    GET    /v1/dead-letter               jobs that gave up
    GET    /v1/sweeps/{name}/history     a named sweep's runs, night by night: figures, regressions, report, children
    GET    /                             where to go (no token needed)
    GET    /ui                           the web console (a static page, no token needed; its data comes from the API)
    GET    /v1/health, /v1/ready          liveness, readiness (Redis and the store): no token needed
    GET    /metrics                      Prometheus
    GET    /openapi.json                 this API's OpenAPI document (no /docs page: it would need a CDN)

Every route but /, /ui, health and ready needs `Authorization: Bearer <token>` (one of
SCALESPACE_API_TOKEN). Errors are JSON {"error", "detail", "field"}, never a
traceback: 400 malformed, 401, 404, 409, 413, 422 invalid (with the field),
429 lane full (with Retry-After), 503 Redis or store unreachable.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import threading
import time
import weakref
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import scalespace
from scalespace import ScalespaceError
from scalespace.config import Settings, get_settings
from scalespace.data import DATASETS
from scalespace.ids import check_id
from scalespace.jobs.spec_files import check_finite
from scalespace.jobs.specs import SHARDED_KINDS
from scalespace.processes import PROCESSES
from scalespace.sampling import SAMPLERS
from scalespace.scheduler.api_errors import ApiError, install_error_handlers
from scalespace.scheduler.api_models import (ERRORS, ArtifactView, DeadLetters, Health, JobList, JobRequest, JobView, Kind,
                                             Lane, ProgressView, Ready, ShardView, State, SweepHistory, SweepRun, ts)
from scalespace.scheduler.console import install_console
from scalespace.scheduler.infra import async_redis_client
from scalespace.scheduler.jobstore import JobRecord, JobStore
from scalespace.scheduler.metrics import ApiMetrics
from scalespace.scheduler.queues import Enqueuer, celery_client
from scalespace.scheduler.submit import (IdempotencyConflict, LaneFull, admit_spec, check_models, check_spec,
                                         spec_models, submit_spec, submit_spec_async)
from scalespace.storage import (MANIFEST, S3Store, StoreUnavailable, artifact_path, attempt_folder, content_type,
                                store_from_settings)
from scalespace.storage.base import check_key

log = logging.getLogger("scalespace.api")


class Services:
    """The API's connections, made on first use (so the app and its OpenAPI document build offline)."""

    def __init__(self, settings: Any, jobstore: Any = None, store: Any = None, enqueue: Any = None):
        self.settings = settings
        self._jobstore, self._store, self._enqueue = jobstore, store, enqueue
        self._handed_in = jobstore is not None or enqueue is not None
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its Redis client
        self._lock = threading.Lock()
        self.metrics = ApiMetrics()

    @property
    def jobstore(self) -> Any:
        with self._lock:
            if self._jobstore is None:
                self._jobstore = JobStore.from_settings(self.settings)
            return self._jobstore

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                self._store = store_from_settings(self.settings)
            return self._store

    @property
    def enqueue(self) -> Any:
        with self._lock:
            if self._enqueue is None:
                self._enqueue = Enqueuer(celery_client(self.settings))
            return self._enqueue

    def async_redis(self) -> Any:
        """The event loop's own Redis client for submissions (scalespace.scheduler.infra.async_redis_client), made
        on first use in each loop; None when the job store or the enqueuer was handed in (tests, embedders: the
        submission then runs its blocking calls on a thread)."""
        if self._handed_in:
            return None
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = async_redis_client(self.settings)
        return client


def _artifacts(rec: JobRecord) -> dict[str, dict[str, Any]]:
    """A succeeded job's artifacts by name, each with its path in the job's folder, and its manifest: the job's
    manifest.json, published just after the commit from the bytes the commit kept (the artifact route serves
    those until they have been dropped), or, for a commit that kept none, the committed attempt's own."""
    out = {a["name"]: {**a, "path": a.get("path") or a["name"]} for a in rec.artifacts or [] if a.get("name")}
    committed = rec.committed_attempt
    own = committed and not rec.manifest_held
    out[MANIFEST] = {"name": MANIFEST, "path": f"{attempt_folder(committed)}/{MANIFEST}" if own else MANIFEST}
    return out


def _view(rec: JobRecord, svc: Services, request: Request, position: int | None = None) -> JobView:
    state = rec.state or "queued"
    artifacts = None
    if state == "succeeded":
        artifacts = []
        for a in _artifacts(rec).values():
            if isinstance(svc.store, S3Store):
                url = svc.store.url("jobs", rec.id, a["path"], svc.settings.s3_presign_expiry_s)
            else:
                url = str(request.url_for("get_artifact", job_id=rec.id, name=a["name"]))
            artifacts.append(ArtifactView(name=a["name"], bytes=a.get("bytes"), sha256=a.get("sha256"), url=url))
    if state == "queued" and position is None:
        position = svc.jobstore.queue_position(rec.id, rec.lane)
    progress = rec.progress
    shards = _shards(rec, svc) if rec.kind in SHARDED_KINDS and rec.children else None
    if shards and state == "running" and (progress or {}).get("phase") == "children":  # waiting: the shards' sum
        progress = {"phase": "shards", "done": sum(sh.progress.done for sh in shards if sh.progress),
                    "total": sum(sh.progress.total for sh in shards if sh.progress),
                    "figures": {"shards": len(shards), "shards_succeeded": sum(sh.state == "succeeded" for sh in shards)}}
    return JobView(
        id=rec.id, kind=rec.kind, lane=rec.lane, state=state,
        progress=ProgressView(**progress) if progress is not None else None, queue_position=position,
        created_at=ts(rec.created_at), queued_at=ts(rec.queued_at), started_at=ts(rec.started_at),
        finished_at=ts(rec.finished_at), deadline_at=ts(rec.deadline_at),
        duration_s=rec.duration_s, attempts=rec.attempts, redeliveries=rec.redeliveries, retries=rec.retries,
        worker=rec.worker, error=rec.error, spec_hash=rec.spec_hash, spec=rec.spec,
        artifacts=artifacts, summary=rec.summary, parent=rec.parent, children=rec.children, shards=shards,
        cancel_requested=rec.cancel_requested, cancel_step=rec.cancel_step,
        stopped_step=rec.stopped_step, dead_letter=rec.dead_letter,
    )


def _shards(rec: JobRecord, svc: Services) -> list[ShardView]:
    out = []
    for cid in rec.children or []:
        child = svc.jobstore.get(cid)
        if child is None:
            out.append(ShardView(id=cid, state="expired"))
            continue
        p = child.progress
        out.append(ShardView(id=cid, state=child.state or "queued", progress=ProgressView(**p) if p else None,
                             worker=child.worker, attempts=child.attempts, error=child.error))
    return out


def _job_id(job_id: str) -> str:
    try:
        return check_id(job_id, "job id")
    except ScalespaceError as e:
        raise ApiError(422, "validation", str(e), "job_id") from None


def _record(svc: Services, job_id: str) -> JobRecord:
    rec = svc.jobstore.get(_job_id(job_id))
    if rec is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (unknown, or its record expired after SCALESPACE_RESULT_TTL_S)")
    return rec


def create_app(settings: Any = None, *, jobstore: Any = None, store: Any = None, enqueue: Any = None) -> FastAPI:
    settings = settings or get_settings()
    svc = Services(settings, jobstore, store, enqueue)
    # No /docs or /redoc: FastAPI's pages load Swagger UI / ReDoc from a CDN (blank on a cluster without internet).
    # The schema is GET /openapi.json behind the token like every route but health and ready (below).
    app = FastAPI(
        title="scalespace scheduler", version=scalespace.__version__,
        description="Submit diffusion sampling, evaluation, training and sweep jobs; follow them; fetch their results.",
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.services = svc
    install_error_handlers(app, settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="one of SCALESPACE_API_TOKEN")
    tokens = [t.encode() for t in settings.api_tokens()]

    async def auth(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # no I/O: no thread
        if not tokens:
            return  # no token configured: `scalespace api` refuses to listen beyond loopback then
        given = (creds.credentials if creds and creds.scheme.lower() == "bearer" else "").encode()
        if not any(hmac.compare_digest(given, t) for t in tokens):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    protected = [Depends(auth)]

    @app.post("/v1/jobs", response_model=JobView, status_code=201, dependencies=protected, responses=ERRORS,
              summary="Submit a job")
    async def submit(body: JobRequest, request: Request, response: Response,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200,
                                                          pattern=r"^[\x21-\x7e]{1,200}$")) -> JobView:
        # on the event loop: the checks in memory (a model id's card is looked up on a thread) and the one
        # job-store script through the loop's own Redis client, no thread per submission
        t0 = time.perf_counter()
        check_finite(body.spec.model_dump())  # JSON's NaN and Infinity literals: refused in free-form fields too
        lane = body.lane or settings.default_lane
        aclient = svc.async_redis()
        try:
            if aclient is None:
                out = await run_in_threadpool(lambda: submit_spec(
                    check_spec(body.spec, settings, svc.store), settings=settings, jobstore=svc.jobstore,
                    enqueue=svc.enqueue, lane=lane, deadline_s=body.deadline_s, idempotency_key=idempotency_key))
            else:
                spec = admit_spec(body.spec, settings)
                if spec_models(spec):
                    await run_in_threadpool(check_models, spec, svc.store)
                out = await submit_spec_async(spec, settings=settings, jobstore=svc.jobstore, aclient=aclient,
                                              message=svc.enqueue.message, lane=lane, deadline_s=body.deadline_s,
                                              idempotency_key=idempotency_key)
        except LaneFull as e:
            raise ApiError(429, "lane_full", str(e), "lane", headers={"Retry-After": str(settings.retry_after_s)}) from None
        except IdempotencyConflict as e:
            raise ApiError(409, "conflict", str(e), "Idempotency-Key") from None
        response.status_code = 201 if out.created else 200
        response.headers["Location"] = f"/v1/jobs/{out.job_id}"
        svc.metrics.submit_seconds.observe(time.perf_counter() - t0)
        if out.record is not None:  # just created: the record as written, no second read
            return _view(out.record, svc, request, position=out.position)
        return await run_in_threadpool(lambda: _view(_record(svc, out.job_id), svc, request))

    @app.get("/v1/jobs", response_model=JobList, dependencies=protected, responses=ERRORS, summary="List jobs")
    def list_jobs(request: Request, state: State | None = None, kind: Kind | None = None, lane: Lane | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> JobList:
        recs = svc.jobstore.list(state=state, kind=kind, lane=lane, limit=limit)
        jobs = [_view(r, svc, request) for r in recs if r.id]
        return JobList(jobs=jobs, count=len(jobs))

    @app.get("/v1/jobs/{job_id}", response_model=JobView, dependencies=protected, responses=ERRORS,
             summary="A job's state, progress and results")
    def get_job(job_id: str, request: Request) -> JobView:
        return _view(_record(svc, job_id), svc, request)

    @app.delete("/v1/jobs/{job_id}", response_model=JobView, dependencies=protected, responses=ERRORS,
                summary="Cancel a job")
    def cancel_job(job_id: str, request: Request) -> JobView:
        _record(svc, job_id)
        out = svc.jobstore.cancel(job_id)
        for child in out.children:  # a sweep waiting for its children: cancel them too
            svc.jobstore.cancel(child)
        _enqueue_parent(svc, out.ready_parent)
        return _view(_record(svc, job_id), svc, request)

    @app.post("/v1/jobs/{job_id}/retry", response_model=JobView, status_code=202, dependencies=protected,
              responses=ERRORS, summary="Queue a failed, cancelled or expired job again")
    def retry_job(job_id: str, request: Request) -> JobView:
        rec = _record(svc, job_id)
        lane = rec.lane or settings.default_lane
        deadline = rec.deadline_s
        if rec.kind in SHARDED_KINDS and rec.children and rec.state in ("failed", "cancelled", "expired"):
            _retry_shards(svc, rec, lane)  # first, so the job finds them queued and waits for them
        out = svc.jobstore.retry(job_id, limit=settings.lanes().get(lane, -1), deadline_s=deadline)
        if out.action == "refused":
            raise ApiError(409, "conflict", f"job {job_id} is {out.state}; only failed, cancelled or expired jobs retry")
        if out.action == "full":
            raise ApiError(429, "lane_full", f"lane {lane!r} is full; retry later", "lane",
                           headers={"Retry-After": str(settings.retry_after_s)})
        svc.enqueue(job_id, lane)
        return _view(_record(svc, job_id), svc, request)

    def _retry_shards(svc: Services, rec: JobRecord, lane: str) -> None:
        """A sharded job's shards that ended without results, queued again: a retry reruns those alone."""
        for cid in rec.children or []:
            child = svc.jobstore.get(cid)
            if child is not None and child.state in ("failed", "cancelled", "expired"):
                if svc.jobstore.retry(cid, limit=-1, deadline_s=child.deadline_s).action == "queued":
                    svc.enqueue(cid, child.lane or lane)

    @app.head("/v1/jobs/{job_id}/artifacts/{name}", dependencies=protected, include_in_schema=False)
    def head_artifact(job_id: str, name: str, request: Request) -> Response:
        return get_artifact(job_id, name, request)

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", name="get_artifact", dependencies=protected, responses=ERRORS,
             response_class=Response, summary="Download one artifact of a succeeded job (HEAD: its type and size)")
    def get_artifact(job_id: str, name: str, request: Request) -> Response:
        rec = _record(svc, job_id)
        try:
            check_key("jobs", job_id, name)
        except ScalespaceError as e:
            raise ApiError(422, "validation", str(e), "name") from None
        found = _artifacts(rec).get(name)
        if rec.state != "succeeded" or found is None:
            raise ApiError(404, "not_found", f"job {job_id} has no artifact {name!r} (state {rec.state or None})")
        held = svc.jobstore.manifest(job_id) if name == MANIFEST and rec.manifest_held else None
        if held is not None:  # the bytes manifest.json has (or gets: the publish follows the commit)
            if request.method == "HEAD":
                return Response(media_type=content_type(name), headers={"Content-Length": str(len(held))})
            return Response(held, media_type=content_type(name))
        if isinstance(svc.store, S3Store):
            return RedirectResponse(svc.store.url("jobs", job_id, found["path"], settings.s3_presign_expiry_s),
                                    status_code=307)
        media = content_type(name)
        if request.method == "HEAD":
            size = found.get("bytes")
            headers = {"Content-Length": str(size)} if isinstance(size, int) else {}
            return Response(media_type=media, headers=headers)
        return Response(svc.store.get("jobs", job_id, found["path"]), media_type=media)

    @app.get("/v1/dead-letter", response_model=DeadLetters, dependencies=protected, responses=ERRORS,
             summary="Jobs that gave up after SCALESPACE_MAX_DELIVERIES attempts")
    def dead_letter(limit: int = Query(100, ge=1, le=10000)) -> DeadLetters:
        return DeadLetters(jobs=svc.jobstore.dead_letters(limit))

    @app.get("/v1/sweeps/{name}/history", response_model=SweepHistory, dependencies=protected, responses=ERRORS,
             summary="A named sweep's runs night by night: each child's figures, the regressions, report and child jobs")
    def sweep_history(name: str, request: Request, limit: int = Query(30, ge=1, le=100)) -> SweepHistory:
        try:
            check_id(name, "sweep name")
        except ScalespaceError as e:
            raise ApiError(422, "validation", str(e), "name") from None
        return SweepHistory(name=name, runs=_sweep_runs(svc, request, name, limit))

    @app.get("/", include_in_schema=False)
    def index() -> dict[str, Any]:
        """Where to go from the root (public, like /v1/health): the routes, and that they need the token."""
        return {"service": "scalespace", "version": scalespace.__version__, "console": "/ui", "health": "/v1/health",
                "ready": "/v1/ready", "jobs": "/v1/jobs", "metrics": "/metrics", "schema": "/openapi.json",
                "auth": "every route but /, /ui, /v1/health and /v1/ready needs "
                        "'Authorization: Bearer <SCALESPACE_API_TOKEN>'"}

    install_console(app, lambda asset: ApiError(404, "not_found", f"the console has no file {asset!r}"))

    @app.get("/v1/health", response_model=Health, summary="Liveness: the API process answers")
    def health() -> Health:
        return Health(version=scalespace.__version__)

    @app.get("/v1/ready", response_model=Ready, responses={503: {"model": Ready}},
             summary="Readiness: Redis (job store and broker) and the artifact store are reachable")
    def ready() -> JSONResponse:
        checks: dict[str, str] = {}
        workers = None
        try:
            svc.jobstore.ping()
            workers = len(svc.jobstore.workers())
            checks["redis"] = "ok"
        except Exception as e:  # noqa: BLE001 - reported, not raised
            checks["redis"] = f"unreachable: {type(e).__name__} (SCALESPACE_REDIS_URL or SCALESPACE_REDIS_SENTINELS)"
        try:
            check = getattr(svc.store, "check_reachable", None) or svc.store.check_writable
            check()
            checks["store"] = "ok"
        except Exception as e:  # noqa: BLE001
            checks["store"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(Ready(ready=ok, checks=checks, workers=workers).model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", dependencies=protected, response_class=Response, summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(svc.metrics.render(svc.jobstore), media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _enrich_openapi(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", dependencies=protected, include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


def serving_app(settings: Any = None) -> FastAPI:
    """The app `scalespace api` serves (each of its SCALESPACE_API_WORKERS processes builds its own, on the
    environment's settings): create_app, then every object made so far (the imports: torch, FastAPI, pydantic,
    some 230,000 objects) moved out of the garbage collector's reach with gc.freeze. Otherwise each full
    collection walks them all, about 0.1 s during which every request in flight waits."""
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


def _artifact_url(svc: Services, request: Request, job_id: str, name: str, path: str) -> str:
    """Where a client fetches an artifact: a presigned URL on S3, else this API's artifact route."""
    if isinstance(svc.store, S3Store):
        return svc.store.url("jobs", job_id, path, svc.settings.s3_presign_expiry_s)
    return str(request.url_for("get_artifact", job_id=job_id, name=name))


def _sweep_runs(svc: Services, request: Request, name: str, limit: int) -> list[SweepRun]:
    """The last `limit` committed runs of a named sweep (from its history in the store), each with its report,
    then the sweep jobs of that name the job store still holds without a committed report."""
    from scalespace.jobs.sweep import HISTORY, REPORT_HTML, REPORT_JSON

    try:
        history = svc.store.get_json("cache", f"sweep.{name}", HISTORY).get("runs", [])
    except StoreUnavailable:
        raise  # 503, not "no history"
    except (ScalespaceError, json.JSONDecodeError, AttributeError):
        history = []  # no run of this name has been recorded yet
    runs: list[SweepRun] = []
    for entry in history[-limit:]:
        job_id = entry.get("job_id") if isinstance(entry, dict) else None
        if not job_id:
            continue
        rec = svc.jobstore.get(job_id)
        manifest = svc.store.manifest(job_id)
        fields: dict[str, Any] = {"job_id": job_id, "at": entry.get("at"),
                                  "state": (rec.state if rec else None) or ("succeeded" if manifest else None)}
        report = None
        if manifest is not None:
            try:
                report = json.loads(svc.store.read_artifact(job_id, REPORT_JSON, manifest))
            except StoreUnavailable:
                raise
            except (ScalespaceError, json.JSONDecodeError):
                report = None
        if isinstance(report, dict):
            fields.update(has_report=True, compared_with=report.get("compared_with"), counts=report.get("counts") or {},
                          regressions=report.get("regressions") or [], comparisons=report.get("comparisons") or [],
                          children=report.get("children") or [])
            if any(a.get("name") == REPORT_HTML for a in manifest.get("artifacts") or []):
                fields["report_url"] = _artifact_url(svc, request, job_id, REPORT_HTML,
                                                     artifact_path(manifest, REPORT_HTML))
        runs.append(SweepRun(**fields))
    known = {r.job_id for r in runs}
    pending = [r for r in svc.jobstore.list(kind="sweep", limit=limit)
               if r.id and r.id not in known and (r.spec or {}).get("name") == name and r.state != "succeeded"]
    for rec in sorted(pending, key=lambda r: r.created_at or 0):
        runs.append(SweepRun(job_id=rec.id, at=ts(rec.created_at), state=rec.state or "queued",
                             children=[{"key": c.rsplit(".", 1)[-1], "job_id": c} for c in rec.children or []]))
    return runs


def _enqueue_parent(svc: Services, parent: str) -> None:
    if parent:
        rec = svc.jobstore.get(parent)
        if rec is not None:
            svc.enqueue(parent, rec.lane or svc.settings.default_lane)


def _enrich_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Name the allowed processes, data sets and samplers in the document (the specs check them by validator)."""
    choices = {"process": list(PROCESSES), "data": list(DATASETS), "processes": list(PROCESSES), "sampler": list(SAMPLERS)}
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if not name.endswith("Spec"):
            continue
        for field, allowed in choices.items():
            prop = schema.get("properties", {}).get(field)
            if prop is None:
                continue
            if prop.get("type") == "string":
                prop["enum"] = allowed
            elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
                prop["items"]["enum"] = allowed
            elif "anyOf" in prop:
                for alt in prop["anyOf"]:
                    if alt.get("type") == "string":
                        alt["enum"] = allowed
        if name == "SweepSpec" and "data" in schema.get("properties", {}):
            schema["properties"]["data"]["items"]["enum"] = list(DATASETS)
    return doc


def openapi_document(settings: Any = None) -> dict[str, Any]:
    """The OpenAPI document of the API (built offline)."""
    return create_app(settings or Settings()).openapi()


__all__ = ["ApiError", "create_app", "openapi_document"]
