"""Published weights the keras.applications way: LruNet(weights="fashion_mnist"), presets, features.

The weights files are checked against the authors' checkpoints in
test_pretrained.py and reproduce the published accuracies in
test_accuracy_*.py; here: the keyword semantics, the registry, the no-torch
path, the integrity check and feature extraction.
"""

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_reuse import applications
from keras_reuse.applications import LruNet, ShaResNet164, feature_extractor
from keras_reuse.applications.lrunet.presets import (
    PRESETS,
    WEIGHTS_DIR,
    find_preset,
    verified_weights_path,
)

FMNIST_LRU1 = PRESETS["lrunet1_fashion_mnist"]


def _images(shape, count=4, seed=0):
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32)


def test_every_preset_ships_a_verified_file():
    for preset in PRESETS.values():
        path = verified_weights_path(preset)
        assert os.path.dirname(path) == WEIGHTS_DIR
        assert (
            preset.name
            == f"lrunet{preset.layer_reuse}"
            + ("_2x" if preset.width_multiplier == 2 else "")
            + f"_{preset.dataset}"
        )
    assert os.path.isfile(os.path.join(WEIGHTS_DIR, "LICENSE"))  # the authors' MIT licence


def test_the_done_when_command_works_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from keras_reuse.applications import LruNet\n"
        "m = LruNet(weights='fashion_mnist', layer_reuse=10, input_shape=(28, 28, 1))\n"
        "import numpy as np\n"
        "print(float(np.asarray(m.get_layer('stage1_dw').kernel).sum()))\n"
        "import torch\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    # The model was built and loaded; only the final `import torch` failed.
    assert "ModuleNotFoundError" in done.stderr or "ImportError" in done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) != 0.0


def test_pretrained_defaults_and_softmax_on_the_checkpoint_logits():
    logits = LruNet(weights="fashion_mnist", layer_reuse=1, classifier_activation=None)
    probabilities = LruNet(weights="fashion_mnist", layer_reuse=1)
    assert logits.input_shape == (None, *FMNIST_LRU1.input_shape)  # the dataset's shape
    assert logits.output_shape == (None, FMNIST_LRU1.num_classes)
    x = _images(FMNIST_LRU1.input_shape)
    np.testing.assert_allclose(
        probabilities.predict(x, verbose=0),
        keras.ops.convert_to_numpy(keras.ops.softmax(logits.predict(x, verbose=0))),
        rtol=1e-5,
        atol=1e-6,
    )
    # The classifier carries the checkpoint's weights, not a fresh init.
    np.testing.assert_array_equal(
        logits.get_layer("head_logits_conv").kernel.numpy(),
        applications.create(FMNIST_LRU1.name).get_layer("head_logits_conv").kernel.numpy(),
    )


def test_backbone_of_the_pretrained_model_at_another_input_size():
    full = LruNet(weights="fashion_mnist", layer_reuse=1, classifier_activation=None)
    backbone = LruNet(
        weights="fashion_mnist", layer_reuse=1, include_top=False, input_shape=(56, 56, 1)
    )
    assert backbone.output_shape == (None, 4, 4, 512)
    for layer in (layer for layer in backbone.layers if layer.weights):
        for ours, published in zip(layer.weights, full.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), published.numpy())
    # Same input size: the backbone's output is the full network's last pool.
    same = LruNet(weights="fashion_mnist", layer_reuse=1, include_top=False)
    x = _images(FMNIST_LRU1.input_shape)
    pool = keras.Model(full.inputs, full.get_layer("stage4_pool").output)
    np.testing.assert_allclose(
        same.predict(x, verbose=0), pool.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(weights="cifar10", layer_reuse=7),
            r"No published LruNet for weights='cifar10' with layer_reuse=7, "
            r"width_multiplier=1.0\. Published for 'cifar10': \(layer_reuse=1, "
            r"width_multiplier=1.0\), \(layer_reuse=14, width_multiplier=1.0\)",
        ),
        (
            dict(weights="cifar100", layer_reuse=14),
            r"No published LruNet for weights='cifar100' with layer_reuse=14, width_multiplier=1.0",
        ),
        (
            dict(weights="cifar10", layer_reuse=14, num_classes=100),
            r"weights='cifar10' has a 10-class classifier .*num_classes must be 10.* "
            r"Received: num_classes=100",
        ),
        (
            dict(weights="fashion_mnist", layer_reuse=10, input_shape=(32, 32, 3)),
            r"weights='fashion_mnist' was trained on 1-channel images \(28, 28, 1\)\. "
            r"Received: input_shape=\(32, 32, 3\)",
        ),
        (
            dict(weights="imagenet"),
            r"`weights` must be None, a published dataset \('cifar10', 'cifar100', "
            r"'fashion_mnist'\) or the path to a weights file\. Received: weights='imagenet'",
        ),
    ],
)
def test_bad_pretrained_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LruNet(**kwargs)


def test_include_top_false_takes_any_num_classes():
    # No classifier is loaded, so its size does not matter.
    model = LruNet(weights="cifar10", layer_reuse=1, include_top=False, num_classes=3)
    assert model.output_shape == (None, 2, 2, 512)


def test_a_damaged_or_missing_weights_file_is_refused_naming_it():
    damaged = dataclasses.replace(FMNIST_LRU1, sha256="0" * 64)
    with pytest.raises(
        ValueError,
        match=r"lrunet1_fashion_mnist\.weights\.h5' of preset "
        r"'lrunet1_fashion_mnist' is damaged: its sha256 is [0-9a-f]{64}, "
        r"expected 0{64}",
    ):
        verified_weights_path(damaged)
    missing = dataclasses.replace(FMNIST_LRU1, file="absent.weights.h5")
    with pytest.raises(ValueError, match=r"weights file of preset .* is missing: .*absent"):
        verified_weights_path(missing)


def test_find_preset():
    assert find_preset("cifar100", 14, 2).name == "lrunet14_2x_cifar100"
    assert find_preset("fashion_mnist", 10, 1.0) is PRESETS["lrunet10_fashion_mnist"]


def test_list_models_with_wildcards_and_presets():
    assert applications.list_models("sharesnet1*") == [
        "sharesnet101",
        "sharesnet152",
        "sharesnet164",
        "sharesnet18",
    ]
    assert applications.list_models(pretrained=True) == sorted(PRESETS)
    assert applications.list_models("*cifar10", pretrained=True) == [
        "lrunet14_cifar10",
        "lrunet1_cifar10",
    ]
    assert applications.list_models("LRUNET", pretrained=False) == ["lrunet"]
    assert "lrunet10_fashion_mnist" not in applications.list_models()
    with pytest.raises(ValueError, match="Received: pattern=3"):
        applications.list_models(3)


def test_create_builds_a_preset_and_passes_keywords():
    model = applications.create("lrunet1_fashion_mnist", include_top=False, pooling="avg")
    assert model.output_shape == (None, 512)
    with pytest.raises(ValueError, match="pretrained: lrunet10_fashion_mnist"):
        applications.get("lrunet99")


def test_feature_extractor_on_lrunet_and_a_sharesnet():
    model = LruNet(weights="fashion_mnist", layer_reuse=1, classifier_activation=None)
    features = feature_extractor(model)
    x = _images(FMNIST_LRU1.input_shape)
    out = features.predict(x, verbose=0)
    assert list(out) == ["stage1", "stage2", "stage3", "stage4"]
    assert {k: v.shape[1:] for k, v in out.items()} == {
        "stage1": (14, 14, 64),
        "stage2": (7, 7, 128),
        "stage3": (4, 4, 256),
        "stage4": (4, 4, 512),
    }
    # The very tensors of the model (shared layers, no copy).
    stage2 = keras.Model(model.inputs, model.get_layer("stage2_reuse1_relu").output)
    np.testing.assert_allclose(out["stage2"], stage2.predict(x, verbose=0), rtol=1e-6)
    assert features.get_layer("stage1_dw") is model.get_layer("stage1_dw")

    sharesnet = feature_extractor(ShaResNet164(num_classes=10))
    assert list(sharesnet.output) == ["conv2", "conv3", "conv4"]
    assert sharesnet.output["conv4"].shape[1:] == (8, 8, 256)


def test_feature_extractor_refuses_a_model_without_stages():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match="Model 'plain' has no stage outputs to extract"):
        feature_extractor(model)
