"""For the published-accuracy tests: where the checkpoints are, and test-set accuracy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
from locations import SHARED as SHARED_PATH

from keras_reuse import data

CHECKPOINTS = SHARED_PATH / "pretrained" / "lrunet-pytorch"


def accuracy_percent(model: keras.Model, dataset_name: str) -> float:
    """Top-1 accuracy of `model` on the whole test split, through keras_reuse.data."""
    # Batches of 200: on this 2-core CPU larger ones run slower per image.
    test = data.load(dataset_name, split="test", batch_size=200, augment=False, shuffle=False)
    correct = total = 0
    for images, labels in test:
        predicted = np.argmax(model.predict_on_batch(images), axis=1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    assert total == 10_000
    return 100.0 * correct / total


TESTS = Path(__file__).resolve().parent

# Runs in a fresh process where `import torch` fails: the shipped presets
# must not need it. Prints one JSON line.
_NO_TORCH_RUNNER = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.path.insert(0, {tests!r})
from published import accuracy_percent, tflite_accuracy
from keras_reuse import applications
model = applications.create({name!r}, classifier_activation=None)
if {tflite!r}:
    # The export's verification runs Keras on the whole test split too.
    result = tflite_accuracy(model, {dataset!r}, {tflite!r})
else:
    result = {{"keras": accuracy_percent(model, {dataset!r})}}
print(json.dumps(result))
"""


def preset_accuracy_without_torch(name: str, dataset: str, tflite_path=None) -> dict:
    """Test accuracy of preset `name`: Keras's, or with a path Keras's and its float32 .tflite's.

    With a path the Keras figure is the export's verification (its Keras
    pass over the same 10,000 test images), so the network runs once.
    """
    code = _NO_TORCH_RUNNER.format(
        tests=str(TESTS), name=name, dataset=dataset, tflite=str(tflite_path or "")
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tflite_accuracy(model: keras.Model, dataset_name: str, path: str) -> dict:
    """Exports `model` to float32 TFLite, verified on the whole test split."""
    from keras_reuse.export import to_tflite

    test = data.load(dataset_name, split="test", batch_size=500, augment=False, shuffle=False)
    report = to_tflite(model, path, verification_data=test)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {
        "num_samples": report.num_samples,
        "tflite": 100 * report.tflite_accuracy,
        "keras": 100 * report.keras_accuracy,
        "relative_error": report.relative_error,
        "bytes_per_param": report.size_bytes / params,
    }
