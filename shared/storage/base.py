"""The artifact store interface: objects under <namespace>/<id>/<name>.

Namespaces: `jobs` (a job's artifacts; its manifest.json is the commit point:
a job without a manifest has no results), `models` (checkpoints) and `cache`
(reference statistics). Ids and names are validated before they become paths
or object keys.

A job run by the service writes each attempt under a folder of its own,
`jobs/<id>/attempt-<n>/` (n: the attempt's fencing token from the job store),
so a worker that lost its lease never overwrites another attempt's files. The
attempt's manifest names each artifact's `path` inside the job's folder; the
committed attempt's manifest is published as `jobs/<id>/manifest.json`. A job
run embedded writes its artifacts beside its manifest (path = name).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import PurePosixPath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from scalespace import ScalespaceError
from scalespace.ids import check_id

NAMESPACES = ("jobs", "models", "cache")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MANIFEST = "manifest.json"
ATTEMPT_PATTERN = re.compile(r"^attempt-[1-9][0-9]{0,11}$")


#: the Content-Type an artifact is served with, by its extension (S3 stores it with the object; the API sends it)
CONTENT_TYPES = {".json": "application/json", ".png": "image/png", ".html": "text/html; charset=utf-8",
                 ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv",
                 ".npz": "application/octet-stream", ".safetensors": "application/octet-stream"}


def content_type(name: str) -> str:
    """The Content-Type of an artifact named `name` (application/octet-stream when unknown)."""
    return CONTENT_TYPES.get(PurePosixPath(name).suffix, "application/octet-stream")


def attempt_folder(attempt: int) -> str:
    """The folder of a job's attempt `attempt` (its fencing token): `attempt-<n>`."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ScalespaceError(f"attempt must be a whole number >= 1, got {attempt!r}")
    return f"attempt-{attempt}"


def check_key(namespace: str, ident: str, name: str) -> None:
    """A valid object: a known namespace, a valid id, a plain name (jobs: optionally inside an attempt folder)."""
    if namespace not in NAMESPACES:
        raise ScalespaceError(f"unknown store namespace {namespace!r}")
    check_id(ident)
    folder, slash, base = name.rpartition("/")
    if slash and (namespace != "jobs" or not ATTEMPT_PATTERN.match(folder)):
        raise ScalespaceError(f"invalid artifact name {name!r}")
    if not NAME_PATTERN.match(base) or ".." in base:
        raise ScalespaceError(f"invalid artifact name {name!r}")


#: writes handed to background threads and not ended yet, per (store, namespace, ident) (scalespace.jobs.context)
_writes: dict[tuple[int, str, str], int] = {}
_writes_changed = threading.Condition()
#: a delete waits at most this long for the writes in flight under its ident (a write hung longer is the store's)
WRITES_WAIT_S = 60.0


def writes_begin(store: Any, namespace: str, ident: str) -> None:
    """A write under <namespace>/<ident> was handed to a background thread: a delete there waits for it."""
    with _writes_changed:
        key = (id(store), namespace, ident)
        _writes[key] = _writes.get(key, 0) + 1


def writes_end(store: Any, namespace: str, ident: str) -> None:
    """That write ended (landed or failed)."""
    with _writes_changed:
        key = (id(store), namespace, ident)
        left = _writes.get(key, 0) - 1
        if left > 0:
            _writes[key] = left
        else:
            _writes.pop(key, None)
        _writes_changed.notify_all()


def wait_writes(store: Any, namespace: str, ident: str, timeout_s: float = WRITES_WAIT_S) -> None:
    """Wait until no background write under <namespace>/<ident> is in flight (what a delete does first, so
    nothing it removed comes back)."""
    key = (id(store), namespace, ident)
    deadline = time.monotonic() + timeout_s
    with _writes_changed:
        while key in _writes and time.monotonic() < deadline:
            _writes_changed.wait(max(deadline - time.monotonic(), 0.0))


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact: its name, where it lies inside the job's folder (`path`), its sha256 and size."""

    name: str
    sha256: str
    bytes: int
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path or self.name, "sha256": self.sha256, "bytes": self.bytes}


class ArtifactStore(ABC):
    """Where artifacts live: a local folder or an S3 bucket."""

    @abstractmethod
    def put(self, namespace: str, ident: str, name: str, data: bytes) -> ArtifactRef:
        """Write one object (atomically: readers see the old or the new, never half)."""

    @abstractmethod
    def get(self, namespace: str, ident: str, name: str) -> bytes:
        """Read one object; ScalespaceError if missing."""

    @abstractmethod
    def exists(self, namespace: str, ident: str, name: str) -> bool: ...

    @abstractmethod
    def list(self, namespace: str, ident: str | None = None) -> list[str]:
        """Names under <namespace>/<ident> (attempt folders' files as `attempt-<n>/<name>`), or the ids under
        <namespace> when ident is None."""

    @abstractmethod
    def delete(self, namespace: str, ident: str, folder: str | None = None) -> None:
        """Remove everything under <namespace>/<ident>, or only under its attempt folder `folder`."""

    @abstractmethod
    def location(self, namespace: str, ident: str, name: str | None = None) -> str:
        """A human-readable place (a path or an s3:// URL)."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise ScalespaceError (one line, naming the setting) when the store cannot be written."""

    def url(self, namespace: str, ident: str, name: str, expires: int = 3600) -> str:
        """A URL to fetch an artifact (presigned on S3, file:// locally)."""
        return self.location(namespace, ident, name)

    def copy(self, namespace: str, ident: str, src: str, dst: str) -> None:
        """Copy object `src` to `dst` under <namespace>/<ident>, byte for byte (S3: one server-side copy)."""
        self.put(namespace, ident, dst, self.get(namespace, ident, src))

    # --- helpers shared by every store --------------------------------------------------
    @staticmethod
    def ref(name: str, data: bytes) -> ArtifactRef:
        return ArtifactRef(name=name, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    @staticmethod
    def json_bytes(obj: Any) -> bytes:
        """How put_json encodes: the same object gives the same bytes."""
        return json.dumps(obj, indent=2, sort_keys=True).encode()

    def put_json(self, namespace: str, ident: str, name: str, obj: Any) -> ArtifactRef:
        return self.put(namespace, ident, name, self.json_bytes(obj))

    def get_json(self, namespace: str, ident: str, name: str) -> Any:
        return json.loads(self.get(namespace, ident, name))

    def manifest(self, job_id: str) -> dict[str, Any] | None:
        """The committed manifest of a job, or None when the job has no results."""
        if not self.exists("jobs", job_id, MANIFEST):
            return None
        return self.get_json("jobs", job_id, MANIFEST)

    def read_artifact(self, job_id: str, name: str, manifest: dict[str, Any] | None = None) -> bytes:
        """An artifact of a committed job, found through its manifest (wherever its attempt wrote it)."""
        manifest = manifest if manifest is not None else self.manifest(job_id)
        if manifest is None:
            raise ScalespaceError(f"job {job_id!r} has no results (no {MANIFEST}); wait until it has succeeded")
        return self.get("jobs", job_id, artifact_path(manifest, name))


def artifact_path(manifest: dict[str, Any], name: str) -> str:
    """Where the artifact `name` of this manifest lies inside the job's folder."""
    for a in manifest.get("artifacts") or []:
        if a.get("name") == name:
            return a.get("path") or name
    raise ScalespaceError(f"job {manifest.get('job_id')!r} has no artifact {name!r}; "
                          f"it has {sorted(a.get('name') for a in manifest.get('artifacts') or [])}")
