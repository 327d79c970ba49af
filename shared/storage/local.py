"""The local artifact store: a folder, by default ./scalespace-results/.

Jobs land in <root>/<job-id>/ (the layout users open by hand); models and
cached statistics in <root>/_models/<id>/ and <root>/_cache/<id>/. Writes go
to a temporary file and are renamed into place, so a reader never sees half
an artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from scalespace import ScalespaceError
from scalespace.storage.base import ATTEMPT_PATTERN, ArtifactRef, ArtifactStore, check_key, wait_writes


class LocalStore(ArtifactStore):
    def __init__(self, root: str | os.PathLike = "scalespace-results"):
        self.root = Path(root)

    def _dir(self, namespace: str, ident: str) -> Path:
        return self.root / ident if namespace == "jobs" else self.root / f"_{namespace}" / ident

    def _path(self, namespace: str, ident: str, name: str) -> Path:
        check_key(namespace, ident, name)
        return self._dir(namespace, ident) / name

    def put(self, namespace: str, ident: str, name: str, data: bytes) -> ArtifactRef:
        path = self._path(namespace, ident, name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise ScalespaceError(f"cannot write {path}: {e.strerror}; choose a writable output folder (--out)") from None
        return self.ref(name, data)

    def get(self, namespace: str, ident: str, name: str) -> bytes:
        path = self._path(namespace, ident, name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ScalespaceError(f"no artifact {name!r} for {namespace[:-1]} {ident!r} in {self.root}") from None

    def exists(self, namespace: str, ident: str, name: str) -> bool:
        return self._path(namespace, ident, name).is_file()

    def list(self, namespace: str, ident: str | None = None) -> list[str]:
        if ident is None:
            base = self.root if namespace == "jobs" else self.root / f"_{namespace}"
            if not base.is_dir():
                return []
            return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        d = self._dir(namespace, ident)
        check_key(namespace, ident, "x")
        if not d.is_dir():
            return []
        out = [p.name for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
        for sub in d.iterdir():
            if sub.is_dir() and ATTEMPT_PATTERN.match(sub.name):
                out += [f"{sub.name}/{p.name}" for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")]
        return sorted(out)

    def delete(self, namespace: str, ident: str, folder: str | None = None) -> None:
        check_key(namespace, ident, f"{folder}/x" if folder else "x")
        wait_writes(self, namespace, ident)  # an upload still in flight would bring a file back
        d = self._dir(namespace, ident)
        shutil.rmtree(d / folder if folder else d, ignore_errors=True)

    def location(self, namespace: str, ident: str, name: str | None = None) -> str:
        check_key(namespace, ident, name or "x")
        d = self._dir(namespace, ident)
        return str(d / name) if name else str(d)

    def url(self, namespace: str, ident: str, name: str, expires: int = 3600) -> str:
        return Path(self.location(namespace, ident, name)).resolve().as_uri()

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".write-check.")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise ScalespaceError(
                f"output folder {self.root} is not writable ({e.strerror}); choose another with --out"
            ) from None
