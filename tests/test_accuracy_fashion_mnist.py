"""The published Fashion-MNIST LruNets reproduce the authors' accuracy in Keras and TFLite.

Measured with the authors' PyTorch code on the exact Fashion-MNIST test set:
LruNet-1 91.17%, LruNet-10 93.46%, the accuracies in the checkpoints' names.
Named test_accuracy_* to be scheduled first (see test_accuracy_cifar10.py).
"""

import numpy as np
import pytest
from published import CHECKPOINTS, accuracy_percent

from keras_reuse import data
from keras_reuse.export import FLOAT32_RTOL, to_tflite
from keras_reuse.pretrained import load_lrunet_checkpoint


def test_lrunet1_reproduces_the_published_accuracy():
    model = load_lrunet_checkpoint(CHECKPOINTS / "fashionmnist-lru1-ckpt-09117.t7")
    assert accuracy_percent(model, "fashion_mnist") == pytest.approx(91.17, abs=0.05)


def test_lrunet10_and_its_float32_tflite_reproduce_the_published_accuracy(tmp_path):
    model = load_lrunet_checkpoint(CHECKPOINTS / "fashionmnist-lru10-ckpt-09346.t7")
    test = data.load("fashion_mnist", split="test", batch_size=500, augment=False, shuffle=False)
    # Verification runs Keras and LiteRT on every test image.
    report = to_tflite(model, tmp_path / "lrunet10.tflite", verification_data=test)
    assert report.num_samples == 10_000
    assert 100 * report.keras_accuracy == pytest.approx(93.46, abs=0.05)
    assert 100 * report.tflite_accuracy == pytest.approx(93.46, abs=0.05)
    assert report.relative_error <= FLOAT32_RTOL
    # Each shared kernel stored once: about 4 bytes per trainable parameter.
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert report.size_bytes <= 1.10 * 4 * params
