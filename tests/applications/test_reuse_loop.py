"""`LruNet(reuse_loop=True)`: the looped stages compute what the unrolled ones do.

Small LruNets (stages of 8-64 channels, 28x28 inputs, batch 4) with the same
randomized weights in both layouts (tests/support/reuse_loop_runner.py): the same
inference and training-mode logits, the same gradient for every trainable
weight, the same moving statistics after a training call, the same weights
after a real `compile_for_training` step; conversion both ways is exact;
the looped model round-trips through `.keras`; TensorFlow's fused ops in the
loop body against the generic `keras.ops` path; and the looped-vs-unrolled
comparison again under PyTorch for one stage with a Dense head (in a subprocess,
as tests/test_backends.py does). Under JAX, where LruNet loops its stages by
default, tests/test_backends.py trains a small looped LruNet-2 against
TensorFlow's unrolled network (same losses and weights after two `fit` steps);
this file's stage comparison under JAX is a command (below), its compile being
slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import reuse_loop_runner as runner  # noqa: E402
from locations import ROOT as ROOT_PATH

import keras_reuse
from keras_reuse.applications.lrunet.model import LruNet, convert_reuse_weights
from keras_reuse.applications.lrunet.stage import (
    LruStage,
    half_swap_shuffle,
    inverse_half_swap_shuffle,
)
from keras_reuse.layers import ChannelShuffle

ROOT = ROOT_PATH
RTOL = 1e-5
GRAD_RTOL = 1e-4


@pytest.mark.parametrize("layer_reuse", [1, 3])
def test_looped_matches_unrolled(layer_reuse):
    result = runner.compare(layer_reuse)
    assert result["inference"] < RTOL, result
    assert result["training"] < RTOL, result
    assert result["gradients_max"] < GRAD_RTOL, result
    # 4 stages x (2 kernels + 2 x N x (gamma, beta)); stem and head: conv+bn twice, logits w+b.
    assert result["gradients_count"] == 4 * (2 + 4 * layer_reuse) + 8, result
    assert result["moving_max"] < RTOL, result
    assert result["moving_count"] == 4 * 4 * layer_reuse + 4, result


def test_training_call_updates_every_iterations_moving_statistics():
    _, looped = runner.build_pair(2)
    before = runner.weights(looped)
    looped(runner.batch()[0], training=True)
    after = runner.weights(looped)
    for path in before:
        if "moving" in path:
            rows = np.abs(after[path] - before[path]).max(axis=-1)
            assert np.all(rows > 1e-4), path  # each row: its own iteration's batch


@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_fit_step_gives_the_same_weights(jit_compile):
    # One stage and a head: Keras's train step (optimizer, moving statistics)
    # without tracing two whole networks; under XLA too (the TensorFlow loop
    # needs maximum_iterations there).
    unrolled, looped = runner.build_pair(3, stage_only=True)
    x, y = runner.batch(shape=runner.STAGE_INPUT_SHAPE)
    for model in (unrolled, looped):
        keras_reuse.compile_for_training(model, learning_rate=0.1)
        model.jit_compile = jit_compile
        model.train_on_batch(x, y)
    errors = runner.per_tensor(runner.weights(looped), runner.weights(unrolled))
    assert max(errors.values()) < RTOL, max(errors, key=errors.get)


def test_conversion_round_trip_is_exact():
    unrolled, looped = runner.build_pair(3)
    back = convert_reuse_weights(
        looped,
        LruNet(
            layer_reuse=3,
            width_multiplier=runner.WIDTH,
            input_shape=runner.INPUT_SHAPE,
            dropout=0.0,
            classifier_activation=None,
        ),
    )
    original = runner.weights(unrolled)
    for path, value in runner.weights(back).items():
        np.testing.assert_array_equal(value, original[path], err_msg=path)
    stage = looped.get_layer("stage2")
    assert isinstance(stage, LruStage)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(stage.pw_bn_gamma)[2],
        unrolled.get_layer("stage2_reuse3_pw_bn").gamma.numpy(),
    )


def test_conversion_names_a_missing_layer():
    _, looped = runner.build_pair(2)
    other = LruNet(
        layer_reuse=3,
        width_multiplier=runner.WIDTH,
        input_shape=runner.INPUT_SHAPE,
        classifier_activation=None,
    )
    with pytest.raises(ValueError, match="stage1_reuse3_dw_bn"):
        convert_reuse_weights(looped, other)


def test_keras_file_round_trip(tmp_path):
    _, looped = runner.build_pair(2)
    path = tmp_path / "looped.keras"
    looped.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("stage3"), LruStage)
    assert loaded.get_layer("stage3").layer_reuse == 2
    x = runner.batch()[0]
    assert runner.relative(loaded(x), looped(x)) < RTOL


def test_published_weights_load_into_the_looped_network():
    x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype("float32")
    unrolled = LruNet(weights="fashion_mnist", layer_reuse=1, classifier_activation=None)
    looped = LruNet(
        weights="fashion_mnist", layer_reuse=1, classifier_activation=None, reuse_loop=True
    )
    assert isinstance(looped.get_layer("stage1"), LruStage)
    assert runner.relative(looped(x), unrolled(x)) < RTOL


def test_feature_extractor_gives_the_same_stage_outputs():
    from keras_reuse.applications import feature_extractor

    unrolled, looped = runner.build_pair(2)
    x = runner.batch()[0]
    expected = feature_extractor(unrolled)(x)
    actual = feature_extractor(looped)(x)
    assert list(actual) == ["stage1", "stage2", "stage3", "stage4"]
    for stage in expected:
        assert runner.relative(actual[stage], expected[stage]) < RTOL, stage


def test_reuse_summary_counts_a_looped_stage_as_unrolled():
    unrolled, looped = runner.build_pair(3)
    expected, actual = keras_reuse.reuse_summary(unrolled), keras_reuse.reuse_summary(looped)
    assert [(r.name, r.calls, r.params, r.macs) for r in actual.layers] == [
        (r.name, r.calls, r.params, r.macs) for r in expected.layers
    ]
    for field in ("unique_params", "unrolled_params", "non_trainable_params", "macs"):
        assert getattr(actual, field) == getattr(expected, field), field
    assert actual.calls["stage2_pw"] == 3 and actual.macs > 0


def test_precise_batchnorm_gives_each_iteration_its_own_statistics():
    from keras_reuse.training.callbacks import recompute_batchnorm_statistics

    unrolled, looped = runner.build_pair(3)
    rng = np.random.default_rng(1)
    xs = [(3 * rng.random((n, *runner.INPUT_SHAPE)) + 1).astype("float32") for n in (6, 5)]
    covered = recompute_batchnorm_statistics(looped, xs, batches=2)
    assert covered == recompute_batchnorm_statistics(unrolled, xs, batches=2)
    assert covered["stage4_reuse3_pw_bn"] == 11
    assert "call" not in vars(looped.get_layer("stage1"))
    errors = runner.per_tensor(runner.weights(looped), runner.weights(unrolled))
    assert max(errors.values()) < RTOL, max(errors, key=errors.get)


def test_tflite_export_unrolls_the_loops(tmp_path):
    from keras_reuse.export import to_tflite

    unrolled, looped = runner.build_pair(2)
    looped_report = to_tflite(looped, tmp_path / "looped.tflite")  # verified against `looped`
    unrolled_report = to_tflite(unrolled, tmp_path / "unrolled.tflite")
    assert looped_report.size_bytes == unrolled_report.size_bytes
    assert looped_report.max_abs_error <= 1e-5 * looped_report.output_scale


@pytest.mark.parametrize("saved_looped", [False, True])
def test_a_weights_file_of_either_layout_loads_into_both(tmp_path, saved_looped):
    unrolled, looped = runner.build_pair(2)
    path = str(tmp_path / "lrunet.weights.h5")
    (looped if saved_looped else unrolled).save_weights(path)
    x = runner.batch()[0]
    for reuse_loop in (False, True):
        model = LruNet(
            layer_reuse=2,
            width_multiplier=runner.WIDTH,
            input_shape=runner.INPUT_SHAPE,
            dropout=0.0,
            classifier_activation=None,
            weights=path,
            reuse_loop=reuse_loop,
        )
        assert any(isinstance(layer, LruStage) for layer in model.layers) == reuse_loop
        assert runner.relative(model(x), unrolled(x)) < RTOL


def test_the_default_layout_loops_where_xla_compiles(monkeypatch):
    import tensorflow as tf

    from keras_reuse.applications.lrunet.stage import default_reuse_loop

    def model():
        return LruNet(layer_reuse=2, width_multiplier=runner.WIDTH, input_shape=(28, 28, 1))

    def looped(m):
        return any(isinstance(layer, LruStage) for layer in m.layers)

    assert not default_reuse_loop() and not looped(model())  # TensorFlow on this CPU
    devices = tf.config.list_physical_devices
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind=None: [gpu] if kind == "GPU" else devices(kind),
    )
    assert default_reuse_loop() and looped(model())
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert default_reuse_loop()
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert not default_reuse_loop()


def test_one_iteration_is_traced_without_a_loop_except_under_jax(monkeypatch):
    assert LruStage(16, 1).traces_unrolled() and not LruStage(16, 3).traces_unrolled()
    assert LruStage(16, 3, unroll=True).traces_unrolled()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert not LruStage(16, 1).traces_unrolled()
    assert LruStage(16, 1, unroll=True).traces_unrolled()


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_bad_reuse_loop_is_refused(value):
    from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint

    with pytest.raises(ValueError, match=rf"reuse_loop={value!r}"):
        LruNet(layer_reuse=2, reuse_loop=value)
    with pytest.raises(ValueError, match=rf"must be True, False or None.*reuse_loop={value!r}"):
        load_lrunet_checkpoint("/nonexistent.t7", reuse_loop=value)


def test_shuffle_and_its_inverse():
    x = np.arange(2 * 3 * 16, dtype="float32").reshape(2, 1, 3, 16)
    expected = keras.ops.convert_to_numpy(ChannelShuffle(2, swap_halves=True)(x))
    shuffled = keras.ops.convert_to_numpy(half_swap_shuffle(x))
    np.testing.assert_array_equal(shuffled, expected)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(inverse_half_swap_shuffle(shuffled)), x
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow fast path")
def test_tensorflow_fused_body_matches_the_generic_one():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 6, 16)).astype("float32")
    stages = []
    for fused in (True, False):
        stage = LruStage(16, 3, groups=8, fused=fused, name="stage1")
        stage.build(x.shape)
        stages.append(stage)
    for variable in stages[0].weights:
        value = rng.standard_normal(variable.shape).astype("float32") * 0.3
        if "gamma" in variable.path or "variance" in variable.path:
            value = 1.0 + np.abs(value)
        for stage in stages:
            next(v for v in stage.weights if v.path == variable.path).assign(value)
    outputs, grads = [], []
    for stage in stages:
        with tf.GradientTape() as tape:
            tape.watch(x_t := tf.constant(x))
            y = stage(x_t, training=True)
            loss = tf.reduce_sum(y * y)
        grads.append(tape.gradient(loss, [x_t, *stage.trainable_variables]))
        outputs.append([y, stage(x_t, training=False), *stage.non_trainable_variables])
    for a, b in zip(*outputs, strict=True):
        assert runner.relative(a, b) < RTOL
    looped_grads, unrolled_grads = (
        {str(k): tf.convert_to_tensor(g).numpy() for k, g in enumerate(gs)} for gs in grads
    )
    errors = runner.per_tensor_scaled(looped_grads, unrolled_grads)
    assert max(errors.values()) < GRAD_RTOL, errors


# PyTorch here (15 s of CPU); JAX compiles the stage for 30-100 s on this
# machine, so its same check is a command instead (JAX's default, looped
# layout is trained against TensorFlow's unrolled one in tests/test_backends.py):
#   KERAS_BACKEND=jax python tests/support/reuse_loop_runner.py 3 --stage
@pytest.mark.parametrize("backend", ["torch"])
def test_looped_matches_unrolled_on_another_backend(backend):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
        XLA_FLAGS="--xla_backend_optimization_level=0",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "reuse_loop_runner.py"), "3", "--stage"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert not done.returncode and lines, done.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["backend"] == backend
    assert result["inference"] < RTOL, result
    assert result["training"] < RTOL, result
    assert result["gradients_max"] < GRAD_RTOL, result
    assert result["moving_max"] < RTOL, result
