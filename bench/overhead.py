"""Where a tiny job's time goes in the worker: a breakdown anyone can rerun.

    .venv/bin/python bench/overhead.py                  # 30 tiny jobs, SeaweedFS S3 (local folder without weed)
    .venv/bin/python bench/overhead.py --jobs 50 --local --profile

Starts its own redis-server and SeaweedFS (`weed server -s3`), submits tiny
jobs (`{"kind":"sample","process":"vp","data":"digits","n":4,"steps":10}`)
through the scheduler's submission (scalespace.scheduler.submit) and runs each
with the worker's own task body (scalespace.worker.tasks.run_task: lease,
run_job with the attempt's fencing, commit, publish) in this process, after a
warm-up job. Per job it prints, in ms, the exclusive time of each part on the
job's thread (a part nested in another is taken out of its parent):

    redis       the job store's calls: begin, get, step (progress, cancel and ownership checks), commit
    s3          the store's calls on the job's thread (manifest check, write check, uploads, publish);
                uploads handed to background threads are counted as the wait for them ("uploads-wait")
    data        loading the training and held-out splits
    reference   the held-out split's moments (reference_moments)
    process     building and checking the process, the schedule (respace)
    oracle      building the oracle denoiser over the training set
    sample      the reverse diffusion (generate)
    quality     the final figures (sample_quality)
    encode      .npz, .png and JSON encoding of the artifacts
    manifest    package versions, code version, kernel and device info, admission in run_job
    other       the rest of run_task

then the Redis commands per job (INFO commandstats, before and after: every
command the job store's scripts and the heartbeat sent) and the S3 requests
per job by operation (botocore's before-send events, retries included), and
Celery's part with a real `scalespace worker` (`--celery N`): submission to
the job's start (`started_at - queued_at`) with one job in flight at a time,
then N jobs queued at once: one job's commit to the next one's begin.
"""

from __future__ import annotations

import argparse
import cProfile
import collections
import functools
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from service_infra import RedisServer, WeedServer, stop_all, wait_for  # noqa: E402


def spec(k: int, steps: int) -> dict:
    return {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": steps, "seed": k}


class Timers:
    """Exclusive time per part on the job's thread: a wrapped call nested in another is taken out of its parent."""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.total: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self.stack: list[list[Any]] = []

    def wrap(self, owner: Any, attr: str, part: str) -> None:
        fn = getattr(owner, attr)
        if getattr(fn, "_overhead_wrapped", False):
            return
        timers = self

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != timers.main:
                return fn(*args, **kwargs)
            frame = [part, 0.0]
            timers.stack.append(frame)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                timers.stack.pop()
                timers.total[part] += dt - frame[1]
                timers.calls[part] += 1
                if timers.stack:
                    timers.stack[-1][1] += dt

        wrapped._overhead_wrapped = True  # type: ignore[attr-defined]
        setattr(owner, attr, wrapped)

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()


def instrument(timers: Timers, store: Any) -> None:
    import scalespace.jobs.context as context
    import scalespace.jobs.run as run
    import scalespace.jobs.sample as sample
    import scalespace.scheduler.jobstore as jobstore
    import scalespace.worker.tasks as tasks

    for name in ("begin", "get", "step", "commit", "finish", "heartbeat"):
        timers.wrap(jobstore.JobStore, name, "redis")
    for name in ("put", "get", "exists", "delete", "check_writable", "manifest"):
        if name in vars(type(store)) or hasattr(type(store), name):
            timers.wrap(type(store), name, "s3")
    timers.wrap(tasks, "publish", "s3")
    if hasattr(context.JobContext, "wait_uploads"):
        timers.wrap(context.JobContext, "wait_uploads", "uploads-wait")
    timers.wrap(sample, "load_dataset", "data")
    import scalespace.evaluation.sample_trajectory as st

    timers.wrap(st, "load_dataset", "data")
    timers.wrap(sample, "reference_moments", "reference")
    timers.wrap(st, "reference_moments", "reference")
    timers.wrap(sample, "check_sample_spec", "process")
    timers.wrap(sample, "respace", "process")
    timers.wrap(sample, "load_denoiser", "oracle")
    timers.wrap(sample, "generate", "sample")
    timers.wrap(sample, "sample_quality", "quality")
    for name in ("to_npz", "grid_png", "finite_or_none"):
        timers.wrap(sample, name, "encode")
    for name in ("package_versions", "code_version", "device_info", "kernel_info", "admit"):
        timers.wrap(run, name, "manifest")


def redis_commands(r: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--local", action="store_true", help="local store instead of SeaweedFS S3")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top functions (cumulative)")
    ap.add_argument("--celery", type=int, default=10, metavar="N",
                    help="jobs through a real `scalespace worker`, one at a time, then as many queued at once, for Celery's part (0: skip)")
    ap.add_argument("--redis-fsync", choices=("everysec", "always"), default="everysec",
                    help="redis-server's appendfsync (as bench/load.py): everysec, or always (the integration tests')")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="scalespace-overhead-"))
    redis_srv = RedisServer(tmp / "redis", appendfsync=args.redis_fsync).start()
    weed = None if args.local or not (shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")) \
        else WeedServer(tmp / "weed").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALESPACE_")}
    env.update(SCALESPACE_REDIS_URL=f"{redis_srv.url}/0", SCALESPACE_RESULTS_DIR=str(tmp / "results"),
               SCALESPACE_HEARTBEAT_S="2", PYTHONUNBUFFERED="1")
    if weed is not None:
        weed.client().create_bucket(Bucket="scalespace-bench")
        env.update(SCALESPACE_S3_ENDPOINT=weed.endpoint, SCALESPACE_S3_BUCKET="scalespace-bench",
                   AWS_ACCESS_KEY_ID=weed.ACCESS, AWS_SECRET_ACCESS_KEY=weed.SECRET)
    os.environ.clear()
    os.environ.update(env)
    procs: list[subprocess.Popen] = []
    try:
        from scalespace.config import Settings
        from scalespace.scheduler.jobstore import JobStore
        from scalespace.jobs.specs import parse_spec
        from scalespace.scheduler.submit import submit_spec
        from scalespace.storage import store_from_settings
        from scalespace.worker.tasks import run_task

        settings = Settings()
        js = JobStore.from_settings(settings)
        store = store_from_settings(settings)
        s3_requests: collections.Counter = collections.Counter()
        if weed is not None:
            store.client.meta.events.register(
                "before-send.s3", lambda request=None, **kw: s3_requests.update([kw.get("event_name", "").split(".")[-1]
                                                                                  or "request"]))
            store.client.meta.events.register(
                "before-call.s3", lambda model=None, **kw: s3_requests.update([f"op:{model.name}"]))

        rt = SimpleNamespace(settings=settings, jobstore=js, store=store, worker_name="overhead@bench", leases=set(),
                             published=collections.deque(),
                             shutdown_requested=threading.Event(), enqueue=lambda job_id, lane: None,
                             enqueue_parent=lambda parent: None)

        # parse_spec, not the API's check_spec: its process cache toggles torch's thread count, which slows
        # this process's later torch work several times over (the API never runs jobs; run_job admits anyway)
        def submit(k: int) -> str:
            s = parse_spec(spec(k, args.steps))
            return submit_spec(s, settings=settings, jobstore=js, enqueue=lambda job_id, lane: None,
                               lane=settings.default_lane).job_id

        warm = submit(10_000)
        assert run_task(rt, warm) == "succeeded"
        ids = [submit(k) for k in range(args.jobs)]
        timers = Timers()
        instrument(timers, store)
        s3_requests.clear()
        before = redis_commands(js.r)
        prof = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        for job_id in ids:
            out = run_task(rt, job_id)
            assert out == "succeeded", out
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        after = redis_commands(js.r)
        n = args.jobs
        print(f"overhead: {n} tiny jobs (sample vp/digits n=4 steps={args.steps}) through run_task in one process, "
              f"store {'SeaweedFS S3' if weed else 'local folder'}, redis appendfsync {args.redis_fsync}, {os.cpu_count()} cores")
        print(f"per job: {1000 * wall / n:.1f} ms in run_task")
        accounted = sum(timers.total.values())
        parts = dict(timers.total, other=max(wall - accounted, 0.0))
        for part, secs in sorted(parts.items(), key=lambda kv: -kv[1]):
            calls = timers.calls.get(part)
            print(f"  {part:<13} {1000 * secs / n:7.1f} ms  {100 * secs / wall:5.1f} %"
                  + (f"  ({calls / n:.1f} calls)" if calls else ""))
        cmds = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        cmds = {k: v for k, v in cmds.items() if v > 0 and k not in ("info",)}
        print(f"redis commands per job: {sum(cmds.values()) / n:.1f} "
              f"({', '.join(f'{k} {v / n:.1f}' for k, v in sorted(cmds.items(), key=lambda kv: -kv[1]))}) "
              "[heartbeat thread and scripts' inner calls included]")
        if weed is not None:
            ops = {k[3:]: v for k, v in s3_requests.items() if k.startswith("op:")}
            sent = sum(v for k, v in s3_requests.items() if not k.startswith("op:"))
            print(f"s3 requests per job: {sent / n:.1f} "
                  f"({', '.join(f'{k} {v / n:.1f}' for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))})")
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)

        if args.celery:
            port_env = dict(env, SCALESPACE_HEARTBEAT_FILE=str(tmp / "hb"))
            procs.append(subprocess.Popen([sys.executable, "-m", "scalespace.cli", "worker", "--name", "overhead@%h"],
                                          env=port_env, stdout=open(tmp / "worker.log", "wb"),
                                          stderr=subprocess.STDOUT))
            from scalespace.scheduler.queues import Enqueuer, celery_client

            enqueue = Enqueuer(celery_client(settings))
            wait_for(lambda: js.workers(), 120, "the worker", every_s=0.2)

            def through_worker(k: int) -> Any:
                s = parse_spec(spec(k, args.steps))
                job_id = submit_spec(s, settings=settings, jobstore=js, enqueue=enqueue,
                                     lane=settings.default_lane).job_id
                return wait_for(lambda: (r := js.get(job_id)) is not None and r.state == "succeeded" and r, 300,
                                f"job {job_id}", every_s=0.005)

            through_worker(20_000)  # warm-up: torch, the first job
            pickup, inside, end_to_end = [], [], []
            for k in range(args.celery):
                t_sub = time.time()
                rec = through_worker(20_001 + k)
                t_seen = time.time()
                pickup.append(rec.started_at - rec.queued_at)
                inside.append(rec.finished_at - rec.started_at)
                end_to_end.append(t_seen - t_sub)
            med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
            print(f"celery (real worker, one job in flight, median of {args.celery}): queued -> started "
                  f"{1000 * med(pickup):.1f} ms (broker delivery, task start, lease); started -> finished "
                  f"{1000 * med(inside):.1f} ms; submit -> seen succeeded {1000 * med(end_to_end):.1f} ms")

            # a backlog: from one job's commit to the next one's begin (publish, ack, task events, the next
            # message, begin), every message already on the queue
            backlog = [submit_spec(parse_spec(spec(30_000 + k, args.steps)), settings=settings, jobstore=js,
                                   enqueue=enqueue, lane=settings.default_lane).job_id for k in range(args.celery)]
            recs = [wait_for(lambda j=j: (r := js.get(j)) is not None and r.state == "succeeded" and r, 300,
                             f"job {j}", every_s=0.05) for j in backlog]
            recs.sort(key=lambda r: r.started_at)
            gaps = [b.started_at - a.finished_at for a, b in zip(recs, recs[1:])]
            print(f"celery (real worker, {args.celery} jobs queued at once): commit -> next begin median "
                  f"{1000 * med(gaps):.1f} ms (publish, ack, task events, the next message, begin); "
                  f"started -> finished {1000 * med([r.finished_at - r.started_at for r in recs]):.1f} ms")
        return 0
    finally:
        stop_all(procs, weed, redis_srv, tmp=tmp)


if __name__ == "__main__":
    sys.exit(main())
