"""The S3 artifact store (boto3): any S3-compatible endpoint (AWS, MinIO, SeaweedFS, ...).

Objects live at <prefix>/<namespace>/<id>/<name>, e.g. scalespace/jobs/<job-id>/samples.npz;
keys are built only from validated ids and names (base.check_key), so nothing a
caller sends can climb out of the prefix. A PUT of one object is atomic on S3,
so a reader sees the old or the new object, never half of one; artifacts above
a threshold go up in parts. Transient failures (connection refused, timeouts,
5xx, throttling) are retried by botocore with exponential backoff; when the
attempts are spent the store raises StoreUnavailable, a one-line error naming
the setting, which workers treat as "retry the job later".

Credentials come from the usual AWS variables (AWS_ACCESS_KEY_ID, ...), read by
boto3 itself.
"""

from __future__ import annotations

import io
import re
from typing import Any

from scalespace import ScalespaceError
from scalespace.storage.base import ATTEMPT_PATTERN, ArtifactRef, ArtifactStore, check_key, content_type, wait_writes

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}$")
TRANSIENT_CODES = {"500", "502", "503", "504", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                   "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}
DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401"}


class StoreUnavailable(ScalespaceError):
    """The store could not be reached after its retries (transient: try again later)."""


class S3Store(ArtifactStore):
    """Artifacts in an S3 bucket under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "scalespace",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        multipart_threshold: int = 16 << 20,
        max_attempts: int = 5,
        presign_expiry_s: int = 3600,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        client: Any = None,
    ):
        prefix = prefix.strip("/")
        if prefix and (not PREFIX_PATTERN.match(prefix) or ".." in prefix):
            raise ScalespaceError(f"SCALESPACE_S3_PREFIX {prefix!r} is not a safe key prefix; use letters, digits, '.', '_', '-' and '/'")
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
            raise ScalespaceError(f"SCALESPACE_S3_BUCKET {bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, '.', '-')")
        self.bucket, self.prefix, self.endpoint_url, self.region = bucket, prefix, endpoint_url, region
        self.multipart_threshold = max(int(multipart_threshold), 5 << 20)  # S3's smallest part is 5 MiB
        self.presign_expiry_s = presign_expiry_s
        self._writable_at = -1e9
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=region,
                signature_version="s3v4",
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                # path-style addressing: self-hosted endpoints rarely resolve <bucket>.<host>
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client

    @classmethod
    def from_settings(cls, settings: Any) -> "S3Store":
        return cls(
            settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint, settings.s3_region,
            multipart_threshold=settings.s3_multipart_threshold_mb << 20,
            max_attempts=settings.s3_max_attempts,
            presign_expiry_s=settings.s3_presign_expiry_s,
        )

    # --- keys -------------------------------------------------------------------------
    def _base(self, namespace: str) -> str:
        return f"{self.prefix}/{namespace}/" if self.prefix else f"{namespace}/"

    def key(self, namespace: str, ident: str, name: str) -> str:
        check_key(namespace, ident, name)
        return f"{self._base(namespace)}{ident}/{name}"

    def _dir(self, namespace: str, ident: str) -> str:
        check_key(namespace, ident, "x")
        return f"{self._base(namespace)}{ident}/"

    # --- errors -------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.endpoint_url or 'AWS S3'} (SCALESPACE_S3_ENDPOINT), bucket {self.bucket!r}"

    def _translate(self, e: Exception, what: str) -> ScalespaceError:
        """A botocore failure as a one-line error; StoreUnavailable when it may pass."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return ScalespaceError(f"no S3 credentials for {self._where()}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in ("NoSuchBucket",):
                return ScalespaceError(f"bucket {self.bucket!r} does not exist at {self._where()}: create it or set SCALESPACE_S3_BUCKET")
            if code in DENIED_CODES or status in ("401", "403"):
                return ScalespaceError(f"S3 refused {what} ({code}) at {self._where()}: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy")
            if code in TRANSIENT_CODES or status.startswith("5"):
                return StoreUnavailable(f"S3 failed {what} ({code or status}) at {self._where()}; it will be retried")
            return ScalespaceError(f"S3 refused {what} ({code}: {e.response.get('Error', {}).get('Message', '')}) at {self._where()}")
        if isinstance(e, BotoCoreError):
            reason = type(e).__name__
            return StoreUnavailable(f"S3 unreachable for {what} ({reason}) at {self._where()}; check the endpoint and the network")
        return StoreUnavailable(f"S3 failed {what} ({type(e).__name__}: {e}) at {self._where()}")

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError, OSError) as e:
            raise self._translate(e, what) from None

    @staticmethod
    def _missing(e: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(e, ClientError):
            return False
        code = str(e.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    # --- the interface -----------------------------------------------------------------------
    def put(self, namespace: str, ident: str, name: str, data: bytes) -> ArtifactRef:
        key = self.key(namespace, ident, name)
        ctype = content_type(name)
        if len(data) > self.multipart_threshold:
            from boto3.s3.transfer import TransferConfig

            cfg = TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_threshold,
                                 use_threads=True, max_concurrency=4)
            self._call(f"upload of {key}", self.client.upload_fileobj, io.BytesIO(data), self.bucket, key,
                       ExtraArgs={"ContentType": ctype}, Config=cfg)
        else:
            self._call(f"upload of {key}", self.client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=ctype)
        return self.ref(name, data)

    def copy(self, namespace: str, ident: str, src: str, dst: str) -> None:
        """One server-side CopyObject (no bytes through this process); an endpoint without it: GET, then PUT."""
        from botocore.exceptions import BotoCoreError, ClientError

        source, key = self.key(namespace, ident, src), self.key(namespace, ident, dst)
        try:
            self.client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source},
                                    ContentType=content_type(dst), MetadataDirective="REPLACE")
        except (BotoCoreError, ClientError, OSError) as e:
            if isinstance(e, ClientError) and str(e.response.get("Error", {}).get("Code", "")) in ("NotImplemented", "501"):
                super().copy(namespace, ident, src, dst)
                return
            if self._missing(e):
                raise ScalespaceError(f"no artifact {src!r} for {namespace[:-1]} {ident!r} in s3://{self.bucket}/{self._base(namespace)}") from None
            raise self._translate(e, f"copy of {source} to {key}") from None

    def get(self, namespace: str, ident: str, name: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(namespace, ident, name)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError, OSError) as e:
            if self._missing(e):
                raise ScalespaceError(f"no artifact {name!r} for {namespace[:-1]} {ident!r} in s3://{self.bucket}/{self._base(namespace)}") from None
            raise self._translate(e, f"download of {key}") from None

    def exists(self, namespace: str, ident: str, name: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(namespace, ident, name)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except (BotoCoreError, ClientError, OSError) as e:
            if self._missing(e):
                return False
            raise self._translate(e, f"lookup of {key}") from None

    def _keys(self, prefix: str, delimiter: str | None = None) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        dirs: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = self._call(f"listing of {prefix}", lambda: list(self.client.get_paginator("list_objects_v2").paginate(**kwargs)))
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", [])]
            dirs += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return keys, dirs

    def list(self, namespace: str, ident: str | None = None) -> list[str]:
        if ident is None:
            base = self._base(namespace)
            _, dirs = self._keys(base, "/")
            return sorted(d[len(base):].rstrip("/") for d in dirs)
        base = self._dir(namespace, ident)
        keys, _ = self._keys(base)
        names = [k[len(base):] for k in keys]
        return sorted(n for n in names if "/" not in n or ATTEMPT_PATTERN.match(n.split("/", 1)[0]) and n.count("/") == 1)

    def delete(self, namespace: str, ident: str, folder: str | None = None) -> None:
        if folder:
            check_key(namespace, ident, f"{folder}/x")
        base = self._dir(namespace, ident) + (f"{folder}/" if folder else "")
        wait_writes(self, namespace, ident)  # an upload still in flight would bring an object back
        keys, _ = self._keys(base)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = {"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True}
            self._call(f"deletion under {base}", self.client.delete_objects, Bucket=self.bucket, Delete=batch)

    def location(self, namespace: str, ident: str, name: str | None = None) -> str:
        if name is None:
            return f"s3://{self.bucket}/{self._dir(namespace, ident)}"
        return f"s3://{self.bucket}/{self.key(namespace, ident, name)}"

    def url(self, namespace: str, ident: str, name: str, expires: int | None = None) -> str:
        """A presigned GET URL, valid `expires` seconds (default SCALESPACE_S3_PRESIGN_EXPIRY_S)."""
        key = self.key(namespace, ident, name)
        return self._call(
            f"presigning of {key}", self.client.generate_presigned_url, "get_object",
            Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires or self.presign_expiry_s),
        )

    def check_reachable(self) -> None:
        """HEAD the bucket: one-line errors for an unreachable endpoint, missing bucket or refused access."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError, OSError) as e:
            if self._missing(e) or (isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") == "NoSuchBucket"):
                raise ScalespaceError(f"bucket {self.bucket!r} does not exist at {self._where()}: create it, set SCALESPACE_S3_BUCKET or SCALESPACE_S3_CREATE_BUCKET=true") from None
            raise self._translate(e, "a bucket check") from None

    def create_bucket(self) -> None:
        """Create the bucket if it is missing (for a fresh self-hosted endpoint)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError:
            pass
        except Exception as e:  # noqa: BLE001 - translated to one line
            raise self._translate(e, "a bucket check") from None
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1" and not self.endpoint_url:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._call(f"creation of bucket {self.bucket!r}", self.client.create_bucket, **kwargs)

    def check_writable(self) -> None:
        """A bucket check and a test write, remembered for a minute (run_job asks before every job)."""
        import time

        if time.monotonic() - self._writable_at < 60.0:
            return
        self.check_reachable()
        key = f"{self._base('cache')}.write-check"
        self._call(f"a write check at {key}", self.client.put_object, Bucket=self.bucket, Key=key, Body=b"ok")
        self._writable_at = time.monotonic()
