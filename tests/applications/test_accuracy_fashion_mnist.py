"""The published Fashion-MNIST LruNets, as shipped, reproduce the authors' accuracy.

The presets' weights files (keras_reuse/applications/lrunet/weights/) run in a
process where `import torch` fails, in Keras and (LruNet-10) as a float32
.tflite; the figures come from the presets table, the one place they are
written. Named test_accuracy_* to be scheduled first (see test_accuracy_cifar10.py).
"""

import pytest
from published import preset_accuracy_without_torch

from keras_reuse.applications.lrunet.presets import PRESETS
from keras_reuse.export import FLOAT32_RTOL


def test_lrunet1_reproduces_the_published_accuracy():
    preset = PRESETS["lrunet1_fashion_mnist"]
    result = preset_accuracy_without_torch(preset.name, preset.eval_dataset)
    assert result["keras"] == pytest.approx(preset.accuracy, abs=0.05)


def test_lrunet10_and_its_float32_tflite_reproduce_the_published_accuracy(tmp_path):
    preset = PRESETS["lrunet10_fashion_mnist"]
    result = preset_accuracy_without_torch(
        preset.name, preset.eval_dataset, tmp_path / "lrunet10.tflite"
    )
    assert result["num_samples"] == 10_000
    for key in ("keras", "tflite"):
        assert result[key] == pytest.approx(preset.accuracy, abs=0.05), key
    assert result["relative_error"] <= FLOAT32_RTOL
    # Each shared kernel stored once: about 4 bytes per trainable parameter.
    assert result["bytes_per_param"] <= 1.10 * 4
