"""Scaling benchmark: how far one Redis carries the control plane, and what a second worker buys a sharded job.

    .venv/bin/python bench/scale.py                          # both parts
    .venv/bin/python bench/scale.py --part control-plane     # Redis only, no torch work (about 2 minutes)
    .venv/bin/python bench/scale.py --part control-plane --ks 1,8,32 --workers 4 --steps 20
    .venv/bin/python bench/scale.py --part speedup           # a sharded sample job, 1 worker against 2
    .venv/bin/python bench/scale.py --part readers           # listing the live workers in a full store

Part 1, control plane (`--part control-plane`). The real job store
(scalespace.scheduler.jobstore.JobStore and its Lua scripts) and the real
broker (the Celery app of scalespace.worker.celery_app over kombu's Redis
transport: `send_task` to publish, a kombu consumer with prefetch 1 and late
acks to take) on one redis-server of its own, with synthetic shards that run
for 0 s. Each simulated worker is a process that does, per message, the
job-store calls a real worker makes (scalespace.worker.tasks.run_task,
_execute, sweeps.fan_out, lease.Lease / StepReporter, runtime.enqueue_parent):

- a job of K shards: the submitter creates the parent (SUBMIT, publish), as
  scalespace.scheduler.submit.submit_spec does; its first delivery (BEGIN,
  HGETALL) submits and publishes the K children `<parent>.s000`... and waits
  for them (WAIT_CHILDREN), as sweeps.fan_out does; each child is delivered
  (BEGIN, HGETALL), checks for a stop once, renews its lease `--heartbeats`
  times (HEARTBEAT), reports `--steps` times (STEP with the progress: a sample
  job's on_step reports every reverse step of every batch, unthrottled),
  checks its ownership before each of `--writes` writes (STEP),
  and commits (COMMIT); the last child's commit names the parent, which is
  read (HGETALL) and published again; its second delivery (BEGIN, HGETALL)
  reads the K child records (sweeps.shard_failures), checks for a stop,
  checks ownership before `--writes` writes and commits;
- K = 1 is a plain job (no parent): delivered, steps, writes, commit;
- every delivery sends the Celery task events a worker sends (task-received,
  task-started, task-succeeded: PUBLISH) unless SCALESPACE_TASK_EVENTS=0, and
  is acknowledged after it ran (kombu's unacked bookkeeping);
- after the measured jobs the janitor's per-job work runs (janitor_due, the
  record read, JANITOR_DONE, as scalespace.scheduler.janitor.tidy does; the S3
  part is left out), so the figures per job include it.

What is not in the per-job figures: the HTTP API (the submitter calls the job
store directly) and S3. The per-worker work that depends on time, not on jobs
(the pulse every SCALESPACE_HEARTBEAT_S: register, REAP over the running set,
DUE, the janitor's query; the lease heartbeat), is measured separately on a
running set of `--running` jobs and enters the projection.

Printed per K: shard completions and jobs per second (sustained: a window of
2 x workers jobs in flight, after a warm-up), Redis commands per job and per
shard (INFO commandstats / total_commands_processed deltas; commands run inside
the Lua scripts count too), commands the clients sent (counted in the clients),
bytes into and out of Redis per job (INFO stats), Redis CPU per shard (INFO
cpu, user + sys) and the clients' CPU per shard. Then how many GPU workers one
Redis can feed when a shard takes `--shard-s` seconds (default 1): the shard
rate Redis sustains at 100 % of one core, from its CPU per shard and the
per-worker pulse, against the rate measured; and which side limited the
measured rate. The clients and Redis share this machine's cores (say so when
quoting figures).

Part 2, speedup (`--part speedup`): the service as bench/load.py starts it
(redis-server, `scalespace api`, `scalespace worker` processes of concurrency
1 with one torch thread each (`--speedup-threads`: a core per worker, as a GPU
per worker), local store), a sample job of n = 2,048, 100 steps, in
`--speedup-shards` shards, run with 1 worker and then with 2, side by side in
one run, each after a warm-up (small jobs, then the same sharded job with
another seed); prints both wall times, t2/t1 (target <= 0.6), each shard's
worker, start, end and run time, and, when the shards ran much slower with 2
workers than with 1 (the workers did not get a core each), the t2/t1 the run
would have had with the shards at their 1-worker speed. If the API refuses
the `shards` field (422) it says that the feature is missing; a job that comes
back without children is reported as not fanned out.

Part 3, readers (`--part readers`): what listing the live workers costs
(`/v1/ready` and every `/metrics` scrape) with `--fill` job records in a
redis-server of its own: the job store's one-key read against the keyspace
SCAN it replaced, `--reads` reads each, side by side; per read the time,
Redis's CPU and the commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, namedtuple
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return _infra().free_port()


def wait_for(*args: Any, **kwargs: Any) -> Any:
    return _infra().wait_for(*args, **kwargs)


def _infra() -> Any:
    """tests/integration/service_infra.py (free ports, polling), imported on first use: importing this module
    (the unit tests of its arithmetic do) leaves sys.path alone."""
    if str(ROOT / "tests" / "integration") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / "integration"))
    import service_infra

    return service_infra

PREFIX = "ss:"
#: a sample job's spec as the API stores it (parse_spec(...).model_dump(mode="json")), without torch
BASE_SPEC: dict[str, Any] = {
    "kind": "sample", "process": "vp", "process_params": {}, "data": "digits", "data_size": None,
    "data_limit": None, "model": "oracle", "sampler": None, "eta": 0.0, "steps": 20,
    "timestep_spacing": "trailing", "reverse_mean": "ihdm", "n": 2048, "batch_size": 64, "seed": 0,
    "statistics": ["mean", "variance", "conditional_entropy"], "quality": ["fd"], "oracle_chunk": 4096,
    "oracle_dtype": "float32", "pictures": False, "shards": 1, "shard_size": 1024, "shard": None,
    "device": "auto",
}
#: what a sample job's commit carries (four artifacts, a summary of figures)
ARTIFACTS = [{"name": name, "path": f"attempt-1/{name}", "sha256": hashlib.sha256(name.encode()).hexdigest(),
              "bytes": size} for name, size in (("samples.npz", 1_605_888), ("grid.png", 48_211),
                                               ("trajectory.json", 9_532), ("manifest.json", 4_120))]
SUMMARY = {"n": 2048, "steps": 20, "fd": 12.3456789, "mean": 0.1234567, "variance": 0.0456789,
           "conditional_entropy": 1.23456789, "steps_per_second": 123.456, "device": "cuda"}
Progress = namedtuple("Progress", "phase done total figures")


# --- pure arithmetic (tests/unit/bench/test_scale_sim.py) ------------------------------------------------


def workers_per_redis(cpu_per_shard_s: float, shard_s: float = 1.0, *, per_worker_s: float = 0.0,
                      per_worker_pair_s: float = 0.0, core: float = 1.0) -> float:
    """How many workers, each finishing a shard every `shard_s` seconds, one Redis feeds at `core` of a CPU.

    Redis spends `cpu_per_shard_s` per shard, `per_worker_s` per second per worker (lease heartbeat, pulse),
    and `per_worker_pair_s` per second per pair of workers (every pulse's REAP walks the running set, one
    entry per worker): the largest N with N cpu/shard_s + N per_worker + N^2 per_pair <= core."""
    if cpu_per_shard_s < 0 or per_worker_s < 0 or per_worker_pair_s < 0 or shard_s <= 0 or core <= 0:
        raise ValueError("costs must be >= 0, shard_s and core > 0")
    b = cpu_per_shard_s / shard_s + per_worker_s
    a = per_worker_pair_s
    if a == 0:
        return math.inf if b == 0 else core / b
    return (-b + math.sqrt(b * b + 4 * a * core)) / (2 * a)


def janitor_backlog_per_s(workers: int, shard_s: float, k: int, *, heartbeat_s: float, limit: int = 10) -> float:
    # limit: ended jobs one pulse tidies (the worker's JANITOR_LIMIT, within half a heartbeat; 10 before it)
    """Job records ending per second minus what the workers' pulses tidy (limit per beat, one beat per
    heartbeat_s each): > 0 means the janitor's list grows. A job of k > 1 shards ends k + 1 records."""
    records = workers / shard_s * ((k + 1) / k if k > 1 else 1.0)
    return records - workers * limit / heartbeat_s


# --- Redis figures ----------------------------------------------------------------------------------------


def redis_figures(r: Any) -> dict[str, float]:
    """Counters from one INFO: cpu, bytes, commands, and calls / usec per command (cmd:<name>, usec:<name>)."""
    info = r.info("all")
    out = {
        "cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "net_in": float(info["total_net_input_bytes"]), "net_out": float(info["total_net_output_bytes"]),
        "commands": float(info["total_commands_processed"]),
    }
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            name = key[len("cmdstat_"):]
            out[f"cmd:{name}"] = float(value.get("calls", 0))
            out[f"usec:{name}"] = float(value.get("usec", 0))
    return out


def start_redis(folder: Path, appendonly: str) -> tuple[subprocess.Popen, int]:
    """A redis-server on a free loopback port: no snapshots; append-only file off (as the Helm chart runs it),
    or on with fsync every second or always."""
    import redis

    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    aof = ["--appendonly", "no"] if appendonly == "no" else ["--appendonly", "yes", "--appendfsync", appendonly]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
                             "--protected-mode", "no", *aof],
                            stdout=open(folder / "redis.log", "ab"), stderr=subprocess.STDOUT)
    wait_for(lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), 15, f"redis-server on {port}")
    return proc, port


def count_client_commands() -> Counter:
    """Count every command this process sends to Redis (redis-py, which kombu uses too), by name."""
    import redis.connection as rc

    counts: Counter = Counter()
    owner = next(c for c in rc.Connection.__mro__ if "send_command" in vars(c))
    send, pack_many = owner.send_command, owner.pack_commands

    def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[str(args[0]).upper()] += 1
        return send(self, *args, **kwargs)

    def pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        for cmd in commands:
            counts[str(cmd[0]).upper()] += 1
        return pack_many(self, commands)

    owner.send_command, owner.pack_commands = send_command, pack_commands
    return counts


# --- the simulated worker ----------------------------------------------------------------------------------


def child_id(parent: str, k: int) -> str:
    return f"{parent}.s{k:03d}"


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class SimWorker:
    """One worker process: a kombu consumer with prefetch 1 and late acks, the job store, the enqueuer."""

    def __init__(self, name: str, cfg: dict[str, Any], done: Any, counts: Counter):
        from scalespace.config import Settings
        from scalespace.scheduler.infra import redis_client
        from scalespace.scheduler.jobstore import JobStore
        from scalespace.scheduler.queues import Enqueuer
        from scalespace.worker.celery_app import make_celery

        self.name, self.cfg, self.done, self.counts = name, cfg, done, counts
        self.settings = Settings()
        self.js = JobStore.from_settings(self.settings, redis_client(self.settings, retries=8))
        self.app = make_celery(self.settings)
        self.enqueue = Enqueuer(self.app)
        self.leases: set[Any] = set()
        self.shutdown = threading.Event()
        self.busy_s = 0.0

    def enqueue_parent(self, parent: str) -> None:  # runtime.Runtime.enqueue_parent
        if not parent:
            return
        rec = self.js.get(parent)
        if rec is not None:
            self.enqueue(parent, rec.lane or self.settings.default_lane)

    def run(self, job_id: str) -> str:
        """scalespace.worker.tasks.run_task and _execute with a synthetic job of 0 s."""
        from scalespace.worker.lease import Lease, StepReporter

        s, js, cfg = self.settings, self.js, self.cfg
        owner = f"{self.name}/{uuid.uuid4().hex[:12]}"
        got = js.begin(job_id, owner, self.name, lease_s=s.lease_s, max_attempts=s.max_deliveries)
        if got.action != "run":
            self.enqueue_parent(got.ready_parent)
            return got.action
        rec = js.get(job_id)
        if rec is None:
            return "missing"
        t0 = time.monotonic()
        with Lease(js, job_id, owner, s.lease_s, s.heartbeat_s, registry=self.leases) as lease:
            reporter = StepReporter(js, job_id, owner, lease, deadline_at=rec.deadline_at, shutdown=self.shutdown)
            spec, lane = rec.spec, rec.lane or s.default_lane
            shards = int(spec.get("shards") or 1)
            if shards > 1 and not spec.get("shard") and not rec.children_total:  # the parent: fan out
                ids = []
                for k in range(shards):
                    cid = child_id(job_id, k)
                    child = {**spec, "shards": shards, "shard": {"index": k, "count": shards}}  # plan_shards
                    out = js.submit(cid, child, kind=rec.kind, spec_hash=spec_hash(child), lane=lane, limit=-1,
                                    parent=job_id)
                    if out.action == "created":
                        self.enqueue(cid, lane)
                    ids.append(cid)
                if js.wait_for_children(job_id, owner, ids) == 0:
                    self.enqueue(job_id, lane)
                return "fanned-out"
            aggregate = bool(rec.children_total)
            if aggregate:  # mark_failed_children: the children's records
                for cid in rec.children or []:
                    js.get(cid)
            reporter.should_stop()  # ctx.check_stop() before the work
            if not aggregate:
                for _ in range(cfg["heartbeats"]):
                    lease.renew()
                steps = cfg["steps"]
                for done in range(1, steps + 1):  # a sample job's on_step: ctx.report each step
                    reporter.progress(Progress("sample", done, steps, {"steps_per_second": 123.456 + done}))
                    if reporter.should_stop():
                        return "stopped"
            for _ in range(cfg["writes"]):  # ctx.put / the manifest: the ownership check before each write
                reporter.guard()
            out = js.commit(job_id, owner, got.fence, ARTIFACTS, SUMMARY, time.monotonic() - t0, attempt=got.fence)
        if out.action != "succeeded":
            return "lease-lost"
        self.enqueue_parent(out.ready_parent)
        if not rec.parent:
            self.done.put(job_id)  # out of band: the submitter counts finished jobs without polling Redis
        return out.action

    def serve(self, stop: Any, report: Any) -> None:
        from kombu import Consumer, Queue

        from scalespace.scheduler.queues import queue_name

        events = self.settings.task_events
        conn = self.app.connection_for_read()
        conn.ensure_connection(max_retries=3)
        channel = conn.channel()
        dispatcher = self.app.events.Dispatcher(self.app.connection_for_write(), hostname=self.name,
                                                enabled=events, buffer_while_offline=False)

        def on_message(body: Any, message: Any) -> None:
            t0 = time.monotonic()
            headers = message.headers or {}
            task_id, args = headers.get("id", ""), body[0] if isinstance(body, (list, tuple)) else []
            if events:
                dispatcher.send("task-received", uuid=task_id, name=headers.get("task"), args=repr(args),
                                kwargs="{}", root_id=headers.get("root_id"), parent_id=headers.get("parent_id"),
                                retries=0, eta=None, expires=None)
                dispatcher.send("task-started", uuid=task_id)
            result = self.run(args[0])
            if events:
                dispatcher.send("task-succeeded", uuid=task_id, result=repr(result), runtime=time.monotonic() - t0)
            message.ack()
            self.busy_s += time.monotonic() - t0

        queues = [Queue(queue_name(lane)) for lane in self.settings.worker_lane_list()]
        consumer = Consumer(channel, queues=queues, callbacks=[on_message], accept=["json"], no_ack=False)
        consumer.qos(prefetch_count=1)
        consumer.consume()
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.5)
            except socket.timeout:  # idle: tell the submitter the commands sent so far
                report.put(("counts", self.name, dict(self.counts)))
        consumer.cancel()
        dispatcher.close()
        conn.release()


def worker_main(name: str, cfg: dict[str, Any], done: Any, report: Any, stop: Any) -> None:
    counts = count_client_commands()
    w = SimWorker(name, cfg, done, counts)
    t0 = time.process_time()
    try:
        w.serve(stop, report)
    finally:
        report.put(("final", name, {"name": name, "cpu_s": time.process_time() - t0, "busy_s": w.busy_s,
                                    "commands": dict(counts)}))


# --- the control-plane run ----------------------------------------------------------------------------------


def parent_spec(k: int, steps: int) -> dict[str, Any]:
    return {**BASE_SPEC, "steps": steps, "shards": k}


class Submitter:
    """The API's part: create the record and publish (scalespace.scheduler.submit.submit_spec), keeping a
    window of jobs in flight; workers say when a job has ended through a multiprocessing queue."""

    def __init__(self, settings: Any, done: Any, alive: Any = lambda: True):
        from scalespace.scheduler.infra import redis_client
        from scalespace.scheduler.jobstore import JobStore
        from scalespace.scheduler.queues import Enqueuer, celery_client

        self.settings, self.done, self.alive = settings, done, alive
        self.js = JobStore.from_settings(settings, redis_client(settings))
        self.enqueue = Enqueuer(celery_client(settings))
        self.lane = settings.default_lane
        self.limit = settings.lanes().get(self.lane, -1)

    def submit(self, job_id: str, spec: dict[str, Any]) -> None:
        out = self.js.submit(job_id, spec, kind=spec["kind"], spec_hash=spec_hash(spec), lane=self.lane,
                             limit=self.limit)
        if out.action != "created":
            raise SystemExit(f"scale: submit of {job_id} answered {out.action}")
        self.enqueue(job_id, self.lane)

    def run(self, tag: str, k: int, jobs: int, window: int, steps: int, timeout_s: float) -> float:
        spec = parent_spec(k, steps)
        t0 = time.perf_counter()
        sent = finished = 0
        while sent < min(window, jobs):
            self.submit(f"scale-{tag}-{sent:06d}", spec)
            sent += 1
        while finished < jobs:
            try:
                self.done.get(timeout=1.0)
            except queue.Empty:
                if not self.alive():
                    raise SystemExit("scale: a simulated worker died (its traceback is above)") from None
                if time.perf_counter() - t0 > timeout_s:
                    raise SystemExit(f"scale: {jobs - finished} of {jobs} jobs (K={k}) not finished after "
                                     f"{timeout_s} s") from None
                continue
            finished += 1
            if sent < jobs:
                self.submit(f"scale-{tag}-{sent:06d}", spec)
                sent += 1
        return time.perf_counter() - t0

    def janitor(self) -> int:
        """The janitor's per-job Redis work (tidy without the S3 part), grace 0, rounds of 10 as the pulse."""
        n = 0
        while True:
            due = self.js.janitor_due(0, 10)
            if not due:
                return n
            for job_id, score in due:
                self.js.get(job_id)
                n += self.js.janitor_done(job_id, score)


def pulse_costs(r: Any, js: Any, settings: Any, running: int, beats: int) -> dict[str, float]:
    """Redis CPU of one worker's pulse (register, REAP, DUE, the janitor's query) and of one lease heartbeat,
    with `running` jobs in the running set (each with a live lease: REAP only looks)."""
    owner = "pulse-bench/owner"
    for i in range(running):
        jid = f"pulse-{running}-{i:06d}"
        js.submit(jid, {"kind": "sample"}, kind="sample", spec_hash="x", lane=settings.default_lane, limit=-1)
        js.begin(jid, owner, "pulse-bench", lease_s=3600, max_attempts=3)
    before = redis_figures(r)
    for _ in range(beats):
        js.register_worker("pulse-bench", 35, {"pid": os.getpid(), "lanes": settings.worker_lane_list()})
        js.reap(settings.lease_s)
        js.due()
        js.janitor_due(settings.lease_s, 10)
    mid = redis_figures(r)
    jid = f"pulse-{running}-{0:06d}" if running else None
    if jid:
        for _ in range(beats):
            js.heartbeat(jid, owner, 3600)
    after = redis_figures(r)
    if jid:
        for i in range(beats):
            js.step(jid, owner, {"phase": "sample", "done": i, "total": beats, "figures": {"steps_per_second": 1.5}})
    stepped = redis_figures(r)
    for i in range(running):
        jid = f"pulse-{running}-{i:06d}"
        js.finish(jid, owner, "cancelled", "bench")
    return {"pulse_cpu_s": (mid["cpu_s"] - before["cpu_s"]) / beats,
            "pulse_usec": sum(mid[k] - before.get(k, 0) for k in mid if k in ("usec:evalsha", "usec:set",
                                                                               "usec:zrangebyscore")) / beats,
            "heartbeat_cpu_s": (after["cpu_s"] - mid["cpu_s"]) / beats if running else 0.0,
            "step_cpu_s": (stepped["cpu_s"] - after["cpu_s"]) / beats if running else 0.0}


def ping_cost(r: Any, n: int) -> dict[str, float]:
    """Redis CPU of one bare round trip (PING), for scale."""
    before = redis_figures(r)
    for _ in range(n):
        r.ping()
    after = redis_figures(r)
    return {"n": n, "ping_cpu_s": (after["cpu_s"] - before["cpu_s"]) / n}


def readers(args: argparse.Namespace) -> int:
    """Part 3: what listing the live workers costs (/v1/ready and every /metrics scrape ask) with --fill ended
    jobs in the store: the one-key read (JobStore.workers, the `workers` sorted set) against the keyspace
    SCAN of `worker:*` keys it replaced, side by side on one redis-server of its own, --reads calls each."""
    import redis

    tmp = Path(tempfile.mkdtemp(prefix="scalespace-readers-"))
    rproc, port = start_redis(tmp, "no")
    try:
        from scalespace.scheduler.jobstore import JobStore

        r = redis.Redis(port=port, decode_responses=True)
        js = JobStore(r)
        for start in range(0, args.fill, 10_000):  # one key a job: a real job has one or more
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(start + 10_000, args.fill)):
                pipe.hset(js.key("job", f"ended-{i:07d}"), mapping={"state": "succeeded", "kind": "sample"})
            pipe.execute()
        for w in range(args.workers):
            js.register_worker(f"gpu{w}@bench", 35, {"pid": w})

        def scan_form() -> list[str]:  # the form replaced: every key of the store, 500 a call
            n = len(js.prefix) + len("worker:")
            return sorted(k[n:] for k in r.scan_iter(match=js.key("worker", "*"), count=500))

        print(f"readers: listing {args.workers} live workers with {args.fill} job records in the store, "
              f"{args.reads} reads each, one redis-server")
        for name, read in (("one key (ZRANGEBYSCORE workers)", js.workers), ("keyspace SCAN (before)", scan_form)):
            assert read() == js.workers(), name
            before = redis_figures(r)
            t0 = time.perf_counter()
            for _ in range(args.reads):
                read()
            wall = (time.perf_counter() - t0) / args.reads
            after = redis_figures(r)
            print(f"  {name}: {1000 * wall:.3f} ms a read, Redis CPU {1000 * (after['cpu_s'] - before['cpu_s']) / args.reads:.3f} "
                  f"ms a read, {(after['commands'] - before['commands'] - 1) / args.reads:.1f} commands a read",
                  flush=True)
    finally:
        rproc.terminate()
        rproc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def control_plane(args: argparse.Namespace) -> int:
    import redis

    ks = [int(x) for x in args.ks.split(",")]
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="scalespace-scale-"))
    rproc, port = start_redis(tmp, args.appendonly)
    url = f"redis://127.0.0.1:{port}/0"
    for key in [k for k in os.environ if k.startswith("SCALESPACE_") and k != "SCALESPACE_TASK_EVENTS"]:
        del os.environ[key]
    os.environ.update(SCALESPACE_REDIS_URL=url, SCALESPACE_RESULTS_DIR=str(tmp / "results"))
    from scalespace.config import Settings

    settings = Settings()
    r = redis.Redis(port=port, decode_responses=True)
    ctx = mp.get_context("spawn")
    done, report, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    cfg = {"steps": args.steps, "writes": args.writes, "heartbeats": args.heartbeats}
    procs = [ctx.Process(target=worker_main, args=(f"sim{i}@bench", cfg, done, report, stop), daemon=True)
             for i in range(args.workers)]
    rows: list[dict[str, Any]] = []
    latest: dict[str, dict[str, int]] = {}
    finals: list[dict[str, Any]] = []

    def worker_counts() -> Counter:
        """The commands the workers have sent so far (their last idle report, after a pause that idles them)."""
        time.sleep(1.5)
        while True:
            try:
                kind, name, value = report.get_nowait()
            except queue.Empty:
                break
            if kind == "counts":
                latest[name] = value
            else:
                finals.append(value)
        total: Counter = Counter()
        for value in latest.values():
            total.update(value)
        return total

    try:
        for p in procs:
            p.start()
        sub = Submitter(settings, done, alive=lambda: all(p.is_alive() for p in procs))
        client_counts = count_client_commands()
        sub.run("warm", 4, 2 * args.workers, args.workers, args.steps, 120)  # imports, connections, queues declared
        sub.janitor()
        for k in ks:
            jobs = max(args.min_jobs, round(args.shards / k))
            window = 2 * args.workers
            sub.run(f"w{k}", k, window, window, args.steps, 120)  # warm-up at this K
            sub.janitor()
            w0 = worker_counts()
            client_counts.clear()
            cpu0 = {p.pid: _infra().cpu_seconds(p.pid) for p in procs}
            main0 = time.process_time()
            before = redis_figures(r)
            wall = sub.run(f"k{k}", k, jobs, window, args.steps, args.timeout)
            mid = redis_figures(r)
            sub.janitor()
            after = redis_figures(r)
            client_cpu = sum(_infra().cpu_seconds(p.pid) - cpu0[p.pid] for p in procs) + time.process_time() - main0
            sent = worker_counts()
            sent.subtract(w0)
            sent.update(client_counts)
            shards = jobs * k
            d = {key: after[key] - before.get(key, 0.0) for key in after}
            rows.append({"k": k, "jobs": jobs, "shards": shards, "wall": wall, "d": d,
                         "redis_cpu_run": mid["cpu_s"] - before["cpu_s"], "client_cpu": client_cpu,
                         "sent": {k: v for k, v in sent.items() if k != "INFO"}})
            print(f"  K={k}: {jobs} jobs, {shards} shards in {wall:.1f} s", flush=True)
        running = [0, args.running]
        pulse = {n: pulse_costs(r, sub.js, settings, n, args.beats) for n in running}
        calibration = ping_cost(r, 20_000)
    finally:
        stop.set()
        deadline = time.monotonic() + 15
        while len(finals) < len(procs) and time.monotonic() < deadline:
            try:
                kind, name, value = report.get(timeout=1)
            except queue.Empty:
                continue
            if kind == "final":
                finals.append(value)
        worker_reports = finals
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        rproc.terminate()
        rproc.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
    args.load = (load_before, os.getloadavg()[0])
    print_control_plane(args, settings, rows, pulse, worker_reports, calibration)
    return 0


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def print_control_plane(args: argparse.Namespace, settings: Any, rows: list[dict[str, Any]],
                        pulse: dict[int, dict[str, float]], reports: list[dict[str, Any]],
                        calibration: dict[str, float]) -> None:
    cores = os.cpu_count()
    events = "on" if settings.task_events else "off"
    print()
    print(f"control plane: {args.workers} simulated worker processes + 1 submitter process + redis-server "
          f"(append-only {args.appendonly}) sharing {cores} cores; shards of 0 s, {args.steps} progress steps, "
          f"{args.writes} guarded writes, {args.heartbeats} lease heartbeat(s) per shard; task events {events}; "
          f"load average {args.load[0]:.1f} before, {args.load[1]:.1f} after")
    print()
    print("| K (shards per job) | jobs | shard completions/s | jobs/s | Redis commands per job | per shard "
          "| of which EVALSHA per shard | client commands per shard | bytes in per job | bytes out per job "
          "| Redis CPU per shard (us) | Redis busy | client CPU per shard (us) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        d, jobs, shards = row["d"], row["jobs"], row["shards"]
        row["cpu_per_shard"] = d["cpu_s"] / shards
        print(f"| {row['k']}{' (plain job)' if row['k'] == 1 else ''} | {jobs} | {_fmt(shards / row['wall'])} "
              f"| {_fmt(jobs / row['wall'], 1)} | {_fmt(d['commands'] / jobs)} | {_fmt(d['commands'] / shards, 1)} "
              f"| {_fmt(d.get('cmd:evalsha', 0) / shards, 1)} "
              f"| {_fmt(sum(row['sent'].values()) / shards, 1)} "
              f"| {_fmt(d['net_in'] / jobs)} | {_fmt(d['net_out'] / jobs)} | {_fmt(1e6 * d['cpu_s'] / shards)} "
              f"| {100 * row['redis_cpu_run'] / row['wall']:.0f} % | {_fmt(1e6 * row['client_cpu'] / shards)} |")
    print()
    print("Redis time inside commands, per shard (INFO commandstats usec; the rest of its CPU is the event loop: "
          "reading, parsing, writing replies):")
    print()
    names = sorted({k[5:] for row in rows for k in row["d"] if k.startswith("usec:") and row["d"][k] > 0},
                   key=lambda n: -max(row["d"].get("usec:" + n, 0) / row["shards"] for row in rows))
    print("| command | " + " | ".join(f"K={row['k']} calls | K={row['k']} us" for row in rows) + " |")
    print("|---|" + "---|---|" * len(rows))
    for n in names:
        if n == "info":
            continue
        cells = []
        for row in rows:
            d, s = row["d"], row["shards"]
            cells += [_fmt(d.get("cmd:" + n, 0) / s, 2), _fmt(d.get("usec:" + n, 0) / s, 1)]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
    print("EVALSHA's time includes the commands its script runs (the rows below it count those calls too). "
          "Redis CPU per shard split (us):")
    print()
    print("| K | Lua scripts (EVALSHA) | commands the clients send directly (broker, reads) | event loop and I/O "
          "(the rest) | Redis CPU | round trips | us of Redis CPU per round trip |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        d, s, sent = row["d"], row["shards"], row["sent"]
        lua = d.get("usec:evalsha", 0) / 1e6
        direct = 0.0
        for name, calls in sent.items():
            name = name.lower()
            if name in ("evalsha", "evalsha_ro", "info") or not d.get("cmd:" + name):
                continue
            direct += d.get("usec:" + name, 0) / 1e6 * min(1.0, calls / d["cmd:" + name])  # inner calls left out
        rest = max(d["cpu_s"] - lua - direct, 0.0)
        row["split"] = (lua, direct, rest)
        trips = sum(sent.values())
        print(f"| {row['k']} | {_fmt(1e6 * lua / s)} | {_fmt(1e6 * direct / s)} | {_fmt(1e6 * rest / s)} "
              f"| {_fmt(1e6 * d['cpu_s'] / s)} | {_fmt(trips / s, 1)} | {_fmt(1e6 * d['cpu_s'] / max(trips, 1), 1)} |")
    print()
    print(f"calibration: one PING round trip costs Redis {calibration['ping_cpu_s'] * 1e6:.1f} us of CPU here "
          f"({calibration['n']} from one client, no pipelining)")

    # the per-worker, per-time part: pulse and heartbeat
    hb = settings.heartbeat_s
    p0, pn = pulse[0], pulse[args.running]
    # REAP's walk, from the time inside commands (steadier than CPU on a shared machine)
    per_entry = max(pn["pulse_usec"] - p0["pulse_usec"], 0.0) / 1e6 / max(args.running, 1)
    per_worker_s = (p0["pulse_cpu_s"] + pn["heartbeat_cpu_s"]) / hb
    per_pair_s = per_entry / hb
    print()
    print(f"per worker, per time (SCALESPACE_HEARTBEAT_S={hb}): one pulse {_fmt(1e6 * p0['pulse_cpu_s'])} us of "
          f"Redis CPU with an empty running set, {_fmt(1e6 * pn['pulse_cpu_s'])} us with {args.running} running "
          f"jobs (REAP walks them: {1e6 * per_entry:.2f} us each); one lease heartbeat "
          f"{_fmt(1e6 * pn['heartbeat_cpu_s'])} us; one progress report (STEP) {_fmt(1e6 * pn['step_cpu_s'])} us")
    print()
    print(f"GPU workers one Redis feeds at 100 % of one core, each finishing a shard every {args.shard_s:g} s:")
    print()
    print("| K | Redis CPU per shard (us) | in bare round trips (PING) | shards/s at 100 % of a core (per-shard cost "
          "only) | workers, per-shard cost only | workers, with pulse and heartbeats | measured shards/s here "
          "| janitor list at that many workers |")
    print("|---|---|---|---|---|---|---|---|")
    from scalespace.worker.pulse import JANITOR_LIMIT

    for row in rows:
        c = row["cpu_per_shard"]
        n1 = workers_per_redis(c, args.shard_s)
        n2 = workers_per_redis(c, args.shard_s, per_worker_s=per_worker_s, per_worker_pair_s=per_pair_s)
        backlog = janitor_backlog_per_s(int(n2), args.shard_s, row["k"], heartbeat_s=hb, limit=JANITOR_LIMIT)
        print(f"| {row['k']} | {_fmt(1e6 * c)} | {_fmt(c / calibration['ping_cpu_s'])} | {_fmt(1 / c)} "
              f"| {_fmt(n1)} | {_fmt(n2)} "
              f"| {_fmt(row['shards'] / row['wall'])} "
              f"| {'grows ' + _fmt(backlog) + '/s' if backlog > 0 else 'keeps up'} |")
    print()
    print("(Redis CPU per shard in PING round trips carries the figures to another Redis host: there, the "
          "per-shard cost is about that many times its own PING cost. The pulse's REAP walks the whole running "
          "set in every worker's pulse, a cost that grows with the square of the workers.)")
    # a sample job reports (STEP) every step: the cost per shard grows with its steps
    c_step = pn["step_cpu_s"]
    print()
    print(f"a sample job reports progress (ctx.report: one STEP, unthrottled) after every reverse step of every "
          f"batch, steps x ceil(samples / batch_size) per shard (a shard of 1,024 samples in batches of 64 at 20 "
          f"steps: 320), so a shard of S reports costs Redis about the measured figure + (S - {args.steps}) x "
          f"{_fmt(1e6 * c_step)} us; workers fed, 1-s shards, K = {rows[-1]['k']}, pulse and heartbeats included:")
    print()
    print("| progress reports per shard | Redis CPU per shard (us) | workers |")
    print("|---|---|---|")
    for steps in sorted({args.steps, 0, 100, 320}):
        c = max(rows[-1]["cpu_per_shard"] + (steps - args.steps) * c_step, 1e-9)
        n = workers_per_redis(c, args.shard_s, per_worker_s=per_worker_s, per_worker_pair_s=per_pair_s)
        print(f"| {steps} | {_fmt(1e6 * c)} | {_fmt(n)} |")
    # the bottleneck of the measured rate
    print()
    busy = max(row["redis_cpu_run"] / row["wall"] for row in rows)
    client = [row["client_cpu"] / row["shards"] for row in rows]
    redis_c = [row["cpu_per_shard"] for row in rows]
    lua = [row["d"].get("usec:evalsha", 0) / 1e6 / row["shards"] for row in rows]
    print("bottleneck of the measured rate: " + (
        f"the client side (Python: redis-py, kombu/Celery message handling, the job-store wrappers): the clients "
        f"spent {', '.join(_fmt(1e6 * c) for c in client)} us of CPU per shard against Redis's "
        f"{', '.join(_fmt(1e6 * c) for c in redis_c)} us (K = {', '.join(str(r_['k']) for r_ in rows)}), and Redis "
        f"was busy at most {100 * busy:.0f} % of one core while {args.workers + 1} client processes shared "
        f"the {cores} cores" if busy < 0.85 else
        f"Redis CPU: it was busy {100 * busy:.0f} % of one core"))
    print("inside Redis: the Lua scripts (EVALSHA, their inner commands included) take "
          + ", ".join(f"{100 * l_ / c:.0f} %" for l_, c in zip(lua, redis_c))
          + " of its CPU per shard; the rest is the broker's commands and the event loop (syscalls, protocol)")
    for rep in reports:
        top = sorted(rep["commands"].items(), key=lambda kv: -kv[1])[:6]
        print(f"  {rep['name']}: CPU {rep['cpu_s']:.1f} s, busy in messages {rep['busy_s']:.1f} s; commands sent "
              f"(whole run, top 6): {', '.join(f'{k} {v}' for k, v in top)}")


# --- the speedup part -----------------------------------------------------------------------------------------

TOKEN = "scale-bench-token"


def speedup(args: argparse.Namespace) -> int:
    """A sharded sample job through the service with 1 worker, then 2 (bench/load.py's start-up, local store)."""
    import httpx

    spec = {"kind": "sample", "process": "vp", "data": "digits", "n": args.speedup_n, "steps": args.speedup_steps,
            "shards": args.speedup_shards}
    times: dict[int, float] = {}
    #: workers -> (mean shard run time, wall minus the busiest worker's shard run times, shards)
    shard_runs: dict[int, tuple[float, float, int]] = {}
    for workers in (1, 2):
        tmp = Path(tempfile.mkdtemp(prefix="scalespace-speedup-"))
        rproc, rport = start_redis(tmp, "no")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCALESPACE_")}
        env.update(SCALESPACE_REDIS_URL=f"redis://127.0.0.1:{rport}/0", SCALESPACE_API_TOKEN=TOKEN,
                   SCALESPACE_API_PORT=str(port), SCALESPACE_RESULTS_DIR=str(tmp / "results"), PYTHONUNBUFFERED="1",
                   SCALESPACE_HEARTBEAT_S="2")
        cli = [sys.executable, "-m", "scalespace.cli"]
        procs: list[subprocess.Popen] = []
        try:
            procs.append(subprocess.Popen(cli + ["api"], env=env, stdout=open(tmp / "api.log", "wb"),
                                          stderr=subprocess.STDOUT))
            threads = str(args.speedup_threads)  # one core per worker, as one GPU per worker
            for k in range(workers):
                procs.append(subprocess.Popen(cli + ["worker", "--name", f"scale{k}@%h"],
                                              env=dict(env, SCALESPACE_HEARTBEAT_FILE=str(tmp / f"hb{k}"),
                                                       OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads),
                                              stdout=open(tmp / f"worker{k}.log", "wb"), stderr=subprocess.STDOUT))
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=60)
            wait_for(lambda: http.get("/v1/ready").status_code == 200, 120, "the API", every_s=0.2)
            wait_for(lambda: (http.get("/v1/ready").json().get("workers") or 0) >= workers, 120, "the workers",
                     every_s=0.2)
            # warm-up: every worker imports torch and runs small jobs, then the same sharded job with another
            # seed (its shards spread over the workers), before the clock starts
            warm = [http.post("/v1/jobs", json={"spec": {"kind": "sample", "process": "vp", "data": "digits", "n": 4,
                                                          "steps": 2, "seed": 100 + k}}).json()["id"]
                    for k in range(2 * workers)]
            for job_id in warm:
                wait_job(http, job_id, 600)
            r = http.post("/v1/jobs", json={"spec": {**spec, "seed": 1}})
            if r.status_code == 201:
                wait_job(http, r.json()["id"], args.timeout)
            t0 = time.perf_counter()
            if r.status_code != 422:
                r = http.post("/v1/jobs", json={"spec": spec})
            if r.status_code == 422:
                print(f"speedup: the service refused the spec (422): the `shards` feature is missing or different: "
                      f"{r.text[:300]}")
                return 0
            if r.status_code != 201:
                print(f"speedup: submit answered {r.status_code}: {r.text[:300]}")
                return 1
            wall_t0 = time.time()
            job = wait_job(http, r.json()["id"], args.timeout)
            times[workers] = time.perf_counter() - t0
            if job["state"] != "succeeded":
                print(f"speedup: the job with {workers} worker(s) ended {job['state']}: {job.get('error')}")
                return 1
            children = job.get("children") or []
            print(f"  {workers} worker(s): {times[workers]:.1f} s; the job "
                  + (f"fanned out to {len(children)} shards" if children else
                     "did not fan out (no children: the shards feature is not in the worker yet)"), flush=True)
            views = [http.get(f"/v1/jobs/{c}").json() for c in children]
            per_worker: dict[str, float] = {}
            for view in views:
                per_worker[view.get("worker") or "?"] = per_worker.get(view.get("worker") or "?", 0.0) + (
                    view.get("duration_s") or 0.0)
            runs = [view.get("duration_s") or 0.0 for view in views]
            shard_runs[workers] = (sum(runs) / len(runs) if runs else 0.0,
                                   times[workers] - max(per_worker.values(), default=0.0), len(runs))
            for view in [job] + views:
                print(f"    {view['id']}: worker {view.get('worker')}, "
                      f"started +{_since(view.get('started_at'), wall_t0)} s, "
                      f"finished +{_since(view.get('finished_at'), wall_t0)} s, run {view.get('duration_s') or 0:.1f} s")
        finally:
            _infra().terminate_all(procs)
            rproc.terminate()
            rproc.wait(timeout=15)
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = times[2] / times[1]
    print(f"speedup: sample vp/digits n={args.speedup_n} steps={args.speedup_steps} shards={args.speedup_shards}, "
          f"workers of concurrency 1 with {args.speedup_threads} torch thread(s) each, local store, "
          f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f})")
    print("| workers | wall (s) | mean shard run (s) | wall minus the busiest worker's shard runs (s) |")
    print("|---|---|---|---|")
    for w, t in times.items():
        run, rest, _ = shard_runs.get(w, (0.0, 0.0, 0))
        print(f"| {w} | {t:.1f} | {run:.1f} | {rest:.1f} |")
    print(f"t2/t1 = {ratio:.2f} (target <= 0.6: {'met' if ratio <= 0.6 else 'missed'})")
    (run1, _, k), (run2, rest2, _) = shard_runs.get(1, (0.0, 0.0, 0)), shard_runs.get(2, (0.0, 0.0, 0))
    if k and run1 > 0 and run2 > 1.3 * run1:
        ideal = (rest2 + run1 * math.ceil(k / 2)) / times[1]
        print(f"the shards ran {run2 / run1:.1f}x slower with 2 workers than with 1: the workers did not have a core "
              f"each (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), so t2/t1 measures this "
              f"machine's CPU; with the shards at their 1-worker speed and the 2-worker run's other time, t2/t1 "
              f"would be {ideal:.2f}")
    return 0


def _since(stamp: str | None, t0: float) -> str:
    """Seconds from t0 (epoch) to an ISO time stamp of the API, or '?'."""
    from datetime import datetime

    if not stamp:
        return "?"
    return f"{datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp() - t0:.1f}"


def wait_job(http: Any, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled", "expired"):
            return job
        time.sleep(0.2)
    raise SystemExit(f"scale: job {job_id} not finished after {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("speedup", "control-plane", "readers", "all"), default="all")
    ap.add_argument("--ks", default="1,8,32", help="shards per job, comma-separated (1: a plain job)")
    ap.add_argument("--workers", type=int, default=4, help="simulated worker processes")
    ap.add_argument("--shards", type=int, default=1600, help="shards measured per K (jobs = shards / K)")
    ap.add_argument("--min-jobs", type=int, default=40, help="at least this many jobs per K")
    ap.add_argument("--steps", type=int, default=20, help="progress reports per shard (a sample job: one a step)")
    ap.add_argument("--writes", type=int, default=3,
                    help="guarded writes per job (a shard: samples, statistics, the manifest)")
    ap.add_argument("--heartbeats", type=int, default=1, help="lease renewals per shard")
    ap.add_argument("--appendonly", choices=("no", "everysec", "always"), default="no",
                    help="redis-server's append-only file (the Helm chart: no; docker compose: everysec)")
    ap.add_argument("--running", type=int, default=1000, help="running jobs for the pulse's REAP cost")
    ap.add_argument("--beats", type=int, default=50, help="pulses timed")
    ap.add_argument("--shard-s", type=float, default=1.0, help="GPU seconds per shard for the projection")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for one K's jobs / the sharded job")
    ap.add_argument("--fill", type=int, default=100_000, help="readers: job records in the store")
    ap.add_argument("--reads", type=int, default=20, help="readers: reads timed per form")
    ap.add_argument("--speedup-n", type=int, default=2048)
    ap.add_argument("--speedup-steps", type=int, default=100)
    ap.add_argument("--speedup-shards", default="2", help="the spec's shards (an integer or auto)")
    ap.add_argument("--speedup-threads", type=int, default=1,
                    help="torch threads per worker (OMP_NUM_THREADS): one core each, as one GPU each")
    args = ap.parse_args(argv)
    if args.speedup_shards != "auto":
        args.speedup_shards = int(args.speedup_shards)
    rc = 0
    if args.part in ("control-plane", "all"):
        rc |= control_plane(args)
    if args.part in ("speedup", "all"):
        rc |= speedup(args)
    if args.part in ("readers", "all"):
        rc |= readers(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
