#!/usr/bin/env bash
# Packaging as a user installs it: build the sdist, then the wheel from the
# sdist (python -m build's default, so a file missing from the sdist fails
# too), install the wheel into a fresh virtualenv outside the
# source tree, and run the smoke test there.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || {
  cat "$work/build.log"; exit 1; }
ls "$work/dist"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$work"/dist/*.whl
cp .ci/wheel_smoke.py "$work/"
(cd "$work" && TF_CPP_MIN_LOG_LEVEL=2 "$work/venv/bin/python" wheel_smoke.py)
