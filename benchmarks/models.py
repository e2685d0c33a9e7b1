"""The networks the benchmark suite times, by name, in Keras and in PyTorch.

`keras_model("lrunet14")` is `keras_reuse`'s LruNet-14 as users get it;
`keras_model("lrunet14", naive=True)` is the same network written the
straightforward way in Keras (`Conv2D(groups=8)` for the grouped 1x1
convolution, stock `BatchNormalization`, the shuffle as a gather), the
baseline the README compares against; `torch_model(...)` is the PyTorch
implementation of the same network from `torch_reference/`.
All return logits for 10 classes on 32x32x3 inputs.
"""

from __future__ import annotations

from typing import Any

INPUT_SHAPE = (32, 32, 3)

# name -> (label, constructor name in keras_reuse.applications, keyword arguments)
MODELS = {
    "lrunet1": ("LruNet-1", "lrunet", {"layer_reuse": 1}),
    "lrunet14": ("LruNet-14", "lrunet", {"layer_reuse": 14}),
    # Each stage one traced loop (the default where XLA compiles: JAX, a GPU).
    "lrunet14_loop": ("LruNet-14, reuse loop", "lrunet", {"layer_reuse": 14, "reuse_loop": True}),
    "lrunet14_recompute": (
        "LruNet-14, reuse loop, recompute",
        "lrunet",
        {"layer_reuse": 14, "recompute": True},
    ),
    "lrunet14_unrolled": (
        "LruNet-14, unrolled",
        "lrunet",
        {"layer_reuse": 14, "reuse_loop": False},
    ),
    "sharesnet164": ("ShaResNet-164 (shared)", "sharesnet164", {"share": True}),
    "resnet164": ("ResNet-164 (unshared)", "sharesnet164", {"share": False}),
}


def _channels_last_only(data_format: str | None) -> None:
    # The naive baselines are channels last, like every benchmark.
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"The naive baselines build channels_last only. Received: data_format={data_format!r}"
        )


def _naive_grouped_conv(
    filters: int,
    groups: int = 1,
    name: str | None = None,
    data_format: str | None = None,
    **_: Any,
):
    _channels_last_only(data_format)
    import keras

    from keras_reuse.layers.ops import conv_kernel_initializer

    return keras.layers.Conv2D(
        filters,
        1,
        groups=groups,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        name=name,
    )


def _naive_shuffle(
    groups: int = 2,
    swap_halves: bool = False,
    name: str | None = None,
    data_format: str | None = None,
    **_: Any,
):
    _channels_last_only(data_format)
    import keras

    from keras_reuse.layers.ops import channel_shuffle_permutation

    class GatherShuffle(keras.layers.Layer):
        def call(self, inputs):
            perm = channel_shuffle_permutation(inputs.shape[-1], groups, swap_halves)
            return keras.ops.take(inputs, perm.tolist(), axis=-1)

    return GatherShuffle(name=name)


def _naive_layer_types() -> Any:
    """Stock Keras layers in place of keras_reuse's fast ones."""
    import keras

    from keras_reuse.applications.common import LayerTypes

    return LayerTypes(keras.layers.BatchNormalization, _naive_grouped_conv, _naive_shuffle)


def label(name: str) -> str:
    return MODELS[name][0]


def keras_model(name: str, policy: str = "float32", naive: bool = False) -> Any:
    """The Keras network `name` under the dtype policy `policy`.

    Args:
        name: A key of `MODELS`.
        policy: A Keras dtype policy name ("float32", "mixed_bfloat16").
        naive: Only for LruNets: the straightforward Keras port instead.

    Returns:
        An uncompiled `keras.Model` returning logits.
    """
    from keras_reuse import applications
    from keras_reuse.training.precision import dtype_policy_scope

    _, constructor, kwargs = MODELS[name]
    if naive:
        # The naive layer types replace the unrolled network's layers.
        kwargs = {**kwargs, "layer_types": _naive_layer_types(), "reuse_loop": False}
    with dtype_policy_scope(policy):
        return applications.create(
            constructor, num_classes=10, classifier_activation=None, **kwargs
        )


def torch_model(name: str) -> Any:
    """The PyTorch network `name` (needs torch)."""
    _, constructor, kwargs = MODELS[name]
    if constructor == "lrunet":
        from torch_reference.lrunet import TorchLruNet

        return TorchLruNet(num_classes=10, layer_reuse=kwargs["layer_reuse"])
    from torch_reference.sharesnet import TorchShaResNet164

    return TorchShaResNet164(num_classes=10, share=kwargs["share"])


def has_naive(name: str) -> bool:
    """Whether `name` has a naive port: the unrolled LruNets (layer types swapped)."""
    _, constructor, kwargs = MODELS[name]
    return constructor == "lrunet" and not kwargs.get("reuse_loop")
