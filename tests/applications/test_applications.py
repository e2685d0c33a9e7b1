"""Architectures: parameter counts, sharing, forward passes, round trips, errors."""

import math

import keras
import numpy as np
import pytest
from model_test_case import CASES, run_model_test

import keras_reuse
from keras_reuse import applications


def trainable_params(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


# ------------------------------------------------------------------ LruNet --


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # Counts of the authors' published checkpoints (../shared/pretrained).
        (dict(layer_reuse=1), 131_402),
        (dict(layer_reuse=14), 206_282),
        (dict(layer_reuse=10, input_shape=(28, 28, 1)), 182_090),
        (dict(num_classes=100, layer_reuse=14, width_multiplier=2.0), 663_716),
    ],
)
def test_lrunet_trainable_params_match_published_checkpoints(kwargs, expected):
    assert trainable_params(applications.LruNet(**kwargs)) == expected


def test_lrunet_stage_layers_are_shared_and_batchnorms_are_not():
    model = applications.LruNet(layer_reuse=3)
    calls = keras_reuse.reuse_summary(model).calls
    for stage in range(1, 5):
        assert calls[f"stage{stage}_dw"] == 3
        assert calls[f"stage{stage}_pw"] == 3
        for it in range(1, 4):
            assert calls[f"stage{stage}_reuse{it}_dw_bn"] == 1
            assert calls[f"stage{stage}_reuse{it}_pw_bn"] == 1
    names = {layer.name for layer in model.layers}
    # A shuffle between iterations, none after the last.
    assert {"stage1_reuse1_shuffle", "stage1_reuse2_shuffle"} <= names
    assert "stage1_reuse3_shuffle" not in names


def test_lrunet_forward_shapes_and_softmax():
    model = applications.LruNet(layer_reuse=2)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_lrunet_logits_are_the_reference_head_output():
    # The reference head ends in ReLU then average pooling: logits >= 0.
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    model = applications.LruNet(
        layer_reuse=1, classifier_activation=None, num_classes=7, input_shape=(28, 28, 1)
    )
    logits = model(x, training=False).numpy()
    assert logits.shape == (3, 7)
    assert (logits >= 0).all()


def test_lrunet_width_2_duplicates_the_stem():
    model = applications.LruNet(layer_reuse=1, width_multiplier=2.0)
    assert model.get_layer("stem_conv").filters == 64
    assert model.get_layer("stem_concat").output.shape[-1] == 128
    assert model.get_layer("stage4_pw").filters == 1024
    assert model.get_layer("head_pw").filters == 512


def test_lrunet_spatial_sizes_follow_pytorch_padding():
    # PyTorch: 28 -> 14 (stem) -> 7 -> 4 -> 2 (pools with padding 1).
    model = applications.LruNet(layer_reuse=1, input_shape=(28, 28, 1))
    assert model.get_layer("stem_relu").output.shape[1:3] == (14, 14)
    assert model.get_layer("stage1_pool").output.shape[1:3] == (7, 7)
    assert model.get_layer("stage2_pool").output.shape[1:3] == (4, 4)
    assert model.get_layer("stage4_pool").output.shape[1:3] == (2, 2)


@pytest.mark.parametrize(
    "pooling, shape", [(None, (None, 2, 2, 512)), ("avg", (None, 512)), ("max", (None, 512))]
)
def test_lrunet_without_top(pooling, shape):
    model = applications.LruNet(layer_reuse=1, include_top=False, pooling=pooling)
    assert tuple(model.output.shape) == shape


def test_lrunet_input_tensor():
    inputs = keras.Input((32, 32, 3))
    model = applications.LruNet(layer_reuse=1, input_tensor=inputs)
    assert model.inputs[0] is inputs


def test_lrunet_weights_path_loads(tmp_path):
    source = applications.LruNet(layer_reuse=2)
    path = str(tmp_path / "lrunet.weights.h5")
    source.save_weights(path)
    loaded = applications.LruNet(layer_reuse=2, weights=path)
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --------------------------------------------------------------- ShaResNet --

# (constructor, unshared, shared) trainable parameters. Boulch's table:
# ResNet-34 21.8M -> 13.6M, ResNet-50 25.6M -> 20.5M, ResNet-152 60.2M ->
# 36.8M, CIFAR ResNet-164 1.70M -> 0.93M.
PAPER_COUNTS = [
    ("ShaResNet34", 21.8e6, 13.6e6),
    ("ShaResNet50", 25.6e6, 20.5e6),
    ("ShaResNet152", 60.2e6, 36.8e6),
    ("ShaResNet164", 1.70e6, 0.93e6),
]


@pytest.mark.parametrize("name, plain, shared", PAPER_COUNTS)
def test_sharesnet_params_match_the_paper(name, plain, shared):
    constructor = getattr(applications, name)
    assert trainable_params(constructor(share=False)) == pytest.approx(plain, rel=0.01)
    assert trainable_params(constructor(share=True)) == pytest.approx(shared, rel=0.01)


def test_sharesnet50_shares_the_stride_1_convs_of_each_stage():
    calls = keras_reuse.reuse_summary(applications.ShaResNet50(input_shape=(64, 64, 3))).calls
    # Stage conv2 has no strided block: all 3 share. Later stages: the
    # strided first block keeps its own conv.
    assert calls["conv2_shared_2_conv"] == 3
    assert calls["conv3_shared_2_conv"] == 3
    assert calls["conv4_shared_2_conv"] == 5
    assert calls["conv5_shared_2_conv"] == 2
    assert calls["conv3_block1_2_conv"] == 1
    assert calls["conv4_block3_2_bn"] == 1


def test_sharesnet18_shares_the_second_conv_of_every_block():
    calls = keras_reuse.reuse_summary(applications.ShaResNet18(input_shape=(64, 64, 3))).calls
    for stage in range(2, 6):
        assert calls[f"conv{stage}_shared_2_conv"] == 2
        assert calls[f"conv{stage}_block1_1_conv"] == 1


def test_sharesnet164_first_block_keeps_its_conv():
    calls = keras_reuse.reuse_summary(applications.ShaResNet164()).calls
    for stage in range(2, 5):
        assert calls[f"conv{stage}_shared_2_conv"] == 17
        assert calls[f"conv{stage}_block1_2_conv"] == 1


def test_wide_sharesnet_params_and_sharing():
    plain = applications.WideShaResNet(depth=16, width=2, num_classes=10, share=False)
    shared = applications.WideShaResNet(depth=16, width=2, num_classes=10)
    # WRN-16-2: n = 2 blocks per stage, so block 2 of each stage reuses...
    # nothing: block 1 keeps its own second conv. Sharing starts at n = 3.
    assert trainable_params(plain) == trainable_params(shared)
    plain = applications.WideShaResNet(depth=22, width=2, num_classes=10, share=False)
    shared = applications.WideShaResNet(depth=22, width=2, num_classes=10)
    # n = 3: blocks 2 and 3 share one 3x3 conv per stage, saving one.
    saved = sum(9 * (16 * 2 * f) ** 2 for f in (1, 2, 4))
    assert trainable_params(plain) - trainable_params(shared) == saved
    assert keras_reuse.reuse_summary(shared).calls["conv3_shared_2_conv"] == 2


def test_wide_sharesnet_28_10_default():
    model = applications.WideShaResNet()
    assert model.name == "wide_sharesnet28_10"
    assert model.output.shape[-1] == 100
    assert trainable_params(model) == pytest.approx(26.86e6, rel=0.01)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_constructor_builds_runs_round_trips_and_mixes_precision(tmp_path, name):
    run_model_test(name, tmp_path)


def test_every_registered_model_has_a_case_of_the_shared_check():
    assert sorted(CASES) == applications.list_models()


def test_sharesnet_without_top_and_pooling():
    model = applications.ShaResNet18(include_top=False, pooling="avg", input_shape=(64, 64, 3))
    assert tuple(model.output.shape) == (None, 512)
    model = applications.ShaResNet164(include_top=False)
    assert tuple(model.output.shape) == (None, 8, 8, 256)


# ---------------------------------------------------------------- Registry --


def test_registry_lists_and_builds_every_model():
    assert applications.list_models() == [
        "lrunet",
        "sharesnet101",
        "sharesnet152",
        "sharesnet164",
        "sharesnet18",
        "sharesnet34",
        "sharesnet50",
        "wide_sharesnet",
    ]
    assert applications.get("lrunet") is applications.LruNet
    assert applications.get("ShaResNet50") is applications.ShaResNet50
    assert keras_reuse.get is applications.get


def test_registry_unknown_name_lists_models():
    with pytest.raises(ValueError, match=r"Unknown model name: 'resnet9'.*lrunet.*sharesnet50"):
        applications.get("resnet9")


# --------------------------------------------------------------- Bad input --

BAD_LRUNET = [
    (dict(num_classes=0), r"num_classes=0"),
    (dict(num_classes=2.5), r"num_classes=2.5"),
    (dict(layer_reuse=0), r"layer_reuse=0"),
    (dict(layer_reuse=True), r"layer_reuse=True"),
    (dict(width_multiplier=1.1), r"width_multiplier=1.1"),
    (dict(width_multiplier=0.1), r"width_multiplier=0.1"),
    (dict(width_multiplier=-1.0), r"width_multiplier=-1.0"),
    (dict(width_multiplier="2"), r"width_multiplier='2'"),
    (dict(dropout=1.0), r"dropout=1.0"),
    (dict(dropout=-0.1), r"dropout=-0.1"),
    (dict(input_shape=(27, 32, 3)), r"at least 28x28.*input_shape=\(27, 32, 3\)"),
    (dict(input_shape=(32, 32)), r"input_shape=\(32, 32\)"),
    (dict(input_shape=(1, 32, 32, 3)), r"input_shape=\(1, 32, 32, 3\)"),
    (dict(input_shape=(32, 32, 0)), r"channels.*input_shape=\(32, 32, 0\)"),
    (dict(weights="imagenet"), r"weights='imagenet'"),
    (dict(weights="/no/such/file.weights.h5"), r"weights='/no/such/file.weights.h5'"),
    (dict(include_top=True, pooling="avg"), r"include_top=True, pooling='avg'"),
    (dict(include_top=False, pooling="mean"), r"pooling='mean'"),
    (dict(include_top="yes"), r"include_top='yes'"),
    (dict(classifier_activation="sofmax"), r"classifier_activation='sofmax'"),
    (dict(layer_types="stock"), r"LayerTypes. Received: layer_types='stock'"),
]


@pytest.mark.parametrize("kwargs, message", BAD_LRUNET)
def test_lrunet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        applications.LruNet(**kwargs)


@pytest.mark.parametrize(
    "constructor, kwargs, message",
    [
        (applications.ShaResNet50, dict(num_classes=0), r"num_classes=0"),
        (applications.ShaResNet18, dict(share="yes"), r"share='yes'"),
        (applications.ShaResNet34, dict(input_shape=(16, 16, 3)), r"input_shape=\(16, 16, 3\)"),
        (applications.ShaResNet101, dict(weights="imagenet"), r"weights='imagenet'"),
        (applications.ShaResNet152, dict(pooling="avg"), r"pooling='avg'"),
        (applications.ShaResNet164, dict(input_shape=(32, 32)), r"input_shape=\(32, 32\)"),
        (applications.WideShaResNet, dict(depth=27), r"depth=27"),
        (applications.WideShaResNet, dict(depth=4), r"depth=4"),
        (applications.WideShaResNet, dict(width=0), r"width=0"),
        (applications.WideShaResNet, dict(dropout=1.5), r"dropout=1.5"),
        (applications.ShaResNet18, dict(layer_types=1), r"layer_types=1"),
        (applications.ShaResNet164, dict(layer_types=1), r"layer_types=1"),
        (applications.WideShaResNet, dict(layer_types=1), r"layer_types=1"),
    ],
)
def test_sharesnet_bad_arguments(constructor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        constructor(**kwargs)


@pytest.mark.parametrize(
    "name", ["sharesnet18", "sharesnet34", "sharesnet50", "sharesnet101", "sharesnet152"]
)
def test_imagenet_sharesnets_show_their_keywords(name):
    # The signature an IDE and the API reference read, not `**kwargs`.
    import inspect

    parameters = inspect.signature(applications.get(name)).parameters
    assert list(parameters)[:10] == [
        "num_classes", "share", "include_top", "weights", "input_tensor", "input_shape",
        "pooling", "classifier_activation", "name", "data_format",
    ]  # fmt: skip
    assert all(f"{p}:" in applications.get(name).__doc__ for p in parameters)
