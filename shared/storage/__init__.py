"""Artifact stores: a local folder (default) and S3."""

from __future__ import annotations

from typing import Any

from scalespace.storage.base import MANIFEST, ArtifactRef, ArtifactStore, artifact_path, attempt_folder, content_type
from scalespace.storage.local import LocalStore
from scalespace.storage.s3 import S3Store, StoreUnavailable


def store_from_settings(settings: Any) -> ArtifactStore:
    """S3 when SCALESPACE_S3_ENDPOINT is set, else the local folder SCALESPACE_RESULTS_DIR.

    Builds the client only; nothing is contacted until the first call.
    """
    if settings.s3_endpoint:
        return S3Store.from_settings(settings)
    return LocalStore(settings.results_dir)


__all__ = ["MANIFEST", "ArtifactRef", "ArtifactStore", "artifact_path", "attempt_folder", "content_type", "LocalStore", "S3Store", "StoreUnavailable", "store_from_settings"]
