"""Settings from the environment (prefix SCALESPACE_), for the service and the embedded mode.

Credentials for S3 come from the usual AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE), read by boto3 itself;
they never appear here or in the repository.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the priority lanes, highest first (one broker queue each), and how many queued jobs each holds by default
LANE_LIMITS = {"interactive": 100, "batch": 1000, "nightly": 10000}
LANES = tuple(LANE_LIMITS)
_DEFAULT_LANE_LIMITS = ",".join(f"{k}={v}" for k, v in LANE_LIMITS.items())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALESPACE_", extra="ignore")

    # --- where results go -----------------------------------------------------------
    results_dir: str = Field("scalespace-results", description="local store root (when no S3 endpoint is set)")
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL; unset = local store")
    s3_bucket: str = Field("scalespace", description="bucket for artifacts")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_prefix: str = Field("scalespace", description="key prefix inside the bucket")
    s3_presign_expiry_s: int = Field(3600, ge=60, description="lifetime of presigned artifact URLs")
    s3_multipart_threshold_mb: int = Field(16, ge=5, description="artifacts above this many MiB upload in parts")
    s3_max_attempts: int = Field(5, ge=1, le=20, description="S3 attempts per request (exponential backoff)")
    s3_create_bucket: bool = Field(False, description="create the bucket at startup when it is missing")

    # --- Redis, queues, leases ---------------------------------------------------------
    redis_url: str | None = Field(None, description="redis://host:port/db for the job store and the broker")
    redis_sentinels: str = Field("", description="host:port of Redis Sentinels, comma-separated: the job store and the broker follow the master they name (instead of SCALESPACE_REDIS_URL)")
    redis_sentinel_master: str = Field("mymaster", min_length=1, description="the master's name in the Sentinels' configuration")
    redis_sentinel_password: str | None = Field(None, description="password of the Sentinels themselves (unset: none)")
    redis_password: str | None = Field(None, description="password of the Redis master found through the Sentinels (unset: none)")
    redis_db: int = Field(0, ge=0, description="database number on the Redis master found through the Sentinels")
    api_token: str | None = Field(None, description="bearer token(s) for the API, comma-separated")
    api_url: str = Field("http://127.0.0.1:8000", description="where clients (submit, status, fetch) find the API")
    api_host: str = Field("127.0.0.1", description="address `scalespace api` listens on")
    api_port: int = Field(8000, ge=1, le=65535, description="port `scalespace api` listens on")
    api_workers: int = Field(1, ge=1, le=64, description="processes `scalespace api` serves with, on one port (each imports torch: about 0.3 GiB apiece); more than one lets one API use more than one core")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body the API accepts")
    max_spec_bytes: int = Field(1 << 20, ge=1024, description="largest spec file (job, sweeps) the command line reads")
    lane_limits: str = Field(_DEFAULT_LANE_LIMITS, description="max queued jobs per lane")
    default_lane: str = Field(LANES[1], description="lane of a job submitted without one")
    retry_after_s: int = Field(30, ge=1, description="Retry-After sent with a 429 when a lane is full")
    worker_lanes: str = Field(",".join(LANES), description="lanes a worker consumes, highest priority first")
    retry_backoff_s: float = Field(2.0, gt=0, description="first delay before a job retries after a transient error")
    retry_backoff_max_s: float = Field(300.0, gt=0, description="longest delay between retries")
    outage_tolerance_s: float = Field(900.0, ge=0, description="how long a job waits out an unreachable S3 or Redis (backing off, no attempt used) before it fails")
    task_events: bool = Field(True, description="workers send Celery task events and answer remote control (celery events, inspect, Flower)")
    worker_nice: int = Field(0, ge=0, le=19, description="niceness a worker takes at start: 10 lets an API or other interactive work on the same cores go first (`scalespace serve` uses 10); 0 leaves it")
    startup_wait_s: float = Field(30.0, ge=0, description="how long api and worker wait for Redis/S3 at startup")
    max_n: int = Field(100_000, ge=1, description="largest n-like field of a job (n, n_reverse, robustness.n, eval_samples, data_limit, ...)")
    max_steps: int = Field(100_000, ge=1, description="largest T / K of a process and step count of a job (steps, reverse_steps, eval_steps, ...)")
    max_train_steps: int = Field(1_000_000, ge=1, description="largest number of optimisation steps of a train job")
    max_sweep_children: int = Field(256, ge=1, description="most child jobs one sweep may fan out to")
    max_sweep_samples: int = Field(1_000_000, ge=1, description="most samples all children of one sweep may draw together")
    max_job_bytes: int = Field(16 * 2**30, ge=2**20, description="largest estimated peak memory of one job, in bytes")
    lease_s: int = Field(60, ge=5, description="a worker's lease on a job lasts this long without a heartbeat")
    heartbeat_s: int = Field(10, ge=1, description="how often a running worker renews its lease")
    visibility_timeout_s: int = Field(43_200, ge=60, description="a job queued for longer is sent again (its message may have been lost with a worker or in a Redis failover)")
    max_deliveries: int = Field(3, ge=1, description="attempts (a worker took the job) before it fails into the dead-letter list")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long job records stay in Redis")
    heartbeat_file: str = Field("/tmp/scalespace-worker-heartbeat", description="a live worker rewrites it every heartbeat_s (liveness probe: its age)")
    worker_shutdown_timeout_s: int = Field(300, ge=1, description="on SIGTERM a worker lets its job run this long, then requeues it")

    # --- nightly sweeps ----------------------------------------------------------------
    sweeps_file: str | None = Field(None, description="YAML file of named sweep specs (`scalespace sweep run NAME`)")
    nightly_sweeps: str = Field("", description="sweep names Celery beat submits on nightly_cron, comma-separated")
    nightly_cron: str = Field("0 3 * * *", description="when beat submits the nightly sweeps (cron, UTC)")

    # --- compute --------------------------------------------------------------------------
    device: str = Field("auto", description="auto, cpu or cuda")
    deterministic: bool = Field(False, description="deterministic kernels (fixed configs, no atomics)")
    triton_cache_dir: str | None = Field(None, description="pinned Triton cache directory")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda"):
            raise ValueError("SCALESPACE_DEVICE must be auto, cpu or cuda")
        return v

    @field_validator("redis_sentinels")
    @classmethod
    def _redis_sentinels(cls, v: str, info: ValidationInfo) -> str:
        for part in v.split(","):
            if part.strip() and _host_port(part.strip()) is None:
                raise ValueError(
                    f"SCALESPACE_REDIS_SENTINELS: {part.strip()!r} is not host:port; give the Sentinels as "
                    "host:port pairs, comma-separated (e.g. 'sentinel-0:26379,sentinel-1:26379,sentinel-2:26379')")
        if v.strip() and info.data.get("redis_url"):  # redis_url is declared above, so it is validated first
            raise ValueError(
                "SCALESPACE_REDIS_URL and SCALESPACE_REDIS_SENTINELS are both set: unset one of them (with "
                "Sentinels, the master's password is SCALESPACE_REDIS_PASSWORD and its database SCALESPACE_REDIS_DB)")
        return v

    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """The Sentinels as (host, port), in the order given; empty: no Sentinel (SCALESPACE_REDIS_URL)."""
        return [hp for part in self.redis_sentinels.split(",") if part.strip()
                for hp in [_host_port(part.strip())] if hp is not None]

    def api_tokens(self) -> list[str]:
        return [t.strip() for t in (self.api_token or "").split(",") if t.strip()]

    @field_validator("lane_limits")
    @classmethod
    def _lane_limits(cls, v: str) -> str:
        for part in v.split(","):
            name, sep, limit = part.partition("=")
            if part.strip() and (not sep or not name.strip() or not limit.strip().isdigit()):
                raise ValueError(f"SCALESPACE_LANE_LIMITS must look like {_DEFAULT_LANE_LIMITS!r}")
        return v

    def lanes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in self.lane_limits.split(","):
            name, _, limit = part.partition("=")
            if name.strip():
                out[name.strip()] = int(limit)
        return out

    def worker_lane_list(self) -> list[str]:
        return [x.strip() for x in self.worker_lanes.split(",") if x.strip()]

    def nightly_sweep_names(self) -> list[str]:
        return [x.strip() for x in self.nightly_sweeps.split(",") if x.strip()]


def _host_port(text: str) -> tuple[str, int] | None:
    """('host', port) of 'host:port' or '[v6 address]:port'; None when it is not one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c in host for c in "/@ ") or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
