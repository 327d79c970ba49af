"""The artifact store interface: objects under <namespace>/<id>/<name>.

Namespaces: `jobs` (a job's artifacts; its manifest.json, written last, is the
commit point: a job without a manifest has no results), `models` (checkpoints)
and `cache` (reference statistics). Ids and names are validated before they
become paths or object keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from scalespace import ScalespaceError
from scalespace.ids import check_id

NAMESPACES = ("jobs", "models", "cache")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MANIFEST = "manifest.json"


def check_key(namespace: str, ident: str, name: str) -> None:
    if namespace not in NAMESPACES:
        raise ScalespaceError(f"unknown store namespace {namespace!r}")
    check_id(ident)
    if not NAME_PATTERN.match(name) or ".." in name:
        raise ScalespaceError(f"invalid artifact name {name!r}")


@dataclass(frozen=True)
class ArtifactRef:
    name: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "bytes": self.bytes}


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
        """Names under <namespace>/<ident>, or the ids under <namespace> when ident is None."""

    @abstractmethod
    def delete(self, namespace: str, ident: str) -> None:
        """Remove everything under <namespace>/<ident>."""

    @abstractmethod
    def location(self, namespace: str, ident: str, name: str | None = None) -> str:
        """A human-readable place (a path or an s3:// URL)."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise ScalespaceError (one line, naming the setting) when the store cannot be written."""

    def url(self, namespace: str, ident: str, name: str, expires: int = 3600) -> str:
        """A URL to fetch an artifact (presigned on S3, file:// locally)."""
        return self.location(namespace, ident, name)

    # --- helpers shared by every store --------------------------------------------------
    @staticmethod
    def ref(name: str, data: bytes) -> ArtifactRef:
        return ArtifactRef(name=name, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    def put_json(self, namespace: str, ident: str, name: str, obj: Any) -> ArtifactRef:
        return self.put(namespace, ident, name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def get_json(self, namespace: str, ident: str, name: str) -> Any:
        return json.loads(self.get(namespace, ident, name))

    def manifest(self, job_id: str) -> dict[str, Any] | None:
        """The committed manifest of a job, or None when the job has no results."""
        if not self.exists("jobs", job_id, MANIFEST):
            return None
        return self.get_json("jobs", job_id, MANIFEST)
