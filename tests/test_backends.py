"""Every model and layer on the JAX and PyTorch Keras backends, against TensorFlow.

Keras fixes its backend at import, so each backend runs in its own process
(tests/support/backend_runner.py, one JSON line per step): TensorFlow builds LruNet-1,
LruNet-2, a Wide ShaResNet-10-1 and a model of GroupedPointwiseConv and
ChannelShuffle with seeded weights and saves them; JAX and PyTorch rebuild
each from its constructor, load those weights and must give the same
outputs (1e-5 of the largest |output|), the same two `fit` losses (the second
depends on the gradients), the same reuse summary, load TensorFlow's `.keras`
files, and save trained `.keras` files that TensorFlow loads and predicts
with. Each backend's default LruNet layout (looped stages under JAX, unrolled
under PyTorch) trains as TensorFlow's unrolled network does: a small LruNet-2
from the same weights takes the same two `fit` steps (losses and trained
weights). The published Fashion-MNIST LruNet-1 must give the reference logits on
every backend. Errors for what needs TensorFlow are in test_backend_errors.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from locations import ROOT as ROOT_PATH

ROOT = ROOT_PATH
RUNNER = ROOT / "tests" / "support" / "backend_runner.py"
BACKENDS = ("jax", "torch")
CASES = ("lrunet1", "lrunet2", "wide_sharesnet10_1", "layers")
TRAINED = ("lrunet1", "wide_sharesnet10_1", "layers")
RTOL = 1e-5


def run_backend(backend: str, *args: str, timeout: float = 600) -> dict:
    """Runs one runner step under `backend`; returns its JSON or the failure."""
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
        # A correctness test: XLA's quick CPU code halves JAX's compile time.
        XLA_FLAGS="--xla_backend_optimization_level=0",
    )
    done = subprocess.run(
        [sys.executable, str(RUNNER), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-3000:]}"}
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    directory = str(tmp_path_factory.mktemp("backends"))
    results = {"tensorflow": run_backend("tensorflow", "reference", directory)}
    assert "error" not in results["tensorflow"], results["tensorflow"]["error"]
    for backend in BACKENDS:
        results[backend] = run_backend(backend, "check", directory)
    checked = [b for b in BACKENDS if "error" not in results[b]]
    results["load"] = run_backend("tensorflow", "load", directory, *checked) if checked else {}
    return results


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def backend_run(runs: dict, backend: str) -> dict:
    result = runs[backend]
    assert "error" not in result, result["error"]
    assert result["backend"] == backend
    return result


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_same_outputs_as_tensorflow_for_the_same_weights(runs, backend, case):
    reference = runs["tensorflow"][case]["outputs"]
    assert np.abs(reference).max() > 0  # randomized BatchNorms: not trivially zero
    ours = backend_run(runs, backend)[case]
    assert relative_error(ours["outputs"], reference) <= RTOL
    assert ours["summary"] == runs["tensorflow"][case]["summary"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TRAINED)
def test_fit_takes_the_same_steps_as_tensorflow(runs, backend, case):
    reference = runs["tensorflow"][case]
    ours = backend_run(runs, backend)[case]
    assert np.isfinite(ours["losses"]).all()
    assert ours["losses"][1] < ours["losses"][0]
    # Two SGD steps: float32 rounding differs between backends, a little.
    # TensorFlow's oneDNN depthwise form (keras_reuse.layers.depthwise_conv)
    # sums its kernel gradient in another order: 2.3e-6 of a float64
    # reference against the stock op's 6.3e-7 (LruNet stage-1 shape), which
    # two steps of training grow to about 1.1e-4 here.
    assert relative_error(ours["losses"], reference["losses"]) <= 1e-4
    assert relative_error(ours["trained_outputs"], reference["trained_outputs"]) <= 2e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_loads_the_keras_file_tensorflow_saved(runs, backend, case):
    loaded = backend_run(runs, backend)[case]["loaded_tf_keras"]
    assert loaded["same_weights"] and loaded["layer_classes"]
    assert loaded["summary"] == runs["tensorflow"][case]["summary"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_tensorflow_loads_the_keras_file_it_saved(runs, backend, case):
    ours = backend_run(runs, backend)[case]
    assert "error" not in runs["load"], runs["load"]["error"]
    expected = ours.get("trained_outputs", ours["outputs"])
    assert relative_error(runs["load"][backend][case]["outputs"], expected) <= RTOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_default_layout_loads_tensorflows_weights_file(runs, backend):
    # JAX compiles everything with XLA: its default LruNet loops its stages
    # (keras_reuse.applications.lrunet.stage.default_reuse_loop); PyTorch's is unrolled.
    # Either way TensorFlow's unrolled weights file loads, converted.
    default = backend_run(runs, backend)["default_layout"]
    assert default["looped"] == (backend == "jax")
    assert relative_error(default["outputs"], runs["tensorflow"]["lrunet2"]["outputs"]) <= RTOL
    assert default["summary"] == runs["tensorflow"]["lrunet2"]["summary"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_default_layout_trains_as_tensorflows_unrolled_network(runs, backend):
    reference = runs["tensorflow"]["default_layout_training"]
    ours = backend_run(runs, backend)["default_layout_training"]
    assert not reference["looped"] and ours["looped"] == (backend == "jax")
    assert ours["losses"][1] < ours["losses"][0]
    # Float32 in other orders (and a loop in JAX), two SGD steps: measured losses
    # 0.0 (JAX) and 2.7e-6 (PyTorch) apart, every weight and moving statistic
    # within 1.6e-6 (JAX) and 7.5e-6 (PyTorch) of its largest value (this AVX2
    # CPU, under load). Bounds: 3e-5 and 5e-5, about 10x and 7x PyTorch's.
    assert relative_error(ours["losses"], reference["losses"]) <= 3e-5
    assert set(ours["weights"]) == set(reference["weights"])
    errors = {
        path: relative_error(ours["weights"][path], expected)
        for path, expected in reference["weights"].items()
    }
    assert max(errors.values()) <= 5e-5, max(errors, key=errors.get)


@pytest.mark.parametrize("backend", BACKENDS)
def test_published_checkpoint_gives_the_reference_logits(runs, backend):
    reference = runs["tensorflow"]["checkpoint"]
    # TensorFlow's against the PyTorch reference network (as test_pretrained.py).
    assert relative_error(reference["logits"], reference["torch_logits"]) <= RTOL
    logits = backend_run(runs, backend)["checkpoint"]["logits"]
    assert relative_error(logits, reference["torch_logits"]) <= RTOL
