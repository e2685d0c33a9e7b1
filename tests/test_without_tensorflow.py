"""The model side runs without TensorFlow (JAX and PyTorch backends); what needs it says so.

The child process makes `import tensorflow` (and TFDS) fail, as in an
environment that lacks them, such as the GPU machines with JAX and PyTorch.
"""

import json
import os
import sys

import pytest
from locations import ROOT
from processes import run

CHILD = """
import json, sys
sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
sys.modules["tensorflow_datasets"] = None
import numpy as np
import keras_reuse
from keras_reuse import reuse_summary, share, unshare
from keras_reuse.applications import LruNet, ShaResNet164
result = {}
model = LruNet(num_classes=10, layer_reuse=2, input_shape=(28, 28, 1))  # the default layout
result["looped"] = [type(layer).__name__ for layer in model.layers].count("LruStage")
unrolled = LruNet(num_classes=10, layer_reuse=2, input_shape=(28, 28, 1), reuse_loop=False)
result["unshared_params"] = reuse_summary(unshare(unrolled)).unique_params
result["unrolled_params"] = reuse_summary(model).unrolled_params
try:
    unshare(LruNet(num_classes=10, layer_reuse=2, input_shape=(28, 28, 1), reuse_loop=True))
except ValueError as error:
    result["unshare_looped"] = str(error)
preset = LruNet(weights="fashion_mnist", layer_reuse=10, input_shape=(28, 28, 1))
result["preset_params"] = preset.count_params()
keras_reuse.compile_for_training(model, 0.01)
images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype("float32")
history = model.fit(images, np.arange(8) % 10, epochs=2, verbose=0)
result["losses"] = history.history["loss"]
result["sharesnet"] = ShaResNet164(num_classes=10).count_params() > 0
for name, load in (
    ("data", lambda: __import__("keras_reuse.data")),
    ("export", lambda: keras_reuse.to_tflite),
):
    try:
        load()
        result[name] = "imported"
    except ImportError as error:
        result[name] = str(error)
# The command line's flags and the run specification read without TensorFlow;
# a distributed strategy says it needs it when asked for.
from keras_reuse.cli import flags, summary
from keras_reuse.training import config, distribute, precision
result["auto_precision"] = precision.resolve_precision("auto")
result["bf16_cpu"] = precision.cpu_supports_bfloat16()
for name, call in (
    ("validate", lambda: config.validate(config.TrainConfig(strategy="mirrored"))),
    ("make_strategy", lambda: distribute.make_strategy("multi_worker")),
):
    try:
        call()
        result[name] = "no error"
    except ImportError as error:
        result[name] = str(error)
result["tensorflow"] = sys.modules["tensorflow"] is not None
print(json.dumps(result))
"""


@pytest.fixture(scope="module", params=["jax", "torch"])
def child(request):
    done = run(
        [sys.executable, "-c", CHILD],
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": request.param},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"backend": request.param, **json.loads(done.stdout.strip().splitlines()[-1])}


def test_models_presets_sharing_and_fit_run_without_tensorflow(child):
    assert child["tensorflow"] is False
    # The default layout: on JAX each stage is one loop, on PyTorch unrolled.
    assert child["looped"] == (4 if child["backend"] == "jax" else 0)
    assert child["unshared_params"] == child["unrolled_params"]
    # A looped stage cannot be unshared around: refused, not left shared.
    assert "reuse their weights inside one call" in child["unshare_looped"]
    assert child["preset_params"] > 0 and child["sharesnet"]
    assert len(child["losses"]) == 2 and all(loss == loss for loss in child["losses"])


def test_auto_precision_asks_the_running_backend(child):
    # No GPU here: mixed bfloat16 where the CPU has it, else float32.
    assert child["auto_precision"] == ("mixed_bfloat16" if child["bf16_cpu"] else "float32")


@pytest.mark.parametrize(
    "name, message",
    [
        ("data", "keras_reuse.data needs tensorflow and tensorflow_datasets"),
        ("export", "TFLite export (keras_reuse.export.to_tflite) needs tensorflow"),
        ("validate", "--strategy=mirrored (tf.distribute) needs tensorflow, which this"),
        ("make_strategy", "--strategy=multi_worker (tf.distribute) needs tensorflow, which"),
    ],
)
def test_what_needs_tensorflow_says_so_when_imported(child, name, message):
    assert child[name].startswith(message)
    assert 'pip install "keras-reuse"' in child[name]
