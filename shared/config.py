"""Settings from the environment (prefix SCALESPACE_), for the service and the embedded mode.

Credentials for S3 come from the usual AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE), read by boto3 itself;
they never appear here or in the repository.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALESPACE_", extra="ignore")

    # --- where results go -----------------------------------------------------------
    results_dir: str = Field("scalespace-results", description="local store root (when no S3 endpoint is set)")
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL; unset = local store")
    s3_bucket: str = Field("scalespace", description="bucket for artifacts")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_prefix: str = Field("scalespace", description="key prefix inside the bucket")
    s3_presign_expiry_s: int = Field(3600, ge=60, description="lifetime of presigned artifact URLs")

    # --- Redis, queues, leases ---------------------------------------------------------
    redis_url: str | None = Field(None, description="redis://host:port/db for the job store and the broker")
    api_token: str | None = Field(None, description="bearer token(s) for the API, comma-separated")
    lane_limits: str = Field("interactive=100,batch=1000,nightly=10000", description="max queued jobs per lane")
    max_n: int = Field(100_000, ge=1, description="largest n a submitted job may ask for")
    lease_s: int = Field(60, ge=5, description="a worker's lease on a job lasts this long without a heartbeat")
    heartbeat_s: int = Field(10, ge=1, description="how often a running worker renews its lease")
    visibility_timeout_s: int = Field(43_200, ge=60, description="broker redelivery timeout (above the longest job)")
    max_deliveries: int = Field(3, ge=1, description="deliveries before a job goes to the dead-letter list")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long job records stay in Redis")
    heartbeat_file: str = Field("/tmp/scalespace-worker-heartbeat", description="touched by a live worker")
    worker_shutdown_timeout_s: int = Field(300, ge=1, description="soft shutdown: time to finish the current job")

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

    def api_tokens(self) -> list[str]:
        return [t.strip() for t in (self.api_token or "").split(",") if t.strip()]

    def lanes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in self.lane_limits.split(","):
            name, _, limit = part.partition("=")
            if name.strip():
                out[name.strip()] = int(limit)
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
