"""share() and unshare(): weight sharing as a graph rewrite of any functional model."""

import functools

import keras
import numpy as np
import pytest

from keras_reuse import LruNet, applications, reuse_summary, share, to_tflite, unshare
from keras_reuse.applications import ShaResNet50, ShaResNet164, WideShaResNet
from keras_reuse.reuse.sharing import resnet_stage_rule

_CIFAR_RULE = functools.partial(resnet_stage_rule, include_first_block=False)


def _params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _conv_bias_params(model):
    return sum(
        int(np.prod(layer.bias.shape))
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias
    )


def _layer_names(model):
    """Names of the layers apart from inputs (whose names Keras numbers per process)."""
    return {x.name for x in model.layers if not isinstance(x, keras.layers.InputLayer)}


def _images(shape, n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _tiny(name="tiny"):
    """Three 3x3 convs of one width in a row, each with its own BatchNorm."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 4), name="image")
    x = inputs
    for i in (1, 2, 3):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="fc")(x)
    model = keras.Model(inputs, outputs, name=name)
    # Moving statistics away from their defaults, so copying them is tested.
    for i in (1, 2, 3):
        bn = model.get_layer(f"bn{i}")
        bn.moving_mean.assign(np.full(4, 0.1 * i, np.float32))
        bn.moving_variance.assign(np.full(4, 1.0 + i, np.float32))
    return model


_CONVS = {"convs_shared": ["conv1", "conv2", "conv3"]}
_X = _images((8, 8, 4))


def _with_member_weights(model, source, members):
    """`model`'s clone in which every member has `source`'s weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for member in members:
        copy.get_layer(member).set_weights(source)
    return copy


# --- share: what the result is ------------------------------------------------------------


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_keras_applications_resnet_shared_by_the_rule_has_our_sharesnet_parameters(depth):
    resnet = getattr(keras.applications, f"ResNet{depth}")(weights=None)
    shared = share(resnet, resnet_stage_rule)
    ours = getattr(applications, f"ShaResNet{depth}")()
    # keras.applications' ResNets give every conv a bias, torchvision's (and
    # ours, like Boulch's) none: apart from those, the counts are equal.
    assert _params(shared) - _conv_bias_params(shared) == _params(ours)
    stages = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    # Stage conv2 does not downsample, so all its blocks share; in the later
    # stages block 1 strides and keeps its own 3x3 conv.
    expected = {"conv2_shared_2_conv": stages[0]}
    expected |= {f"conv{s + 2}_shared_2_conv": n - 1 for s, n in enumerate(stages) if s}
    assert {row.name: row.calls for row in reuse_summary(shared).reused} == expected


def test_rule_groups_only_3x3_convs_never_batchnorms():
    groups = resnet_stage_rule(keras.applications.ResNet50V2(weights=None))
    members = [m for names in groups.values() for m in names]
    assert len(groups) == 4 and members
    assert all(m.endswith("_2_conv") for m in members)


def test_sharing_our_plain_resnet_by_the_rule_gives_our_sharesnet():
    plain = ShaResNet50(share=False, input_shape=(64, 64, 3))
    ours = ShaResNet50(input_shape=(64, 64, 3))
    shared = share(plain, resnet_stage_rule)
    assert _params(shared) == _params(ours) == 20_469_800
    assert _layer_names(shared) == _layer_names(ours)
    assert reuse_summary(shared).calls == reuse_summary(ours).calls


@pytest.mark.parametrize(
    "build",
    [ShaResNet164, functools.partial(WideShaResNet, depth=22, width=1)],
    ids=["sharesnet164", "wide_sharesnet22_1"],
)
def test_cifar_rule_keeps_block1_apart_like_our_cifar_sharesnets(build):
    shared = share(build(share=False), _CIFAR_RULE)
    ours = build()
    assert _params(shared) == _params(ours)
    assert reuse_summary(shared).calls == reuse_summary(ours).calls


def test_share_first_starts_from_the_first_members_weights():
    model = _tiny()
    shared = share(model, _CONVS, init="first")
    assert [layer.name for layer in shared.layers].count("convs_shared") == 1
    assert reuse_summary(shared).calls["convs_shared"] == 3
    assert _params(shared) == _params(model) - 2 * (4 * 4 * 9 + 4)
    first = model.get_layer("conv1").get_weights()
    for got, want in zip(shared.get_layer("convs_shared").get_weights(), first, strict=True):
        np.testing.assert_array_equal(got, want)
    # Every other layer, BatchNorm statistics included, keeps its weights, so
    # the shared model computes what the original computes with conv1's
    # kernel in all three places.
    expected = _predict(_with_member_weights(model, first, _CONVS["convs_shared"]), _X)
    np.testing.assert_allclose(_predict(shared, _X), expected, rtol=1e-6, atol=1e-6)


def test_share_mean_starts_from_the_members_mean():
    model = _tiny()
    shared = share(model, _CONVS, init="mean")
    members = [model.get_layer(m).get_weights() for m in _CONVS["convs_shared"]]
    for i, got in enumerate(shared.get_layer("convs_shared").get_weights()):
        np.testing.assert_allclose(got, np.mean([w[i] for w in members], axis=0), rtol=1e-6)


def test_share_random_starts_fresh_and_keeps_the_other_layers():
    model = _tiny()
    shared = share(model, _CONVS, init="random")
    kernel = shared.get_layer("convs_shared").get_weights()[0]
    for member in _CONVS["convs_shared"]:
        assert not np.allclose(kernel, model.get_layer(member).get_weights()[0])
    for name in ("bn1", "bn3", "fc"):
        for got, want in zip(
            shared.get_layer(name).get_weights(), model.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)


def test_share_names_groups_given_as_lists_after_their_first_member():
    shared = share(_tiny(), [["conv2", "conv3"]])
    assert reuse_summary(shared).calls["conv2_shared"] == 2
    assert "conv1" in [layer.name for layer in shared.layers]


def test_share_leaves_the_input_model_alone_and_shares_no_variable_with_it():
    model = _tiny()
    before = [w.copy() for w in model.get_weights()]
    names = [layer.name for layer in model.layers]
    shared = share(model, _CONVS)
    assert [layer.name for layer in model.layers] == names
    assert reuse_summary(model).reused == ()
    assert not {id(v) for v in shared.weights} & {id(v) for v in model.weights}
    shared.compile(keras.optimizers.SGD(0.5), "mse")
    shared.fit(_X, np.ones((len(_X), 3)), epochs=1, verbose=0)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_share_a_sequential_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(6, name="a"), keras.layers.Dense(6, name="b")]
    )
    shared = share(model, {"ab": ["a", "b"]})
    assert reuse_summary(shared).calls == {"ab": 2}
    x = _images((6,))
    kernel, bias = model.get_layer("a").get_weights()
    np.testing.assert_allclose(
        _predict(shared, x), (x @ kernel + bias) @ kernel + bias, rtol=1e-5, atol=1e-6
    )


def test_shared_model_round_trips_through_a_keras_file(tmp_path):
    shared = share(_tiny(), _CONVS)
    path = tmp_path / "shared.keras"
    shared.save(path)
    loaded = keras.saving.load_model(path)
    assert reuse_summary(loaded).calls == reuse_summary(shared).calls
    np.testing.assert_allclose(_predict(loaded, _X), _predict(shared, _X), rtol=1e-6, atol=1e-7)


def test_to_tflite_stores_the_shared_kernel_once(tmp_path):
    # A wide conv, so its kernel dominates the file size.
    inputs = keras.Input((8, 8, 64))
    x = inputs
    for i in (1, 2, 3, 4):
        x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
    model = keras.Model(inputs, x)
    shared = share(model, [["conv1", "conv2", "conv3", "conv4"]])
    plain_size = to_tflite(model, tmp_path / "plain.tflite").size_bytes
    shared_size = to_tflite(shared, tmp_path / "shared.tflite").size_bytes
    kernel_bytes = 64 * 64 * 9 * 4
    # Three of the four float32 kernels are gone from the file.
    assert plain_size - shared_size > 2.9 * kernel_bytes
    assert shared_size < 1.1 * kernel_bytes


# --- unshare ------------------------------------------------------------------------------


def test_unshare_lrunet_is_the_unrolled_network_and_computes_the_same():
    model = LruNet(layer_reuse=3, input_shape=(28, 28, 1))
    unrolled = unshare(model)
    assert _params(unrolled) == reuse_summary(model).unrolled_params
    assert reuse_summary(unrolled).reused == ()
    names = [layer.name for layer in unrolled.layers]
    assert {"stage1_dw_call1", "stage1_dw_call2", "stage1_dw_call3"} <= set(names)
    assert "stage1_dw" not in names and "stem_conv" in names
    x = _images((28, 28, 1))
    np.testing.assert_allclose(_predict(unrolled, x), _predict(model, x), rtol=1e-6, atol=1e-6)


def test_share_then_unshare_then_share_round_trips_exactly():
    model = _tiny()
    shared = share(model, _CONVS)
    unrolled = unshare(shared)
    assert _params(unrolled) == _params(model)
    np.testing.assert_allclose(_predict(unrolled, _X), _predict(shared, _X), rtol=1e-6, atol=1e-7)
    calls = [[f"convs_shared_call{i}" for i in (1, 2, 3)]]
    again = share(unrolled, calls)
    assert _params(again) == _params(shared)
    np.testing.assert_allclose(_predict(again, _X), _predict(shared, _X), rtol=1e-6, atol=1e-7)


def test_unshare_without_reuse_is_a_copy():
    model = _tiny()
    copy = unshare(model)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(_predict(copy, _X), _predict(model, _X))


# --- bad input ------------------------------------------------------------------------------


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def _nested():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d")], name="inner")
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)), name="outer")


def _mixed():
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", strides=2, name="strided")(x)
    x = keras.layers.Conv2D(4, 1, name="pointwise")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="wider")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="wider_input")(x)
    x = keras.layers.Dense(8, name="dense")(x)
    return keras.Model(inputs, x, name="mixed")


@pytest.mark.parametrize(
    "groups, init, message",
    [
        ([["conv1", "conv9"]], "first", "no layer named 'conv9'"),
        ([["conv1", "conv2"], ["conv2", "conv3"]], "first", "'conv2' is in two groups"),
        ([["conv1"]], "first", "has one layer"),
        ([["conv1", "conv1"]], "first", "more than once"),
        ([], "first", "`groups` is empty"),
        ("conv1", "first", "`groups` must be"),
        ([["conv1", 2]], "first", "must be strings"),
        ({"fc": ["conv1", "conv2"]}, "first", "already the name of layer 'fc'"),
        ([["image", "conv1"]], "first", "'image' (group 'image_shared') is an input"),
        ([["conv1", "bn1"]], "first", "class: Conv2D vs BatchNormalization"),
        (_CONVS, "average", "`init` must be one of"),
        (lambda model: [], "first", "found no layers to share in model 'tiny'"),
    ],
)
def test_share_rejects_bad_groups_before_building_anything(groups, init, message):
    model = _tiny()
    with pytest.raises(ValueError, match=None) as raised:
        share(model, groups, init=init)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "pair, difference",
    [
        (["a", "strided"], "strides=(1, 1) vs strides=(2, 2)"),
        (["a", "pointwise"], "kernel_size="),
        (["a", "wider"], "filters=4 vs filters=8"),
        (["wider", "wider_input"], "weight shapes: [(3, 3, 4, 8), (8,)] vs [(3, 3, 8, 8), (8,)]"),
    ],
)
def test_share_names_both_layers_and_the_difference(pair, difference):
    with pytest.raises(ValueError) as raised:
        share(_mixed(), [pair])
    message = str(raised.value)
    assert f"Layers {pair[0]!r} and {pair[1]!r}" in message
    assert difference in message


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"Close names: \['conv1'"):
        share(_tiny(), [["conv1x", "conv2"]])


@pytest.mark.parametrize("function", [share, unshare], ids=["share", "unshare"])
def test_subclassed_and_nested_models_are_refused_by_name(function):
    args = (_CONVS,) if function is share else ()
    with pytest.raises(ValueError, match="is a _Subclassed without one"):
        function(_Subclassed(), *args)
    with pytest.raises(ValueError, match=r"model 'outer' contains nested model\(s\) \['inner'\]"):
        function(_nested(), *args)
    with pytest.raises(ValueError, match="Received: model='resnet'"):
        function("resnet", *args)


def test_unshare_refuses_a_name_it_would_make_that_exists():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4, name="d")
    x = dense(dense(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="d_call2")(x))
    with pytest.raises(ValueError, match=r"already has layer\(s\) \['d_call2'\]"):
        unshare(model)


def test_unshare_refuses_a_looped_stage_instead_of_leaving_it_shared():
    with pytest.raises(
        ValueError, match=r"reuse their weights inside one call.*unroll_reuse_loops"
    ):
        unshare(LruNet(layer_reuse=2, reuse_loop=True))
