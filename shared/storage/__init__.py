"""Artifact stores: a local folder (default) and S3."""

from shared.storage.base import MANIFEST, ArtifactRef, ArtifactStore
from shared.storage.local import LocalStore

__all__ = ["MANIFEST", "ArtifactRef", "ArtifactStore", "LocalStore"]
