"""The fast paths of keras_reuse.layers compute what the straightforward code computes.

FusedBatchNormalization against keras.layers.BatchNormalization (outputs,
gradients, moving statistics, inference, fallbacks, saving), the grouped 1x1
conv's training (per-group matmuls, or oneDNN's grouped Conv2D) and
inference (grouped Conv2D) paths against a loop over groups, the channel
shuffle (and its gradient) against its permutation, the depthwise
convolution's multiplier-1 form against the stock op, the complex-number
interleave of training graphs against the transpose, and a whole LruNet
training step against the same network built from stock layers.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_reuse.applications import lrunet
from keras_reuse.applications.common import LayerTypes
from keras_reuse.applications.sharesnet import model as sharesnet
from keras_reuse.layers import ChannelShuffle, FusedBatchNormalization, GroupedPointwiseConv
from keras_reuse.layers.ops import (
    blocked_channel_repeat,
    channel_shuffle,
    channel_shuffle_permutation,
    interleave_channels,
    inverse_half_swap_shuffle,
    multiplier_one_form,
    repeat_channels,
)


def _pair(**kwargs):
    """A FusedBatchNormalization and a stock BatchNormalization with equal weights."""
    fused = FusedBatchNormalization(**kwargs)
    stock = keras.layers.BatchNormalization(**kwargs)
    return fused, stock


def _randomize(layers, channels, seed=0):
    rng = np.random.default_rng(seed)
    values = [
        rng.uniform(0.5, 1.5, channels),
        rng.standard_normal(channels),
        rng.standard_normal(channels),
        rng.uniform(0.5, 2.0, channels),
    ]
    for layer in layers:
        layer.set_weights([v.astype(np.float32) for v in values])


def _train_step(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        # A non-trivial loss so every gradient term matters.
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y, grads


def test_fused_batchnorm_training_step_equals_keras():
    fused, stock = _pair(momentum=0.9, epsilon=1e-5)
    x = np.random.default_rng(1).standard_normal((6, 5, 4, 16)).astype(np.float32) * 3 + 2
    fused.build(x.shape)
    stock.build(x.shape)
    _randomize([fused, stock], 16)
    y_fused, g_fused = _train_step(fused, x)
    y_stock, g_stock = _train_step(stock, x)
    np.testing.assert_allclose(y_fused.numpy(), y_stock.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fused, g_stock, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    # Moving statistics: same momentum rule, biased batch variance.
    for a, b in zip(fused.non_trainable_weights, stock.non_trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_fused_batchnorm_moving_variance_is_the_biased_batch_variance():
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    x = np.random.default_rng(2).standard_normal((4, 3, 3, 8)).astype(np.float32) * 2 + 1
    layer(x, training=True)
    batch_mean = x.mean(axis=(0, 1, 2))
    batch_var = x.var(axis=(0, 1, 2))  # ddof=0, as Keras
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), 0.9 + 0.1 * batch_var, rtol=1e-5, atol=1e-6
    )


def test_fused_batchnorm_moving_variance_with_an_unknown_batch_size():
    # Traced with the batch dimension unknown: the element count comes from
    # the runtime shape instead of the static one.
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    x = np.random.default_rng(7).standard_normal((5, 3, 2, 8)).astype(np.float32) * 2 + 1
    layer.build(x.shape)
    step = tf.function(
        lambda t: layer(t, training=True),
        input_signature=[tf.TensorSpec((None, 3, 2, 8), tf.float32)],
        autograph=False,
    )
    step(tf.constant(x))
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), 0.9 + 0.1 * x.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6
    )


def test_fused_batchnorm_inference_is_the_parents_code_exactly():
    fused, stock = _pair(momentum=0.9, epsilon=1e-5)
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 8)).astype(np.float32)
    fused.build(x.shape)
    stock.build(x.shape)
    _randomize([fused, stock], 8, seed=4)
    np.testing.assert_array_equal(
        fused(x, training=False).numpy(), stock(x, training=False).numpy()
    )


def test_fused_batchnorm_falls_back_where_the_fused_op_does_not_apply():
    # 2D inputs and a channels-first axis take the parent's training path.
    for shape, axis in (((16, 8), -1), ((2, 8, 3, 3), 1)):
        fused, stock = _pair(axis=axis, momentum=0.9, epsilon=1e-5)
        x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(
            fused(x, training=True).numpy(), stock(x, training=True).numpy(), rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            fused.moving_variance.numpy(), stock.moving_variance.numpy(), rtol=1e-6
        )


def test_fused_batchnorm_under_mixed_bfloat16():
    x = np.random.default_rng(6).standard_normal((4, 4, 4, 16)).astype(np.float32)
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, dtype="mixed_bfloat16")
    stock = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="mixed_bfloat16")
    xb = tf.cast(x, tf.bfloat16)
    y_fused = fused(xb, training=True)
    y_stock = stock(xb, training=True)
    assert y_fused.dtype == tf.bfloat16
    np.testing.assert_allclose(
        tf.cast(y_fused, tf.float32).numpy(), tf.cast(y_stock, tf.float32).numpy(), atol=0.03
    )
    np.testing.assert_allclose(fused.moving_mean.numpy(), stock.moving_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), stock.moving_variance.numpy(), rtol=1e-4
    )


def test_fused_batchnorm_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((4, 4, 8))
    outputs = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(inputs)
    model = keras.Model(inputs, outputs)
    _randomize([model.get_layer("bn")], 8, seed=7)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    layer = loaded.get_layer("bn")
    assert type(layer) is FusedBatchNormalization
    assert (layer.momentum, layer.epsilon) == (0.9, 1e-5)
    assert [w.path for w in layer.weights] == [w.path for w in model.get_layer("bn").weights]
    x = np.random.default_rng(8).standard_normal((2, 4, 4, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def reference_grouped_pointwise(x, kernel):
    groups, cin_g, cout_g = kernel.shape
    out = np.zeros(x.shape[:-1] + (groups * cout_g,), dtype=np.float64)
    for g in range(groups):
        out[..., g * cout_g : (g + 1) * cout_g] = x[..., g * cin_g : (g + 1) * cin_g] @ kernel[g]
    return out


@pytest.mark.parametrize("training", [True, False])
def test_grouped_pointwise_paths_match_the_group_loop(training):
    layer = GroupedPointwiseConv(16, groups=8, use_bias=True, bias_initializer="random_normal")
    x = np.random.default_rng(9).standard_normal((3, 4, 5, 32)).astype(np.float32)
    y = layer(x, training=training).numpy()
    expected = reference_grouped_pointwise(x, layer.kernel.numpy()) + layer.bias.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def _traced_op_types(fn, *specs) -> set[str]:
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("cin_per_group, native", [(32, True), (64, False)])
def test_grouped_pointwise_trains_natively_where_onednn_is_faster(cin_per_group, native):
    from keras_reuse.layers.ops import grouped_pointwise, onednn_cpu

    if os.environ.get("KERAS_REUSE_EXPECT_ONEDNN") == "1":  # tests/layers/test_onednn_paths.py
        assert onednn_cpu()
    kernel = tf.zeros((8, cin_per_group, 4))
    x = tf.TensorSpec((2, 3, 3, 8 * cin_per_group))
    ops = _traced_op_types(lambda x: grouped_pointwise(x, kernel, training=True), x)
    # oneDNN trains narrow groups as one grouped convolution (measured
    # faster), TensorFlow's own kernels have no gradient for it.
    conv = native and onednn_cpu()
    assert ("Conv2D" in ops) == conv
    assert ("MatMul" in ops) != conv
    # Reduced precision keeps the matmuls.
    half = _traced_op_types(
        lambda x: grouped_pointwise(x, tf.cast(kernel, tf.float16), training=True),
        tf.TensorSpec(x.shape, tf.float16),
    )
    assert "Conv2D" not in half and "MatMul" in half


def test_grouped_pointwise_gradients_match_the_einsum_form():
    layer = GroupedPointwiseConv(16, groups=8)
    x = tf.constant(np.random.default_rng(10).standard_normal((2, 3, 3, 32)).astype(np.float32))
    layer.build(x.shape)
    upstream = np.random.default_rng(11).standard_normal((2, 3, 3, 16)).astype(np.float32)

    def loss(y):
        return tf.reduce_sum(y * upstream)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = loss(layer(x, training=True))
        grouped = tf.reshape(x, (-1, 8, 4))
        einsum = tf.reshape(tf.einsum("ngi,gio->ngo", grouped, layer.kernel), (2, 3, 3, 16))
        reference = loss(einsum)
    for a, b in zip(
        tape.gradient(ours, [x, layer.kernel]),
        tape.gradient(reference, [x, layer.kernel]),
        strict=True,
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("groups, swap_halves", [(2, True), (2, False), (4, True), (3, True)])
def test_channel_shuffle_and_its_gradient_follow_the_permutation(groups, swap_halves, training):
    # Training with two groups takes `interleave_channels` on TensorFlow's CPU.
    channels = 24
    perm = channel_shuffle_permutation(channels, groups, swap_halves)
    layer = ChannelShuffle(groups, swap_halves=swap_halves)
    x = tf.constant(np.random.default_rng(12).standard_normal((2, 3, channels)).astype(np.float32))
    upstream = np.random.default_rng(13).standard_normal((2, 3, channels)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy()[..., perm])
    expected_grad = np.zeros_like(upstream)
    expected_grad[..., perm] = upstream
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), expected_grad)


def test_inverse_half_swap_shuffle_with_unknown_sizes():
    # The looped stage unshuffles its input once; shapes may be unknown there.
    inverse = tf.function(
        inverse_half_swap_shuffle, input_signature=[tf.TensorSpec((None, None, None, 16))]
    )
    x = tf.constant(np.random.default_rng(15).standard_normal((2, 3, 5, 16)).astype(np.float32))
    shuffled = ChannelShuffle(2, swap_halves=True)(x)
    assert not np.array_equal(shuffled.numpy(), x.numpy())
    np.testing.assert_array_equal(inverse(shuffled).numpy(), x.numpy())


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("spatial", [(5, 6), (None, None)])
def test_depthwise_multiplier_one_form_equals_the_stock_op(spatial, training):
    # What `depthwise_conv` runs where TensorFlow uses oneDNN, tested here
    # whatever this process's oneDNN setting: the channel repeat (a tile and
    # a transpose; in training, the complex interleave) and the reshaped
    # kernel, forward and both gradients.
    rng = np.random.default_rng(16)
    x = tf.constant(rng.standard_normal((2, 5, 6, 4)).astype(np.float32))
    kernel = tf.constant(rng.standard_normal((3, 3, 4, 2)).astype(np.float32))
    upstream = tf.constant(rng.standard_normal((2, 5, 6, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, *spatial, 4)), tf.TensorSpec((3, 3, 4, 2))])
    def both(x, kernel):
        results = []
        ours = lambda x, k: multiplier_one_form(x, k, training)  # noqa: E731
        for form in (lambda x, k: (x, k), ours):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = keras.ops.depthwise_conv(*form(x, kernel), padding="same")
                loss = tf.reduce_sum(y * upstream)
            results.append([y, *tape.gradient(loss, [x, kernel])])
        return results

    stock, ours = both(x, kernel)
    for a, b in zip(ours, stock, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    # The repeated input itself: channel c as channels 2c and 2c+1.
    repeated, _ = multiplier_one_form(x, kernel, training)
    np.testing.assert_array_equal(repeated.numpy(), np.repeat(x.numpy(), 2, axis=-1))


@pytest.mark.parametrize("spatial", [(5, 6), (None, None)])
def test_interleave_channels_alternates_the_channels_and_splits_the_gradient(spatial):
    rng = np.random.default_rng(18)
    a, b = (rng.standard_normal((2, 5, 6, 4)).astype(np.float32) for _ in range(2))
    upstream = rng.standard_normal((2, 5, 6, 8)).astype(np.float32)
    spec = tf.TensorSpec((None, *spatial, 4))

    @tf.function(input_signature=[spec, spec])
    def interleave(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = interleave_channels(a, b)
        return y, tape.gradient(y, [a, b], upstream)

    y, (grad_a, grad_b) = interleave(tf.constant(a), tf.constant(b))
    np.testing.assert_array_equal(y.numpy(), np.stack([a, b], axis=-1).reshape(2, 5, 6, 8))
    np.testing.assert_array_equal(grad_a.numpy(), upstream[..., 0::2])
    np.testing.assert_array_equal(grad_b.numpy(), upstream[..., 1::2])


def test_the_complex_interleave_differentiates_to_second_order():
    # Its gradient is itself interleaved (de-interleaved) as complex numbers,
    # with a gradient of its own: a gradient penalty trains through it.
    rng = np.random.default_rng(20)
    x = tf.constant(rng.standard_normal((2, 3, 4, 8)).astype(np.float32))
    w, v = (tf.constant(rng.standard_normal((2, 3, 4, 16)).astype(np.float32)) for _ in range(2))

    def second_order(training):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                shuffled = channel_shuffle(x, 2, True, training=training)
                repeated = repeat_channels(shuffled, 2, training)
                loss = tf.reduce_sum(repeated**3 * w)
            penalty = tf.reduce_sum(inner.gradient(loss, x) * v[..., :8])
        return outer.gradient(penalty, x)

    np.testing.assert_allclose(second_order(True), second_order(False), rtol=1e-6, atol=1e-6)


def _op_types(function, *args):
    return {op.type for op in function.get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_graphs_interleave_as_complex_numbers_where_it_runs(jit_compile):
    # The two-group shuffle and the channel repeat of a float32 training graph
    # interleave as complex numbers on TensorFlow's CPU; inference graphs
    # (which converters read), other dtypes and XLA (no complex bitcast)
    # keep the transpose, with the same values.
    x = tf.constant(np.random.default_rng(19).standard_normal((2, 3, 4, 8)).astype(np.float32))

    def forms(training, dtype="float32"):
        @tf.function(jit_compile=jit_compile)
        def both(x):
            x = tf.cast(x, dtype)
            return channel_shuffle(x, 2, True, training=training), repeat_channels(x, 2, training)

        return both

    stock = forms(training=False)
    for shuffled, repeated in [stock(x), forms(training=True)(x)]:
        np.testing.assert_array_equal(shuffled.numpy(), x.numpy()[..., [4, 0, 5, 1, 6, 2, 7, 3]])
        np.testing.assert_array_equal(repeated.numpy(), np.repeat(x.numpy(), 2, axis=-1))
    assert "Complex" not in _op_types(stock, x)
    assert "Complex" not in _op_types(forms(training=True, dtype="float16"), x)
    assert ("Complex" in _op_types(forms(training=True), x)) is not jit_compile


@pytest.mark.parametrize("spatial", [(5, 6), (None, None)])
def test_blocked_channel_repeat_puts_each_blocks_copies_side_by_side(spatial):
    # What the looped LruNet stage feeds its depthwise convolution where
    # TensorFlow uses oneDNN: channel (g * M + m) * C/G + j is input channel
    # g * C/G + j (its gradient sums the copies).
    groups, times = 4, 2
    x = np.random.default_rng(17).standard_normal((2, 5, 6, 8)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, *spatial, 8))])
    def repeat(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = blocked_channel_repeat(x, groups, times)
        return y, tape.gradient(y, x, tf.ones_like(y))

    y, grad = repeat(tf.constant(x))
    blocks = x.reshape(2, 5, 6, groups, 1, 2)
    expected = np.broadcast_to(blocks, (2, 5, 6, groups, times, 2)).reshape(2, 5, 6, 16)
    np.testing.assert_array_equal(y.numpy(), expected)
    np.testing.assert_array_equal(grad.numpy(), np.full_like(x, times))


class _EinsumPointwise(GroupedPointwiseConv):
    def call(self, inputs, training=None):
        x = keras.ops.reshape(inputs, (-1, self.groups, inputs.shape[-1] // self.groups))
        y = keras.ops.einsum("ngi,gio->ngo", x, self.kernel)
        return keras.ops.reshape(y, (*keras.ops.shape(inputs)[:-1], self.filters))


class _GatherShuffle(ChannelShuffle):
    def call(self, inputs):
        perm = channel_shuffle_permutation(inputs.shape[-1], self.groups, self.swap_halves)
        return keras.ops.take(inputs, perm.tolist(), axis=-1)


_STOCK = LayerTypes(keras.layers.BatchNormalization, _EinsumPointwise, _GatherShuffle)


def test_lrunet_training_step_equals_the_stock_layer_network():
    kwargs = dict(layer_reuse=2, input_shape=(28, 28, 1), classifier_activation=None, dropout=0.0)
    fast = lrunet.LruNet(**kwargs)
    stock = lrunet.LruNet(**kwargs, layer_types=_STOCK)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in stock.layers)
    assert [w.path for w in fast.weights] == [w.path for w in stock.weights]
    rng = np.random.default_rng(14)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in stock.weights]
    weights = [
        w if "variance" in v.path or "gamma" in v.path else w - 1.0
        for w, v in zip(weights, stock.weights, strict=True)
    ]
    fast.set_weights(weights)
    stock.set_weights(weights)
    x = tf.constant(rng.random((8, 28, 28, 1), dtype=np.float32))
    labels = tf.constant(rng.integers(0, 10, 8))

    def step(model):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.reduce_mean(loss)
        return logits, tape.gradient(loss, model.trainable_weights)

    logits_fast, grads_fast = step(fast)
    logits_stock, grads_stock = step(stock)
    np.testing.assert_allclose(logits_fast.numpy(), logits_stock.numpy(), rtol=1e-4, atol=1e-4)
    # Absolute tolerance: some gradients are zero in exact arithmetic (a
    # BatchNorm's beta feeding the next BatchNorm through a linear map).
    for a, b in zip(grads_fast, grads_stock, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=2e-5)
    for a, b in zip(fast.non_trainable_weights, stock.non_trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        fast.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=1e-4, atol=1e-4
    )


def test_sharesnet_training_step_equals_the_stock_batchnorm_network():
    kwargs = dict(depth=10, width=1, num_classes=10, classifier_activation=None)
    keras.utils.set_random_seed(0)
    fast = sharesnet.WideShaResNet(**kwargs)
    stock = sharesnet.WideShaResNet(**kwargs, layer_types=_STOCK)
    assert any(type(layer) is FusedBatchNormalization for layer in fast.layers)
    assert not any(type(layer) is FusedBatchNormalization for layer in stock.layers)
    stock.set_weights(fast.get_weights())
    rng = np.random.default_rng(164)
    x = tf.constant(rng.random((8, 32, 32, 3), dtype=np.float32))
    labels = tf.constant(rng.integers(0, 10, 8))
    steps = []
    for model in (fast, stock):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            )
        steps.append((logits, tape.gradient(loss, model.trainable_weights)))
    (logits_fast, grads_fast), (logits_stock, grads_stock) = steps
    np.testing.assert_allclose(logits_fast.numpy(), logits_stock.numpy(), rtol=1e-4, atol=1e-4)
    # Per tensor, not per element: with a batch of 8 some gradient entries are
    # sums that cancel almost to zero, where float32 rounding differs in
    # relative terms between any two correct BatchNorm implementations.
    for a, b, w in zip(grads_fast, grads_stock, fast.trainable_weights, strict=True):
        error = np.linalg.norm(a.numpy() - b.numpy())
        assert error <= 1e-3 * np.linalg.norm(b.numpy()) + 1e-6, w.path
    for a, b in zip(fast.non_trainable_weights, stock.non_trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
