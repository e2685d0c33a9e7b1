"""`LruStage`: one LruNet stage whose reuse iterations are a traced loop.

The unrolled LruNet calls a stage's DepthwiseConv2D and GroupedPointwiseConv
`layer_reuse` times in the functional graph, with a BatchNormalization of
its own after each call. Every call is traced, so the training graph (and
XLA's compile time) grows with N. This layer holds the same weights, the
per-iteration BatchNorm parameters stacked as `(N, C)` arrays, and runs the
N iterations with `keras.ops.fori_loop`: the body is traced once whatever N.

One iteration, exactly as in `applications.lrunet._lru_stage`:

    residual = x
    x = bn_dw[i](depthwise(x)); x = bn_pw[i](pointwise(x))
    x = relu(x + residual)
    x = half_swap_shuffle(x)          # between iterations, not after the last

The loop body always shuffles; the permutation after the last iteration is
undone once after the loop (a permutation and its inverse are exact), so the
body needs no branch on the iteration index.

BatchNorm semantics are `FusedBatchNormalization`'s (= Keras's): in training
each iteration normalizes with its own batch mean and biased variance, and
its moving statistics become `moving * momentum + batch * (1 - momentum)`
(biased variance), all N rows updated after the loop from the per-iteration
batch statistics the loop collected. Inference uses the moving statistics.

What runs where: the loop and all arithmetic are `keras.ops` (JAX: a
`lax.fori_loop` with static bounds, i.e. a scan, reverse-differentiable;
PyTorch: a Python loop). On TensorFlow, as in `keras_reuse.layers`, the
training-mode BatchNorm is one `FusedBatchNormV3` and the inference-mode
pointwise convolution one grouped `tf.nn.conv2d` (in training too, for
narrow groups where oneDNN runs: `layers.grouped_pointwise`); tested against the
generic path (`tests/applications/test_reuse_loop.py`). Where oneDNN runs
the depthwise convolution in its multiplier-1 form, the loop keeps the
depthwise output in `layers.ops.blocked_channel_repeat`'s channel order, the
kernels and the depthwise BatchNorm's rows permuted to it once per call: the
channel repeat is then one concatenation, without the transpose that
interleaves the copies (tested with oneDNN on by
`tests/layers/test_onednn_paths.py`). With `recompute=True`, TensorFlow
trains each iteration as `keras_reuse.applications.lrunet.recompute.lean_iteration`, a
custom gradient that keeps a quarter of the activations
(`tests/applications/test_lean_iteration.py`).

Both image data formats: channels first, the body runs on `(batch, C, H,
W)` activations (the shuffle, the depthwise convolution, the BatchNorms and
the grouped 1x1 convolution on axis 1) on JAX and PyTorch; on TensorFlow,
whose CPU depthwise and fused kernels are channels-last ones (Keras
transposes around each depthwise call on a CPU), the stage transposes its
input once to channels last, runs the same loop with the fast paths above,
and transposes the output back. The weights are the same in both formats.

Weight layout (names inside the layer, which is named `stage{k}`):

    depthwise_kernel      (3, 3, C, 2)          = stage{k}_dw kernel
    pointwise_kernel      (groups, 2C/groups, C/groups) = stage{k}_pw kernel
    dw_bn_gamma/beta/moving_mean/moving_variance  (N, 2C)
                         row i-1 = stage{k}_reuse{i}_dw_bn
    pw_bn_gamma/beta/moving_mean/moving_variance  (N, C)
                         row i-1 = stage{k}_reuse{i}_pw_bn
"""

from __future__ import annotations

import keras
from keras import ops

from keras_reuse.applications.lrunet.recompute import lean_iteration
from keras_reuse.layers.ops import (
    PACKAGE,
    blocked_channel_repeat,
    conv_kernel_initializer,
    depthwise_conv,
    fused_batch_norm_train,
    grouped_pointwise,
    half_swap_shuffle,
    inverse_half_swap_shuffle,
    onednn_cpu,
)
from keras_reuse.reuse.summary import LayerReuse
from keras_reuse.utils.checks import channel_axis, check_data_format

BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def default_reuse_loop() -> bool:
    """What `LruNet(reuse_loop=None)` builds here: looped where XLA compiles.

    JAX always compiles with XLA, and Keras's `compile(jit_compile="auto")`
    turns XLA on for TensorFlow when a GPU is visible. XLA's compile time
    grows with the unrolled graph, many times over the looped one's
    (docs/reports/reuse-loop.md), so there the stages are loops. TensorFlow without a GPU (no XLA by
    default) and PyTorch keep the unrolled, published layout, one layer per
    call.

    Returns:
        True under the JAX backend and under TensorFlow with a visible GPU.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "tensorflow":
        # Optional: TensorFlow, imported on its backend's path only.
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def resolve_reuse_loop(reuse_loop) -> bool:
    """A `reuse_loop` argument checked, None replaced by `default_reuse_loop()`.

    Raises:
        ValueError: naming the value, unless it is True, False or None.
    """
    if reuse_loop is None:
        return default_reuse_loop()
    if not isinstance(reuse_loop, bool):
        raise ValueError(
            "`reuse_loop` must be True, False or None (automatic). "
            f"Received: reuse_loop={reuse_loop!r}"
        )
    return reuse_loop


def _batch_norm_train_generic(x, gamma, beta, epsilon, axis: int = -1):
    x32 = ops.cast(x, "float32")
    rank = len(x.shape)
    mean, variance = ops.moments(x32, axes=[a for a in range(rank) if a != axis % rank])
    y = ops.batch_normalization(
        x32, mean, variance, axis=axis, offset=beta, scale=gamma, epsilon=epsilon
    )
    return y, mean, variance


@keras.saving.register_keras_serializable(package=PACKAGE)
class LruStage(keras.layers.Layer):
    """One LruNet stage: a dw+pw pair applied `layer_reuse` times in a loop.

    Args:
        filters: Channels of the stage (input and output; the residual adds
            them).
        layer_reuse: Number of iterations N.
        groups: Groups of the 1x1 convolution.
        depth_multiplier: Of the 3x3 depthwise convolution.
        momentum: BatchNorm momentum (Keras convention).
        epsilon: BatchNorm epsilon.
        fused: Use TensorFlow's fused ops on the TensorFlow backend (False
            forces the generic `keras.ops` path; for tests).
        recompute: Trade time for memory in TensorFlow training (with
            `fused`): each iteration runs as
            `keras_reuse.applications.lrunet.recompute.lean_iteration`, which keeps 2C
            instead of about 8C activations per position for the backward
            pass and recomputes the depthwise convolution and the first
            BatchNorm there (slower, in a fraction of the memory:
            docs/reports/memory.md). Same results. Other backends train as without it.
        unroll: Trace the body N times in Python instead of a
            `fori_loop` (same weights and arithmetic). None (default):
            unrolled for N = 1 except under JAX. On TensorFlow one
            iteration costs less to trace than a loop and its gradient; under
            JAX, XLA's CPU code for the convolutions is far faster inside a
            loop body (docs/reports/reuse-loop.md).
        data_format: "channels_last", "channels_first" or None:
            `keras.config.image_data_format()` (see the module docstring).
        **kwargs: Base layer keyword arguments.
    """

    def __init__(
        self,
        filters: int,
        layer_reuse: int,
        groups: int = 8,
        depth_multiplier: int = 2,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        fused: bool = True,
        recompute: bool = False,
        unroll: bool | None = None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format)
        self.filters = filters
        self.layer_reuse = layer_reuse
        self.groups = groups
        self.depth_multiplier = depth_multiplier
        self.momentum = momentum
        self.epsilon = epsilon
        self.fused = fused
        if not isinstance(recompute, bool):
            raise ValueError(
                f"`recompute` must be True or False. Received: recompute={recompute!r}"
            )
        self.recompute = recompute
        self.unroll = unroll
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        axis = channel_axis(self.data_format)
        channels = input_shape[axis]
        if channels != self.filters:
            raise ValueError(
                f"Layer '{self.name}': the residual needs input channels == filters="
                f"{self.filters}. Received input_shape={input_shape}"
            )
        n = self.layer_reuse
        mid = channels * self.depth_multiplier
        init = conv_kernel_initializer()
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=(3, 3, channels, self.depth_multiplier), initializer=init
        )
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(self.groups, mid // self.groups, self.filters // self.groups),
            initializer=init,
        )
        for prefix, width in (("dw_bn", mid), ("pw_bn", self.filters)):
            for weight, initializer in zip(
                BN_WEIGHTS, ("ones", "zeros", "zeros", "ones"), strict=True
            ):
                setattr(
                    self,
                    f"{prefix}_{weight}",
                    self.add_weight(
                        name=f"{prefix}_{weight}",
                        shape=(n, width),
                        initializer=initializer,
                        trainable=not weight.startswith("moving"),
                        autocast=False,
                    ),
                )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})

    def traces_unrolled(self) -> bool:
        """Whether `call` traces the N iterations without a loop (see `unroll`)."""
        if self.unroll is not None:
            return self.unroll
        return self.layer_reuse == 1 and keras.backend.backend() != "jax"

    def _tf_fused(self) -> bool:
        return self.fused and keras.backend.backend() == "tensorflow"

    def call(self, inputs, training=None):
        training = bool(training) and self.trainable
        outputs, stats = self.run_iterations(inputs, training)
        if training:
            m = self.momentum
            for prefix, (mean, variance) in stats.items():
                moving_mean = getattr(self, f"{prefix}_moving_mean")
                moving_variance = getattr(self, f"{prefix}_moving_variance")
                moving_mean.assign(moving_mean * m + mean * (1.0 - m))
                moving_variance.assign(moving_variance * m + variance * (1.0 - m))
        return outputs

    def run_iterations(self, inputs, training: bool):
        """The stage's N iterations, without updating the moving statistics.

        Args:
            inputs: The stage's input, `(batch, H, W, filters)` (channels
                first: `(batch, filters, H, W)`).
            training: Normalize with each iteration's batch statistics
                (True) or with the moving statistics (False).

        Returns:
            `(outputs, stats)`: in training, `stats` maps "dw_bn" and
            "pw_bn" to `(mean, variance)`, each `(N, channels)` float32:
            row i-1 is iteration i's batch mean and biased variance (what
            `call` folds into the moving statistics, and what precise
            BatchNorm, `keras_reuse.training.callbacks`, averages); `{}` otherwise.
        """
        if self.data_format == "channels_first" and self._tf_fused():
            # TensorFlow's fast kernels are channels-last ones: one transpose
            # each way around the whole loop.
            outputs, stats = self._iterations(
                ops.transpose(inputs, (0, 2, 3, 1)), training, "channels_last"
            )
            return ops.transpose(outputs, (0, 3, 1, 2)), stats
        return self._iterations(inputs, training, self.data_format)

    def _iterations(self, inputs, training: bool, data_format: str):
        """`run_iterations` with the activations in `data_format`."""
        n = self.layer_reuse
        axis = channel_axis(data_format)
        dtype = self.compute_dtype
        dw_kernel = ops.cast(self.depthwise_kernel, dtype)
        pw_kernel = ops.cast(self.pointwise_kernel, dtype)
        bn = {
            f"{p}_{w}": ops.convert_to_tensor(getattr(self, f"{p}_{w}"), "float32")
            for p in ("dw_bn", "pw_bn")
            for w in BN_WEIGHTS
        }
        eps = self.epsilon
        fused = self._tf_fused()
        lean = training and fused and self.recompute
        # Where TensorFlow runs the depthwise convolution as its multiplier-1
        # form (`layers.ops.depthwise_conv`), the iterations keep the depthwise
        # output in `blocked_channel_repeat`'s channel order: the kernels and
        # the depthwise BatchNorm's rows are permuted to it once per call, and
        # the repeat is one concatenation instead of a concatenation and a
        # transpose. The statistics go back to the weights' order after the
        # loop.
        blocked = fused and self.depth_multiplier > 1 and onednn_cpu()
        if blocked:
            dw_kernel, pw_kernel = self._blocked_kernels(dw_kernel, pw_kernel)
            for w in BN_WEIGHTS:
                bn[f"dw_bn_{w}"] = self._blocked_rows(bn[f"dw_bn_{w}"], to_blocked=True)
        if fused:
            # Channels last here: `run_iterations` transposed channels-first input.
            train_bn = fused_batch_norm_train
        else:

            def train_bn(x, gamma, beta, epsilon):
                return _batch_norm_train_generic(x, gamma, beta, epsilon, axis)

        def row(stack, i):
            # A dynamic slice, not a gather: its gradient is a dense pad, where a
            # gather's is IndexedSlices that the TF while loop accumulates.
            if isinstance(i, int):
                return stack[i]
            return ops.reshape(ops.slice(stack, (i, 0), (1, stack.shape[1])), (stack.shape[1],))

        def accumulate(stats, i, mean, variance):
            hot = ops.expand_dims(ops.one_hot(i, n, dtype="float32"), -1)
            return stats[0] + hot * mean, stats[1] + hot * variance

        def norm(x, prefix, i, stats):
            gamma = row(bn[f"{prefix}_gamma"], i)
            beta = row(bn[f"{prefix}_beta"], i)
            if training:
                y, mean, variance = train_bn(x, gamma, beta, eps)
                stats = accumulate(stats, i, mean, variance)
            else:
                mean = row(bn[f"{prefix}_moving_mean"], i)
                variance = row(bn[f"{prefix}_moving_variance"], i)
                y = ops.batch_normalization(
                    ops.cast(x, "float32"),
                    mean,
                    variance,
                    axis=axis,
                    offset=beta,
                    scale=gamma,
                    epsilon=eps,
                )
            return ops.cast(y, dtype), stats

        repeat = lean and onednn_cpu()

        def body(i, carry):
            # `p` is the previous iteration's ReLU output; the shuffle between
            # iterations opens the body (the stage input is unshuffled once
            # before the loop), so the lean iteration's input is the tensor
            # the previous iteration keeps for its ReLU gradient anyway.
            p, dw_stats, pw_stats = carry
            if lean:
                out, mean1, var1, mean2, var2 = lean_iteration(
                    p,
                    dw_kernel,
                    pw_kernel,
                    row(bn["dw_bn_gamma"], i),
                    row(bn["dw_bn_beta"], i),
                    row(bn["pw_bn_gamma"], i),
                    row(bn["pw_bn_beta"], i),
                    eps,
                    repeat,
                    blocked,
                )
                dw_stats = accumulate(dw_stats, i, mean1, var1)
                pw_stats = accumulate(pw_stats, i, mean2, var2)
                return out, dw_stats, pw_stats
            x = half_swap_shuffle(p, data_format, training=training)
            if blocked:
                x_dw = blocked_channel_repeat(x, self.groups, self.depth_multiplier)
            else:
                x_dw = x
            h = depthwise_conv(
                x_dw, dw_kernel, fast=fused, data_format=data_format, training=training
            )
            h, dw_stats = norm(h, "dw_bn", i, dw_stats)
            h = grouped_pointwise(h, pw_kernel, training, fused, data_format)
            h, pw_stats = norm(h, "pw_bn", i, pw_stats)
            return ops.relu(h + x), dw_stats, pw_stats

        mid = self.filters * self.depth_multiplier
        if training:
            zeros = lambda c: ops.zeros((n, c), "float32")  # noqa: E731
            dw_stats = (zeros(mid), zeros(mid))
            pw_stats = (zeros(self.filters), zeros(self.filters))
        else:
            dw_stats = pw_stats = ()
        carry = (
            inverse_half_swap_shuffle(ops.cast(inputs, dtype), data_format),
            dw_stats,
            pw_stats,
        )
        if self.traces_unrolled():
            # The same body traced N times (no while loop): for small N,
            # where a loop and its gradient cost more to trace than N copies.
            for i in range(n):
                carry = body(i, carry)
        elif keras.backend.backend() == "tensorflow":
            # Optional: TensorFlow, imported on its backend's path only.
            import tensorflow as tf

            # `ops.fori_loop` without `maximum_iterations`: XLA (jit_compile)
            # then cannot size the gradient's accumulators.
            _, carry = tf.while_loop(
                lambda i, _: i < n,
                lambda i, c: (i + 1, body(i, c)),
                (tf.constant(0), carry),
                maximum_iterations=n,
            )
        else:
            carry = ops.fori_loop(0, n, body, carry)
        outputs, dw_stats, pw_stats = carry
        if training and blocked:
            dw_stats = tuple(self._blocked_rows(s, to_blocked=False) for s in dw_stats)
        stats = {"dw_bn": dw_stats, "pw_bn": pw_stats} if training else {}
        return outputs, stats

    def _blocked_kernels(self, dw_kernel, pw_kernel):
        """The kernels for `blocked_channel_repeat`'s channel order.

        Blocked channel `(g, m, j)` is depthwise channel `(g * C/groups + j) *
        M + m`: the depthwise kernel becomes a multiplier-1 kernel in that
        order, and each group's rows of the pointwise kernel follow it.
        """
        c, m, g = self.filters, self.depth_multiplier, self.groups
        dw = ops.reshape(dw_kernel, (3, 3, g, c // g, m))
        dw = ops.reshape(ops.transpose(dw, (0, 1, 2, 4, 3)), (3, 3, c * m, 1))
        cout = pw_kernel.shape[-1]
        pw = ops.reshape(pw_kernel, (g, c // g, m, cout))
        pw = ops.reshape(ops.transpose(pw, (0, 2, 1, 3)), (g, m * c // g, cout))
        return dw, pw

    def _blocked_rows(self, stack, to_blocked: bool):
        """`(N, C * M)` depthwise BatchNorm rows into (or out of) the blocked channel order."""
        c, m, g = self.filters, self.depth_multiplier, self.groups
        shape = (-1, g, c // g, m) if to_blocked else (-1, g, m, c // g)
        return ops.reshape(ops.transpose(ops.reshape(stack, shape), (0, 1, 3, 2)), (-1, c * m))

    def compute_output_shape(self, input_shape):
        return input_shape

    def reuse_rows(self, output_shape) -> list:
        """This stage's rows for `keras_reuse.reuse_summary`, as if unrolled.

        The kernels as `stage{k}_dw` / `stage{k}_pw` called N times (MACs
        summed over the N calls), and one row per iteration's BatchNorm,
        `stage{k}_reuse{i}_dw_bn` / `_pw_bn`: the rows and totals of the
        unrolled LruNet with the same configuration.

        Args:
            output_shape: The stage's output shape `(batch, H, W, C)` (or
                `(batch, C, H, W)` channels first); MACs
                are 0 if H or W is unknown.

        Returns:
            A list of `keras_reuse.reuse.summary.LayerReuse`.
        """

        n, k = self.layer_reuse, self.name
        mid = self.filters * self.depth_multiplier
        if output_shape is None:
            spatial = (None,)
        elif self.data_format == "channels_first":
            spatial = output_shape[2:]
        else:
            spatial = output_shape[1:-1]
        positions = 0 if None in spatial else spatial[0] * spatial[1]
        kernels = [
            LayerReuse(f"{k}_dw", "LruStage", n, 9 * mid, n * positions * mid * 9),
            LayerReuse(
                f"{k}_pw",
                "LruStage",
                n,
                mid * self.filters // self.groups,
                n * positions * self.filters * mid // self.groups,
            ),
        ]
        norms = [
            LayerReuse(f"{k}_reuse{i}_{kind}", "LruStage", 1, 2 * width, 0)
            for i in range(1, n + 1)
            for kind, width in (("dw_bn", mid), ("pw_bn", self.filters))
        ]
        return kernels[:1] + norms[:1] + kernels[1:] + norms[1:]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "layer_reuse": self.layer_reuse,
                "groups": self.groups,
                "depth_multiplier": self.depth_multiplier,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "fused": self.fused,
                "recompute": self.recompute,
                "unroll": self.unroll,
                "data_format": self.data_format,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the layer took a data_format were channels last.
        return super().from_config({"data_format": "channels_last", **config})
