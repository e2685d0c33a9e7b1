"""Backend ops behind the reuse layers: a generic `keras.ops` form each, TensorFlow's fast paths.

What runs where, on purpose. Every layer has one generic implementation in
`keras.ops`, which is what the JAX and PyTorch backends run, on any device.
On the TensorFlow backend three fast paths replace parts of it, each behind a
`keras.backend.backend() == "tensorflow"` check and tested against the
generic code (tests/layers/test_layers.py, forward and gradient; with oneDNN on
too, by tests/layers/test_onednn_paths.py):

* `GroupedPointwiseConv` inference: one grouped `tf.nn.conv2d`, faster than
  the per-group matmuls on CPU, with its gradient written out (TensorFlow's
  own CPU kernels have none where oneDNN is off), so an inference-mode call
  can still be differentiated. Training: the same grouped `conv2d`, with
  TensorFlow's gradient, where oneDNN runs it (float32, at most 32 input
  channels per group: there it trains faster than the matmuls); the
  matmuls otherwise, as on the other backends.
* `FusedBatchNormalization` training: TensorFlow's `FusedBatchNormV3`, one
  op forward and one backward, instead of Keras's separate moments and
  multiply-add.
* `DepthwiseConv2D` with a depth multiplier above 1, where TensorFlow runs
  its CPU kernels through oneDNN (its default on x86 CPUs with AVX-512 VNNI,
  bfloat16 or AMX, and
  where importing `keras_reuse` turns it on: any other x86-64): the same convolution
  as a multiplier-1 depthwise convolution of the channel-repeated input.
  oneDNN's multiplier-2 kernels for the forward pass and the input
  gradient run slower than its multiplier-1 kernels on the same output
  (docs/performance.md).

The choices were measured on CPU (docs/performance.md). On a GPU the same
code runs (cuDNN serves the grouped conv2d and the fused BatchNorm), and
Keras's default `jit_compile="auto"` compiles TensorFlow and JAX training
steps with XLA; whether the native grouped convolution is faster there than
the matmuls is not measured here: `python -m benchmarks.gpu` does it.
`ChannelShuffle` is reshapes and a transpose on every backend. One more
TensorFlow path serves training graphs on CPU (float32, outside XLA): the
two-group shuffle, and the channel repeat of the multiplier-1 form,
interleave two tensors as the real and imaginary parts of a complex one
(`interleave_channels`), one elementwise pass where a transpose with an
innermost axis of 2 copies element by element. Inference graphs keep the
transpose: TFLite has no complex numbers.
"""

from __future__ import annotations

import math
import platform

import keras
import numpy as np
from keras import ops

from keras_reuse.utils.backends import onednn_enabled

# The package name under which the layers register for `.keras` files.
PACKAGE = "keras_reuse"


def conv_kernel_initializer() -> keras.initializers.Initializer:
    # The LruNet authors initialise convolutions with PyTorch's
    # kaiming_normal_(mode="fan_out"); this is the Keras equivalent.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


# Input channels per group up to which oneDNN's grouped convolution trains
# faster than the per-group matmuls. Measured (forward and both gradients,
# 2-core AVX2 AMD EPYC, oneDNN on, 8 groups, batches of 16-512 at 4x4 to
# 16x16): 16 and 32 channels per group took 0.62-0.97x the matmuls' time
# (LruNet's stages 1 and 2), 64 and 128 took 1.05-1.56x (stages 3 and 4).
# Not measured on CPUs where TensorFlow turns oneDNN on itself (AVX-512
# VNNI, bfloat16 or AMX).
_ONEDNN_GROUPED_MAX_CIN = 32


def trains_grouped_conv2d(x, cin_g: int) -> bool:
    """Whether TensorFlow trains this grouped 1x1 convolution as oneDNN's grouped conv2d.

    Only where its gradient is oneDNN's: TensorFlow's own CPU kernels have
    none ("not supported on CPU"), and x86-64 is where oneDNN's was tested.
    An explicit `jit_compile=True` on a CPU hands the convolution to XLA,
    which this check cannot see (Keras's default does not compile on a
    machine without a GPU). There the grouped form is the slower one, and
    both are far slower than without XLA.
    """
    return (
        cin_g <= _ONEDNN_GROUPED_MAX_CIN
        and keras.backend.standardize_dtype(x.dtype) == "float32"
        and platform.machine().lower() in ("x86_64", "amd64")
        and onednn_cpu()
    )


def grouped_pointwise(
    x, kernel, training=False, fast: bool = True, data_format: str = "channels_last"
):
    """A grouped 1x1 convolution without bias, `GroupedPointwiseConv`'s arithmetic.

    Output channel `g * cout_g + o` is `sum_i x[..., g * cin_g + i] *
    kernel[g, i, o]` (channels last; channels first: axis 1). Used by
    `GroupedPointwiseConv` and by the looped LruNet stage
    (`keras_reuse.applications.lrunet.stage`).

    Args:
        x: Activations `(..., groups * cin_g)`, or `(batch, groups * cin_g,
            ...)` channels first.
        kernel: The kernel's value, `(groups, cin_g, cout_g)`.
        training: Whether this is a training call (TensorFlow's inference
            path differs; see `GroupedPointwiseConv`).
        fast: Allow the TensorFlow fast paths (False: the generic path, for
            tests). They are channels-last paths.
        data_format: "channels_last" or "channels_first".

    Returns:
        `(..., groups * cout_g)` activations (channels first: `(batch,
        groups * cout_g, ...)`).
    """
    groups, cin_g, cout_g = kernel.shape
    filters = groups * cout_g
    if data_format == "channels_first" and len(x.shape) > 2:
        return _grouped_pointwise_channels_first(x, kernel)
    if fast and groups > 1 and len(x.shape) == 4 and keras.backend.backend() == "tensorflow":
        if not training:
            # Inference on TensorFlow: its native grouped Conv2D runs the
            # forward pass in one op, faster than the per-group matmuls.
            return grouped_conv2d(x, kernel)
        if trains_grouped_conv2d(x, cin_g):
            # Training where oneDNN serves the grouped convolution and both
            # its gradients, at the narrow groups where it is faster.
            # Optional: TensorFlow, imported on its backend's path only.
            import tensorflow as tf

            filters = grouped_filter(tf.cast(kernel, x.dtype))
            return tf.nn.conv2d(x, filters, strides=1, padding="VALID")
    shape = ops.shape(x)
    flat = ops.reshape(x, (-1, x.shape[-1]))
    # One 2D matmul per group on channel slices. Measured on a 2-core AVX2
    # CPU (training step, LruNet shapes) it is 1.5-3x faster than the einsum
    # "ngi,gio->ngo", whose lowering transposes activations into a
    # batch-major layout and back, forward and backward.
    if groups == 1:
        y = ops.matmul(flat, kernel[0])
    else:
        slices = ops.split(flat, groups, axis=-1)
        kernels = ops.unstack(kernel, num=groups, axis=0)
        y = ops.concatenate(
            [ops.matmul(a, k) for a, k in zip(slices, kernels, strict=True)], axis=-1
        )
    return ops.reshape(y, (*shape[:-1], filters))


def _grouped_pointwise_channels_first(x, kernel):
    """`grouped_pointwise` of `(batch, C, ...)` activations: one batched matmul.

    The positions stay the last axis: `(batch, groups, cin_g, positions)` is
    multiplied by each group's transposed kernel `(groups, cout_g, cin_g)`
    (broadcast over the batch), without moving the channels last. Reshapes
    are to static shapes where known, as in `channel_shuffle`.
    """
    groups, cin_g, cout_g = kernel.shape
    spatial = tuple(x.shape[2:])
    if None in spatial:
        spatial = tuple(ops.shape(x)[2:])
        lead, positions = ops.shape(x)[0], -1
    else:
        lead, positions = -1, math.prod(spatial)
    x = ops.reshape(x, (lead, groups, cin_g, positions))
    y = ops.matmul(ops.transpose(kernel, (0, 2, 1)), x)
    return ops.reshape(y, (lead, groups * cout_g, *spatial))


def grouped_filter(kernel):
    """A `(groups, cin_g, cout_g)` kernel as a grouped `conv2d` filter `(1, 1, cin_g, filters)`.

    Output channel `g * cout_g + o` reads `kernel[g, :, o]`.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    groups, rows, cols = kernel.shape
    return tf.reshape(tf.transpose(kernel, (1, 0, 2)), (1, 1, rows, groups * cols))


def grouped_conv2d(x, kernel):
    """`grouped_pointwise` as one grouped TensorFlow `conv2d`, with a CPU gradient.

    TensorFlow's own CPU kernels have no gradient for a grouped conv2d
    (where oneDNN is off: "Gradients for grouped convolutions are not
    supported on CPU"), and a user may differentiate an inference-mode call
    (saliency maps, a gradient tape around `model(x)`). The gradient is
    written out: the input's is the grouped conv2d of the upstream gradient
    with each group's kernel transposed, the kernel's one matmul per group.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    groups, cin_g, cout_g = kernel.shape

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx = tf.nn.conv2d(dy, grouped_filter(tf.transpose(kernel, (0, 2, 1))), 1, "VALID")
            xs = tf.split(tf.reshape(x, (-1, groups * cin_g)), groups, axis=-1)
            dys = tf.split(tf.reshape(dy, (-1, groups * cout_g)), groups, axis=-1)
            dk = tf.stack([tf.matmul(a, b, transpose_a=True) for a, b in zip(xs, dys, strict=True)])
            return dx, dk

        return tf.nn.conv2d(x, grouped_filter(kernel), strides=1, padding="VALID"), grad

    return conv(x, tf.cast(kernel, x.dtype))


def onednn_cpu() -> bool:
    """Whether TensorFlow runs CPU convolutions through oneDNN, with no GPU to run them."""
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    return onednn_enabled() and not tf.config.list_physical_devices("GPU")


def tf_xla_trace() -> bool:
    """Whether TensorFlow is tracing for XLA here (`jit_compile=True`) (TensorFlow only)."""
    try:
        # Optional: TensorFlow, on its backend's path only (no public query of
        # the XLA context a `tf.function(jit_compile=True)` traces in).
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a TensorFlow without it: assume XLA
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def complex_interleave_applies(x) -> bool:
    """Whether `interleave_channels` serves float `x` here.

    TensorFlow's CPU (no GPU visible), float32, outside XLA (which takes no
    bitcast of complex numbers).
    """
    if keras.backend.backend() != "tensorflow" or keras.backend.standardize_dtype(x.dtype) != (
        "float32"
    ):
        return False
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU") and not tf_xla_trace()


def leading_dims(x) -> tuple:
    """`x`'s shape without its last axis, for reshapes: `(-1, *static sizes)`.

    Static sizes where they are known: a dynamic one costs a SHAPE op per
    call in the .tflite and in every graph (and XLA needs static reshapes).
    Where a size after the batch is unknown, the dynamic shape.
    """
    inner = x.shape[1:-1]
    return tuple(ops.shape(x)[:-1]) if None in inner else (-1, *inner)


def interleave_channels(a, b):
    """`a`'s and `b`'s channels alternated: channel `2j` is `a`'s `j`, `2j + 1` `b`'s (TensorFlow).

    The complex tensor `a + ib` holds exactly those pairs in memory, so the
    result is its bitcast to float32: one elementwise pass forward, and one
    for the gradient (`deinterleave_channels`). A stack or a transpose with
    an innermost axis of 2, the other ways to interleave, copies one element
    at a time on CPU. For float32 tensors of equal shape, channels last,
    where `complex_interleave_applies`; a training-graph form only, as
    TFLite has no complex numbers. Differentiable to any order.

    Args:
        a: A float32 tensor `(N, ..., C)`.
        b: A float32 tensor of `a`'s shape.

    Returns:
        `(N, ..., 2C)` float32.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    lead, channels = leading_dims(a), a.shape[-1]

    @tf.custom_gradient
    def interleave(a, b):
        pairs = tf.bitcast(tf.complex(a, b), tf.float32)
        return tf.reshape(pairs, (*lead, 2 * channels)), deinterleave_channels

    return interleave(a, b)


def deinterleave_channels(y):
    """`interleave_channels`' inverse: `y`'s even channels and its odd ones (TensorFlow).

    Args:
        y: A float32 tensor `(N, ..., 2C)`.

    Returns:
        `(even, odd)`, each `(N, ..., C)` float32.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    lead, channels = leading_dims(y), y.shape[-1] // 2

    @tf.custom_gradient
    def deinterleave(y):
        z = tf.bitcast(tf.reshape(y, (*lead, channels, 2)), tf.complex64)

        def grad(d_even, d_odd):
            zeros = tf.zeros_like(tf.math.real(z))
            return interleave_channels(
                zeros if d_even is None else d_even, zeros if d_odd is None else d_odd
            )

        return (tf.math.real(z), tf.math.imag(z)), grad

    return deinterleave(y)


def repeat_channels(x, times: int, training: bool = False):
    """Channel `c` of NHWC `x` as channels `c * times .. c * times + times - 1` (TensorFlow).

    Tiled, then transposed: `[x, x]` along the channels is `times` block
    copies, and one transpose interleaves them. A stack on a new last axis
    (the same result) copies one element at a time on CPU, which is slower
    with its gradient at LruNet's stage shapes. Reshapes are to static
    shapes where known: XLA needs them. In a training graph with `times=2`
    where `complex_interleave_applies`, `interleave_channels(x, x)` instead:
    the same values, faster.

    Args:
        x: `(N, H, W, C)`.
        times: Copies of each channel.
        training: Whether the graph trains (a converter never reads it).

    Returns:
        `(N, H, W, C * times)`.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    if training and times == 2 and complex_interleave_applies(x):
        return interleave_channels(x, x)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if None in (height, width):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
    tiled = tf.reshape(tf.concat([x] * times, axis=-1), (-1, height, width, times, channels))
    return tf.reshape(tf.transpose(tiled, (0, 1, 2, 4, 3)), (-1, height, width, channels * times))


def blocked_channel_repeat(x, groups: int, times: int):
    """NHWC `x` with each of its `groups` channel blocks repeated in place (TensorFlow).

    Block `g` (channels `g * C/groups .. (g + 1) * C/groups - 1`) becomes
    `times` copies of itself side by side, so output channel `(g * times +
    m) * C/groups + j` is input channel `g * C/groups + j`. Its depthwise
    convolution with a multiplier-1 kernel in the same channel order is
    `repeat_channels`' with the channels of each block in another order: one
    concatenation, without the transpose that interleaves the copies.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if None in (height, width):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
    blocks = tf.reshape(x, (-1, height, width, groups, channels // groups))
    return tf.reshape(tf.concat([blocks] * times, axis=-1), (-1, height, width, channels * times))


def multiplier_one_form(x, kernel, training: bool = False):
    """`(x, kernel)` of a depthwise convolution as its multiplier-1 form (TensorFlow).

    The depthwise convolution of the returned pair is that of the given
    pair: input channel `c`, repeated as channels `c * M + m`
    (`repeat_channels`, given `training`), meets `kernel[:, :, c, m]`.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    kh, kw, channels, multiplier = kernel.shape
    return (
        repeat_channels(x, multiplier, training),
        tf.reshape(kernel, (kh, kw, channels * multiplier, 1)),
    )


def depthwise_conv(
    x,
    kernel,
    strides=1,
    padding: str = "same",
    dilation_rate=1,
    fast: bool = True,
    data_format: str = "channels_last",
    training: bool = False,
):
    """A 2D depthwise convolution without bias, as `keras.ops.depthwise_conv`.

    Output channel `c * M + m` (M the depth multiplier) is input channel `c`
    convolved with `kernel[:, :, c, m]`. Used by `DepthwiseConv2D` and by the
    looped LruNet stage (`keras_reuse.applications.lrunet.stage`).

    On TensorFlow's CPU with oneDNN (on by default on x86 CPUs with AVX-512
    VNNI, bfloat16 or AMX;
    importing `keras_reuse` turns it on on others) and M > 1,
    the input's channels are repeated M times and convolved with multiplier
    1: the same products and sums, in the kernel layout oneDNN serves fast.
    Forward plus both gradients run faster per stage than the stock op at
    LruNet-14's shapes (docs/performance.md).

    Args:
        x: Activations `(N, H, W, C)` (channels first: `(N, C, H, W)`).
        kernel: `(kh, kw, C, M)`.
        strides: As `keras.ops.depthwise_conv`.
        padding: As `keras.ops.depthwise_conv`.
        dilation_rate: As `keras.ops.depthwise_conv`.
        fast: Allow the oneDNN form (False: the stock op, for tests); a
            channels-last form.
        data_format: "channels_last" or "channels_first".
        training: Whether the graph trains (`repeat_channels`).

    Returns:
        `(N, H', W', C * M)` activations (channels first: `(N, C * M, H', W')`).
    """
    multiplier = kernel.shape[-1]
    if (
        fast
        and data_format == "channels_last"
        and multiplier > 1
        and len(x.shape) == 4
        and keras.backend.backend() == "tensorflow"
        and onednn_cpu()
    ):
        x, kernel = multiplier_one_form(x, kernel, training)
    return ops.depthwise_conv(
        x,
        kernel,
        strides=strides,
        padding=padding,
        data_format=data_format,
        dilation_rate=dilation_rate,
    )


def fused_batch_norm_train(x, gamma, beta, epsilon: float, data_format: str = "NHWC"):
    """Training-mode BatchNorm as one TensorFlow `FusedBatchNormV3` (NHWC or NCHW).

    Args:
        x: Activations `(N, H, W, C)` (`(N, C, H, W)` with "NCHW"),
            float16, bfloat16 or float32 (others
            are cast to float32). The op reads float16/bfloat16 and
            accumulates in float32, as Keras's upcast does, without
            materializing a float32 copy.
        gamma, beta: `(C,)` float32.
        epsilon: Variance epsilon.
        data_format: "NHWC" or "NCHW" (TensorFlow's names).

    Returns:
        `(y, mean, variance)`: `y` in `x`'s dtype, the batch mean and the
        biased batch variance (what Keras's moving variance averages), float32.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
        x = tf.cast(x, tf.float32)
    y, mean, variance, _, _, _ = fused_batch_norm_op(x, gamma, beta, epsilon, data_format)
    return y, mean, biased_variance(variance, x, data_format)


def fused_batch_norm_op(x, gamma, beta, epsilon: float, data_format: str = "NHWC"):
    """TensorFlow's training-mode `FusedBatchNormV3` on `x`, all six outputs.

    `data_format` is "NHWC" or "NCHW"; TensorFlow's CPU kernel takes both.

    Returns:
        `(y, batch_mean, batch_variance (Bessel-corrected), reserve_space_1,
        reserve_space_2, reserve_space_3)`; the reserve spaces are what
        `FusedBatchNormGradV3` takes.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    empty = tf.constant([], tf.float32)
    return tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=empty,
        variance=empty,
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format=data_format,
        is_training=True,
    )


def biased_variance(variance, x, data_format: str = "NHWC"):
    """`FusedBatchNormV3`'s Bessel-corrected batch variance of `x`, made biased.

    Args:
        variance: `(C,)` float32, the op's `batch_variance` output.
        x: The op's input `(N, H, W, C)`, or `(N, C, H, W)` with "NCHW".
        data_format: "NHWC" or "NCHW".

    Returns:
        The biased variance (what Keras's moving variance averages).
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    # A Python number when the shape is static: four ops fewer per call in
    # the traced step (LruNet-14 has 113 BatchNorm calls).
    axis = 1 if data_format == "NCHW" else -1
    static = x.shape.num_elements()
    if static is not None:
        static //= x.shape[axis]
        return variance * ((static - 1.0) / max(static, 1.0))
    count = tf.cast(tf.size(x) // tf.shape(x)[axis], tf.float32)
    return variance * ((count - 1.0) / tf.maximum(count, 1.0))


def channel_shuffle_permutation(
    channels: int, groups: int = 2, swap_halves: bool = False
) -> np.ndarray:
    """Source channel index for every output channel of a channel shuffle.

    Args:
        channels: Number of channels; divisible by `groups` (and by 2 when
            `swap_halves`).
        groups: ShuffleNet groups: channels are viewed as `(groups,
            channels / groups)`, transposed and flattened.
        swap_halves: Exchange the two channel halves before shuffling, as the
            LruNet authors do.

    Returns:
        An int array `perm` with `output[..., k] = input[..., perm[k]]`.
    """
    source = np.arange(channels)
    if swap_halves:
        source = np.roll(source, -(channels // 2))
    return source.reshape(groups, channels // groups).T.reshape(-1)


def channel_shuffle(
    x,
    groups: int = 2,
    swap_halves: bool = False,
    data_format: str = "channels_last",
    training: bool = False,
):
    """The ShuffleNet channel shuffle of `x`'s channels, `ChannelShuffle`'s arithmetic.

    Output channel `k` is input channel `channel_shuffle_permutation(C,
    groups, swap_halves)[k]`, computed as a reshape to `(..., groups, C /
    groups)`, a transpose of the last two axes and a reshape back (after the
    two halves are exchanged, as a split and a concatenation, when
    `swap_halves`). Every op is one vectorised copy: a stack on a new last axis
    (the same permutation) copies one element at a time on TensorFlow's CPU,
    slower with its gradient at LruNet's stage shapes; in a .tflite file its
    PACK is an op XNNPACK does not take (docs/reports/int8-bytes.md). With
    two groups in a training graph, channels last, where
    `complex_interleave_applies`: the two halves' `interleave_channels`,
    the same values, faster.

    Args:
        x: A tensor of rank >= 2; `C` divisible by `groups` (and by 2 with
            `swap_halves`).
        groups: Shuffle groups.
        swap_halves: Exchange the two channel halves first (LruNet).
        data_format: "channels_last" (channels on the last axis) or
            "channels_first" (on axis 1).
        training: Whether the graph trains (a converter never reads it).

    Returns:
        The permuted tensor, `x`'s shape.
    """
    if data_format == "channels_first" and len(x.shape) > 2:
        return _channel_shuffle_channels_first(x, groups, swap_halves)
    channels = x.shape[-1]
    if training and groups == 2 and complex_interleave_applies(x):
        low, high = ops.split(x, 2, axis=-1)
        return interleave_channels(high, low) if swap_halves else interleave_channels(low, high)
    if swap_halves:
        low, high = ops.split(x, 2, axis=-1)
        x = ops.concatenate([high, low], axis=-1)
    lead = leading_dims(x)
    x = ops.reshape(x, (*lead, groups, channels // groups))
    return ops.reshape(ops.swapaxes(x, -1, -2), (*lead, channels))


def _channel_shuffle_channels_first(x, groups: int, swap_halves: bool):
    """`channel_shuffle` on axis 1 of `(batch, C, ...)`: the same reshapes and transpose."""
    channels = x.shape[1]
    if swap_halves:
        low, high = ops.split(x, 2, axis=1)
        x = ops.concatenate([high, low], axis=1)
    spatial = x.shape[2:]
    if None in spatial:
        lead, spatial = ops.shape(x)[0], tuple(ops.shape(x)[2:])
    else:
        lead, spatial = -1, tuple(spatial)
    x = ops.reshape(x, (lead, groups, channels // groups, *spatial))
    return ops.reshape(ops.swapaxes(x, 1, 2), (lead, channels, *spatial))


def half_swap_shuffle(x, data_format: str = "channels_last", training: bool = False):
    """`ChannelShuffle(2, swap_halves=True)`: out[2j] = x[C/2+j], out[2j+1] = x[j]."""
    return channel_shuffle(x, 2, swap_halves=True, data_format=data_format, training=training)


def inverse_half_swap_shuffle(x, data_format: str = "channels_last"):
    """The inverse permutation of `half_swap_shuffle`."""
    # A shuffle of g groups is undone by one of C/g groups; then the halves
    # go back.
    axis = 1 if data_format == "channels_first" and len(x.shape) > 2 else -1
    x = channel_shuffle(x, x.shape[axis] // 2, data_format=data_format)
    low, high = ops.split(x, 2, axis=axis)
    return ops.concatenate([high, low], axis=axis)
