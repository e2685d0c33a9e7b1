"""Both image data formats, as keras.applications: every model and layer, the same weights.

Every registered model, and the published Fashion-MNIST LruNets, computes
the same in channels_first as in channels_last on transposed inputs
(tests/support/model_test_case.py, run under PyTorch in a child process:
TensorFlow's CPU convolutions take channels last only where oneDNN is off,
as in these test processes). On TensorFlow, the layers (which run channels
first on its CPU) are compared here, and a model that cannot run there is
refused when built. tests/layers/test_onednn_paths.py runs this file again
with oneDNN on (without the PyTorch runs), where the models build and agree.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
from locations import FIXTURES, ROOT
from model_test_case import CASES
from processes import run

import keras_reuse
from keras_reuse import applications
from keras_reuse.applications.lrunet.stage import LruStage
from keras_reuse.layers import (
    ChannelShuffle,
    DepthwiseConv2D,
    FusedBatchNormalization,
    GroupedPointwiseConv,
)
from keras_reuse.utils.backends import onednn_enabled

RUNNER = ROOT / "tests" / "support" / "data_format_runner.py"
RTOL = 1e-5


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory) -> dict:
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    directory = str(tmp_path_factory.mktemp("data_format"))
    done = run(
        [sys.executable, str(RUNNER), directory, *sorted(CASES), "presets"],
        timeout=1200,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    results = json.loads(lines[-1])
    assert results["backend"] == "torch"
    return results


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_computes_the_same_in_both_formats_on_another_backend(torch_runs, name):
    result = torch_runs[name]
    assert "error" not in result, result["error"]
    assert {"logits", "restored_logits"} <= set(result)
    assert any(key.startswith("features_") for key in result)
    assert any(key.startswith("training_features_") for key in result)


def test_published_presets_give_the_same_logits_channels_first_on_another_backend(torch_runs):
    result = torch_runs["presets"]
    assert "error" not in result, result["error"]
    assert sorted(result) == ["lrunet10_fashion_mnist", "lrunet1_fashion_mnist"]


# ------------------------------------------------------------- TensorFlow --


def _can_run_channels_first() -> bool:
    import tensorflow as tf

    return bool(onednn_enabled() or tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize(
    "constructor, kwargs",
    [
        (applications.LruNet, dict(layer_reuse=1, input_shape=(1, 28, 28))),
        (applications.ShaResNet18, dict(input_shape=(3, 32, 32), num_classes=5)),
        (applications.ShaResNet164, dict()),
        (applications.WideShaResNet, dict(depth=10, width=1)),
        (applications.get("lrunet1_fashion_mnist"), dict()),
    ],
)
def test_tensorflow_refuses_channels_first_where_its_cpu_cannot_run_it(constructor, kwargs):
    if _can_run_channels_first():
        # The oneDNN run of this file (tests/layers/test_onednn_paths.py):
        # there it builds; test_channels_first_on_tensorflow_with_onednn checks it.
        constructor(**kwargs, data_format="channels_first")
        return
    with pytest.raises(ValueError, match=r"data_format='channels_first'.*TensorFlow backend"):
        constructor(**kwargs, data_format="channels_first")
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match=r"data_format='channels_first'.*oneDNN"):
            constructor(**kwargs)
    finally:
        keras.config.set_image_data_format(previous)


def test_channels_first_on_tensorflow_with_onednn():
    if not _can_run_channels_first():
        with pytest.raises(ValueError, match="channels_first"):
            applications.LruNet(layer_reuse=1, data_format="channels_first")
        return
    # oneDNN's CPU kernels take NCHW: the same outputs, inference and a training step.
    kwargs = dict(layer_reuse=2, classifier_activation=None, dropout=0.0, reuse_loop=False)
    last = applications.LruNet(input_shape=(28, 28, 1), **kwargs, data_format="channels_last")
    first = applications.LruNet(input_shape=(1, 28, 28), **kwargs, data_format="channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    xt = x.transpose(0, 3, 1, 2)
    expected = last.predict(x, verbose=0)
    assert _relative_error(first.predict(xt, verbose=0), expected) <= RTOL
    # Training mode: BatchNorm normalizes with the batch's statistics.
    trained = keras.ops.convert_to_numpy(last(x, training=True))
    got = keras.ops.convert_to_numpy(first(xt, training=True))
    assert _relative_error(got, trained) <= RTOL


def _relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize(
    "build",
    [
        lambda data_format: applications.LruNet(data_format=data_format),
        lambda data_format: applications.ShaResNet50(data_format=data_format),
        lambda data_format: applications.WideShaResNet(data_format=data_format),
        lambda data_format: applications.ShaResNet164(data_format=data_format),
        lambda data_format: ChannelShuffle(data_format=data_format),
        lambda data_format: GroupedPointwiseConv(8, data_format=data_format),
        lambda data_format: LruStage(8, 2, data_format=data_format),
    ],
)
@pytest.mark.parametrize("data_format", ["NCHW", "channels_middle", 1])
def test_unknown_data_format_is_refused_quoting_it(build, data_format):
    with pytest.raises(ValueError, match=rf"data_format={data_format!r}"):
        build(data_format)


def test_input_shape_is_read_in_the_data_format():
    # keras.applications' convention: a channels-last shape under
    # channels_first is (64 channels, 64, 3): too small, and the message says
    # how the shape was read.
    with pytest.raises(ValueError, match=r"\(channels, height, width\).*input_shape=\(64, 64, 3\)"):
        applications.ShaResNet18(input_shape=(64, 64, 3), data_format="channels_first")


def _layer_outputs(layer_first, layer_last, x, training):
    """(channels-first output transposed back, channels-last output) of two layers."""
    rank = x.ndim
    to_first = (0, rank - 1, *range(1, rank - 1))
    to_last = (0, *range(2, rank), 1)
    y_last = keras.ops.convert_to_numpy(layer_last(x, training=training))
    y_first = layer_first(np.ascontiguousarray(x.transpose(to_first)), training=training)
    return keras.ops.convert_to_numpy(y_first).transpose(to_last), y_last


@pytest.mark.parametrize("rank", [3, 4])
def test_layers_compute_the_same_in_both_formats(rank):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, *(5,) * (rank - 2), 24)).astype(np.float32)
    for make in (
        lambda f: ChannelShuffle(3, data_format=f),
        lambda f: ChannelShuffle(2, swap_halves=True, data_format=f),
        lambda f: GroupedPointwiseConv(16, groups=4, use_bias=True, data_format=f),
    ):
        last, first = make("channels_last"), make("channels_first")
        last.build(x.shape)
        first.build((x.shape[0], x.shape[-1], *x.shape[1:-1]))
        first.set_weights([w + 0.1 * i for i, w in enumerate(last.get_weights())])
        last.set_weights(first.get_weights())
        actual, expected = _layer_outputs(first, last, x, training=False)
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
        assert first.compute_output_shape((2, 24, *x.shape[1:-1]))[1] == expected.shape[-1]


@pytest.mark.parametrize("training", [False, True])
def test_batchnorm_and_depthwise_compute_the_same_in_both_formats(training):
    # FusedBatchNormalization(axis=1) trains as TensorFlow's NCHW fused op.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 6, 6, 8)).astype(np.float32)
    pairs = [
        (FusedBatchNormalization(axis=1), FusedBatchNormalization(axis=-1)),
        (
            DepthwiseConv2D(3, depth_multiplier=2, padding="same", data_format="channels_first"),
            DepthwiseConv2D(3, depth_multiplier=2, padding="same", data_format="channels_last"),
        ),
    ]
    for first, last in pairs:
        last.build(x.shape)
        first.build((4, 8, 6, 6))
        weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in last.weights]
        last.set_weights(weights)
        first.set_weights(weights)
        actual, expected = _layer_outputs(first, last, x, training)
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
        for a, b in zip(first.weights, last.weights, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused, recompute", [(True, False), (True, True), (False, False)])
def test_looped_stage_computes_the_same_in_both_formats(fused, recompute):
    # fused=True: TensorFlow's paths (recompute: the lean gradient's forward)
    # around one transpose each way; fused=False: the generic keras.ops body
    # on NCHW activations.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 5, 5, 16)).astype(np.float32)
    kwargs = dict(filters=16, layer_reuse=3, fused=fused, recompute=recompute, unroll=False)
    last = LruStage(**kwargs, data_format="channels_last", name="stage1")
    first = LruStage(**kwargs, data_format="channels_first", name="stage1")
    last.build(x.shape)
    first.build((4, 16, 5, 5))
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in last.weights]
    last.set_weights(weights)
    first.set_weights(weights)
    for training in (False, True):
        actual, expected = _layer_outputs(first, last, x, training)
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # The training call updated the moving statistics alike.
    for a, b in zip(first.weights, last.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert first.reuse_rows((None, 16, 5, 5)) == last.reuse_rows((None, 5, 5, 16))


def _small_channels_first_model() -> keras.Model:
    # Our layers run channels first on TensorFlow's CPU (no Conv2D here).
    inputs = keras.Input((16, 6, 6))
    pw = GroupedPointwiseConv(16, groups=4, data_format="channels_first", name="pw")
    x = pw(inputs)
    x = FusedBatchNormalization(axis=1, name="bn1")(x)
    x = ChannelShuffle(2, swap_halves=True, data_format="channels_first", name="shuffle")(x)
    x = pw(x)
    x = DepthwiseConv2D(3, padding="same", data_format="channels_first", name="dw1")(x)
    x = DepthwiseConv2D(3, padding="same", data_format="channels_first", name="dw2")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first", name="pool")(x)
    return keras.Model(inputs, x)


def test_share_and_unshare_keep_the_data_format():
    model = _small_channels_first_model()
    x = np.random.default_rng(8).normal(size=(2, 16, 6, 6)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    unshared = keras_reuse.unshare(model)
    assert unshared.get_layer("pw_call2").data_format == "channels_first"
    np.testing.assert_allclose(unshared.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    shared = keras_reuse.share(model, [["dw1", "dw2"]])
    assert shared.get_layer("dw1_shared").data_format == "channels_first"
    # Same MACs as the channels-last count of the same network.
    assert keras_reuse.reuse_summary(model).macs == 2 * 36 * 16 * 4 + 2 * 36 * 16 * 9


@pytest.mark.parametrize("name", ["lrunet2_unrolled", "lrunet2_looped"])
def test_files_saved_before_data_formats_stay_channels_last_under_channels_first(name):
    # Their layers' configs have no data_format: they were channels last,
    # whatever the global format of the process that loads them.
    saved = np.load(os.path.join(str(FIXTURES), "pre_layout_models.npz"))
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = keras.saving.load_model(os.path.join(str(FIXTURES), f"{name}.keras"))
    finally:
        keras.config.set_image_data_format(previous)
    formats = {getattr(layer, "data_format", None) for layer in model.layers} - {None}
    assert formats == {"channels_last"}
    np.testing.assert_allclose(
        model.predict(saved["images"], verbose=0), saved[name], rtol=1e-5, atol=1e-5
    )
