#!/usr/bin/env bash
# Set up everything a fresh machine needs, then run the whole test suite.
# Extra arguments go to pytest. Fails when pytest ran no test at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh

export TRITON_INTERPRET=1  # Triton kernels run in interpreter mode without a GPU
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml="$report" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no test; that is a failure" >&2
  exit 1
fi
ran=$(.venv/bin/python - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
print(sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites))
PY
)
if [ "$rc" -eq 0 ] && [ "${ran:-0}" -eq 0 ]; then
  echo "test.sh: no test executed; that is a failure" >&2
  exit 1
fi
exit "$rc"
