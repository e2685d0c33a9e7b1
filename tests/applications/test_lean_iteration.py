"""`LruNet(recompute=True)`: the looped stages' lean TensorFlow gradient.

`keras_reuse.applications.lrunet.recompute` keeps 2C activations per position for the
backward pass and recomputes the rest there. Checked here: one iteration
against TensorFlow's autodiff of the same ops (the same outputs and
statistics, gradients to float32 rounding, in both depthwise forms); a
recomputing stage against an autodiff one (training output, every
gradient, the moving statistics; looped and traced unrolled; float32 and
mixed_bfloat16); one real `fit` step, also under XLA; the live-memory peak
(TensorFlow's BFC allocator on CPU, in a subprocess) well under autodiff's;
and the refusals.
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

from keras_reuse.applications.lrunet.model import LruNet
from keras_reuse.applications.lrunet.stage import LruStage

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="a TensorFlow gradient"
)
ROOT = ROOT_PATH


def _iteration_inputs(channels: int = 16, groups: int = 8, seed: int = 0) -> list:
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def const(shape, scale=1.0, offset=0.0):
        return tf.constant(offset + scale * rng.standard_normal(shape), tf.float32)

    mid = 2 * channels
    return [
        const((4, 8, 8, channels)),
        const((3, 3, channels, 2), 0.3),
        const((groups, mid // groups, channels // groups), 0.3),
        tf.abs(const((mid,), 0.5, 1.0)),
        const((mid,)),
        tf.abs(const((channels,), 0.5, 1.0)),
        const((channels,)),
    ]


def _autodiff_iteration(p, dw_kernel, pw_kernel, gamma1, beta1, gamma2, beta2, repeat):
    """The same iteration from the layers' functions, differentiated by TensorFlow."""
    import tensorflow as tf

    from keras_reuse.layers.ops import (
        depthwise_conv,
        fused_batch_norm_train,
        grouped_pointwise,
        half_swap_shuffle,
    )

    x = half_swap_shuffle(p)
    y, mean1, var1 = fused_batch_norm_train(
        depthwise_conv(x, dw_kernel, fast=repeat), gamma1, beta1, 1e-5
    )
    u, mean2, var2 = fused_batch_norm_train(
        grouped_pointwise(y, pw_kernel, training=True), gamma2, beta2, 1e-5
    )
    return tf.nn.relu(u + x), mean1, var1, mean2, var2


@pytest.mark.parametrize("repeat", [True, False], ids=["onednn_repeat", "native"])
def test_one_iteration_matches_autodiff(repeat):
    import tensorflow as tf

    from keras_reuse.applications.lrunet.recompute import lean_iteration

    args = _iteration_inputs()
    weight = tf.constant(np.random.default_rng(1).standard_normal(args[0].shape), tf.float32)

    @tf.function
    def run(lean: bool):
        with tf.GradientTape() as tape:
            tape.watch(args)
            if lean:
                outputs = lean_iteration(*args, 1e-5, repeat)
            else:
                outputs = _autodiff_iteration(*args, repeat)
            loss = tf.reduce_sum(outputs[0] * weight)
        return outputs, tape.gradient(loss, args)

    (lean_out, lean_grads), (auto_out, auto_grads) = run(True), run(False)
    for a, b in zip(lean_out, auto_out, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The depthwise BatchNorm's beta (argument 4) has a zero gradient in
    # exact arithmetic: rounding noise, which the two computations need not
    # share (it differed where oneDNN runs the grouped 1x1 convolution), so
    # it is compared on the others' scale.
    errors = runner.per_tensor_scaled(
        {str(i): g.numpy() for i, g in enumerate(lean_grads)},
        {str(i): g.numpy() for i, g in enumerate(auto_grads)},
    )
    assert errors.pop("4") < 1e-5
    assert max(errors.values()) < 1e-6, errors


def _stage_pair(layer_reuse: int, **kwargs) -> tuple[LruStage, LruStage]:
    """(autodiff, recomputing) stages of 16 channels with the same random weights."""
    rng = np.random.default_rng(0)
    stages = [
        LruStage(16, layer_reuse, recompute=recompute, name="stage1", **kwargs)
        for recompute in (False, True)
    ]
    for stage in stages:
        stage.build((None, 6, 6, 16))
    for variable in stages[0].weights:
        value = 0.3 * rng.standard_normal(variable.shape)
        if "gamma" in variable.path or "variance" in variable.path:
            value = 1.0 + np.abs(value)
        for stage in stages:
            next(v for v in stage.weights if v.path == variable.path).assign(value)
    return stages[0], stages[1]


@pytest.mark.parametrize(
    "layer_reuse, unroll, policy",
    [(3, None, "float32"), (2, True, "float32"), (3, None, "mixed_bfloat16")],
    ids=["loop", "traced_unrolled", "mixed_bfloat16"],
)
def test_a_recomputing_stage_trains_as_the_autodiff_one(layer_reuse, unroll, policy):
    import tensorflow as tf

    from keras_reuse.training.precision import dtype_policy_scope

    with dtype_policy_scope(policy):
        stages = _stage_pair(layer_reuse, unroll=unroll)
    x = tf.constant(np.random.default_rng(2).standard_normal((4, 6, 6, 16)), tf.float32)
    results = []
    for stage in stages:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = stage(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        grads = tape.gradient(loss, [x, *stage.trainable_variables])
        moving = [v.numpy() for v in stage.non_trainable_variables]
        results.append((y, grads, moving))
    (y_auto, g_auto, m_auto), (y_lean, g_lean, m_lean) = results
    np.testing.assert_array_equal(np.asarray(y_lean, np.float32), np.asarray(y_auto, np.float32))
    for a, b in zip(m_lean, m_auto, strict=True):
        np.testing.assert_array_equal(a, b)
    tolerance = 1e-5 if policy == "float32" else 2e-2
    errors = runner.per_tensor_scaled(
        {str(i): np.asarray(g, np.float32) for i, g in enumerate(g_lean)},
        {str(i): np.asarray(g, np.float32) for i, g in enumerate(g_auto)},
    )
    assert max(errors.values()) < tolerance, errors


@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_fit_step_gives_the_same_weights(jit_compile):
    # One stage and a head (cheap under XLA), Keras's whole train step.
    import keras_reuse
    from keras_reuse.applications.lrunet import model as lrunet

    x, y = runner.batch(shape=runner.STAGE_INPUT_SHAPE)
    trained = []
    for recompute in (False, True):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(runner.STAGE_INPUT_SHAPE)
        h = lrunet._lru_stage_loop(inputs, 16, 3, 1, recompute)
        h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
        model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(h))
        keras_reuse.compile_for_training(model, learning_rate=0.1)
        model.jit_compile = jit_compile
        model.train_on_batch(x, y)
        trained.append(runner.weights(model))
    # The depthwise BatchNorms' betas start at zero and get a zero gradient
    # in exact arithmetic (rounding noise only): compared on the scale of
    # the other weights.
    scaled = runner.per_tensor_scaled(trained[1], trained[0])
    for path, value in trained[0].items():
        error = scaled[path] if "dw_bn_beta" in path else runner.relative(trained[1][path], value)
        assert error < 1e-5, path
    assert any("dw_bn_beta" in path for path in trained[0])


_MEMORY_PROBE = """
import json, numpy as np, tensorflow as tf
from keras_reuse.applications.lrunet.stage import LruStage
x = tf.constant(np.random.default_rng(0).random((32, 16, 16, 64)), tf.float32)
peaks = {}
for recompute in (False, True):
    stage = LruStage(64, 8, recompute=recompute, name="stage1")
    stage(x[:2])
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(stage(x, training=True) ** 2)
        return tape.gradient(loss, stage.trainable_variables)
    step(x)
    tf.config.experimental.reset_memory_stats("CPU:0")
    step(x)
    peaks[str(recompute)] = tf.config.experimental.get_memory_info("CPU:0")["peak"]
print(json.dumps(peaks))
"""


def test_the_backward_pass_holds_far_less_memory():
    # Live tensors, not RSS: TensorFlow's CPU allocator counts them when it
    # is the BFC allocator, which must be chosen before TensorFlow starts.
    env = dict(
        os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT)
    )
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    # 8 iterations of a 64-channel stage at 32x16x16: autodiff keeps about
    # 7C per iteration, the lean gradient 2C plus one iteration's work. The
    # lean peak depends on how the executor schedules the loop's ops: 64-76
    # MB alone, up to 84 MB beside other tests, against autodiff's 130-137.
    # A backward that keeps the forward's depthwise and BatchNorm outputs
    # measured 123 against 136 MB (0.90), which this still refuses.
    assert peaks["True"] < 0.7 * peaks["False"], peaks


def test_recompute_is_refused_without_the_loop_or_as_a_non_boolean():
    with pytest.raises(ValueError, match="reuse_loop=False"):
        LruNet(layer_reuse=2, recompute=True, reuse_loop=False)
    with pytest.raises(ValueError, match="recompute='yes'"):
        LruNet(layer_reuse=2, recompute="yes")
    with pytest.raises(ValueError, match="recompute=1"):
        LruStage(16, 2, recompute=1)


def test_recompute_is_a_boolean_train_flag():
    from keras_reuse.training import config

    assert config.model_arguments()["recompute"].kind is bool


def test_recompute_builds_looped_stages_that_keep_it_through_keras_files(tmp_path):
    model = LruNet(layer_reuse=2, width_multiplier=runner.WIDTH, recompute=True)
    stages = [layer for layer in model.layers if isinstance(layer, LruStage)]
    assert len(stages) == 4 and all(stage.recompute for stage in stages)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert all(layer.recompute for layer in loaded.layers if isinstance(layer, LruStage))
