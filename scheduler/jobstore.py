"""The job store in Redis: job records, lanes, leases, idempotency keys, the dead-letter list.

Keys (prefix `ss:` by default):
    job:<id>        hash: the record (spec, state, progress, attempts, timestamps, worker, artifacts, error)
    lane:<lane>     sorted set of queued job ids by submit time (depth, position, oldest age)
    running         sorted set of running job ids (the reaper's work list)
    delayed         sorted set of jobs waiting out a retry backoff, by due time
    lease:<id>      the worker holding the job; expires unless its heartbeat renews it
    idem:<sha256>   idempotency key -> job id
    children:<id>   a sweep's children that have not finished yet
    index           every job by submit time (for listings)
    deadletter      list of jobs that gave up (newest first, capped)
    stats           counters (submitted, finished by state and kind, retries, redeliveries, resent)
    durations:<kind> histogram buckets of job durations
    worker:<name>   a live worker (expires unless renewed)
    janitor         jobs that ended, by end time: the janitor removes other attempts' leftovers after a grace

Finished records expire after SCALESPACE_RESULT_TTL_S, so Redis does not grow
without bound; the artifacts stay in the store. State changes are Lua scripts
(jobstore_lua.py), atomic inside Redis. Messages on the broker carry only the
job id: the record here is the truth, a message only says "look at this job".
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import weakref
from dataclasses import dataclass, field, fields, replace
from typing import Any

from scalespace.config import LANES
from scalespace.scheduler import jobstore_lua as lua
from scalespace.scheduler.infra import redis_client

#: a job's states: queued, then running, then one of the final four (TERMINAL)
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
TERMINAL = frozenset(STATES[2:])
#: the lane nightly sweeps are queued on
NIGHTLY_LANE = LANES[-1]
#: a worker's name leaves the `workers` set this long after its last beat lapsed (one killed without
#: unregistering); until then it is only not listed
WORKER_FORGET_S = 86400.0
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
_INT_FIELDS = ("attempts", "redeliveries", "retries", "progress_done", "children_total", "children_done", "fence",
               "committed_attempt")
_FLOAT_FIELDS = ("created_at", "queued_at", "started_at", "finished_at", "updated_at", "heartbeat_at", "outage_since",
                 "attempt_started_at", "deadline_s", "deadline_at", "duration_s")
_JSON_FIELDS = ("spec", "progress", "artifacts", "summary", "children")


@dataclass(frozen=True)
class Outcome:
    """What a transition did (`action`), with the values that action carries; the others keep their defaults."""

    action: str
    #: a sweep whose last child just ended: enqueue it to aggregate ('' none)
    ready_parent: str = ""
    #: submit: the job that holds the idempotency key (existing) or the id (exists), and its spec hash
    job_id: str = ""
    spec_hash: str = ""
    #: the job's state when a transition was refused (terminal, not-running, not-ours, refused)
    state: str = ""
    #: begin: the attempt number (counts toward SCALESPACE_MAX_DELIVERIES) and this delivery's fencing token
    attempt: int = 0
    fence: int = 0
    #: full: the lane's depth; retry: the lane it went back to
    depth: int = 0
    #: submit (created): the job's place in its lane's queue, from 1
    position: int = 0
    lane: str = ""
    #: begin: who holds the lease (leased); why the job gave up (dead)
    holder: str = ""
    reason: str = ""
    #: cancel of a sweep waiting for its children: the children to cancel too
    children: tuple[str, ...] = ()
    #: begin (run): the record as the lease was taken; submit (created): the record as written
    record: "JobRecord | None" = None


#: (script, action) -> the names of the values that follow the action ('*': any other action)
_SHAPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("SUBMIT", "full"): ("depth",), ("SUBMIT", "created"): ("job_id", "spec_hash", "position"),
    ("SUBMIT", "*"): ("job_id", "spec_hash"),
    ("BEGIN", "run"): ("attempt", "fence"), ("BEGIN", "terminal"): ("state",), ("BEGIN", "leased"): ("holder",),
    ("BEGIN", "dead"): ("ready_parent", "reason"), ("BEGIN", "*"): ("ready_parent",),
    ("COMMIT", "not-running"): ("state",), ("COMMIT", "not-ours"): ("state",), ("COMMIT", "*"): ("ready_parent",),
    ("FINISH", "not-running"): ("state",), ("FINISH", "not-ours"): ("state",), ("FINISH", "*"): ("ready_parent",),
    ("CANCEL", "cancelled"): ("ready_parent", "children"), ("CANCEL", "*"): (),
    ("RETRY", "refused"): ("state",), ("RETRY", "full"): ("depth",), ("RETRY", "queued"): ("lane",),
    ("RETRY", "*"): (),
}


def _outcome(script: str, raw: Any) -> Outcome:
    items = [str(x) for x in (raw or [])]
    action, values = (items[0], items[1:]) if items else ("", [])
    names = _SHAPES.get((script, action), _SHAPES[(script, "*")])
    fields: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name == "children":
            fields[name] = tuple(values[i:])
        elif i < len(values) and values[i] != "":
            fields[name] = int(values[i]) if name in ("attempt", "fence", "depth", "position") else values[i]
    return Outcome(action, **fields)


_OPT_INT_FIELDS = ("cancel_step", "stopped_step")
_BOOL_FIELDS = ("cancel_requested", "waiting", "dead_letter", "manifest_held")
#: the JSON fields whose value must have a given shape (else the field counts as unset)
_JSON_SHAPES: dict[str, type] = {"spec": dict, "progress": dict, "artifacts": list, "children": list}


def _parse(key: str, value: str) -> Any:
    """One hash value as its field's type; raises ValueError (or TypeError) when it does not parse."""
    if key in _INT_FIELDS or key in _OPT_INT_FIELDS:
        return int(float(value))
    if key in _FLOAT_FIELDS:
        return float(value)
    if key in _JSON_FIELDS:
        return json.loads(value)
    if key in _BOOL_FIELDS:
        return value == "1"
    return value


@dataclass(frozen=True)
class JobRecord:
    """A job's record (the `job:<id>` hash), typed. Unset or empty fields take the defaults below: 0 for counters,
    False for flags, '' for id/kind/lane/state, None for the rest (timestamps, optional strings and JSON)."""

    id: str = ""
    kind: str = ""
    lane: str = ""
    state: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    spec_hash: str | None = None
    parent: str | None = None
    idempotency_key: str | None = None
    # timestamps (epoch seconds)
    created_at: float | None = None
    queued_at: float | None = None
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt_started_at: float | None = None
    heartbeat_at: float | None = None
    outage_since: float | None = None
    deadline_s: float | None = None
    deadline_at: float | None = None
    # counters
    attempts: int = 0
    redeliveries: int = 0
    retries: int = 0
    progress_done: int = 0
    fence: int = 0
    committed_attempt: int = 0
    #: the commit kept the attempt's manifest (JobStore.manifest): the attempt's folder has none of its own
    manifest_held: bool = False
    # the running delivery, progress and the outcome
    worker: str | None = None
    lease_owner: str | None = None
    progress: dict[str, Any] | None = None
    error: str | None = None
    artifacts: list[dict[str, Any]] | None = None
    summary: Any = None
    duration_s: float | None = None
    # cancels, stops, dead letters
    cancel_requested: bool = False
    cancel_step: int | None = None
    stopped_step: int | None = None
    dead_letter: bool = False
    # a sweep's children
    waiting: bool = False
    children: list[str] | None = None
    children_total: int = 0
    children_done: int = 0

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> "JobRecord":
        """The record of a Redis hash; unknown fields are ignored (older or newer records still load), and a
        value that does not parse counts as unset."""
        values: dict[str, Any] = {}
        for key, value in h.items():
            if key not in _FIELD_NAMES or value is None or value == "":
                continue
            try:
                parsed = _parse(key, value)
            except (ValueError, TypeError):
                continue
            if key in _JSON_SHAPES and not isinstance(parsed, _JSON_SHAPES[key]):
                continue
            values[key] = parsed
        return cls(**values)


_FIELD_NAMES = frozenset(f.name for f in fields(JobRecord))


def duration_bucket(seconds: float) -> str:
    for b in DURATION_BUCKETS:
        if seconds <= b:
            return f"le:{b}"
    return "le:+Inf"


class JobStore:
    """Job records and queues in one Redis (redis-py client with decode_responses=True)."""

    def __init__(self, client: Any, *, prefix: str = "ss:", result_ttl_s: int = 7 * 24 * 3600,
                 live_ttl_s: int | None = None):
        self.r = client
        self.prefix = prefix
        self.result_ttl_s = int(result_ttl_s)
        # a record still queued or running outlives the broker's redelivery window
        self.live_ttl_s = int(live_ttl_s or max(self.result_ttl_s, 2 * 86400) * 2)
        self._scripts = {name: client.register_script(getattr(lua, name)) for name in (
            "SUBMIT", "BEGIN", "HEARTBEAT", "STEP", "COMMIT", "FINISH", "REQUEUE", "REAP", "DUE", "RESEND",
            "RESEND_LOST_START", "CANCEL",
            "RETRY", "WAIT_CHILDREN", "EXPIRE_IF_DUE", "JANITOR_SKIP", "JANITOR_DONE")}
        self._async_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # submit_async's, by client

    @classmethod
    def from_settings(cls, settings: Any, client: Any = None) -> "JobStore":
        if client is None:
            client = redis_client(settings)
        live = settings.result_ttl_s + 2 * settings.visibility_timeout_s  # queued + running, then result_ttl_s
        return cls(client, result_ttl_s=settings.result_ttl_s, live_ttl_s=live)

    # --- plumbing ------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](keys=[], args=self._argv(time.time(), *args))

    def _argv(self, now: float, *args: Any) -> list[Any]:
        """A script's arguments: the key prefix, the time, the result TTL (the PRELUDE's), then its own."""
        return [self.prefix, f"{now:.6f}", self.result_ttl_s, *args]

    def ping(self) -> bool:
        return bool(self.r.ping())

    # --- records -------------------------------------------------------------------------
    def submit(self, job_id: str, spec: dict[str, Any], *, kind: str, spec_hash: str, lane: str, limit: int,
               deadline_s: float | None = None, idempotency_key: str | None = None,
               parent: str | None = None, message: tuple[str, str] | None = None) -> Outcome:
        """Create a queued job, only under an id not taken (a conditional insert: an existing record is never
        touched). Outcome.action: created, existing (the idempotency key's job: job_id, spec_hash), exists (the
        id is taken: nothing written; draw another id), full (depth). `message`: (broker list, item), pushed
        with the record (scalespace.scheduler.queues.Enqueuer.message)."""
        argv, fields = self._submit_argv(job_id, spec, kind=kind, spec_hash=spec_hash, lane=lane, limit=limit,
                                         deadline_s=deadline_s, idempotency_key=idempotency_key, parent=parent,
                                         message=message)
        return self._submitted(self._scripts["SUBMIT"](keys=[], args=argv), fields)

    async def submit_async(self, aclient: Any, job_id: str, spec: dict[str, Any], **kwargs: Any) -> Outcome:
        """submit, the same script and outcome, through `aclient` (scalespace.scheduler.infra.async_redis_client
        on the same Redis: the API's event loop waits for Redis without a thread)."""
        script = self._async_scripts.get(aclient)
        if script is None:
            script = self._async_scripts[aclient] = aclient.register_script(lua.SUBMIT)
        argv, fields = self._submit_argv(job_id, spec, **kwargs)
        return self._submitted(await script(keys=[], args=argv), fields)

    def _submit_argv(self, job_id: str, spec: dict[str, Any], *, kind: str, spec_hash: str, lane: str, limit: int,
                     deadline_s: float | None = None, idempotency_key: str | None = None,
                     parent: str | None = None, message: tuple[str, str] | None = None
                     ) -> tuple[list[Any], dict[str, Any]]:
        """SUBMIT's arguments, and the record's fields they write."""
        now = time.time()
        fields = {
            "id": job_id, "kind": kind, "lane": lane, "spec": json.dumps(spec, sort_keys=True), "spec_hash": spec_hash,
            "state": "queued", "created_at": f"{now:.6f}", "queued_at": f"{now:.6f}", "updated_at": f"{now:.6f}",
            "attempts": 0, "redeliveries": 0, "retries": 0, "progress_done": 0,
            "deadline_s": "" if deadline_s is None else str(deadline_s),
            "deadline_at": "" if deadline_s is None else f"{now + deadline_s:.6f}",
            "parent": parent or "", "idempotency_key": idempotency_key or "",
        }
        idem = self.key("idem", hashlib.sha256(idempotency_key.encode()).hexdigest()) if idempotency_key else ""
        queue, item = message or ("", "")
        return self._argv(now, job_id, lane, limit, idem, spec_hash, self.live_ttl_s, queue, item,
                          *(x for kv in fields.items() for x in kv)), fields

    @staticmethod
    def _submitted(raw: Any, fields: dict[str, Any]) -> Outcome:
        out = _outcome("SUBMIT", raw)
        if out.action == "created":  # the record is what was written: the caller needs no second read
            out = replace(out, record=JobRecord.from_hash({k: str(v) for k, v in fields.items()}))
        return out

    def get(self, job_id: str) -> JobRecord | None:
        """The record, or None; a queued job past its deadline is expired on the way."""
        h = self.r.hgetall(self.key("job", job_id))
        if not h:
            return None
        if h.get("state") == "queued" and h.get("deadline_at") and time.time() > float(h["deadline_at"]):
            self._run("EXPIRE_IF_DUE", job_id)
            h = self.r.hgetall(self.key("job", job_id)) or h
        return JobRecord.from_hash(h)

    def delete(self, job_id: str) -> None:
        """Remove a record that never reached the broker (the API's rollback)."""
        rec = self.r.hgetall(self.key("job", job_id))
        pipe = self.r.pipeline()
        pipe.delete(self.key("job", job_id))
        if rec.get("lane"):
            pipe.zrem(self.key("lane", rec["lane"]), job_id)
        pipe.zrem(self.key("index"), job_id)
        if rec.get("idempotency_key"):
            pipe.delete(self.key("idem", hashlib.sha256(rec["idempotency_key"].encode()).hexdigest()))
        pipe.execute()

    def queue_position(self, job_id: str, lane: str) -> int | None:
        rank = self.r.zrank(self.key("lane", lane), job_id)
        return None if rank is None else int(rank) + 1

    def list(self, *, state: str | None = None, kind: str | None = None, lane: str | None = None,
             limit: int = 100, scan: int = 5000) -> list[JobRecord]:
        """Newest first, filtered; looks at the newest `scan` jobs at most."""
        index = self.key("index")
        self.r.zremrangebyscore(index, "-inf", time.time() - self.result_ttl_s - 86400)
        ids = self.r.zrevrange(index, 0, scan - 1)
        out: list[JobRecord] = []
        for start in range(0, len(ids), 200):
            pipe = self.r.pipeline()
            for job_id in ids[start:start + 200]:
                pipe.hgetall(self.key("job", job_id))
            for h in pipe.execute():
                if not h or (state and h.get("state") != state) or (kind and h.get("kind") != kind) \
                        or (lane and h.get("lane") != lane):
                    continue
                out.append(JobRecord.from_hash(h))
                if len(out) >= limit:
                    return out
        return out

    # --- the worker's transitions -------------------------------------------------------------
    def begin(self, job_id: str, owner: str, worker: str, *, lease_s: float, max_attempts: int) -> Outcome:
        """Take the lease. action: run (attempt, fence: this delivery's token), missing, terminal (state),
        leased (holder), waiting, expired, cancelled, dead (reason)."""
        raw = self._run("BEGIN", job_id, owner, int(lease_s * 1000), max_attempts, worker)
        out = _outcome("BEGIN", raw[:3] if raw and str(raw[0]) == "run" else raw)
        if out.action == "run" and len(raw) > 3:
            out = replace(out, record=JobRecord.from_hash(dict(zip(raw[3::2], raw[4::2]))))
        return out

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        return bool(self._run("HEARTBEAT", job_id, owner, int(lease_s * 1000)))

    def step(self, job_id: str, owner: str, progress: dict[str, Any] | None) -> str:
        """Record progress and return why to stop ('cancelled', 'lease-lost') or ''."""
        return self.step_held(job_id, owner, progress)[0]

    def step_held(self, job_id: str, owner: str, progress: dict[str, Any] | None) -> tuple[str, int]:
        """step, and for how many ms from now (at least) `owner` holds the lease key: 0 when it does not (the
        lease lapsed: the job stays its owner's until the reaper requeues it, so every look must go to Redis)."""
        blob = json.dumps(progress, allow_nan=False) if progress is not None else ""
        done = int(progress.get("done", 0)) if progress else 0
        raw = self._run("STEP", job_id, owner, blob, done) or ["", 0]
        return str(raw[0] or ""), max(int(raw[1] if len(raw) > 1 else 0), 0)

    def commit(self, job_id: str, owner: str, fence: int, artifacts: list[dict[str, Any]], summary: Any,
               duration_s: float, *, attempt: int | None = None, progress: dict[str, Any] | None = None,
               manifest: bytes | None = None) -> Outcome:
        """The commit point: succeeded, with `attempt` (default: the token) as the committed attempt, and the
        job's last `progress` when a step did not write it yet. Valid only for the delivery `owner` that still
        owns the job with the current token `fence`; else not-ours or not-running, and nothing is written.

        manifest: the attempt's manifest, the bytes the job's manifest.json is to hold; kept beside the record
        (expiring with it) until it has been published, for the API to serve and for the janitor to publish
        when the worker could not (JobStore.manifest)."""
        return _outcome("COMMIT", self._run("COMMIT", job_id, owner, fence, attempt or fence, json.dumps(artifacts),
                                            json.dumps(summary, default=str), f"{duration_s:.6f}",
                                            duration_bucket(duration_s), json.dumps(progress) if progress else "",
                                            int(progress.get("done", 0)) if progress else 0, manifest or b""))

    def drop_manifest(self, job_id: str) -> None:
        """The manifest a commit kept, dropped once the job's manifest.json holds it (the janitor; the pulse
        drops those its worker published with janitor_skip)."""
        self.r.delete(self.key("manifest", job_id))

    def manifest(self, job_id: str) -> bytes | None:
        """The manifest a commit kept (the job's manifest.json, byte for byte), or None: the commit kept none
        (the attempt wrote its own), it has been published and dropped, or the record expired."""
        held = self.r.get(self.key("manifest", job_id))  # UTF-8, decoded by the client: encoded back, the same bytes
        return None if held is None else held.encode()

    def finish(self, job_id: str, owner: str, state: str, error: str, *, stopped_step: int | None = None,
               dead_letter: bool = False) -> Outcome:
        """End a running job that `owner` still owns as failed, cancelled or expired (else not-ours)."""
        if state not in ("failed", "cancelled", "expired"):
            raise ValueError(f"finish: state must be failed, cancelled or expired, got {state!r}")
        return _outcome("FINISH", self._run("FINISH", job_id, owner, state, error[:2000],
                                            "" if stopped_step is None else stopped_step, "1" if dead_letter else "0"))

    def requeue(self, job_id: str, owner: str, error: str, *, refund: bool = False, outage: bool = False,
                delay_s: float = 0) -> int:
        """Back to its lane: 1 (enqueue it now), 2 (delayed: due() hands it back later), 0 (not ours).

        refund: the attempt was not the job's fault (a shutdown) and is given back; outage: S3 or Redis
        was unreachable: the attempt is given back too, the retry is counted, and `outage_since` keeps
        when the first of the job's outages began (cleared when the job ends).
        """
        mode = "2" if outage else "1" if refund else "0"
        return int(self._run("REQUEUE", job_id, owner, error[:2000], mode, f"{delay_s:.3f}"))

    def reap(self, lease_s: float) -> list[tuple[str, str]]:
        """Running jobs whose worker was lost go back to their lane: [(id, lane)] to enqueue."""
        flat = self._run("REAP", lease_s) or []
        return list(zip(flat[::2], flat[1::2]))

    def resend(self, older_than_s: float, lanes: Any = LANES, limit: int = 100) -> list[tuple[str, str]]:
        """Jobs queued for longer than older_than_s, whose message may be lost (a worker died between taking it
        and starting the job, or a Redis failover lost it): [(id, lane)] to send again, each at most once per
        older_than_s. A message that was not lost after all is delivered twice: the second finds the job
        running or ended and is dropped."""
        flat = self._run("RESEND", f"{older_than_s:.3f}", int(limit), *lanes) or []
        return list(zip(flat[::2], flat[1::2]))

    def resend_lost_start(self, job_id: str) -> str | None:
        """After a delivery found its lease lost: the job's lane ('' if none) when its record says queued, held
        by no one and not delayed (its start was lost, by a failover, and its message taken), to send the
        message again now rather than after the visibility timeout (resend); None otherwise (another delivery
        has it, it ended, it waits for a retry delay)."""
        return self._run("RESEND_LOST_START", job_id)

    def due(self) -> list[tuple[str, str]]:
        """Jobs whose retry delay is over: [(id, lane)] to enqueue."""
        flat = self._run("DUE") or []
        return list(zip(flat[::2], flat[1::2]))

    def wait_for_children(self, job_id: str, owner: str, children: list[str]) -> int:
        """The sweep waits for its unfinished children; returns how many (0: aggregate now, -1: not running)."""
        return int(self._run("WAIT_CHILDREN", job_id, owner, json.dumps(children)))

    # --- the caller's transitions ------------------------------------------------------------
    def cancel(self, job_id: str) -> Outcome:
        """action: cancelled, cancelling (running: stops at its next step), terminal, missing."""
        return _outcome("CANCEL", self._run("CANCEL", job_id))

    def retry(self, job_id: str, *, limit: int, deadline_s: float | None) -> Outcome:
        """action: queued (lane), refused (state), full (depth), missing."""
        deadline = "" if deadline_s is None else f"{time.time() + deadline_s:.6f}"
        return _outcome("RETRY", self._run("RETRY", job_id, limit, deadline, self.live_ttl_s))

    # --- the janitor -------------------------------------------------------------------------
    def janitor_due(self, grace_s: float, limit: int = 50, rng: random.Random | None = None) -> list[tuple[str, float]]:
        """Jobs that ended more than grace_s ago and still need tidying: [(id, score)], up to `limit` of them.

        When more are due, a random run of them (`rng`), so the pulses of many workers tidy different jobs in
        one round rather than all the oldest ones."""
        key, due = self.key("janitor"), time.time() - grace_s
        start = 0
        if rng is not None:
            waiting = int(self.r.zcount(key, "-inf", due))
            start = rng.randrange(waiting - limit + 1) if waiting > limit else 0
        rows = self.r.zrangebyscore(key, "-inf", due, start=start, num=limit, withscores=True)
        return [(str(i), float(s)) for i, s in rows]

    def janitor_skip(self, job_ids: list[str]) -> int:
        """Jobs whose committer published their manifest.json: the manifest their commit kept is dropped (the
        store holds it now), and each comes off the janitor's list when it has nothing left to do for it
        (succeeded, one attempt ever), so it neither looks for the manifest nor reads the record. Returns how
        many came off the list."""
        return int(self._run("JANITOR_SKIP", *job_ids)) if job_ids else 0

    def janitor_done(self, job_id: str, score: float) -> bool:
        """Done with the job (unless it ended again after `score`: then it stays for the next round)."""
        return bool(self._run("JANITOR_DONE", job_id, repr(score)))

    # --- workers, dead letters, metrics ------------------------------------------------------------
    def register_worker(self, name: str, ttl_s: float, info: dict[str, Any]) -> None:
        """A worker's beat: its info under `worker:<name>` for ttl_s, and its name in the `workers` sorted set
        scored by when that beat lapses, so listing the live workers reads one key, not the keyspace. Names
        whose beat lapsed long ago leave the set here (a worker killed without unregistering)."""
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.key("worker", name), json.dumps(info), px=max(1, int(ttl_s * 1000)))
        pipe.zadd(self.key("workers"), {name: now + ttl_s})
        pipe.zremrangebyscore(self.key("workers"), "-inf", now - WORKER_FORGET_S)
        pipe.expire(self.key("workers"), int(ttl_s + WORKER_FORGET_S))  # gone with the last worker
        pipe.execute()

    def unregister_worker(self, name: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key("worker", name))
        pipe.zrem(self.key("workers"), name)
        pipe.execute()

    def workers(self) -> list[str]:
        """The workers whose last beat has not lapsed, by name: one ZRANGEBYSCORE, however many jobs the store
        holds (/v1/ready and every /metrics scrape ask)."""
        return sorted(self.r.zrangebyscore(self.key("workers"), time.time(), "+inf"))

    def dead_letters(self, limit: int = 100) -> list[str]:
        return list(self.r.lrange(self.key("deadletter"), 0, limit - 1))

    def snapshot(self, lanes: list[str]) -> dict[str, Any]:
        """Everything /metrics shows, read in two round trips."""
        now = time.time()
        pipe = self.r.pipeline()
        for lane in lanes:
            pipe.zcard(self.key("lane", lane))
            pipe.zrange(self.key("lane", lane), 0, 0, withscores=True)
        pipe.hgetall(self.key("stats"))
        pipe.zrange(self.key("running"), 0, -1)
        pipe.llen(self.key("deadletter"))
        res = pipe.execute()
        depth = {lane: int(res[2 * i]) for i, lane in enumerate(lanes)}
        oldest = {lane: (now - res[2 * i + 1][0][1]) if res[2 * i + 1] else 0.0 for i, lane in enumerate(lanes)}
        stats, running, dead = res[2 * len(lanes)], res[2 * len(lanes) + 1], res[2 * len(lanes) + 2]
        kinds = sorted({k.split("|")[-1] for k in stats if k.startswith(("finished|", "submitted|"))} - {""})
        pipe = self.r.pipeline()
        for kind in kinds:
            pipe.hgetall(self.key("durations", kind))
        for job_id in running:
            pipe.hmget(self.key("job", job_id), "progress", "kind")
        res = pipe.execute()
        durations = dict(zip(kinds, res[:len(kinds)]))
        steps: dict[str, float] = {}
        for progress, kind in res[len(kinds):]:
            try:
                sps = float(json.loads(progress or "{}").get("figures", {}).get("steps_per_second", 0.0))
            except (ValueError, TypeError, AttributeError):
                sps = 0.0
            steps[kind or "unknown"] = steps.get(kind or "unknown", 0.0) + sps
        return {"depth": depth, "oldest_age_s": oldest, "stats": stats, "running": len(running),
                "dead_letters": int(dead), "durations": durations, "steps_per_second": steps}
