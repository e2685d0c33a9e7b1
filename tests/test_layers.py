"""Reuse primitives against straightforward reference implementations."""

import keras
import numpy as np
import pytest

from keras_reuse.layers import ChannelShuffle, GroupedPointwiseConv, channel_shuffle_permutation


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
