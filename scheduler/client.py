"""A Python client for the scheduler API.

    from scalespace.scheduler.client import Client
    c = Client("http://scheduler:8000", token="...")
    job = c.submit({"kind": "sample", "process": "vp", "data": "digits", "n": 16}, idempotency_key="run-42")
    job = c.wait(job["id"], on_progress=print)
    c.download(job["id"], "results/")      # verified against the sha256 of each artifact

Errors come back as ScalespaceError with the API's one-line message; a full
lane raises LaneFullError carrying Retry-After.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from scalespace import ScalespaceError
from scalespace.config import get_settings
from scalespace.jobs.spec_files import check_finite
from scalespace.scheduler.jobstore import TERMINAL


class LaneFullError(ScalespaceError):
    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Client:
    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        s = get_settings()
        self.base_url = (base_url or s.api_url).rstrip("/")
        tokens = s.api_tokens()
        token = token if token is not None else (tokens[0] if tokens else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ScalespaceError(f"cannot reach the API at {self.base_url} ({type(e).__name__}); "
                                  "check SCALESPACE_API_URL") from None
        if r.status_code < 400:
            return r
        try:
            detail = r.json().get("detail") or r.text
        except ValueError:
            detail = r.text.strip()[:300] or r.reason_phrase
        if r.status_code == 429:
            raise LaneFullError(str(detail), float(r.headers.get("Retry-After", "30")))
        if r.status_code == 401:
            raise ScalespaceError(f"{detail} (set SCALESPACE_API_TOKEN)")
        raise ScalespaceError(f"{detail} (HTTP {r.status_code})")

    # --- jobs -----------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], *, lane: str | None = None, deadline_s: int | None = None,
               idempotency_key: str | None = None, wait_if_full_s: float = 0.0) -> dict[str, Any]:
        """Submit a spec; with wait_if_full_s > 0, a full lane is retried (after Retry-After) for that long."""
        check_finite(spec)  # JSON has no NaN or Infinity: refused here with the field's name, as the API would
        body: dict[str, Any] = {"spec": spec}
        if lane:
            body["lane"] = lane
        if deadline_s:
            body["deadline_s"] = deadline_s
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        give_up = time.monotonic() + wait_if_full_s
        while True:
            try:
                return self._request("POST", "/v1/jobs", json=body, headers=headers).json()
            except LaneFullError as e:
                if time.monotonic() + e.retry_after_s > give_up:
                    raise
                time.sleep(e.retry_after_s)

    def get(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def list(self, *, state: str | None = None, kind: str | None = None, lane: str | None = None,
             limit: int = 100) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"state": state, "kind": kind, "lane": lane, "limit": limit}.items() if v}
        return self._request("GET", "/v1/jobs", params=params).json()["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/jobs/{job_id}").json()

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/retry").json()

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 0.5,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job is finished (any final state); ScalespaceError after timeout_s."""
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        while True:
            job = self.get(job_id)
            seen = (job["state"], (job.get("progress") or {}).get("done"))
            if on_progress is not None and seen != last:
                on_progress(job)
            last = seen
            if job["state"] in TERMINAL:
                return job
            if give_up is not None and time.monotonic() > give_up:
                raise ScalespaceError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def download(self, job_id: str, dest: str | os.PathLike, *, names: list[str] | None = None) -> list[Path]:
        """Fetch a succeeded job's artifacts into dest/<name>, checking each sha256."""
        job = self.get(job_id)
        if job["state"] != "succeeded":
            raise ScalespaceError(f"job {job_id} is {job['state']}, it has no results"
                                  + (f": {job['error']}" if job.get("error") else ""))
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for a in job.get("artifacts") or []:
            if names and a["name"] not in names:
                continue
            data = self.fetch_url(a["url"])
            if a.get("sha256") and hashlib.sha256(data).hexdigest() != a["sha256"]:
                raise ScalespaceError(f"artifact {a['name']} of job {job_id} does not match its sha256; fetch again")
            path = out / a["name"]
            path.write_bytes(data)
            paths.append(path)
        return paths

    def fetch_url(self, url: str) -> bytes:
        """An artifact URL: this API's (sent with the token) or a presigned one (sent without)."""
        if url.startswith(self.base_url) or url.startswith("/"):
            return self._request("GET", url.removeprefix(self.base_url), follow_redirects=True).content
        try:
            r = httpx.get(url, timeout=self.http.timeout, follow_redirects=True)
        except httpx.HTTPError as e:
            raise ScalespaceError(f"cannot download {url.split('?')[0]} ({type(e).__name__})") from None
        if r.status_code != 200:
            raise ScalespaceError(f"download of {url.split('?')[0]} failed (HTTP {r.status_code})")
        return r.content
