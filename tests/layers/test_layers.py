"""Reuse primitives against straightforward reference implementations."""

import keras
import numpy as np
import pytest

from keras_reuse.layers import ChannelShuffle, GroupedPointwiseConv
from keras_reuse.layers.ops import channel_shuffle_permutation


def reference_grouped_pointwise(x, kernel):
    """Loop over groups, as PyTorch's grouped Conv2d defines it."""
    groups, cin_g, cout_g = kernel.shape
    out = np.zeros(x.shape[:-1] + (groups * cout_g,), dtype=np.float64)
    for g in range(groups):
        out[..., g * cout_g : (g + 1) * cout_g] = x[..., g * cin_g : (g + 1) * cin_g] @ kernel[g]
    return out


@pytest.mark.parametrize("groups, cin, cout", [(8, 32, 16), (1, 6, 4), (4, 8, 12)])
def test_grouped_pointwise_matches_group_loop(groups, cin, cout):
    layer = GroupedPointwiseConv(
        cout, groups=groups, use_bias=True, bias_initializer="random_normal"
    )
    x = np.random.default_rng(0).standard_normal((2, 5, 3, cin)).astype(np.float32)
    y = keras.ops.convert_to_numpy(layer(x))
    expected = reference_grouped_pointwise(x, layer.kernel.numpy()) + layer.bias.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_grouped_pointwise_equals_conv2d_with_groups():
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 16)).astype(np.float32)
    ours = GroupedPointwiseConv(8, groups=4)
    conv = keras.layers.Conv2D(8, 1, groups=4, use_bias=False)
    ours.build(x.shape)
    conv.build(x.shape)
    # Conv2D's grouped kernel is (1, 1, cin/groups, cout), outputs by group.
    conv.kernel.assign(ours.kernel.numpy().transpose(1, 0, 2).reshape(1, 1, 4, 8))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)),
        keras.ops.convert_to_numpy(conv(x)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_grouped_pointwise_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"filters=10, groups=4"):
        GroupedPointwiseConv(10, groups=4)
    with pytest.raises(ValueError, match=r"groups=0"):
        GroupedPointwiseConv(8, groups=0)
    with pytest.raises(ValueError, match=r"filters=0"):
        GroupedPointwiseConv(0)
    with pytest.raises(ValueError, match=r"divisible by groups=4.*input_shape=\(None, 3, 3, 6\)"):
        GroupedPointwiseConv(8, groups=4).build((None, 3, 3, 6))


def torch_style_lrunet_shuffle(x):
    """The authors' ShuffleBlock(groups=2) translated literally to NHWC numpy."""
    c = x.shape[-1]
    x = np.concatenate([x[..., c // 2 :], x[..., : c // 2]], axis=-1)
    x = x.reshape(x.shape[:-1] + (2, c // 2))
    x = np.swapaxes(x, -1, -2)
    return x.reshape(x.shape[:-2] + (c,))


def test_channel_shuffle_matches_the_authors_shuffle():
    x = np.random.default_rng(2).standard_normal((2, 3, 3, 64)).astype(np.float32)
    y = keras.ops.convert_to_numpy(ChannelShuffle(2, swap_halves=True)(x))
    np.testing.assert_array_equal(y, torch_style_lrunet_shuffle(x))


def test_channel_shuffle_plain_shufflenet():
    perm = channel_shuffle_permutation(6, groups=3)
    np.testing.assert_array_equal(perm, [0, 2, 4, 1, 3, 5])
    x = np.arange(6, dtype=np.float32)[None]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ChannelShuffle(3)(x)), x[:, perm])


def test_channel_shuffle_with_unknown_spatial_size():
    # The reshape is static when the shape is known, dynamic otherwise.
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, ChannelShuffle(2, swap_halves=True)(inputs))
    perm = channel_shuffle_permutation(8, 2, swap_halves=True)
    for size in (3, 5):
        x = np.random.default_rng(size).standard_normal((2, size, size + 1, 8)).astype(np.float32)
        np.testing.assert_array_equal(model.predict(x, verbose=0), x[..., perm])


def test_channel_shuffle_rejects_bad_channels():
    with pytest.raises(ValueError, match=r"divisible by 4.*input_shape=\(None, 6\)"):
        ChannelShuffle(4).build((None, 6))
    with pytest.raises(ValueError, match=r"groups=0"):
        ChannelShuffle(0)


def test_layers_serialize_without_custom_objects(tmp_path):
    inputs = keras.Input((4, 4, 16))
    x = GroupedPointwiseConv(8, groups=4, use_bias=True)(inputs)
    outputs = ChannelShuffle(2, swap_halves=True)(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 16)).astype(np.float32)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    config = restored.layers[1].get_config()
    assert (config["filters"], config["groups"], config["use_bias"]) == (8, 4, True)


# ------------------------------------------- TensorFlow fast paths vs generic --


@pytest.fixture
def generic_path(monkeypatch):
    """Makes keras_reuse.layers take the keras.ops path JAX and PyTorch run, on TensorFlow.

    The fast paths are chosen by `keras.backend.backend() == "tensorflow"`;
    faking another answer for the layers (Keras's own code asks its internal
    function, which stays truthful) runs the generic code in this process.
    """

    def use_generic(active: bool) -> None:
        if active:
            monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
        else:
            monkeypatch.undo()

    return use_generic


# bfloat16 keeps 8 significant bits: one unit in the last place at the largest
# magnitude of a tensor is 2**-8 of it.
BFLOAT16_ULP = 2.0**-8


def _assert_close_at_scale(actual, expected, bound, what):
    """max |actual - expected| <= bound * max |expected| (bound: a fraction of the scale)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    error, scale = np.abs(actual - expected).max(), np.abs(expected).max()
    assert error <= bound * scale, f"{what}: {error:.3g} > {bound:.3g} x {scale:.3g}"


def _forward_and_gradients(layer, x, training, upstream):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_weights])]


def test_grouped_pointwise_generic_path_equals_the_tensorflow_fast_path(generic_path):
    layer = GroupedPointwiseConv(16, groups=8, use_bias=True, bias_initializer="random_normal")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 32)).astype(np.float32)
    layer.build(x.shape)
    # Inference: TensorFlow's grouped conv2d against the per-group matmuls.
    fast = keras.ops.convert_to_numpy(layer(x, training=False))
    generic_path(True)
    generic = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(generic, fast, rtol=1e-5, atol=1e-5)
    upstream = rng.standard_normal((3, 4, 5, 16)).astype(np.float32)
    # A gradient of the inference-mode call (TensorFlow's CPU kernels have
    # none for a grouped conv2d where oneDNN is off): the fast path's own.
    generic_path(False)
    y_fast, grads_fast = _forward_and_gradients(layer, x, False, upstream)
    generic_path(True)
    y_generic, grads_generic = _forward_and_gradients(layer, x, False, upstream)
    np.testing.assert_allclose(y_fast, y_generic, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_fast, grads_generic, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Training: TensorFlow's path (where oneDNN runs its kernels, the grouped
    # conv2d with TensorFlow's gradient at these narrow groups; otherwise the
    # matmuls) and the generic one, each against the group loop's closed form.
    kernel = layer.kernel.numpy()
    u = upstream.reshape(-1, 8, 2)
    xs = x.reshape(-1, 8, 4)
    for generic in (False, True):
        generic_path(generic)
        y, (dx, dkernel, dbias) = _forward_and_gradients(layer, x, True, upstream)
        np.testing.assert_allclose(y, fast, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dkernel, np.einsum("ngi,ngo->gio", xs, u), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            dx, np.einsum("ngo,gio->ngi", u, kernel).reshape(x.shape), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(dbias, upstream.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batchnorm_generic_path_equals_the_tensorflow_fast_path(generic_path, policy):
    from keras_reuse.layers import FusedBatchNormalization

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5, 4, 16)) * 2 + 1).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    weights = [
        rng.uniform(0.5, 1.5, 16),
        rng.standard_normal(16),
        rng.standard_normal(16) * 0.1,
        rng.uniform(0.5, 2.0, 16),
    ]
    results = []
    for generic in (False, True):
        generic_path(generic)
        layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
        layer.build(x.shape)
        layer.set_weights([w.astype(np.float32) for w in weights])
        inputs = keras.ops.convert_to_numpy(keras.ops.cast(x, layer.compute_dtype))
        y, grads = _forward_and_gradients(layer, inputs, True, upstream)
        stats = [w.numpy() for w in layer.non_trainable_weights]
        results.append((np.asarray(y, np.float32), grads, stats))
    (y_fast, g_fast, s_fast), (y_generic, g_generic, s_generic) = results
    tol = 1e-5 if policy == "float32" else 3e-2
    np.testing.assert_allclose(y_generic, y_fast, rtol=tol, atol=tol)
    for i, (a, b) in enumerate(zip(g_generic, g_fast, strict=True)):
        if policy == "float32":
            np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol)
        else:
            # The input gradient is bfloat16 and came out identical; gamma's and
            # beta's are float32 sums, measured at most 1.9e-7 of the largest
            # (oneDNN on; 1.3e-7 off; this AVX2 CPU, under load): 10x that.
            _assert_close_at_scale(a, b, 2e-6, f"gradient {i}")
    for a, b in zip(s_generic, s_fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------ the oneDNN depthwise form --

_DEPTHWISE_CASES = [
    {"kernel_size": 3, "padding": "same", "depth_multiplier": 2, "use_bias": False},
    {"kernel_size": 3, "strides": 2, "padding": "valid", "depth_multiplier": 3},
    {"kernel_size": 3, "dilation_rate": 2, "padding": "same", "depth_multiplier": 2},
    {"kernel_size": (3, 1), "depth_multiplier": 1, "activation": "relu"},
]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("config", _DEPTHWISE_CASES)
def test_depthwise_conv2d_equals_keras_forward_and_gradients(config, policy):
    from keras_reuse.layers import DepthwiseConv2D

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 9, 8, 6)).astype(np.float32)
    ours = DepthwiseConv2D(bias_initializer="random_normal", dtype=policy, **config)
    stock = keras.layers.DepthwiseConv2D(dtype=policy, **config)
    ours.build(x.shape)
    stock.build(x.shape)
    stock.set_weights(ours.get_weights())
    inputs = keras.ops.convert_to_numpy(keras.ops.cast(x, ours.compute_dtype))
    upstream = rng.standard_normal(ours.compute_output_shape(x.shape)).astype(np.float32)
    y_ours, g_ours = _forward_and_gradients(ours, inputs, True, upstream)
    y_stock, g_stock = _forward_and_gradients(stock, inputs, True, upstream)
    tol = 1e-5 if policy == "float32" else 3e-2
    assert y_ours.dtype == y_stock.dtype
    np.testing.assert_allclose(
        np.asarray(y_ours, np.float32), np.asarray(y_stock, np.float32), rtol=tol, atol=tol
    )
    for i, (a, b) in enumerate(zip(g_ours, g_stock, strict=True)):
        if policy == "float32":
            np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol)
        else:
            # Measured: identical with oneDNN off; with it on (the multiplier-1
            # form sums in another order) at most 5.6e-3 of the largest
            # gradient, 1.4 bfloat16 ulps (this AVX2 CPU, under load). Bound:
            # 4 ulps at the largest magnitude, 2.8x the worst measured.
            _assert_close_at_scale(a, b, 4 * BFLOAT16_ULP, f"gradient {i}")


def _depthwise_filter_multipliers(layer, shape) -> list[int]:
    """The depth multiplier of every depthwise op TensorFlow traces for `layer`."""
    import tensorflow as tf

    graph = (
        tf.function(lambda x: layer(x))
        .get_concrete_function(tf.TensorSpec(shape, tf.float32))
        .graph
    )
    return [
        int(op.inputs[1].shape[-1])
        for op in graph.get_operations()
        if op.type == "DepthwiseConv2dNative"
    ]


def test_depthwise_conv2d_runs_multiplier_one_where_tensorflow_uses_onednn():
    from keras_reuse.layers import DepthwiseConv2D
    from keras_reuse.layers.ops import onednn_cpu

    layer = DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    expected = [1] if onednn_cpu() else [2]
    assert _depthwise_filter_multipliers(layer, (2, 5, 5, 4)) == expected
    # Keras's own layer keeps the multiplier-2 op: the test can tell them apart.
    stock = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    assert _depthwise_filter_multipliers(stock, (2, 5, 5, 4)) == [2]


def test_depthwise_conv2d_loads_weights_saved_from_keras_layer(tmp_path):
    from keras_reuse.layers import DepthwiseConv2D

    def model(cls):
        inputs = keras.Input((5, 5, 4))
        return keras.Model(inputs, cls(3, depth_multiplier=2, name="dw")(inputs))

    stock = model(keras.layers.DepthwiseConv2D)
    path = tmp_path / "stock.weights.h5"
    stock.save_weights(path)
    ours = model(DepthwiseConv2D)
    ours.load_weights(path)
    for a, b in zip(ours.get_weights(), stock.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
