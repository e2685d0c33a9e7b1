#!/usr/bin/env bash
# CI: the model side without TensorFlow, as a user installs it (docs/guides/backends.md):
# a fresh virtualenv with Keras and jax[cpu], the package without its default
# dependencies, then under KERAS_BACKEND=jax the model, layer, preset and
# sharing tests and the GPU check at toy size on the CPU. Fails if TensorFlow
# is installed there, or imported by any test (tests/support/no_tensorflow.py)
# or by the GPU check.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-no-tensorflow
rm -rf "$venv"
python3 -m venv "$venv"
py="$PWD/$venv/bin/python"
"$py" -m pip install -q "keras>=3.5" "jax[cpu]" pytest pytest-xdist
"$py" -m pip install -q --no-deps .

export KERAS_BACKEND=jax
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The installed package (not the source tree): a shipped preset loads.
(cd "$work" && "$py" -c '
import sys
from keras_reuse.applications import LruNet
model = LruNet(weights="fashion_mnist", layer_reuse=10, input_shape=(28, 28, 1))
assert model.count_params() > 0
assert "tensorflow" not in sys.modules, "importing the models imported tensorflow"
')

# Deselected: tests that compare with TensorFlow's fast paths, or name the
# layers of the unrolled layout (the JAX default is the looped one), and the
# PyTorch-backend case of the no-TensorFlow child (this virtualenv has no
# torch; the main job runs it with TensorFlow blocked).
PYTHONPATH=tests/support "$py" -m pytest -q -p no_tensorflow \
  tests/test_without_tensorflow.py \
  tests/reuse/test_summary.py \
  tests/layers/test_layers.py \
  -k "not lrunet14_summary and not tensorflow_fast_path and not equals_keras and not onednn \
      and not torch"

# The GPU check's code path, at toy size on the CPU, on arrays shaped like the bundle's.
"$py" - "$work/arrays.npz" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(0)
np.savez_compressed(
    sys.argv[1],
    train_images=rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8),
    train_labels=rng.integers(0, 10, 32).astype(np.uint8),
    test_images=rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
    test_labels=rng.integers(0, 10, 16).astype(np.uint8),
)
PY
"$py" -m benchmarks.gpu --toy --backends=jax --noreferences --precisions=mixed_float16 \
  --budget_s=1800 --data="$work/arrays.npz" --output_dir="$work/gpu"
"$py" - "$work/gpu/gpu.json" <<'PY'
import json, sys
payload = json.load(open(sys.argv[1]))
problems = ["tensorflow imported"] if payload["tensorflow_imported"] else []
for row in payload["rows"]:
    if "error" in row:
        problems.append(f"{row['model']} {row['precision']}: {row['error']}")
for part in ("accuracy", "training"):
    result = payload.get(part, {"error": "did not run"})
    if "error" in result:
        problems.append(f"{part}: {result['error']}")
problems += payload["skipped"]
if len(payload["rows"]) != 2:
    problems.append(f"expected 2 speed rows, got {len(payload['rows'])}")
if problems:
    sys.exit("the GPU check at toy size: " + "; ".join(problems))
print("the GPU check at toy size: every part ran, TensorFlow not imported")
PY
