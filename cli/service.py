"""Service commands: `api`, `worker`, `beat`, `serve`, `submit`, `status`, `jobs`, `cancel`, `retry`, `fetch`, `sweep run`.

The servers, the API client and Celery are imported inside the commands that
use them: they need torch or the service extra (FastAPI, httpx, Celery), and
the command line starts fast and runs embedded without them.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scalespace import ScalespaceError
from scalespace.cli.common import print_json, read_spec_file
from scalespace.cli.embedded import run_and_report
from scalespace.config import LANES, get_settings
from scalespace.jobs.specs import KINDS
from scalespace.scheduler.infra import redact, redis_client, wait_for_redis, wait_for_store
from scalespace.scheduler.jobstore import NIGHTLY_LANE, STATES, TERMINAL, JobStore
from scalespace.storage import store_from_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settings() -> Any:
    try:
        return get_settings()
    except ValidationError as e:
        err = e.errors()[0]
        raise ScalespaceError(f"SCALESPACE_{str(err['loc'][0]).upper()}: {err['msg']}") from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _check_backends(settings: Any) -> None:
    """Redis and the store, waiting up to SCALESPACE_STARTUP_WAIT_S; else a one-line error naming the variable."""
    wait_for_redis(settings, redis_client(settings))
    wait_for_store(settings, store_from_settings(settings))


# --- servers --------------------------------------------------------------------------------
def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    if args.openapi:
        from scalespace.scheduler.api import openapi_document  # imports torch and FastAPI

        text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
        if args.openapi == "-":
            sys.stdout.write(text)
        else:
            Path(args.openapi).parent.mkdir(parents=True, exist_ok=True)
            Path(args.openapi).write_text(text)
        return 0
    settings = _settings()
    host, port = args.host or settings.api_host, args.port or settings.api_port
    if not settings.api_tokens() and not _loopback(host):
        raise ScalespaceError(f"SCALESPACE_API_TOKEN is not set: refusing to serve {host} without a bearer token; "
                              "set it, or listen on 127.0.0.1")
    workers = settings.api_workers if args.workers is None else args.workers
    if not 1 <= workers <= 64:
        raise ScalespaceError(f"--workers: {workers} processes; give 1 to 64 (SCALESPACE_API_WORKERS likewise)")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _check_backends(settings)
    if workers == 1:
        from scalespace.scheduler.api import serving_app  # imports torch and FastAPI

        uvicorn.run(serving_app(settings), host=host, port=port, log_level="info", proxy_headers=True)
        return 0
    # several processes on one socket, each importing and building its app from the environment (this one
    # only watches them); the API's own metrics go through a folder of this process's making, where every
    # process writes and any of them reads them all
    metrics_dir = tempfile.mkdtemp(prefix="scalespace-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("scalespace.scheduler.api:serving_app", factory=True, workers=workers, host=host, port=port,
                    log_level="info", proxy_headers=True)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from scalespace.scheduler.queues import queue_name  # Celery (the service extra)
    from scalespace.worker.celery_app import make_celery, worker_nodename  # Celery (the service extra)

    settings = _settings()
    if args.lanes:
        settings = settings.model_copy(update={"worker_lanes": args.lanes})
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _be_nice(settings.worker_nice)
    wait_for_redis(settings, redis_client(settings))
    wait_for_store(settings, store_from_settings(settings))
    app = make_celery(settings, with_tasks=True)
    logging.getLogger("scalespace.worker").info(
        "worker on %s, lanes %s",
        f"Sentinels {settings.redis_sentinels} (master {settings.redis_sentinel_master})" if settings.redis_sentinels
        else redact(settings.redis_url or ""), ",".join(settings.worker_lane_list()))
    w = app.Worker(
        hostname=worker_nodename(args.name), queues=[queue_name(x) for x in settings.worker_lane_list()], pool="solo", concurrency=1,
        loglevel=args.loglevel, beat=args.beat, without_mingle=True, without_gossip=True,
        without_heartbeat=not settings.task_events,  # worker-online and heartbeat events: Flower lists the worker
        optimization="fair",
    )
    w.start()
    return int(getattr(w, "exitcode", 0) or 0)


def _be_nice(niceness: int) -> None:
    """Take SCALESPACE_WORKER_NICE before any thread starts (threads keep the niceness they start with); only
    ever up: an unprivileged process cannot come back down, and one started nicer stays so."""
    now = os.nice(0)
    if niceness > now:
        os.nice(niceness - now)
        logging.getLogger("scalespace.worker").info("niceness %d (SCALESPACE_WORKER_NICE)", niceness)


def cmd_beat(args: argparse.Namespace) -> int:
    from scalespace.scheduler.queues import celery_client  # Celery (the service extra)

    settings = _settings()
    if not settings.nightly_sweep_names():
        raise ScalespaceError("SCALESPACE_NIGHTLY_SWEEPS is empty: name the sweeps beat should submit")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = celery_client(settings)
    app.Beat(loglevel=args.loglevel, scheduler="celery.beat:Scheduler").run()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from scalespace.scheduler.serve import serve  # imports torch and FastAPI

    settings = _settings()
    if not settings.api_tokens() and not _loopback(args.host):
        raise ScalespaceError(f"SCALESPACE_API_TOKEN is not set: refusing to serve {args.host} without a bearer token")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return serve(settings, host=args.host, port=args.port, out=args.out, workers=args.workers)


# --- clients --------------------------------------------------------------------------------
def _client(args: argparse.Namespace) -> Any:
    from scalespace.scheduler.client import Client  # httpx (the service extra)

    return Client(getattr(args, "api", None))


def _line(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    step = f" {p.get('phase')} {p.get('done')}/{p.get('total')}" if p.get("total") else ""
    pos = f" position {job['queue_position']}" if job.get("queue_position") else ""
    err = f": {job['error']}" if job.get("error") and job["state"] != "succeeded" else ""
    return f"{job['id']} {job['kind']} {job['state']}{step}{pos} attempts={job.get('attempts', 0)}{err}"


def cmd_submit(args: argparse.Namespace) -> int:
    spec = read_spec_file(args.job)  # refused here, before the API is contacted
    with _client(args) as c:
        job = c.submit(spec, lane=args.lane, deadline_s=args.deadline, idempotency_key=args.key)
        print(job["id"])
        if not args.wait:
            return 0
        try:
            job = c.wait(job["id"], timeout_s=args.timeout, on_progress=lambda j: print(_line(j), file=sys.stderr))
        except KeyboardInterrupt:
            print(f"scalespace: stopped waiting; job {job['id']} goes on in the service: follow it with "
                  f"'scalespace status {job['id']}', stop it with 'scalespace cancel {job['id']}'", file=sys.stderr)
            raise
        print(_line(job), file=sys.stderr)
        return 0 if job["state"] == "succeeded" else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        job = c.get(args.id)
    if args.json:
        print_json(job)
    else:
        print(_line(job))
        for a in job.get("artifacts") or []:
            print(f"  {a['name']}  {a.get('bytes') or ''}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for job in c.list(state=args.state, kind=args.kind, lane=args.lane, limit=args.limit):
            print(_line(job))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(_line(c.cancel(args.id)))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(_line(c.retry(args.id)))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for path in c.download(args.id, args.dir):
            print(path)
    return 0


def cmd_sweep_run(args: argparse.Namespace) -> int:
    """Submit tonight's run of a named sweep straight to Redis (a CronJob needs no API), or run it here."""
    from scalespace.scheduler.sweeps import named_sweep, nightly_key, submit_named_sweep  # submitting imports torch

    settings = _settings()
    path = args.file or settings.sweeps_file
    spec = named_sweep(args.name, path)  # the sweeps file is read (and refused) before Redis is contacted
    if args.embedded:
        return run_and_report(spec, args.out, quiet=False)
    if args.api:
        return _sweep_through_api(args, spec)
    from scalespace.scheduler.queues import Enqueuer, celery_client  # Celery (the service extra)

    _check_backends(settings)
    jobstore, store = JobStore.from_settings(settings), store_from_settings(settings)
    enqueue = Enqueuer(celery_client(settings))
    job_id = submit_named_sweep(args.name, settings, jobstore, store, enqueue, path=path, lane=args.lane,
                                key=args.key or nightly_key(args.name))
    print(job_id)
    if not args.wait:
        return 0
    while True:
        rec = jobstore.get(job_id)
        if rec is None:  # the record expired (SCALESPACE_RESULT_TTL_S) before it was seen to end
            print(f"sweep {args.name}: its job record {job_id} is gone", file=sys.stderr)
            return 1
        if rec.state in TERMINAL:
            break
        time.sleep(5)
    summary = rec.summary if isinstance(rec.summary, dict) else {}
    print(f"sweep {args.name}: {rec.state}; regressions: {summary.get('regressions', 'n/a')}", file=sys.stderr)
    return 0 if rec.state == "succeeded" and not summary.get("regressions") else 1


def _sweep_through_api(args: argparse.Namespace, spec: dict[str, Any]) -> int:
    """`sweep run NAME --api URL`: the sweep goes to a running service through its HTTP API (the same
    admission, the same nightly idempotency key), so no access to its Redis is needed."""
    from scalespace.scheduler.sweeps import nightly_key

    with _client(args) as c:
        job = c.submit(spec, lane=args.lane, idempotency_key=args.key or nightly_key(args.name))
        print(job["id"])
        if not args.wait:
            return 0
        try:
            job = c.wait(job["id"], on_progress=lambda j: print(_line(j), file=sys.stderr))
        except KeyboardInterrupt:
            print(f"scalespace: stopped waiting; sweep {job['id']} goes on in the service", file=sys.stderr)
            raise
    summary = job.get("summary") if isinstance(job.get("summary"), dict) else {}
    print(f"sweep {args.name}: {job['state']}; regressions: {summary.get('regressions', 'n/a')}", file=sys.stderr)
    return 0 if job["state"] == "succeeded" and not summary.get("regressions") else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="run the scheduler's HTTP API")
    p.add_argument("--host", help="listen address (default SCALESPACE_API_HOST)")
    p.add_argument("--port", type=int, help="listen port (default SCALESPACE_API_PORT)")
    p.add_argument("--workers", type=int, help="processes to serve with, on one port (default SCALESPACE_API_WORKERS)")
    p.add_argument("--openapi", metavar="FILE", help="write the OpenAPI document to FILE (- for stdout) and exit")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("worker", help="run a Celery worker (one per GPU)")
    p.add_argument("--lanes", help="lanes to take, highest priority first (default SCALESPACE_WORKER_LANES)")
    p.add_argument("--name", help="worker name as Celery's -n (default scalespace-<pid>@%%h; %%h = host name, "
                                  "%%n = its first part, %%d = its domain)")
    p.add_argument("--beat", action="store_true", help="also run the nightly schedule (one worker only)")
    p.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="run Celery beat: submits SCALESPACE_NIGHTLY_SWEEPS on SCALESPACE_NIGHTLY_CRON")
    p.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("serve", help="API + worker + embedded Redis on this machine, local results")
    p.add_argument("--host", default="127.0.0.1", help="listen address of the API (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="listen port of the API (default 8000)")
    p.add_argument("--out", default="scalespace-results", help="results folder (default ./scalespace-results)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=cmd_serve)

    def client_parser(name: str, help_: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_)
        q.add_argument("--api", help="API base URL (default SCALESPACE_API_URL)")
        return q

    p = client_parser("submit", "submit a job spec (YAML or JSON) to the API")
    p.add_argument("job", help="path to the spec, or - for standard input")
    p.add_argument("--lane", choices=LANES, help="queue lane (default SCALESPACE_DEFAULT_LANE)")
    p.add_argument("--deadline", type=int, metavar="SECONDS", help="the job expires if not finished by then")
    p.add_argument("--key", help="idempotency key: submitting again with it returns the same job")
    p.add_argument("--wait", action="store_true", help="wait for the job and show its progress")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    p.set_defaults(func=cmd_submit)

    p = client_parser("status", "show a job")
    p.add_argument("id", help="the job id")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    p.set_defaults(func=cmd_status)

    p = client_parser("jobs", "list jobs, newest first")
    p.add_argument("--state", choices=STATES, help="only jobs in this state")
    p.add_argument("--kind", choices=KINDS, help="only jobs of this kind")
    p.add_argument("--lane", choices=LANES, help="only jobs of this lane")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs, newest first (default 50)")
    p.set_defaults(func=cmd_jobs)

    p = client_parser("cancel", "cancel a job")
    p.add_argument("id", help="the job id")
    p.set_defaults(func=cmd_cancel)

    p = client_parser("retry", "queue a failed, cancelled or expired job again")
    p.add_argument("id", help="the job id")
    p.set_defaults(func=cmd_retry)

    p = client_parser("fetch", "download a succeeded job's artifacts")
    p.add_argument("id", help="the job id")
    p.add_argument("dir", help="folder to write the artifacts into")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("sweep", help="nightly sweeps")
    ssub = p.add_subparsers(dest="sweep_command", metavar="ACTION")
    ssub.required = True
    q = ssub.add_parser("run", help="submit tonight's run of a named sweep (for a CronJob), or run it here")
    q.add_argument("name", help="the sweep's name in the sweeps file")
    q.add_argument("--file", help="sweeps YAML (default SCALESPACE_SWEEPS_FILE)")
    q.add_argument("--lane", default=NIGHTLY_LANE, choices=LANES, help=f"queue lane (default {NIGHTLY_LANE})")
    q.add_argument("--key", help="idempotency key (default sweep:NAME:<UTC date>)")
    q.add_argument("--wait", action="store_true", help="wait; exit 1 on failure or regressions")
    q.add_argument("--embedded", action="store_true", help="run it in this process, no service")
    q.add_argument("--api", help="submit it through a running service's HTTP API at this URL (with "
                                 "SCALESPACE_API_TOKEN), e.g. the one `scalespace serve` prints")
    q.add_argument("--out", default="scalespace-results", help="results folder for --embedded")
    q.set_defaults(func=cmd_sweep_run)
